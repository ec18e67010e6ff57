"""The optional short-range wall: zero beyond its onset (so the learned energies are untouched), smooth,
repulsive inside, symmetric, exported, and its onsets read from data."""
import numpy as np
import pytest
import torch

import equiforce
from equiforce.checkpoint import model_from_checkpoint, save_checkpoint
from equiforce.data import Structure
from equiforce.nn import pair_key, repulsion_radii_from_structures
from conftest import energy_and_forces, make_model, random_o3

RADII = {"H-H": 1.3, "H-O": 0.9, "O-O": 2.3}


def _pair(symbols, distance):
    positions = torch.zeros(2, 3, dtype=torch.float64)
    positions[1, 0] = distance
    species = torch.tensor([["H", "O"].index(s) for s in symbols])
    return positions, species


def test_wall_is_exactly_zero_beyond_the_onset_and_changes_nothing_there():
    plain = make_model(seed=2)
    walled = make_model(seed=2, repulsion_radii=RADII, repulsion_strength=500.0)
    for symbols, distance in ((("H", "H"), 1.31), (("H", "O"), 0.95), (("O", "O"), 2.5), (("O", "O"), 3.9)):
        positions, species = _pair(symbols, distance)
        e0, f0 = energy_and_forces(plain, positions, species)
        e1, f1 = energy_and_forces(walled, positions, species)
        assert float(e1) == float(e0) and torch.equal(f0, f1)


def test_wall_repels_inside_and_is_smooth_at_the_onset():
    plain = make_model(seed=2)
    walled = make_model(seed=2, repulsion_radii=RADII, repulsion_strength=500.0)
    energies = []
    for distance in (0.5, 0.8, 1.0, 1.2):
        positions, species = _pair(("H", "H"), distance)
        extra = float(energy_and_forces(walled, positions, species)[0] - energy_and_forces(plain, positions, species)[0])
        assert extra == pytest.approx(500.0 * (1.3 / distance - 1.0) ** 3, rel=1e-9)
        energies.append(extra)
    assert energies == sorted(energies, reverse=True) and energies[0] > 100.0
    # the wall's force 3A(r_on/r - 1)^2 r_on/r^2 vanishes quadratically at the onset (smooth, C2 form)
    wall_forces = []
    for depth in (1e-3, 1e-4):
        r = 1.3 - depth
        positions, species = _pair(("H", "H"), r)
        wall = float(energy_and_forces(walled, positions, species)[1][1, 0] - energy_and_forces(plain, positions, species)[1][1, 0])
        assert wall == pytest.approx(3 * 500.0 * (1.3 / r - 1) ** 2 * 1.3 / r**2, rel=1e-6)
        wall_forces.append(wall)
    assert wall_forces[0] / wall_forces[1] == pytest.approx(100.0, rel=0.01)


def test_walled_model_stays_invariant_and_conservative_and_exports(tmp_path):
    model = make_model(seed=4, repulsion_radii=RADII, repulsion_strength=300.0)
    generator = torch.Generator().manual_seed(0)
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.7, 0.1, 0.0], [0.1, 0.8, 0.2], [2.0, 0.3, 0.4]], dtype=torch.float64)
    species = torch.tensor([1, 0, 0, 1])
    energy, forces = energy_and_forces(model, positions, species)
    for improper in (False, True):
        rotation = random_o3(generator, improper)
        e_rot, f_rot = energy_and_forces(model, positions @ rotation.T, species)
        assert float(e_rot) == pytest.approx(float(energy), rel=1e-10)
        torch.testing.assert_close(f_rot, forces @ rotation.T)
    # central finite differences of the energy against the autograd forces, float64
    h = 1e-5
    for atom, axis in ((1, 0), (2, 1), (0, 2)):
        shifted = [positions.clone(), positions.clone()]
        shifted[0][atom, axis] += h
        shifted[1][atom, axis] -= h
        numeric = -(float(model(shifted[0], species).detach()) - float(model(shifted[1], species).detach())) / (2 * h)
        assert numeric == pytest.approx(float(forces[atom, axis]), rel=1e-6, abs=1e-6)
    path = str(tmp_path / "walled.pt")
    equiforce.export_model(model, path, dtype="float64")
    exported, metadata = equiforce.load_model(path)
    assert metadata["config"]["repulsion_radii"] == RADII
    assert float(energy_and_forces(exported, positions, species)[0]) == pytest.approx(float(energy), rel=1e-12)


def test_wall_added_at_export_keeps_the_weights(tmp_path):
    model = make_model(seed=5)
    path = str(tmp_path / "plain.ckpt")
    save_checkpoint(model, path)
    walled = model_from_checkpoint(path, config_overrides={"repulsion_radii": RADII, "repulsion_strength": 50.0})
    assert walled.config.repulsion_strength == 50.0
    for name, value in model.state_dict().items():
        assert torch.equal(walled.state_dict()[name], value)


def test_onsets_from_data_are_the_shortest_distances_minus_the_margin():
    cell = torch.eye(3, dtype=torch.float64) * 10.0
    structure = Structure(
        symbols=["O", "H", "H", "O"],
        positions=torch.tensor([[0.0, 0, 0], [0.95, 0, 0], [0, 1.5, 0], [9.0, 0, 0]], dtype=torch.float64),
        cell=cell, energy=0.0, forces=torch.zeros(4, 3, dtype=torch.float64))
    radii = repulsion_radii_from_structures([structure], margin=0.05)
    assert radii["O-O"] == pytest.approx(1.0 - 0.05)  # through the periodic boundary
    assert radii["H-O"] == pytest.approx(0.95 - 0.05)
    assert radii["H-H"] == pytest.approx(np.hypot(0.95, 1.5) - 0.05)
    assert pair_key("O", "H") == "H-O"


def test_bad_wall_settings_are_named():
    with pytest.raises(ValueError, match="'O-H'"):
        equiforce.ModelConfig(elements=["H", "O"], repulsion_radii={"O-H": 0.9}, repulsion_strength=1.0)
    with pytest.raises(ValueError, match="cutoff"):
        equiforce.ModelConfig(elements=["H", "O"], cutoff=4.0, repulsion_radii={"H-H": 4.5}, repulsion_strength=1.0)


def test_property_model_energy_includes_the_wall():
    from equiforce.nn import PropertyModel
    from conftest import small_config

    torch.manual_seed(3)
    model = PropertyModel(small_config(heads=["dipole"], repulsion_radii=RADII, repulsion_strength=500.0)).double()
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.7, 0.1, 0.0], [0.1, 0.8, 0.2]], dtype=torch.float64)  # H-O inside
    species = torch.tensor([1, 0, 0])
    energy = model(positions, species).item()
    assert model.properties(positions, species)["energy"].item() == pytest.approx(energy, rel=1e-12)
    model.network.use_repulsion = False
    assert model.properties(positions, species)["energy"].item() < energy - 1.0  # the wall was in it
