#!/usr/bin/env python
"""What the tensor-product split pass gains: the shipped weights exported twice, with e3nn's sliced code and
with the split pass (``equiforce.nn._split_slices``), timed alternately in one process.

For each water box: the two files' energies and forces are first checked to be bit-identical, then the bare
forward + backward and the full OpenMM step (TorchForce, CPU platform) of each file are timed, alternating
variants step by step, ``--repeats`` times; the medians and their ratio go to
``benchmarks/results/tp_split_cpu.json``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/tp_split.py [--molecules 32 128 512] [--repeats 15]``
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_variants(directory: str) -> dict:
    """The shipped model's weights exported as 'e3nn slices' and 'split' files; returns name -> path."""
    from equiforce.bench._speed import eager_copy
    from equiforce.demo import SHIPPED_MODEL
    from equiforce.export import export_model, load_model
    from equiforce.nn._split_slices import e3nn_slices

    module, metadata = load_model(SHIPPED_MODEL)
    paths = {"e3nn slices": os.path.join(directory, "slices.pt"), "split": os.path.join(directory, "split.pt")}
    with e3nn_slices():
        export_model(eager_copy(module, metadata), paths["e3nn slices"], dtype=metadata["dtype"])
    export_model(eager_copy(module, metadata), paths["split"], dtype=metadata["dtype"])
    return paths


def same_results(paths: dict, case) -> bool:
    """Energy and forces of the two files on ``case``, compared bit for bit."""
    import torch

    from equiforce.export import load_model
    from equiforce.units import ANGSTROM_PER_NM

    results = []
    for path in paths.values():
        module, _ = load_model(path)
        x = torch.tensor(case.positions_nm * ANGSTROM_PER_NM, dtype=torch.float32, requires_grad=True)
        energy = module(x, case.species, torch.tensor(case.box_nm * ANGSTROM_PER_NM, dtype=torch.float32))
        results.append((energy.detach(), torch.autograd.grad(energy, x)[0]))
    (e1, f1), (e2, f2) = results
    return bool(torch.equal(e1, e2) and torch.equal(f1, f2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--methods", nargs="+", default=["bare-torchscript", "torchforce"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=os.path.join(REPOSITORY, "benchmarks", "results", "tp_split_cpu.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    import torch

    from equiforce.bench import WaterCase, describe_machine, make_step, write_json
    from equiforce.export import load_model

    torch.set_num_threads(1)
    result = {"machine": describe_machine(), "load_average_at_start": list(os.getloadavg()), "threads": 1,
              "repeats": args.repeats, "cases": []}
    with tempfile.TemporaryDirectory() as directory:
        paths = export_variants(directory)
        for n_molecules in args.molecules:
            for method in args.methods:
                steps = {}
                for name, path in paths.items():
                    module, metadata = load_model(path)
                    case = WaterCase(n_molecules, metadata)
                    steps[name] = make_step(method, "float32", module, metadata, path, case, threads=1)
                    steps[name](3)  # warm-up: TorchScript's profiling runs, OpenMM's first neighbour list
                times = {name: [] for name in steps}
                for _ in range(args.repeats):
                    for name, step in steps.items():
                        start = time.perf_counter()
                        step(1)
                        times[name].append(1000.0 * (time.perf_counter() - start))
                row = {"n_atoms": case.n_atoms, "method": method,
                       "identical_energy_and_forces": same_results(paths, case)}
                row.update({f"{name} ms_per_step": statistics.median(values) for name, values in times.items()})
                row["speedup"] = row["e3nn slices ms_per_step"] / row["split ms_per_step"]
                result["cases"].append(row)
                print(json.dumps(row), flush=True)
                write_json(result, args.out)  # atomic: a run cut short leaves the last complete file
    return 0


if __name__ == "__main__":
    sys.exit(main())
