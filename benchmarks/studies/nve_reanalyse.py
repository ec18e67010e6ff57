#!/usr/bin/env python
"""Re-analyse recorded NVE runs with the current drift-error estimator, in place, and say which verdicts change.

Until 2026-12-03 `equiforce bench nve` took a slope's standard error from the scatter of 10 block means about a
line. Independent replicas showed that error to be about 5 times too small (benchmarks/results/nve_replicas.md:
pooled over 5 cases x 4-5 seeds, replica scatter / block-means error 4.6, / segment-slopes error 0.96), because
the total energy wanders slowly. The estimator is now the scatter of the slopes of 10 segments
(`equiforce.analysis.Drift`). This script reads the saved energy series of every finished run in the given
result files (nothing is simulated), checks that the old block-means error is reproduced from the series (so the
series is the record's), rewrites each record with the new error (``drift_stderr_method``; the old error is kept
as ``block_means_stderr_kT_per_ns_per_dof``), regenerates the file's markdown table and plot, and writes
``benchmarks/results/nve_reanalysis.{json,md}``: per run the drift, both errors, both z = |drift| / error, and
the verdict (|drift| > 2 errors) under each. Each file is rewritten under the lock `equiforce bench nve` takes, but
a bench process still running on a file keeps its own copy of that file's records and may write them back: run
this when no benchmark writes to the files.

Usage: ``python benchmarks/studies/nve_reanalyse.py [RESULT.json ...]`` (default: every NVE result recorded
up to 2026-12-03, some of them now only in git history: see ``RESTORE_COMMITS``).
"""
import argparse
import fcntl
import json
import os
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")
DEFAULT_FILES = (["nve.json", "nve_radial_table.json", "nve_round2.json", "nve_round3.json", "nve_round4.json"]
                 + [f"nve_round4_seed{seed}.json" for seed in (2, 3, 4, 5)])
#: Commits that still hold the default files that left benchmarks/results/ (docs/changelog.md, 2026-12-06):
#: the seeds 02acf31, the rest c681151.
RESTORE_COMMITS = "c681151 (nve_radial_table, nve_round2, nve_round3) and 02acf31 (nve_round4_seed*)"


def _verdict(z: float) -> str:
    from equiforce.analysis import drift_verdict

    return drift_verdict(z)


def reanalyse_file(path: str) -> list:
    """Rewrite ``path`` (an `equiforce bench nve` result) with re-analysed records, its .md and .png beside it;
    returns one row per finished record (dicts for the report)."""
    from equiforce.bench import nve_table, plot_nve, reanalyse_record, write_json

    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(path) as handle:
            result = json.load(handle)
        result["records"] = [reanalyse_record(record) for record in result["records"]]
        write_json(result, path)
    stem = os.path.splitext(path)[0]
    with open(stem + ".md", "w") as handle:
        handle.write(nve_table(result) + "\n")
    plot_nve(result, stem + ".png")
    rows = []
    for record in result["records"]:
        if record.get("failed"):
            continue
        drift = record["drift_kT_per_ns_per_dof"]
        block, segments = record["block_means_stderr_kT_per_ns_per_dof"], record["drift_stderr_kT_per_ns_per_dof"]
        rows.append({"file": os.path.basename(path), "seed": result["protocol"].get("seed"),
                     "method": record["method"], "dtype": record["dtype"], "dt_fs": record["dt_fs"],
                     "n_atoms": record["n_atoms"], "drift_kT_per_ns_per_dof": drift,
                     "block_means_stderr_kT_per_ns_per_dof": block, "stderr_kT_per_ns_per_dof": segments,
                     "z_block_means": abs(drift) / block, "z": abs(drift) / segments,
                     "verdict_block_means": _verdict(abs(drift) / block), "verdict": _verdict(abs(drift) / segments)})
    return rows


def report(rows: list) -> str:
    lines = ["| file | seed | method | dtype | dt (fs) | atoms | drift (kT/ns/dof) | block-means error | z | verdict | "
             "segment error | z | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        changed = " (changed)" if r["verdict"] != r["verdict_block_means"] else ""
        lines.append(f"| {r['file']} | {r['seed']} | {r['method']} | {r['dtype']} | {r['dt_fs']} | {r['n_atoms']} | "
                     f"{r['drift_kT_per_ns_per_dof']:+.2g} | {r['block_means_stderr_kT_per_ns_per_dof']:.2g} | "
                     f"{r['z_block_means']:.1f} | {r['verdict_block_means']} | {r['stderr_kT_per_ns_per_dof']:.2g} | "
                     f"{r['z']:.1f} | {r['verdict']}{changed} |")
    flagged_old = sum(r["verdict_block_means"] == "drift" for r in rows)
    flagged_new = sum(r["verdict"] == "drift" for r in rows)
    lines += ["", f"{len(rows)} runs: {flagged_old} called drift with block-means errors, {flagged_new} with "
                  "segment errors."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="NVE result JSON files (default: every committed one)")
    parser.add_argument("--out", default=os.path.join(RESULTS, "nve_reanalysis"), help="report stem: .json, .md")
    args = parser.parse_args(argv)
    files = args.files or [os.path.join(RESULTS, name) for name in DEFAULT_FILES]
    missing = [os.path.relpath(path, REPOSITORY) for path in files if not os.path.exists(path)]
    if missing:
        raise SystemExit(f"missing: {' '.join(missing)} (earlier rounds left the tree; restore them with "
                         f"`git checkout COMMIT -- FILE ...` from {RESTORE_COMMITS})")
    from equiforce.bench import write_json

    rows = []
    for path in files:
        rows += reanalyse_file(path)
        print(f"re-analysed {os.path.relpath(path, REPOSITORY)}")
    write_json({"rows": rows}, args.out + ".json")
    table = report(rows)
    with open(args.out + ".md", "w") as handle:
        handle.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
