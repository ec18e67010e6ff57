"""Energy and forces do not depend on which periodic image of an atom OpenMM hands over: positions are wrapped
into the box in OpenMM's own precision (float64 on the CPU and Reference platforms) before the cast to the
model's float32, so a molecule 10 µm from the origin (10 000 boxes) sees the same numbers as at home."""
import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from equiforce.openmm import create_force
from equiforce.openmm._boundary import wrap_into_box
from equiforce.pretrained import shipped_model_path
from equiforce.systems import water_box


def energy_and_forces(context, positions_nm):
    context.setPositions(positions_nm * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


@pytest.mark.parametrize("boxes", [1, 100, 10_000])
def test_molecule_moved_by_whole_boxes_changes_nothing(boxes):
    model = shipped_model_path("water-gfn2")  # float32
    topology, positions = water_box(16, seed=2)
    box = np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))  # [3, 3] nm
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(model, topology))
    context = openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference"))
    energy, forces = energy_and_forces(context, positions)
    moved = positions.copy()
    moved[3:6] += boxes * (box[0] - 2 * box[1] + box[2])  # the second molecule, 1.7 nm per box away
    moved_energy, moved_forces = energy_and_forces(context, moved)
    assert abs(moved_energy - energy) <= 1e-6 * abs(energy)  # float32 rounding of the same wrapped numbers
    np.testing.assert_allclose(moved_forces, forces, atol=1e-2)  # kJ/mol/nm; forces are ~1e3


def test_wrap_into_box_removes_whole_box_vectors_keeps_the_gradient_and_lands_in_the_brick():
    box = torch.tensor([[2.0, 0.0, 0.0], [0.7, 1.9, 0.0], [-0.4, 0.6, 2.2]], dtype=torch.float64)  # reduced form
    positions = (torch.rand((50, 3), dtype=torch.float64) - 0.5) * 1e4  # nm, up to 5 µm from the origin
    positions.requires_grad_(True)
    wrapped = wrap_into_box(positions, box)
    heights = torch.diagonal(box)  # the brick OpenMM wraps into: 0 <= z < c_z, 0 <= y < b_y, 0 <= x < a_x
    assert bool(((wrapped >= 0) & (wrapped < heights)).all())
    lattice = (positions.detach() - wrapped.detach()) @ torch.linalg.inv(box)  # whole box vectors were removed
    torch.testing.assert_close(lattice, lattice.round(), rtol=0, atol=1e-9)
    (gradient,) = torch.autograd.grad(wrapped.sum(), positions)
    torch.testing.assert_close(gradient, torch.ones_like(gradient))
