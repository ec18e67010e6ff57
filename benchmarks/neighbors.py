"""Neighbour-list timings on the CPU: equiforce's native op against vesin-torch and the pure-torch reference.

Systems: liquid-water-like boxes (rigid water molecules on a jittered lattice, random orientations, molecules in
random order) at 0.1 atoms/Å^3, cubic periodic boxes, cutoff 5 Å, float64, full lists (both directions) with
displacement vectors. All methods run in the same process, interleaved repeat by repeat (so background load
hits them alike); the median of the repeats after warm-up is reported.

    .venv/bin/pip install -r requirements-bench.txt
    .venv/bin/python benchmarks/neighbors.py                # 2 then 1 threads; writes benchmarks/results/neighbors_cpu.{json,md}
    .venv/bin/python benchmarks/neighbors.py --quick        # a smoke run, no JSON
    .venv/bin/python benchmarks/neighbors.py --replot       # rewrites neighbors_cpu.md from the JSON, runs nothing
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

import equiforce.ops as ops

CUTOFF = 5.0  # Å
DENSITY = 0.1  # atoms / Å^3 (33.3 water molecules / nm^3)
MOLECULES = [32, 100, 334, 1000, 3334, 8000, 16667, 33334]  # 96 ... 100 002 atoms
REFERENCE_MAX_ATOMS = 3_000  # the O(N^2) pure-torch reference takes ~30 s per call at 10 000 atoms here
RESULTS = Path(__file__).resolve().parent / "results" / "neighbors_cpu.json"


def water_box(n_molecules: int, seed: int = 0):
    """Positions [3 n, 3] (Å, float64) and cubic box [3, 3] of liquid-density water."""
    rng = np.random.default_rng(seed)
    length = (3 * n_molecules / DENSITY) ** (1 / 3)
    per_side = math.ceil(n_molecules ** (1 / 3))
    spacing = length / per_side
    sites = rng.choice(per_side**3, size=n_molecules, replace=False)  # random order of molecules
    grid = np.stack(np.unravel_index(sites, (per_side,) * 3), axis=1) + 0.5
    oxygen = (grid + rng.uniform(-0.15, 0.15, size=grid.shape)) * spacing
    half = math.radians(104.52) / 2
    local = 0.9572 * np.array([[0.0, 0.0, 0.0], [math.sin(half), math.cos(half), 0.0], [-math.sin(half), math.cos(half), 0.0]])
    rotations = np.linalg.qr(rng.normal(size=(n_molecules, 3, 3)))[0]
    atoms = oxygen[:, None, :] + np.einsum("mij,aj->mai", rotations, local)
    return torch.tensor(atoms.reshape(-1, 3)), torch.eye(3, dtype=torch.float64) * length


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "vesin_torch": version("vesin-torch"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def methods(positions, box, reference: bool = True):
    """name -> zero-argument callable returning (n_pairs, vectors)."""
    found = {}

    def equiforce_op():
        pairs, vectors = ops.neighbor_list(positions, CUTOFF, box)
        return pairs.shape[1], vectors

    found["equiforce"] = equiforce_op
    try:
        import vesin_torch

        calculator = vesin_torch.NeighborList(cutoff=CUTOFF, full_list=True)

        def vesin():
            i, j, D = calculator.compute(points=positions, box=box, periodic=True, quantities="ijD")
            return i.shape[0], D

        found["vesin"] = vesin
    except ImportError:
        print("vesin-torch is not installed (pip install -r requirements-bench.txt): skipped", file=sys.stderr)
    if reference and positions.shape[0] <= REFERENCE_MAX_ATOMS:
        from equiforce.neighbors import edge_vectors, neighbor_list

        def torch_reference():
            edge_index, shifts = neighbor_list(positions, CUTOFF, box)
            return edge_index.shape[1], edge_vectors(positions, edge_index, shifts, box)

        found["torch_reference"] = torch_reference
    return found


def time_all(calls: dict, budget_s: float, min_repeats: int, max_repeats: int) -> dict:
    """Per method: median and minimum wall-clock seconds per call, and the median CPU seconds of the process per
    call (all threads, user + system). Methods are interleaved within each repeat round."""
    pairs = {}
    estimate = {}
    for name, call in calls.items():
        pairs[name] = call()[0]  # warm-up 1
        start = time.perf_counter()
        call()  # warm-up 2, also the estimate
        estimate[name] = time.perf_counter() - start
    repeats = int(min(max_repeats, max(min_repeats, budget_s / max(sum(estimate.values()), 1e-9))))
    wall = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    slow = {name for name, t in estimate.items() if t > 2.0}  # at most 3 repeats of multi-second calls
    for r in range(repeats):
        for name, call in calls.items():
            if name in slow and r >= 3:
                continue
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {
        name: {
            "median_s": statistics.median(wall[name]),
            "min_s": min(wall[name]),
            "median_cpu_s": statistics.median(cpu[name]),
            "repeats": len(wall[name]),
            "pairs": pairs[name],
        }
        for name in calls
    }


def run_sizes(molecules, threads: int, budget: float, quick: bool, reference: bool) -> list:
    torch.set_num_threads(threads)
    rows = []
    print(f"\ntorch.set_num_threads({threads}); wall-clock medians, then CPU-time medians (CPU time of all threads)")
    print(f"{'atoms':>7} {'pairs':>9} {'equiforce ms':>12} {'vesin ms':>9} {'torch-ref ms':>12} {'vesin/equiforce':>15} "
          f"{'eqf us/atom':>11} {'vesin us/atom':>13} | {'eqf cpu ms':>10} {'vesin cpu ms':>12} {'cpu ratio':>9}")
    for n_mol in molecules:
        positions, box = water_box(n_mol, seed=n_mol)
        n = positions.shape[0]
        calls = methods(positions, box, reference)
        timings = time_all(calls, budget, 3 if quick else 7, 60)
        counts = {t["pairs"] for t in timings.values()}
        assert len(counts) == 1, f"methods disagree on the number of pairs: {timings}"
        row = {"atoms": n, "box_length_A": float(box[0, 0]), "pairs": counts.pop(), "methods": timings}
        if "torch_reference" not in timings:
            row["skipped"] = {
                "torch_reference": f"O(N^2) pure-torch reference run only up to {REFERENCE_MAX_ATOMS} atoms"
                if reference else "pure-torch reference run only in the first thread setting"
            }
        ms = {k: v["median_s"] * 1e3 for k, v in timings.items()}
        cpu_ms = {k: v["median_cpu_s"] * 1e3 for k, v in timings.items()}
        if "vesin" in ms:
            row["vesin_over_equiforce"] = ms["vesin"] / ms["equiforce"]
            row["vesin_over_equiforce_cpu_time"] = cpu_ms["vesin"] / cpu_ms["equiforce"]
        rows.append(row)

        def cell(values, name, width, scale=1.0):
            return f"{values[name] * scale:{width}.2f}" if name in values else f"{'-':>{width}}"

        ratio = f"{row['vesin_over_equiforce']:15.2f}" if "vesin_over_equiforce" in row else f"{'-':>15}"
        cpu_ratio = f"{row['vesin_over_equiforce_cpu_time']:9.2f}" if "vesin" in ms else f"{'-':>9}"
        print(f"{n:7d} {row['pairs']:9d} {cell(ms, 'equiforce', 12)} {cell(ms, 'vesin', 9)} "
              f"{cell(ms, 'torch_reference', 12)} {ratio} {cell(ms, 'equiforce', 11, 1e3 / n)} "
              f"{cell(ms, 'vesin', 13, 1e3 / n)} | {cell(cpu_ms, 'equiforce', 10)} {cell(cpu_ms, 'vesin', 12)} "
              f"{cpu_ratio}", flush=True)
    return rows


def markdown_table(result: dict) -> str:
    """The results page of a run: one table per thread count, wall-clock medians in ms and the ratios."""
    info = result["machine"]
    lines = [f"# Neighbour list, CPU ({info.get('date', '?')[:16].replace('T', ' ')}, {info.get('cpu_model', '?')}, "
             f"{info.get('logical_cpus', '?')} logical CPUs, torch {info.get('torch', '?')}, "
             f"vesin-torch {info.get('vesin_torch', '-')})", "",
             f"{result['system']}. Written by `benchmarks/neighbors.py` from `neighbors_cpu.json`; {result['timing']}.",
             "Load average at the start: " + ", ".join(f"{x:.1f}" for x in info.get("load_average_start", [])) + "."]
    for run in result["runs"]:
        lines += ["", f"## {run['torch_threads']} torch thread(s)", "",
                  "| atoms | pairs | equiforce (ms) | vesin-torch (ms) | pure-torch reference (ms) | vesin / equiforce "
                  "| same, CPU time |", "|---|---|---|---|---|---|---|"]
        for row in run["results"]:
            ms = {name: f"{timing['median_s'] * 1e3:.3g}" for name, timing in row["methods"].items()}
            ratio = f"{row['vesin_over_equiforce']:.2f}" if "vesin_over_equiforce" in row else "-"
            cpu_ratio = (f"{row['vesin_over_equiforce_cpu_time']:.2f}" if "vesin_over_equiforce_cpu_time" in row
                         else "-")
            lines.append(f"| {row['atoms']} | {row['pairs']} | {ms.get('equiforce', '-')} | {ms.get('vesin', '-')} | "
                         f"{ms.get('torch_reference', '-')} | {ratio} | {cpu_ratio} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="torch thread counts to run, in order (the first one also runs the torch reference)")
    parser.add_argument("--molecules", type=int, nargs="*", default=MOLECULES)
    parser.add_argument("--budget", type=float, default=6.0, help="seconds of timing per size (all methods)")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats, no JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--replot", action="store_true", help="write OUT's .md page from OUT (JSON) and stop")
    args = parser.parse_args(argv)
    if args.replot:
        result = json.loads(args.out.read_text())
        args.out.with_suffix(".md").write_text(markdown_table(result))
        print(f"wrote {args.out.with_suffix('.md')}")
        return result
    molecules = [32, 334, 3334] if args.quick else args.molecules
    info = machine()
    info["load_average_start"] = os.getloadavg()
    runs = []
    for index, threads in enumerate(args.threads):
        rows = run_sizes(molecules, threads, 0.5 if args.quick else args.budget, args.quick, reference=index == 0)
        runs.append({"torch_threads": threads, "results": rows})
    info["load_average_end"] = os.getloadavg()
    result = {
        "benchmark": "neighbour list, CPU",
        "system": f"rigid water, {DENSITY} atoms/A^3, cubic periodic box, cutoff {CUTOFF} A, float64, full list + vectors",
        "calls": {
            "equiforce": "equiforce.ops.neighbor_list(positions, 5.0, box) -> (pairs, vectors)",
            "vesin": "vesin_torch.NeighborList(cutoff=5.0, full_list=True).compute(points, box, periodic=True, "
                     "quantities='ijD')",
            "torch_reference": "equiforce.neighbors.neighbor_list + edge_vectors (pure PyTorch, O(N^2))",
        },
        "timing": "median of interleaved repeats after 2 warm-up calls per method; median_s / min_s: wall clock, "
                  "median_cpu_s: CPU time of the process (all threads, user + system) per call, which a shared "
                  "machine's background load does not inflate",
        "machine": info,
        "runs": runs,
    }
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown_table(result))
        print(f"wrote {args.out} and its .md page")
    return result


if __name__ == "__main__":
    main()
