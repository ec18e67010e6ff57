#!/usr/bin/env python
"""Fine-tune a water model: the starting checkpoint, the wall of the new data, and held-out errors.

A fine-tune is a YAML of ``equiforce.train.TrainConfig`` (``--config``; default ``train_water_round2.yaml``)
whose ``init_from`` is a checkpoint made here and whose ``data`` entries select the first frames of each file
(``file@:N``); the rest of each file is held out of every split.

The training checkpoint of an exported model need not exist, but the exported file holds every weight.
``prepare`` rebuilds the eager model from the file (``equiforce.bench.eager_copy``) and writes it as the YAML's
``init_from`` checkpoint; as a sanity check it prints the rebuilt model's energy and force error on the first
data frame (the shipped file's errors are about 0.6 meV/atom and 36 meV/Å). It also prints the wall onsets
(shortest distance of each element pair in the fine-tune data minus 0.03 Å, the rule of ``equiforce export
--repulsion-from``) and checks them against the YAML's, so the wall is zero on every frame trained on.

``evaluate`` gives the errors of exported files on the held-out tail of every data file (overall, and per kind
of distortion where frames carry one) and on the fine-tune's own test split;
``benchmarks/results/<output_dir name>_errors.json`` (``water_gfn2_round2_errors.json`` for round 2).

Usage::

    python recipes/water/finetune.py prepare [--config YAML] [--from FILE.pt]   # default: the shipped file
    OMP_NUM_THREADS=2 equiforce train recipes/water/train_water_round2.yaml     # resumes
    python recipes/water/finetune.py evaluate [--config YAML] --models python/equiforce/models/water-gfn2.pt \
        runs/water-gfn2-round2/water-gfn2-round2.pt
"""
import argparse
import os
import sys

import torch
import yaml

import equiforce
from equiforce.bench import eager_copy
from equiforce.checkpoint import model_from_checkpoint, save_checkpoint
from equiforce.data import read_structures
from equiforce.data import split_frame_selection
from equiforce.demo import SHIPPED_MODEL
from equiforce.nn import repulsion_radii_from_structures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_CONFIG = os.path.join(HERE, "train_water_round2.yaml")
#: short names of the data files in the result labels (round 2's labels: "liquid unseen (1387-1599)", ...)
SHORT_NAMES = {"water_gfn2": "liquid", "water_gfn2_round2_distorted": "distorted",
               "water_gfn2_round3_sampled": "sampled"}


def _config(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def _short_name(path):
    stem = os.path.basename(path).split(".")[0]
    return SHORT_NAMES.get(stem, stem)


def held_out_sets(config):
    """{label: (file, {"indices": [...]})}: for each data entry ``file@:N`` (or ``file@0:N``) the frames N.. of
    the file, and for frames with a ``distortion`` in their info, one set per kind. Entries that select
    otherwise (a step, a start) have no tail and give no set."""
    from equiforce.data import read_atoms

    sets = {}
    for entry in config["data"]:
        path, selection = split_frame_selection(entry)
        if selection.stop is None or selection.step not in (None, 1) or selection.start not in (None, 0):
            continue
        frames = read_atoms(path)
        tail = list(range(selection.stop, len(frames)))
        if not tail:
            continue
        name = _short_name(path)
        sets[f"{name} unseen ({tail[0]}-{tail[-1]})"] = (path, {"indices": tail})
        kinds = {}
        for k in tail:
            if "distortion" in frames[k].info:
                kinds.setdefault(frames[k].info["distortion"], []).append(k)
        sets.update({f"{name} unseen, {kind}": (path, {"indices": ks}) for kind, ks in sorted(kinds.items())})
    return sets


def prepare(config_path: str = DEFAULT_CONFIG, source: str = SHIPPED_MODEL) -> int:
    """Write the YAML's ``init_from`` checkpoint from the exported file ``source`` (default: the shipped one)."""
    config = _config(config_path)
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


def evaluate(models, out, config_path: str = DEFAULT_CONFIG) -> int:
    import json

    from equiforce.bench import write_json
    from equiforce.data import split_indices
    from equiforce.evaluate import evaluate_model, format_errors

    config = _config(config_path)
    os.chdir(ROOT)
    sets = held_out_sets(config)
    n_frames = len(read_structures(config["data"]))
    test = split_indices(n_frames, config["split"], config["seed"])[2]
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
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="the fine-tune's YAML")
    parser.add_argument("--models", nargs="+", default=[], help="evaluate: exported files")
    parser.add_argument("--from", dest="source", default=SHIPPED_MODEL,
                        help="prepare: the exported file to start from (default: the shipped model)")
    parser.add_argument("--out", default=None,
                        help="evaluate: JSON (default benchmarks/results/<output_dir name>_errors.json)")
    args = parser.parse_args(argv)
    config_path = os.path.abspath(args.config)
    if args.command == "evaluate":
        out = args.out or os.path.join(ROOT, "benchmarks", "results", os.path.basename(
            os.path.normpath(_config(config_path)["output_dir"])).replace("-", "_") + "_errors.json")
        return evaluate([os.path.abspath(m) for m in args.models], os.path.abspath(out), config_path)
    return prepare(config_path, args.source)


if __name__ == "__main__":
    sys.exit(main())
