#!/usr/bin/env python
"""Round-2 fine-tune of the shipped water model: the starting checkpoint and the wall of the new data.

The training checkpoint of the shipped model is not in the repository, but the exported file holds every weight.
``prepare`` rebuilds the eager model from the file (``equiforce.bench.eager_copy``) and writes it as a training
checkpoint, ``runs/water-gfn2-round2/shipped.ckpt``, for ``init_from:`` in ``train_water_round2.yaml``; as a
sanity check it prints the rebuilt model's energy and force error on the first data frame (the shipped file's
errors are about 0.6 meV/atom and 36 meV/Å). It also prints the wall onsets
(shortest distance of each element pair in the fine-tune data minus 0.03 Å, the rule of ``equiforce export
--repulsion-from``) that the YAML sets, so the wall is zero on every frame trained on.

``evaluate`` gives the errors of exported files on the frames no split of either run holds: liquid frames
1387-1599 and the distorted frames 347-399 made from them (overall and per kind of distortion), and on the
fine-tune's own test split; ``benchmarks/results/water_gfn2_round2_errors.json``.

Usage::

    python benchmarks/water/finetune_round2.py prepare [--from FILE.pt]   # default: the shipped file
    OMP_NUM_THREADS=2 equiforce train benchmarks/water/train_water_round2.yaml     # resumes
    python benchmarks/water/finetune_round2.py evaluate --models python/equiforce/models/water-gfn2.pt \
        runs/water-gfn2-round2/water-gfn2-round2.pt
"""
import argparse
import os
import sys

import torch
import yaml

import equiforce
from equiforce.bench._speed import eager_copy
from equiforce.checkpoint import model_from_checkpoint, save_checkpoint
from equiforce.data import read_structures
from equiforce.demo import SHIPPED_MODEL
from equiforce.nn._repulsion import repulsion_radii_from_structures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(HERE, "train_water_round2.yaml")
LIQUID = "benchmarks/water/data/water_gfn2.extxyz.xz"
DISTORTED = "benchmarks/water/data/water_gfn2_round2_distorted.extxyz"
TRAINED_LIQUID, TRAINED_DISTORTED = 1387, 347  # the frames the YAML takes from each file


def _config():
    with open(CONFIG) as handle:
        return yaml.safe_load(handle)


def prepare(source: str = SHIPPED_MODEL) -> int:
    """Write the YAML's ``init_from`` checkpoint from the exported file ``source`` (default: the shipped one)."""
    config = _config()
    source = os.path.abspath(source)
    os.chdir(ROOT)  # the YAML's paths are relative to the repository root
    module, metadata = equiforce.load_model(source)
    model = eager_copy(module, metadata)
    path = config["init_from"]
    origin = {"file": os.path.relpath(source, ROOT), "created": metadata.get("created")}
    save_checkpoint(model, path, extra={"source": origin})
    rebuilt = model_from_checkpoint(path).to(torch.float64)
    structures = read_structures(config["data"])
    frame = structures[0]
    positions = frame.positions.clone().requires_grad_(True)  # [N, 3] Å
    species = torch.tensor([rebuilt.config.elements.index(symbol) for symbol in frame.symbols])  # [N]
    energy = rebuilt(positions, species, frame.cell)  # eV
    forces = -torch.autograd.grad(energy, positions)[0]
    print(f"wrote {path}; frame {frame.source}: model {float(energy):.5f} eV (label {frame.energy:.5f}), "
          f"force MAE {float((forces - frame.forces.to(torch.float64)).abs().mean()) * 1000:.1f} meV/Å")
    radii = repulsion_radii_from_structures(structures, 0.03)
    print(f"{len(structures)} frames; wall onsets (shortest - 0.03 Å): "
          + ", ".join(f"{k} {v:.6f}" for k, v in radii.items()))
    stored = config.get("model", {}).get("repulsion_radii", {})
    if any(abs(stored.get(k, -1.0) - v) > 5e-4 for k, v in radii.items()):
        print(f"the YAML's repulsion_radii {stored} differ: set them to the onsets above")
        return 1
    return 0


def evaluate(models, out) -> int:
    import json

    from equiforce.bench._speed import write_json
    from equiforce.data import read_atoms, split_indices
    from equiforce.evaluate import evaluate_model, format_errors

    config = _config()
    os.chdir(ROOT)
    distorted = read_atoms(DISTORTED)
    held_out = list(range(TRAINED_DISTORTED, len(distorted)))
    kinds = {}
    for k in held_out:
        kinds.setdefault(distorted[k].info["distortion"], []).append(k)
    test = split_indices(TRAINED_LIQUID + TRAINED_DISTORTED, config["split"], config["seed"])[2]
    sets = {"liquid unseen (1387-1599)": (LIQUID, {"start": TRAINED_LIQUID}),
            f"distorted unseen ({TRAINED_DISTORTED}-{len(distorted) - 1})": (DISTORTED, {"indices": held_out})}
    sets.update({f"distorted unseen, {kind}": (DISTORTED, {"indices": ks}) for kind, ks in sorted(kinds.items())})
    sets["fine-tune test split"] = (config["data"], {"indices": list(test)})
    result = {}
    if os.path.exists(out):
        with open(out) as handle:
            result = json.load(handle)
    for model in models:
        name = os.path.relpath(model, ROOT)
        entry = result.setdefault(name, {})
        for label, (data, selection) in sets.items():
            errors = evaluate_model(model, data, **selection)
            errors.pop("sources", None)
            entry[label] = {k: v for k, v in errors.items() if k not in ("first_frame", "last_frame", "data")}
            print(f"{name}  {label}: " + format_errors(errors))
            write_json(result, out)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["prepare", "evaluate"])
    parser.add_argument("--models", nargs="+", default=[], help="evaluate: exported files")
    parser.add_argument("--from", dest="source", default=SHIPPED_MODEL,
                        help="prepare: the exported file to start from (default: the shipped model)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "water_gfn2_round2_errors.json"))
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        return evaluate([os.path.abspath(m) for m in args.models], os.path.abspath(args.out))
    return prepare(args.source)


if __name__ == "__main__":
    sys.exit(main())
