#!/usr/bin/env python
"""Re-export the shipped water model from its own weights with this equiforce (same weights, new code path).

The training checkpoint is not part of the repository; the exported file holds every weight, so the eager
model is rebuilt from the file's configuration and state (``equiforce.bench.eager_copy``) and exported again.
Before the file is replaced, the script checks that

* the new file's weights and buffers equal the old file's to the bit (new derived buffers, the radial tables and
  self-interaction matrices, aside), and
* on water boxes of 96 and 384 atoms its energies and forces agree with the old file's to float32 rounding
  (the code path may differ: fused convolution, native SiLU, radial tables, self-interaction matrices),

and prints both sha256 sums and the differences. Usage: ``python recipes/water/reexport_shipped.py``.
"""
import argparse
import os
import sys

import torch

import equiforce
from equiforce.bench import WaterCase, eager_copy, energy_and_forces, file_sha256
from equiforce.demo import SHIPPED_MODEL


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # no options; --help
    old_module, metadata = equiforce.load_model(SHIPPED_MODEL)
    eager = eager_copy(old_module, metadata)
    partial = SHIPPED_MODEL + ".new"
    equiforce.export_model(eager, partial, dtype=metadata["dtype"], fused_convolution=True)  # default tables
    new_module, new_metadata = equiforce.load_model(partial)
    old_state, new_state = old_module.state_dict(), new_module.state_dict()
    derived = {k for k in new_state  # tabulated or measured from the weights, not weights
               if k.endswith(".radial_table") or k.endswith(".self_interaction_matrix")}
    if (old_state.keys() - derived != new_state.keys() - derived
            or not all(torch.equal(old_state[k], new_state[k]) for k in old_state.keys() - derived)):
        print("the new file's weights differ from the shipped one's; nothing replaced")
        os.remove(partial)
        return 1
    print(f"weights and buffers: {len(old_state.keys() - derived)} tensors, equal to the bit")
    for n_molecules in (32, 128):
        case = WaterCase(n_molecules, metadata)
        old = energy_and_forces(old_module, case)
        new = energy_and_forces(new_module, case)
        energy_error = abs(float(new[0] - old[0]))
        force_error = float((new[1] - old[1]).abs().max())
        print(f"{case.n_atoms} atoms: |dE| = {energy_error:.3g} eV (E = {float(old[0]):.6f}), "
              f"max |dF| = {force_error:.3g} eV/Å (max |F| {float(old[1].abs().max()):.3g})")
        if energy_error > 1e-5 * abs(float(old[0])) or force_error > 1e-4 * float(old[1].abs().max()):
            print("the new file differs beyond rounding; nothing replaced")
            os.remove(partial)
            return 1
    before = file_sha256(SHIPPED_MODEL)
    os.replace(partial, SHIPPED_MODEL)
    print(f"replaced {SHIPPED_MODEL}: sha256 {before[:8]}… -> {file_sha256(SHIPPED_MODEL)[:8]}… "
          f"(format {new_metadata['format_version']}, fused_convolution {new_metadata['fused_convolution']}, "
          f"radial_table {new_metadata['radial_table']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
