#!/usr/bin/env python
"""How much does "detectable drift" depend on how the standard error is estimated? Recomputes every recorded NVE
run's drift with block counts other than the benchmark's 10, and says which verdicts hold at every block count.

The NVE benchmark (`equiforce bench nve`) fits the drift to the total energy and takes its standard error from the
scatter of 10 block means about their own line (8 degrees of freedom; `equiforce.analysis.energy_drift`). A
total energy that wanders on time scales near the block length makes that error bar itself uncertain. This
script reads the saved series of every finished run in the given result files (nothing is simulated) and
writes, per run:

- the drift and its standard error from 5, 10, 20 and 40 blocks (kT/ns per degree of freedom), and the ratio
  |drift| / error for each;
- a verdict: "drift" where every block count puts the slope more than 2 errors from zero, "none" where no
  count does, "depends" otherwise.

Fewer, longer blocks follow slower wander of the total energy, and have fewer degrees of freedom. (A block-free
error from the autocorrelation of the residuals was tried and dropped: the total energy oscillates with the
O-H stretch, its autocorrelation turns negative within a few femtoseconds, and any sum cut there misses the
slow wander that matters; its errors were up to 13 times smaller than those of 10 blocks, e.g. |drift| / error
130 instead of 10 for the shipped model's float64 0.5 fs run at 384 atoms.)

Superseded (2026-12-03): independent replicas showed the block-means error itself to be about 5 times too small
at every block count tried, and `bench nve` now takes its error from the slopes of 10 segments
(`equiforce.analysis.Drift`; `benchmarks/studies/nve_reanalyse.py` re-judges the recorded runs with it). This script
still studies the block-means error (`equiforce.analysis.block_means_stderr`), for the record.

Results: ``benchmarks/results/nve_block_sensitivity.{json,md}``.

Usage: ``python benchmarks/studies/nve_block_sensitivity.py [RESULT.json ...]`` (default: the NVE results
recorded up to 2026-12-02, some of them now only in git history: see ``RESTORE_COMMIT``).
"""
import argparse
import json
import os
import sys
from typing import Dict, List

import numpy as np

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")
DEFAULT_FILES = ["nve.json", "nve_radial_table.json", "nve_round2.json", "nve_round3.json", "nve_round4.json"]
#: Commit that still holds the default files that left benchmarks/results/ (docs/changelog.md, 2026-12-06).
RESTORE_COMMIT = "c681151"
BLOCK_COUNTS = [5, 10, 20, 40]


def verdict(z_values: List[float]) -> str:
    """'drift' if every block count puts the slope more than 2 errors from zero, 'none' if none does."""
    if all(z > 2.0 for z in z_values):
        return "drift"
    if all(z <= 2.0 for z in z_values):
        return "none"
    return "depends"


def analyse(record: Dict, source: str) -> Dict:
    from equiforce.analysis import block_means_stderr, energy_drift
    from equiforce.bench import NVE_TEMPERATURE_K
    from equiforce.units import boltzmann_kj_per_mol

    series = record["series"]
    time_ps = np.asarray(series["time_ps"])
    kinetic = np.asarray(series["kinetic"])
    total = kinetic + np.asarray(series["potential"])
    n_atoms = record["n_atoms"]
    n_dof = 3 * n_atoms - 3  # as in the benchmark: no constraints, total momentum conserved
    row = {"source": source, "method": record["method"], "dtype": record["dtype"], "dt_fs": record["dt_fs"],
           "n_atoms": n_atoms, "duration_ps": float(time_ps[-1] - time_ps[0]),
           "recorded_drift_kT_per_ns_per_dof": record["drift_kT_per_ns_per_dof"],
           "recorded_stderr_kT_per_ns_per_dof": record["drift_stderr_kT_per_ns_per_dof"], "blocks": {}}
    drift = energy_drift(time_ps, total, kinetic, n_atoms, n_dof, NVE_TEMPERATURE_K)
    per_kT_ns_dof = 1000.0 / boltzmann_kj_per_mol(NVE_TEMPERATURE_K) / n_dof  # kJ/mol/ps -> kT/ns/dof
    for n_blocks in BLOCK_COUNTS:
        stderr = block_means_stderr(time_ps, total, n_blocks) * per_kT_ns_dof
        row["blocks"][str(n_blocks)] = {"drift_kT_per_ns_per_dof": drift.drift_kT_per_ns_per_dof,
                                        "stderr_kT_per_ns_per_dof": stderr,
                                        "z": abs(drift.drift_kT_per_ns_per_dof) / stderr}
    row["verdict"] = verdict([row["blocks"][str(n)]["z"] for n in BLOCK_COUNTS])
    return row


def table(rows: List[Dict]) -> str:
    head = ("| file | method | dtype | dt (fs) | atoms | drift (kT/ns/dof) | " +
            " | ".join(f"z, {n} blocks" for n in BLOCK_COUNTS) + " | |drift| > 2 errors |")
    lines = [head, "|" + "---|" * (7 + len(BLOCK_COUNTS))]
    for row in rows:
        z = " | ".join(f"{row['blocks'][str(n)]['z']:.1f}" for n in BLOCK_COUNTS)
        lines.append(f"| {row['source']} | {row['method']} | {row['dtype']} | {row['dt_fs']:g} | {row['n_atoms']} | "
                     f"{row['recorded_drift_kT_per_ns_per_dof']:+.2g} | {z} | {row['verdict']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", default=[os.path.join(RESULTS, name) for name in DEFAULT_FILES],
                        help="NVE result JSON files (equiforce bench nve)")
    parser.add_argument("--out", default=os.path.join(RESULTS, "nve_block_sensitivity.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    missing = [os.path.relpath(path, REPOSITORY) for path in args.files if not os.path.exists(path)]
    if missing:
        raise SystemExit(f"missing: {' '.join(missing)} (earlier rounds left the tree; restore them with "
                         f"`git checkout {RESTORE_COMMIT} -- FILE ...`)")
    rows = []
    for path in args.files:
        with open(path) as handle:
            result = json.load(handle)
        for record in result["records"]:
            if record.get("failed") is None and "drift_kT_per_ns_per_dof" in record:
                rows.append(analyse(record, os.path.basename(path)))
    with open(args.out, "w") as handle:
        json.dump({"block_counts": BLOCK_COUNTS, "rows": rows}, handle, indent=1)
    markdown = table(rows)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as handle:
        handle.write(markdown + "\n")
    print(markdown)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
