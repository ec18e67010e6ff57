#!/usr/bin/env python
"""Is the bare TorchScript pass faster than an OpenMM step only because it sees the same atoms every call?

The speed benchmark's ``bare-torchscript`` method (``equiforce.bench.bare_step``) evaluates forward + backward
of the exported model on one fixed configuration, while ``torchforce`` runs MD and so moves the atoms between
calls. At 1536 atoms the OpenMM step took 1.17-1.19x the bare pass in two records, against 0.80-0.96 at the other
sizes. This script times, alternating in one process (``time_interleaved``), for each box:

- ``bare-fixed``: the benchmark's bare pass, one configuration (the box as the benchmark builds it);
- ``bare-moving``: the same module, each call on the next of ``--snapshots`` configurations taken every 10
  steps from a torchforce MD run of that box (cycled), positions and cell in Å;
- ``torchforce``: the OpenMM step, as in the speed benchmark (CPU platform, Verlet, 0.5 fs).

If ``bare-moving`` is as slow as ``torchforce``, the gap is the moving atoms (the neighbour list and the edge
order the model sees), not OpenMM. Writes ``benchmarks/results/bare_vs_moving_atoms_cpu.json``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/bare_vs_moving_atoms.py [--molecules 32 128 512] [--repeats 15]``
"""
import argparse
import os
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    import torch  # before openmm: the TorchForce plugin's kernels need libtorch loaded when openmm loads them
    from openmm import unit

    from equiforce.bench import WaterCase, describe_machine, file_sha256, make_step, time_interleaved, write_json
    from equiforce.demo import SHIPPED_MODEL
    from equiforce.export import load_model
    from equiforce.units import ANGSTROM_PER_NM

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--repeats", type=int, default=15, help="rounds of one block per variant")
    parser.add_argument("--block-steps", type=int, default=5)
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--model", default=SHIPPED_MODEL)
    parser.add_argument("--out", default=os.path.join(REPOSITORY, "benchmarks", "results",
                                                      "bare_vs_moving_atoms_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    module, metadata = load_model(args.model)
    result = {"machine": describe_machine(), "model": os.path.relpath(args.model, REPOSITORY),
              "model_sha256": file_sha256(args.model), "repeats": args.repeats, "block_steps": args.block_steps,
              "snapshots": args.snapshots, "dtype": "float32", "cases": []}
    for n_molecules in args.molecules:
        case = WaterCase(n_molecules, metadata)
        torchforce = make_step("torchforce", "float32", module, metadata, args.model, case, threads=1)
        bare_fixed = make_step("bare-torchscript", "float32", module, metadata, args.model, case)
        snapshots = []  # [snapshots] of [N, 3] Å, taken from the torchforce run itself
        for _ in range(args.snapshots):
            torchforce(10)
            state = torchforce.context.getState(getPositions=True)
            snapshots.append(torch.tensor(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
                                          * ANGSTROM_PER_NM, dtype=torch.float32))
        moving_module = load_model(args.model)[0]
        cell = torch.tensor(case.box_nm * ANGSTROM_PER_NM, dtype=torch.float32)
        counter = [0]

        def bare_moving(n: int) -> None:
            for _ in range(n):
                x = snapshots[counter[0] % len(snapshots)].clone().requires_grad_(True)
                counter[0] += 1
                energy = moving_module(x, case.species, cell)
                torch.autograd.grad(energy, x)

        timings = time_interleaved({"bare-fixed": bare_fixed, "bare-moving": bare_moving, "torchforce": torchforce},
                                   warmup_steps=5, block_steps=args.block_steps, blocks=args.repeats)
        medians = {name: t["ms_per_step"] for name, t in timings.items()}  # median of the blocks
        record = {"n_atoms": case.n_atoms, "ms_per_step": medians,
                  "ms_range": {name: [t["ms_min"], t["ms_max"]] for name, t in timings.items()},
                  "torchforce_over_bare_fixed": medians["torchforce"] / medians["bare-fixed"],
                  "torchforce_over_bare_moving": medians["torchforce"] / medians["bare-moving"],
                  "bare_moving_over_bare_fixed": medians["bare-moving"] / medians["bare-fixed"]}
        print(record, flush=True)
        result["cases"].append(record)
        write_json(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
