"""Two exports of the same weights (two code paths), checked against each other and timed in turns.

Used by ``benchmarks/studies/tp_split.py`` (e3nn's sliced tensor-product code against the split pass) and
``benchmarks/studies/fused_convolution.py`` (e3nn's tensor product against the fused convolution op).
"""
import argparse
import json
import os
import tempfile
from typing import Callable, Dict, List, Optional

import torch

from ..export import load_model, model_dtype
from ..units import ANGSTROM_PER_NM
from ._machine import describe_machine
from ._speed import WaterCase, make_step, write_json
from ._threads import torch_threads
from ._timing import time_interleaved


def energy_and_forces(module, case: WaterCase):
    """Energy (eV, 0-dim) and forces (eV/Å, [N, 3]) of an exported model (as ``load_model`` returns it) on
    ``case``, in the model's dtype."""
    dtype = model_dtype(module)
    positions = torch.tensor(case.positions_nm * ANGSTROM_PER_NM, dtype=dtype, requires_grad=True)  # [N, 3] Å
    energy = module(positions, case.species, torch.tensor(case.box_nm * ANGSTROM_PER_NM, dtype=dtype))
    return energy.detach(), -torch.autograd.grad(energy, positions)[0]


def difference(paths: Dict[str, str], case: WaterCase) -> Dict:
    """How far apart two files' energies and forces are on ``case`` (``identical``: to the bit)."""
    (e1, f1), (e2, f2) = (energy_and_forces(load_model(path)[0], case) for path in paths.values())
    return {"identical_energy_and_forces": bool(torch.equal(e1, e2) and torch.equal(f1, f2)),
            "energy_difference_eV": abs(float(e1 - e2)), "max_force_difference_eV_per_A": float((f1 - f2).abs().max()),
            "max_force_eV_per_A": float(f1.abs().max())}


def compare_variants(paths: Dict[str, str], molecules: List[int], methods: List[str], repeats: int, out: str,
                     threads: int = 1) -> Dict:
    """For each box and method, the files' steps timed alternately (``repeats`` rounds of one step each);
    the medians, their ratio (``speedup``: first file's time over the second's) and the files' difference go to
    ``out`` (JSON, rewritten after each case). ``paths``: two names -> exported files, the reference first."""
    if len(paths) != 2:
        raise ValueError(f"compare_variants needs exactly two files, got {list(paths)}")
    reference, candidate = list(paths)
    with torch_threads(threads):
        return _compare(paths, reference, candidate, molecules, methods, repeats, out, threads)


def _compare(paths: Dict[str, str], reference: str, candidate: str, molecules: List[int], methods: List[str],
             repeats: int, out: str, threads: int) -> Dict:
    result = {"machine": describe_machine(), "threads": threads, "repeats": repeats, "variants": list(paths),
              "cases": []}
    for n_molecules in molecules:
        for method in methods:
            steps = {}
            for name, path in paths.items():
                module, metadata = load_model(path)
                case = WaterCase(n_molecules, metadata)
                steps[name] = make_step(method, metadata["dtype"], module, metadata, path, case, threads=threads)
            timings = time_interleaved(steps, warmup_steps=3, block_steps=1, blocks=repeats)
            row = {"n_atoms": case.n_atoms, "method": method, **difference(paths, case)}
            row.update({f"{name} ms_per_step": timing["ms_per_step"] for name, timing in timings.items()})
            row["speedup"] = row[f"{reference} ms_per_step"] / row[f"{candidate} ms_per_step"]
            result["cases"].append(row)
            print(json.dumps(row), flush=True)
            write_json(result, out)  # atomic: a run cut short leaves the last complete file
    return result


def export_shipped_variants(directory: str, variants: Dict[str, Dict]) -> Dict[str, str]:
    """The shipped model's weights exported once per variant into ``directory``: ``variants`` maps a name to
    keyword arguments of ``export_model`` (the code path to switch); returns name -> path, in that order."""
    from ..demo import SHIPPED_MODEL
    from ..export import export_model
    from ._speed import eager_copy

    module, metadata = load_model(SHIPPED_MODEL)
    paths = {}
    for name, options in variants.items():
        paths[name] = os.path.join(directory, name.replace(" ", "-") + ".pt")
        export_model(eager_copy(module, metadata), paths[name], dtype=metadata["dtype"], **options)
    return paths


def variants_main(description: str, default_out: str, export_variants: Callable[[str], Dict[str, str]],
                  argv: Optional[List[str]] = None) -> int:
    """The command line of a variant benchmark script: ``--molecules``, ``--methods``, ``--repeats``, ``--out``.

    ``export_variants(directory)`` writes the two files into a temporary directory and returns name -> path.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--molecules", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--methods", nargs="+", default=["bare-torchscript", "torchforce"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=default_out)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        compare_variants(export_variants(directory), args.molecules, args.methods, args.repeats, args.out)
    print(f"wrote {args.out}")
    return 0
