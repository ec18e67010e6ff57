#!/usr/bin/env python
"""Where an ASE or a PythonForce MD step spends its time, beside a TorchForce step, with the same weights.

The speed benchmark's goals "torchforce >= 1.3x faster than ase" and "... than pythonforce" are missed on a CPU
(ASE 1.23 and 1.09 at 96 and 384 atoms, PythonForce 1.13 at 384). All run the same model, so the ratios are set
by what each engine adds to the model's forward + backward. This script times, alternating in one process
(``time_interleaved``), one thread:

- ``bare-torchscript``: the model's forward + backward alone (``equiforce.bench.bare_step``);
- ``torchforce``: one OpenMM Verlet step with the model as a TorchForce (CPU platform);
- ``ase``: one ASE ``VelocityVerlet`` step with :class:`equiforce.calculator.EquiforceCalculator`;
- ``pythonforce``: one OpenMM Verlet step with the eager model in an ``openmm.PythonForce`` (as the speed
  benchmark runs it, the way openmm-ml 1.8 runs its models);
- ``ase-trivial-model``, ``torchforce-trivial-model``, ``pythonforce-trivial-model``: the same engines with a
  model that costs next to nothing (a scripted E = sum(x^2) / 2 in eV and Å, with its autograd), so they time what each engine adds
  around a model: ASE's integrator, our calculator's conversions, OpenMM's step, openmm-torch's copies,
  PythonForce's calls into Python;
- ``ase-no-model``: ASE ``VelocityVerlet`` with a calculator that returns zero forces at once (ASE alone);
- ``openmm-no-model``: OpenMM Verlet of the same particles with no force at all.

The differences between runs of the real model (hundreds of microseconds to milliseconds from one block to the
next on this machine) are larger than the engines' costs, so the engines are timed with the trivial model:
``ase_engine_ms`` a, ``pythonforce_engine_ms`` and ``torchforce_engine_ms`` t. ``model_ms_for_goal`` is how fast
the model's forward + backward would have to be for ASE / torchforce to reach the goal g with the engines' costs
as measured: (M + a) / (M + t) >= g for M <= (a - g t) / (g - 1); ``model_ms_for_pythonforce_goal`` the same
with PythonForce's cost for a.
Writes ``benchmarks/results/ase_overhead_cpu.json``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/ase_overhead.py [--molecules 32 128] [--repeats 15]``
"""
import argparse
import os
import sys
from typing import Optional

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The speed benchmark's goal for ASE's time over torchforce's.
ASE_GOAL = 1.3


