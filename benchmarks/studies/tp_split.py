#!/usr/bin/env python
"""What the tensor-product split pass gains: the shipped weights exported twice, with e3nn's sliced code and
with the split pass (``equiforce.nn._split_slices``), timed alternately in one process.

For each water box: the two files' energies and forces are compared (they are bit-identical), then the bare
forward + backward and the full OpenMM step (TorchForce, CPU platform) of each file are timed, alternating
variants step by step, ``--repeats`` times; the medians and their ratio go to
``benchmarks/results/tp_split_cpu.json``. Both files keep e3nn's tensor product (no fused convolution), which
is the code the split pass changes.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/tp_split.py [--molecules 32 128 512] [--repeats 15]``
"""
import os
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_variants(directory: str) -> dict:
    """The shipped model's weights exported as 'e3nn slices' and 'split' files; returns name -> path."""
    from equiforce.bench import eager_copy
    from equiforce.demo import SHIPPED_MODEL
    from equiforce.export import export_model, load_model
    from equiforce.nn import e3nn_slices

    module, metadata = load_model(SHIPPED_MODEL)
    paths = {"e3nn slices": os.path.join(directory, "slices.pt"), "split": os.path.join(directory, "split.pt")}
    with e3nn_slices():
        export_model(eager_copy(module, metadata), paths["e3nn slices"], dtype=metadata["dtype"],
                     fused_convolution=False, radial_table_knots=None)
    export_model(eager_copy(module, metadata), paths["split"], dtype=metadata["dtype"], fused_convolution=False,
                 radial_table_knots=None)  # as recorded: the radial MLPs in both
    return paths


def main(argv=None) -> int:
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    from equiforce.bench import variants_main

    out = os.path.join(REPOSITORY, "benchmarks", "results", "tp_split_cpu.json")
    return variants_main(__doc__.split("\n\n")[0], out, export_variants, argv)


if __name__ == "__main__":
    sys.exit(main())
