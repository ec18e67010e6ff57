"""The ASE calculator gives the exported model's energy and forces in ASE units."""
import numpy as np
import pytest
from ase import Atoms

from equiforce.calculator import EquiforceCalculator
from conftest import energy_and_forces, water_tensors


@pytest.mark.parametrize("periodic", [True, False])
def test_ase_calculator_matches_the_model(exported_model, periodic):
    path, model = exported_model
    positions, species, cell = water_tensors(6, seed=2)
    symbols = ["O" if s == 1 else "H" for s in species.tolist()]
    atoms = Atoms(symbols, positions=positions.numpy(), cell=cell.numpy(), pbc=periodic)
    atoms.calc = EquiforceCalculator(path)
    energy, forces = energy_and_forces(model, positions, species, cell if periodic else None)
    assert atoms.get_potential_energy() == pytest.approx(float(energy), rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), rtol=1e-10, atol=1e-12)


def test_ase_calculator_names_an_unknown_element(exported_model):
    path, _ = exported_model
    atoms = Atoms("OHHNa", positions=np.eye(4, 3) * 2.0)
    atoms.calc = EquiforceCalculator(path)
    with pytest.raises(ValueError, match="atom 3 is element Na"):
        atoms.get_potential_energy()
