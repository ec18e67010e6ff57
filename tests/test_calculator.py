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


def test_ase_calculator_sees_a_change_of_elements_between_calls(exported_model):
    """The species of the last call are remembered; a swap of two atoms' elements must still reach the model."""
    path, _ = exported_model
    atoms = Atoms("OHHOHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0],
                                       [3, 0, 0], [3.96, 0, 0], [2.76, 0.93, 0]])
    atoms.calc = EquiforceCalculator(path, precision="float64")
    first = atoms.get_potential_energy()
    assert atoms.get_potential_energy() == first  # same atoms: the remembered species
    numbers = atoms.numbers.copy()
    numbers[[0, 1]] = numbers[[1, 0]]  # atom 0 becomes H, atom 1 O: a different structure
    atoms.numbers = numbers
    swapped = atoms.get_potential_energy()
    fresh = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions)
    fresh.calc = EquiforceCalculator(path, precision="float64")
    assert swapped == pytest.approx(fresh.get_potential_energy(), rel=1e-12) and swapped != pytest.approx(first)
    atoms.numbers = [8, 1, 1, 8, 1, 11]  # and an unknown element is still named
    with pytest.raises(ValueError, match="atom 5 is element Na"):
        atoms.get_potential_energy()
