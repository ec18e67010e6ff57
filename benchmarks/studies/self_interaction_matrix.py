#!/usr/bin/env python
"""What the self-interaction matrices gain: the shipped weights exported with e3nn's self-interaction modules
and with measured matrices (``equiforce.nn.set_self_interaction_matrix``), both with the fused convolution and
radial tables, timed alternately in one process.

For each water box: how far apart the two files' energies and forces are (rounding: the same map summed in
another order), then the bare forward + backward and the full OpenMM step (TorchForce, CPU platform) of each
file, alternating variants step by step, ``--repeats`` times; the medians and their ratio go to
``benchmarks/results/self_interaction_matrix_cpu.json``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/self_interaction_matrix.py [--molecules 32 128 512] [--repeats 15]``
"""
import os
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_variants(directory: str) -> dict:
    """The shipped model's weights exported as 'e3nn' and 'matrix' files; returns name -> path."""
    from equiforce.bench import export_shipped_variants

    return export_shipped_variants(directory, {
        "e3nn": dict(self_interaction_matrix=False),
        "matrix": dict(self_interaction_matrix=True)})


def main(argv=None) -> int:
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    from equiforce.bench import variants_main

    out = os.path.join(REPOSITORY, "benchmarks", "results", "self_interaction_matrix_cpu.json")
    return variants_main(__doc__.split("\n\n")[0], out, export_variants, argv)


if __name__ == "__main__":
    sys.exit(main())