def zero_force_dynamics(case):
    """ASE VelocityVerlet on the box with a calculator that costs nothing: [N, 3] zero forces, zero energy."""
    import numpy as np
    from ase.calculators.calculator import Calculator, all_changes

    from equiforce.bench import ase_dynamics

    class ZeroForces(Calculator):
        implemented_properties = ["energy", "free_energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": 0.0, "free_energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}

    return ase_dynamics(case, ZeroForces())


class TrivialEnergy:
    """Factories for a model that costs next to nothing, scripted, in the two signatures the engines call."""

    @staticmethod
    def for_calculator():
        """(positions [N, 3] Å, species [N], cell [3, 3] Å or None) -> energy eV = sum(x^2) / 2."""
        import torch

        class Harmonic(torch.nn.Module):
            def forward(self, positions: torch.Tensor, species: torch.Tensor,
                        cell: Optional[torch.Tensor] = None) -> torch.Tensor:
                return 0.5 * (positions * positions).sum()

        return torch.jit.script(Harmonic())

    @staticmethod
    def for_torchforce():
        """(positions [N, 3] nm, box [3, 3] nm) -> energy kJ/mol = sum(x^2) / 2, periodic like the real force."""
        import torch

        class Harmonic(torch.nn.Module):
            def forward(self, positions: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
                return 0.5 * (positions * positions).sum()

        return torch.jit.script(Harmonic())


def trivial_ase_step(model_file: str, case):
    """ASE VelocityVerlet with :class:`EquiforceCalculator` (float32) whose model is `TrivialEnergy`."""
    from equiforce.bench import ase_dynamics
    from equiforce.calculator import EquiforceCalculator

    calculator = EquiforceCalculator(model_file, precision="float32")
    calculator.module = TrivialEnergy.for_calculator()  # everything else (conversions, species) as shipped
    return ase_dynamics(case, calculator)


def trivial_torchforce_step(case):
    """OpenMM Verlet (CPU, one thread) with a periodic TorchForce of `TrivialEnergy`."""
    import openmmtorch

    from equiforce.bench._speed import _context_step

    system = case.masses_system()
    force = openmmtorch.TorchForce(TrivialEnergy.for_torchforce())
    force.setUsesPeriodicBoundaryConditions(True)
    system.addForce(force)
    return _context_step(system, case, "CPU", 1)


def trivial_pythonforce_step(case):
    """OpenMM Verlet (CPU, one thread) with `TrivialEnergy` in a PythonForce, called as the speed benchmark's
    ``pythonforce`` method calls the eager model (float32, positions and cell in Å)."""
    import torch

    from equiforce.bench._speed import _context_step, _pythonforce_system

    system = _pythonforce_system(TrivialEnergy.for_calculator(), case, torch.float32, torch.device("cpu"))
    return _context_step(system, case, "CPU", 1)


def derived(ms: dict, goal: float = ASE_GOAL) -> dict:
    """The engines' costs around a model (ms, from the trivial-model runs) and the model time the goal needs."""
    ase_engine = ms["ase-trivial-model"]
    torchforce_engine = ms["torchforce-trivial-model"]
    pythonforce_engine = ms["pythonforce-trivial-model"]
    return {
        "ase_over_torchforce": ms["ase"] / ms["torchforce"],
        "pythonforce_over_torchforce": ms["pythonforce"] / ms["torchforce"],
        "ase_engine_ms": ase_engine,
        "pythonforce_engine_ms": pythonforce_engine,
        "torchforce_engine_ms": torchforce_engine,
        "calculator_glue_ms": ase_engine - ms["ase-no-model"],
        "torchforce_glue_ms": torchforce_engine - ms["openmm-no-model"],
        "model_ms": ms["bare-torchscript"],
        "model_ms_for_goal": (ase_engine - goal * torchforce_engine) / (goal - 1.0),
        "model_ms_for_pythonforce_goal": (pythonforce_engine - goal * torchforce_engine) / (goal - 1.0),
    }


def main(argv=None) -> int:
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    import torch  # before openmm: the TorchForce plugin's kernels need libtorch loaded when openmm loads them

    from equiforce.bench import WaterCase, describe_machine, file_sha256, make_step, time_interleaved, write_json
    from equiforce.bench._speed import _context_step
    from equiforce.demo import SHIPPED_MODEL
    from equiforce.export import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=15, help="rounds of one block per method")
    parser.add_argument("--block-steps", type=int, default=10)
    parser.add_argument("--model", default=SHIPPED_MODEL)
    parser.add_argument("--out", default=os.path.join(REPOSITORY, "benchmarks", "results", "ase_overhead_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    module, metadata = load_model(args.model)
    result = {"machine": describe_machine(), "model": os.path.relpath(args.model, REPOSITORY),
              "model_sha256": file_sha256(args.model), "repeats": args.repeats, "block_steps": args.block_steps,
              "dtype": "float32", "threads": 1, "goal_ase_over_torchforce": ASE_GOAL, "cases": []}
    for n_molecules in args.molecules:
        case = WaterCase(n_molecules, metadata)
        steps = {
            "bare-torchscript": make_step("bare-torchscript", "float32", module, metadata, args.model, case),
            "torchforce": make_step("torchforce", "float32", module, metadata, args.model, case, threads=1),
            "ase": make_step("ase", "float32", module, metadata, args.model, case),
            "pythonforce": make_step("pythonforce", "float32", module, metadata, args.model, case, threads=1),
            "ase-trivial-model": trivial_ase_step(args.model, case),
            "pythonforce-trivial-model": trivial_pythonforce_step(case),
            "torchforce-trivial-model": trivial_torchforce_step(case),
            "ase-no-model": zero_force_dynamics(case),
            "openmm-no-model": _context_step(case.masses_system(), case, "CPU", 1),
        }
        timings = time_interleaved(steps, warmup_steps=5, block_steps=args.block_steps, blocks=args.repeats)
        ms = {name: t["ms_per_step"] for name, t in timings.items()}  # median of the blocks
        record = {"n_atoms": case.n_atoms, "ms_per_step": ms,
                  "ms_range": {name: [t["ms_min"], t["ms_max"]] for name, t in timings.items()}, **derived(ms)}
        print({key: (round(value, 3) if isinstance(value, float) else value) for key, value in record.items()
               if key != "ms_range"}, flush=True)
        result["cases"].append(record)
        write_json(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
