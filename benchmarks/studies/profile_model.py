#!/usr/bin/env python
"""Where the time of one MD step goes: torch profiler over the exported model's forward + backward.

The exported (TorchScript) model is called exactly as the TorchForce calls it: positions [N, 3] with
requires_grad, then autograd for the forces. Operators are grouped by name and sorted by their own (self) CPU
time; the top ones, with their share of the total, go to ``benchmarks/results/profile_cpu.{json,md}``. With
``--nequip`` the NequIP peer (``runs/peers/nequip/water.nequip.zip``) is profiled the same way, eager, in
evaluation mode, with nequip's own neighbour list, for comparison.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/studies/profile_model.py --molecules 32 128 --threads 1 [--nequip]
"""
import argparse
import json
import os
import sys
import time
from typing import Callable, Dict, List

import numpy as np
import torch

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")


def profile(step: Callable[[], None], repeats: int, top: int) -> Dict:
    """Profile ``repeats`` calls of ``step`` after two warm-up calls; the ``top`` operators by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    plain_ms = 1000.0 * (time.perf_counter() - start) / repeats  # without the profiler's own overhead
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "ms_per_call": plain_ms,
        "profiled_ms_per_call": total_us / 1000.0 / repeats,
        "operators": [{"name": e.key, "calls_per_step": e.count / repeats,
                       "self_ms_per_step": e.self_cpu_time_total / 1000.0 / repeats,
                       "share": e.self_cpu_time_total / total_us} for e in rows],
    }


def equiforce_step(model_file: str, n_molecules: int) -> Callable[[], None]:
    """One forward + backward of the exported model in float32, as the speed benchmark's bare-torchscript."""
    from equiforce.bench import WaterCase, bare_step
    from equiforce.export import load_model

    module, metadata = load_model(model_file)
    step = bare_step(module, WaterCase(n_molecules, metadata), torch.float32)
    return lambda: step(1)


def nequip_step(n_molecules: int) -> Callable[[], None]:
    """One call as openmm-ml 1.8's PythonForce makes it: float64 inputs, nequip's neighbour list, the model."""
    from nequip.data._nl import compute_neighborlist_
    from nequip.model.saved_models.load_utils import load_saved_model
    from nequip.nn import graph_model
    from openmm import unit

    from equiforce.systems import water_box
    from equiforce.units import ANGSTROM_PER_NM

    default = torch.get_default_dtype()
    model = load_saved_model(os.path.join(REPOSITORY, "runs", "peers", "nequip", "water.nequip.zip")).eval()
    torch.set_default_dtype(default)
    cutoff = float(model.metadata[graph_model.R_MAX_KEY])
    topology, positions_nm = water_box(n_molecules, 1.0, seed=0)
    names = model.metadata[graph_model.TYPE_NAMES_KEY].split()
    types = torch.tensor([names.index(a.element.symbol) for a in topology.atoms()])
    box = np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)) * ANGSTROM_PER_NM
    pbc = torch.ones(3, dtype=torch.bool)

    def step() -> None:
        data = {"pos": torch.tensor(positions_nm * ANGSTROM_PER_NM, dtype=torch.float64), "atom_types": types,
                "pbc": pbc, "cell": torch.tensor(box, dtype=torch.float64)}
        compute_neighborlist_(data, cutoff)
        model(data)["forces"].detach()

    return step


def table(result: Dict) -> str:
    lines = []
    for case in result["cases"]:
        lines += [f"### {case['model']}, {case['n_atoms']} atoms: {case['ms_per_call']:.1f} ms per forward + "
                  f"backward ({result['threads']} thread(s))", "",
                  "| operator | calls/step | self ms/step | share |", "|---|---|---|---|"]
        lines += [f"| `{op['name']}` | {op['calls_per_step']:.0f} | {op['self_ms_per_step']:.2f} | "
                  f"{100 * op['share']:.1f} % |" for op in case["operators"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="exported model (default: the shipped water model)")
    parser.add_argument("--molecules", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nequip", action="store_true", help="also profile the NequIP peer")
    parser.add_argument("--out", default=os.path.join(RESULTS, "profile_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from equiforce.bench import describe_machine
    from equiforce.demo import SHIPPED_MODEL

    model_file = args.model or SHIPPED_MODEL
    result = {"machine": describe_machine(), "threads": args.threads, "repeats": args.repeats, "cases": []}
    for n_molecules in args.molecules:
        steps = [("equiforce " + os.path.basename(model_file), equiforce_step(model_file, n_molecules))]
        if args.nequip:
            steps.append(("nequip peer (eval, nequip neighbour list)", nequip_step(n_molecules)))
        for name, step in steps:
            case = {"model": name, "n_atoms": 3 * n_molecules, **profile(step, args.repeats, args.top)}
            result["cases"].append(case)
            print(f"{name}, {3 * n_molecules} atoms: {case['ms_per_call']:.1f} ms", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as handle:
        handle.write(table(result))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
