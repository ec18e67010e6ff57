"""Extremes of a water box's geometry (what the NVE event trace records), checked on hand-built boxes."""
import numpy as np
import pytest

from equiforce.systems import HOH_ANGLE_DEGREES, OH_BOND_ANGSTROM, box_edge_nm, water_box
from equiforce.water_geometry import EXTREME_NAMES, water_extremes

EDGE_NM = 1.0


def _molecule(origin_angstrom, bond1=OH_BOND_ANGSTROM, bond2=OH_BOND_ANGSTROM, angle=HOH_ANGLE_DEGREES):
    """O, H, H (Å) in the xy plane, H1 along +x."""
    half = np.radians(angle)
    o = np.asarray(origin_angstrom, float)
    return np.array([o, o + [bond1, 0, 0], o + bond2 * np.array([np.cos(half), np.sin(half), 0.0])])


def _box(*molecules):
    return np.concatenate(molecules) / 10.0, np.eye(3) * EDGE_NM  # nm


def test_two_molecules_give_their_hand_computed_extremes():
    positions, box = _box(_molecule([2, 2, 2], bond1=0.9, bond2=1.2, angle=100.0), _molecule([2, 2, 5]))
    found = water_extremes(positions, box)
    assert set(found) == set(EXTREME_NAMES)
    assert found["oh_bond_min"] == pytest.approx(0.9)
    assert found["oh_bond_max"] == pytest.approx(1.2)
    assert found["hoh_angle_min"] == pytest.approx(100.0)
    assert found["hoh_angle_max"] == pytest.approx(HOH_ANGLE_DEGREES)
    assert found["oo_min"] == pytest.approx(3.0)
    # the molecules are copies displaced along z, so every intermolecular H-O and H-H pair is checked by hand
    first, second = positions[:3] * 10, positions[3:] * 10
    oh = min(np.linalg.norm(h - o) for h in first[1:] for o in second[:1])
    oh = min(oh, min(np.linalg.norm(h - first[0]) for h in second[1:]))
    hh = min(np.linalg.norm(a - b) for a in first[1:] for b in second[1:])
    assert found["oh_inter_min"] == pytest.approx(oh)
    assert found["hh_inter_min"] == pytest.approx(hh)
    assert found["protons_closer_to_another_oxygen"] == 0


def test_contacts_across_the_periodic_boundary_are_seen():
    # 0.5 Å from the -x face and 1.5 Å from the +x face: 2 Å apart through the boundary, 8 Å inside the box
    positions, box = _box(_molecule([0.5, 5, 5]), _molecule([8.5, 5, 5]))
    assert water_extremes(positions, box)["oo_min"] == pytest.approx(2.0)


def test_a_proton_that_moved_to_another_oxygen_is_counted():
    first = _molecule([2, 2, 2])
    second = _molecule([2, 2, 4.4])
    first[1] = [2.0, 2.0, 3.6]  # H1 of the first molecule, 1.6 Å from its own O and 0.8 Å from the other's
    found = water_extremes(*_box(first, second))
    assert found["protons_closer_to_another_oxygen"] == 1
    assert found["oh_bond_max"] == pytest.approx(1.6)
    assert found["oh_inter_min"] == pytest.approx(0.8)


def test_extremes_do_not_depend_on_the_order_of_molecules_or_a_shift_of_the_box():
    _, positions = water_box(8, 1.0, seed=2)
    box = np.eye(3) * box_edge_nm(8, 1.0)
    reference = water_extremes(positions, box)
    shuffled = positions.reshape(8, 3, 3)[np.random.default_rng(0).permutation(8)].reshape(-1, 3)
    shifted = shuffled + np.array([0.31, -0.77, 1.9])
    for name, value in water_extremes(shifted, box).items():
        assert value == pytest.approx(reference[name], rel=1e-9), name


def test_bad_input_is_refused_with_the_reason():
    positions, box = _box(_molecule([2, 2, 2]))
    with pytest.raises(ValueError, match="orthorhombic"):
        water_extremes(positions, box + np.array([[0, 0.1, 0], [0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"\[3 M, 3\]"):
        water_extremes(positions[:2], box)


def test_wall_contacts_equal_the_models_wall_energy():
    import torch

    from equiforce.nn import PairRepulsion
    from equiforce.water_geometry import wall_contacts

    radii, strength = {"H-H": 1.45, "H-O": 0.95, "O-O": 2.6}, 500.0
    squeezed = _molecule([2, 2, 2], bond1=0.9, angle=80.0)  # O-H inside 0.95, H-H inside 1.45
    neighbour = _molecule([2, 2, 4.4])  # O-O 2.4 inside 2.6
    positions, box = _box(squeezed, neighbour, _molecule([6, 6, 6]))
    found = wall_contacts(positions, box, radii, strength)

    angstrom = torch.tensor(positions * 10.0, dtype=torch.float64)  # [9, 3]
    pairs = torch.tensor([(i, j) for i in range(9) for j in range(9) if i != j]).T  # [2, 72] every ordered pair
    delta = angstrom[pairs[1]] - angstrom[pairs[0]]
    delta = delta - 10.0 * EDGE_NM * torch.round(delta / (10.0 * EDGE_NM))
    species = torch.tensor([1, 0, 0] * 3)  # elements ["H", "O"]: O is 1
    wall = PairRepulsion(["H", "O"], radii, strength)(species, pairs, torch.linalg.norm(delta, dim=1))
    assert found["wall_energy_eV"] == pytest.approx(float(wall.sum()), rel=1e-12)
    assert found["wall_energy_eV"] > found["intramolecular_wall_energy_eV"] > 0
    assert found["pairs_inside"] == 3  # the short O-H, the molecule's H-H, the O-O
    h1, h2 = squeezed[1], squeezed[2]
    assert found["hh_intra_min"] == pytest.approx(np.linalg.norm(h1 - h2))
    with pytest.raises(ValueError, match="'C-H'"):
        wall_contacts(positions, box, {"C-H": 1.0}, strength)
