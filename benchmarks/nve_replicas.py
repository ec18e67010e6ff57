#!/usr/bin/env python
"""Combine independent NVE replicas (runs of one case with other seeds) into one verdict per case.

A single 20 ps run's slope comes with a standard error from 10 segment slopes, which trusts that the run is long
enough for them to be independent. Replicas started from other seeds (`equiforce bench nve --seed S`, driven by
``benchmarks/nve_replicas.sh``) are independent: the scatter of their slopes is the error bar that trusts
nothing. See `equiforce.bench.combine_replicas` for the fields.

Reads the given NVE result files, one per seed, plus the classical (TIP3P-FB) records of ``--classical``
(default ``benchmarks/results/nve.json``: its seed-1 runs, same protocol), and writes
``benchmarks/results/nve_replicas.{json,md,png}``. Nothing is simulated. The current record combines
``nve_round4.json`` (seed 1) with ``nve_round4_seed2..5.json``, which left the tree on 2026-12-06 (``git
checkout 02acf31 -- benchmarks/results/nve_round4_seed{2,3,4,5}.json`` restores them); ``--replot`` rewrites the
table and plot from ``nve_replicas.json`` alone.

Usage: ``python benchmarks/nve_replicas.py [--out STEM] [--classical FILE|none] RESULT.json ...``
       ``python benchmarks/nve_replicas.py --replot [--out STEM]``
"""
import argparse
import json
import os
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="NVE result JSON files, one per seed")
    parser.add_argument("--out", default=os.path.join(RESULTS, "nve_replicas"),
                        help="output stem: STEM.json, STEM.md, STEM.png")
    parser.add_argument("--classical", default=os.path.join(RESULTS, "nve.json"),
                        help="take this file's classical records too ('none': only the files' own)")
    parser.add_argument("--replot", action="store_true", help="rewrite STEM.md and STEM.png from STEM.json")
    args = parser.parse_args(argv)
    if not args.files and not args.replot:
        parser.error("give the result files to combine (one per seed), or --replot")
    from equiforce.bench import combine_replicas, write_json

    if args.replot:
        with open(args.out + ".json") as handle:
            return _write_table_and_plot(json.load(handle), args.out)
    results, sources = [], []
    for path in args.files:
        with open(path) as handle:
            results.append(json.load(handle))
        sources.append(os.path.relpath(path, REPOSITORY))
    if args.classical != "none" and os.path.abspath(args.classical) not in map(os.path.abspath, args.files):
        with open(args.classical) as handle:
            reference = json.load(handle)
        reference["records"] = [r for r in reference["records"] if r["method"] == "classical"]
        results.append(reference)
        sources.append(os.path.relpath(args.classical, REPOSITORY) + " (classical records)")
    combined = combine_replicas(results, sources)
    write_json(combined, args.out + ".json")
    return _write_table_and_plot(combined, args.out)


def _write_table_and_plot(combined: dict, stem: str) -> int:
    from equiforce.bench import plot_replicas, replicas_table

    table = replicas_table(combined)
    with open(stem + ".md", "w") as handle:
        handle.write(table + "\n")
    if not plot_replicas(combined, stem + ".png"):
        print("no case has two finished replicas yet: no plot")
    print(table)
    print(f"wrote {stem}.json, .md" + (", .png" if os.path.exists(stem + ".png") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
