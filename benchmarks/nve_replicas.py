#!/usr/bin/env python
"""Combine independent NVE replicas (runs of one case with other seeds) into one verdict per case.

A single 20 ps run's slope comes with a standard error from 10 block means, which trusts that the total energy
does not wander on time scales near a block. Replicas started from other seeds (`equiforce bench nve --seed S`,
driven by ``benchmarks/nve_replicas.sh``) are independent: the scatter of their slopes is the error bar that
trusts nothing. See `equiforce.bench.combine_replicas` for the fields.

Reads ``benchmarks/results/nve_round4.json`` (seed 1) and every ``nve_round4_seed*.json`` beside it (or the files
given), plus the classical (TIP3P-FB) records of ``--classical`` (default ``nve.json``: its seed-1 runs, same
protocol; nve_round4.json has none), and writes ``benchmarks/results/nve_replicas.{json,md,png}``. Nothing is
simulated.

Usage: ``python benchmarks/nve_replicas.py [--out STEM] [--classical FILE|none] [RESULT.json ...]``
"""
import argparse
import glob
import json
import os
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="NVE result JSON files, one per seed (default: round 4's)")
    parser.add_argument("--out", default=os.path.join(RESULTS, "nve_replicas"),
                        help="output stem: STEM.json, STEM.md, STEM.png")
    parser.add_argument("--classical", default=os.path.join(RESULTS, "nve.json"),
                        help="take this file's classical records too ('none': only the files' own)")
    args = parser.parse_args(argv)
    files = args.files or ([os.path.join(RESULTS, "nve_round4.json")]
                           + sorted(glob.glob(os.path.join(RESULTS, "nve_round4_seed*.json"))))
    from equiforce.bench import combine_replicas, plot_replicas, replicas_table, write_json

    results, sources = [], []
    for path in files:
        with open(path) as handle:
            results.append(json.load(handle))
        sources.append(os.path.relpath(path, REPOSITORY))
    if args.classical != "none" and os.path.abspath(args.classical) not in map(os.path.abspath, files):
        with open(args.classical) as handle:
            reference = json.load(handle)
        reference["records"] = [r for r in reference["records"] if r["method"] == "classical"]
        results.append(reference)
        sources.append(os.path.relpath(args.classical, REPOSITORY) + " (classical records)")
    combined = combine_replicas(results, sources)
    write_json(combined, args.out + ".json")
    table = replicas_table(combined)
    with open(args.out + ".md", "w") as handle:
        handle.write(table + "\n")
    if not plot_replicas(combined, args.out + ".png"):
        print("no case has two finished replicas yet: no plot")
    print(table)
    print(f"wrote {args.out}.json, .md" + (", .png" if os.path.exists(args.out + ".png") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
