"""SevenNet-0 in OpenMM through equiforce against SevenNet's own ASE MD, timed in turns in one process.

    python benchmarks/imports/sevennet_speed.py [--threads 2] [--out benchmarks/results/sevennet_speed.json]

Systems: 177-atom liquid water (after 1 ps of flexible TIP3P-FB) and 216-atom diamond Si (rattled 0.05 Å).
Methods, each a full MD step (velocity Verlet, 0.5 fs) with the same SevenNet-0 weights and the same threads:
  equiforce-torchforce  the imported float32 file as an openmmtorch TorchForce, OpenMM CPU platform
  equiforce-torchforce-e3nn  the same, imported with --no-fused-convolution (SevenNet's e3nn convolution code):
                        how much of the difference is the fused op and how much the rest
  equiforce-ase         the same file through equiforce's ASE calculator (ASE VelocityVerlet)
  sevennet-ase          SevenNet's own SevenNetCalculator('7net-0') (ASE VelocityVerlet): what SevenNet's users run
The methods of one system are set up together and timed in turns (``time_interleaved``), so a change of the
machine's load reaches all of them; the ratios are the result. Goal (issue 26): sevennet-ase / equiforce-torchforce
>= 1.5.
"""
import argparse
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from structures import diamond_silicon, liquid_water  # noqa: E402

import openmm  # noqa: E402
import openmm.app as app  # noqa: E402
from openmm import unit  # noqa: E402

from equiforce.bench._machine import describe_machine, file_sha256  # noqa: E402
from equiforce.bench._speed import write_json  # noqa: E402
from equiforce.bench._threads import torch_threads  # noqa: E402
from equiforce.bench._timing import ns_per_day, time_interleaved  # noqa: E402
from equiforce.calculator import EquiforceCalculator  # noqa: E402
from equiforce.imports import import_sevennet  # noqa: E402
from equiforce.openmm import create_force  # noqa: E402
from equiforce.units import ANGSTROM_PER_NM  # noqa: E402

TIMESTEP_FS = 0.5
GOAL = 1.5


def topology_of(atoms) -> app.Topology:
    """An OpenMM topology of ASE ``atoms`` (one residue per atom), with the periodic box in nm."""
    topology = app.Topology()
    chain = topology.addChain()
    for index, symbol in enumerate(atoms.get_chemical_symbols()):
        topology.addAtom(symbol, app.element.get_by_symbol(symbol), topology.addResidue(f"A{index}", chain))
    topology.setPeriodicBoxVectors(np.asarray(atoms.cell) / ANGSTROM_PER_NM * unit.nanometer)
    return topology


def openmm_step(model_file: str, atoms, threads: int):
    topology = topology_of(atoms)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(model_file, topology))
    integrator = openmm.VerletIntegrator(TIMESTEP_FS * unit.femtoseconds)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": str(threads)})
    context.setPositions(atoms.positions / ANGSTROM_PER_NM * unit.nanometer)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)

    def step(n: int) -> None:
        integrator.step(n)
        step.context = context  # keep the context alive with the step function

    return step


def ase_step(calculator, atoms):
    from ase import units as ase_units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    dynamics = VelocityVerlet(atoms, timestep=TIMESTEP_FS * ase_units.fs)
    return lambda n: dynamics.run(n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenMM CPU threads of every method")
    parser.add_argument("--blocks", type=int, default=5, help="rounds of timing (one block of each method a round)")
    parser.add_argument("--block-steps", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/sevennet_speed.json")
    parser.add_argument("--work", default="runs/imports")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*accelerator.*")
    from sevenn.calculator import SevenNetCalculator

    os.makedirs(args.work, exist_ok=True)
    model_file = os.path.join(args.work, "sevennet-0-float32.pt")
    metadata = import_sevennet("7net-0", model_file, progress=False)
    e3nn_file = os.path.join(args.work, "sevennet-0-float32-e3nn.pt")
    import_sevennet("7net-0", e3nn_file, fused_convolution=False, progress=False)
    result = {"machine": describe_machine(), "threads": args.threads, "timestep_fs": TIMESTEP_FS, "goal": GOAL,
              "model": model_file, "model_sha256": file_sha256(model_file), "source": metadata["source"],
              "records": []}
    systems = {"water-59 (177 atoms)": liquid_water(59, seed=1), "Si diamond 216": diamond_silicon(3)}
    with torch_threads(args.threads):
        sevennet = SevenNetCalculator("7net-0", device="cpu")
        for name, atoms in systems.items():
            steps = {
                "equiforce-torchforce": openmm_step(model_file, atoms, args.threads),
                "equiforce-torchforce-e3nn": openmm_step(e3nn_file, atoms, args.threads),
                "equiforce-ase": ase_step(EquiforceCalculator(model_file), atoms),
                "sevennet-ase": ase_step(sevennet, atoms),
            }
            timings = time_interleaved(steps, warmup_steps=3, block_steps=args.block_steps, blocks=args.blocks,
                                       progress=lambda done: print(f"  {name}: round {done}/{args.blocks}", flush=True))
            base = timings["equiforce-torchforce"]["ms_per_step"]
            for method, timing in timings.items():
                record = {"system": name, "atoms": len(atoms), "method": method, **timing,
                          "ns_per_day_at_1fs": ns_per_day(timing["ms_per_step"], 1.0),
                          "time_over_torchforce": timing["ms_per_step"] / base}
                result["records"].append(record)
                print(f"{name:22s} {method:22s} {timing['ms_per_step']:9.1f} ms/step  "
                      f"({record['time_over_torchforce']:.2f}x torchforce's time)", flush=True)
            write_json(result, args.out)
    ratios = [r["time_over_torchforce"] for r in result["records"] if r["method"] == "sevennet-ase"]
    result["sevennet_ase_over_torchforce"] = ratios
    result["meets_goal"] = all(r >= GOAL for r in ratios)
    write_json(result, args.out)
    print(f"sevennet-ase / equiforce-torchforce: {', '.join(f'{r:.2f}' for r in ratios)} (goal >= {GOAL}); "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
