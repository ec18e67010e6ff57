"""Energy of a periodic water box when one molecule is moved by whole box vectors (unwrapped coordinates).

    python benchmarks/long_runs/unwrapped_shift.py [--model FILE] [--out benchmarks/results/unwrapped_shift.json]

A molecule moved by k box vectors is the same configuration, so OpenMM's energy and forces must not change.
The shipped float32 water model on 32 molecules (96 atoms, 0.99 nm box), Reference platform (float64 positions),
k = 1, 100, 10 000 and 1 000 000 boxes along a, and along a + b + c; each k with equiforce's TorchForce as it
is (positions wrapped into the box in OpenMM's float64 before the cast to the model's float32) and with the wrap
switched off (``OpenMMEnergy(wrap=False)``: the cast came first, the behaviour before 2026-12-06).
"""
import argparse
import sys

import numpy as np
import torch
import openmm
from openmm import unit

from equiforce.bench import describe_machine, write_json
from equiforce.export import load_model
from equiforce.openmm import OpenMMEnergy, species_for_atoms
from equiforce.pretrained import shipped_model_path
from equiforce.systems import equilibrate_classically, water_box

SHIFTS = [1, 100, 10_000, 1_000_000]


def context_for(model_file: str, topology, wrap: bool) -> openmm.Context:
    import openmmtorch

    module, metadata = load_model(model_file)
    species = species_for_atoms(list(topology.atoms()), metadata["elements"], model_file)
    force = openmmtorch.TorchForce(torch.jit.script(OpenMMEnergy(module, species, None, True, 0, wrap=wrap)))
    force.setUsesPeriodicBoundaryConditions(True)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(force)
    return openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference"))


def energy_forces(context, positions_nm):
    context.setPositions(positions_nm * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=shipped_model_path("water-gfn2"))
    parser.add_argument("--out", default="benchmarks/results/unwrapped_shift.json")
    args = parser.parse_args()
    topology, grid = water_box(32, seed=0)
    positions, _ = equilibrate_classically(topology, grid, 300.0, time_ps=0.5)
    box = np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))  # [3, 3] nm
    result = {"machine": describe_machine(), "model": args.model, "atoms": topology.getNumAtoms(),
              "box_nm": box.tolist(), "platform": "Reference", "records": []}
    for wrap in (False, True):
        context = context_for(args.model, topology, wrap)
        reference_energy, reference_forces = energy_forces(context, positions)
        for direction, vector in (("a", box[0]), ("a+b+c", box.sum(axis=0))):
            for k in SHIFTS:
                moved = positions.copy()
                moved[0:3] += k * vector  # the first molecule, k box vectors away
                energy, forces = energy_forces(context, moved)
                record = {"wrap_in_openmm_precision": wrap, "direction": direction, "boxes": k,
                          "distance_um": float(np.linalg.norm(k * vector) / 1000.0),
                          "energy_change_kj_per_mol": energy - reference_energy,
                          "max_force_change_kj_per_mol_nm": float(np.abs(forces - reference_forces).max())}
                result["records"].append(record)
                print(f"wrap {'on ' if wrap else 'off'} {direction:6s} {k:>9d} boxes ({record['distance_um']:.3g} µm): "
                      f"ΔE {record['energy_change_kj_per_mol']:+.3g} kJ/mol, max |ΔF| "
                      f"{record['max_force_change_kj_per_mol_nm']:.3g} kJ/mol/nm", flush=True)
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
