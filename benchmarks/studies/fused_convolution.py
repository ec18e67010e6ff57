#!/usr/bin/env python
"""What the fused convolution op gains: the shipped weights exported with e3nn's tensor product and with the
fused op (``torch.ops.equiforce.tp_convolution``), timed alternately in one process.

For each water box: how far apart the two files' energies and forces are (float32 rounding), then the bare
forward + backward and the full OpenMM step (TorchForce, CPU platform) of each file, alternating variants step
by step, ``--repeats`` times; the medians and their ratio go to
``benchmarks/results/fused_convolution_cpu.json``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/fused_convolution.py [--molecules 32 128 512] [--repeats 15]``
"""
import os
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_variants(directory: str) -> dict:
    """The shipped model's weights exported as 'e3nn' and 'fused' files; returns name -> path."""
    from equiforce.bench import export_shipped_variants

    return export_shipped_variants(directory, {  # as recorded: the radial MLPs in both
        "e3nn": dict(fused_convolution=False, radial_table_knots=None),
        "fused": dict(fused_convolution=True, radial_table_knots=None)})


def main(argv=None) -> int:
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    from equiforce.bench import variants_main

    out = os.path.join(REPOSITORY, "benchmarks", "results", "fused_convolution_cpu.json")
    return variants_main(__doc__.split("\n\n")[0], out, export_variants, argv)


if __name__ == "__main__":
    sys.exit(main())
