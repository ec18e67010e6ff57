#!/usr/bin/env python
"""Page faults and ms per step of the shipped model, with and without keep_freed_cpu_memory.

Two steps are measured: ``bare-torchscript`` (forward + backward of the model alone) and ``torchforce`` (one
Verlet step of OpenMM's CPU platform with the model as a TorchForce), both as the speed benchmark builds them.

Each measurement runs in its own fresh process (malloc's state is process history), the two modes alternating,
``--repeats`` times per box; the medians go to ``benchmarks/results/memory_cpu.json``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/memory_cpu.py [--molecules 32 128 512] [--methods ...] [--repeats 3]``
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ONE_RUN = r"""
import json, resource, statistics, sys, time
import torch
from equiforce.bench import WaterCase, make_step
from equiforce.demo import SHIPPED_MODEL
from equiforce.export import load_model
from equiforce.memory import keep_freed_cpu_memory

keep, method, n_molecules, steps = sys.argv[1] == "keep", sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
applied = keep_freed_cpu_memory(True) if keep else False
module, metadata = load_model(SHIPPED_MODEL)
step = make_step(method, "float32", module, metadata, SHIPPED_MODEL, WaterCase(n_molecules, metadata), threads=1)
step(3)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
times = []
for _ in range(steps):
    start = time.perf_counter()
    step(1)
    times.append(1000.0 * (time.perf_counter() - start))
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
print(json.dumps({"applied": applied, "ms_per_step": statistics.median(times), "minor_faults_per_step": faults}))
"""

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--methods", nargs="+", default=["bare-torchscript", "torchforce"],
                        help="speed-benchmark methods: the bare model, or the full OpenMM MD step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(REPOSITORY, "benchmarks", "results", "memory_cpu.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    from equiforce.bench import describe_machine, write_json

    result = {"machine": describe_machine(), "load_average_at_start": list(os.getloadavg()), "threads": 1,
              "steps": args.steps, "repeats": args.repeats, "cases": []}
    for n_molecules, method in ((n, m) for n in args.molecules for m in args.methods):
        runs = {"default": [], "keep": []}
        for _ in range(args.repeats):
            for mode in runs:
                output = subprocess.run([sys.executable, "-c", ONE_RUN, mode, method, str(n_molecules),
                                         str(args.steps)], capture_output=True, text=True, check=True).stdout
                runs[mode].append(json.loads(output.strip().splitlines()[-1]))
        case = {"n_atoms": 3 * n_molecules, "method": method}
        for mode, values in runs.items():
            case[mode] = {key: statistics.median(v[key] for v in values)
                          for key in ("ms_per_step", "minor_faults_per_step")}
            case[mode]["applied"] = all(v["applied"] for v in values) if mode == "keep" else False
        case["speedup"] = case["default"]["ms_per_step"] / case["keep"]["ms_per_step"]
        result["cases"].append(case)
        print(json.dumps(case), flush=True)
    write_json(result, args.out)  # atomic: a run cut short leaves the last complete file
    return 0


if __name__ == "__main__":
    sys.exit(main())
