"""Bad positions reaching an equiforce TorchForce: the error names the System's atom, not a silent inf."""
import numpy as np
import openmm
import pytest
from openmm import unit

from equiforce.openmm import create_force
from equiforce.pretrained import shipped_model_path
from equiforce.systems import tip3pfb_system, water_box


@pytest.fixture(scope="module")
def mixed_context():
    """Molecules 3 and 4 (atoms 6-11) under the model, the rest classical."""
    topology, positions = water_box(8, seed=3)
    system = tip3pfb_system(topology)
    system.addForce(create_force(shipped_model_path("water-gfn2"), topology, atoms=range(6, 12), force_group=2))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    return context, positions


def ml_energy(context, positions):
    context.setPositions(positions * unit.nanometer)
    return context.getState(getEnergy=True, groups={2}).getPotentialEnergy()


def test_overlapping_atoms_are_named_by_their_system_index(mixed_context):
    context, positions = mixed_context
    broken = positions.copy()
    broken[10] = broken[6]  # molecule 4's hydrogen onto molecule 3's oxygen
    with pytest.raises(openmm.OpenMMException, match=r"energy is inf eV; atoms (6 and 10|10 and 6) are 0\.0? Å apart"):
        ml_energy(context, broken)


def test_a_nan_position_is_named_by_its_system_index(mixed_context):
    context, positions = mixed_context
    broken = positions.copy()
    broken[8, 1] = np.nan
    with pytest.raises(openmm.OpenMMException, match="the position of atom 8 is not finite"):
        ml_energy(context, broken)


def test_healthy_positions_still_work(mixed_context):
    context, positions = mixed_context
    assert np.isfinite(ml_energy(context, positions).value_in_unit(unit.kilojoule_per_mole))
