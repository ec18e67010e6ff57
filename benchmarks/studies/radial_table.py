#!/usr/bin/env python
"""What tabulating the radial MLPs gains: the shipped weights exported with their radial MLPs and with radial
tables (``torch.ops.equiforce.radial_spline``, 1025 knots), both with the fused convolution, timed alternately
in one process.

For each water box: how far apart the two files' energies and forces are (the interpolation error, below
float32 rounding), then the bare forward + backward and the full OpenMM step (TorchForce, CPU platform) of each
file, alternating variants step by step, ``--repeats`` times; the medians and their ratio go to
``benchmarks/results/radial_table_cpu.json``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/radial_table.py [--molecules 32 128 512] [--repeats 15]``
"""
import os
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_variants(directory: str) -> dict:
    """The shipped model's weights exported as 'mlp' and 'table' files; returns name -> path."""
    from equiforce.bench import export_shipped_variants
    from equiforce.nn import DEFAULT_KNOTS

    return export_shipped_variants(directory, {
        "mlp": dict(fused_convolution=True, radial_table_knots=None),
        "table": dict(fused_convolution=True, radial_table_knots=DEFAULT_KNOTS)})


def main(argv=None) -> int:
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    from equiforce.bench import variants_main

    out = os.path.join(REPOSITORY, "benchmarks", "results", "radial_table_cpu.json")
    return variants_main(__doc__.split("\n\n")[0], out, export_variants, argv)


if __name__ == "__main__":
    sys.exit(main())
