"""Periodic boundary conditions: neighbour lists against brute force, images, wrapping, small boxes."""
import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from equiforce.neighbors import edge_vectors, neighbor_list
from conftest import energy_and_forces, make_model, water_tensors


def _reduced_box(rng, widths):
    """A random triclinic box in OpenMM's reduced form with the given diagonal (Å)."""
    ax, by, cz = widths
    return torch.tensor(
        [[ax, 0.0, 0.0],
         [rng.uniform(-0.5, 0.5) * ax, by, 0.0],
         [rng.uniform(-0.5, 0.5) * ax, rng.uniform(-0.5, 0.5) * by, cz]],
        dtype=torch.float64,
    )


def _brute_force_pairs(positions, cell, cutoff, reach=3):
    """Every (i, j, image) within the cutoff, by explicit enumeration of lattice translations."""
    pairs = set()
    pos = positions.numpy()
    box = cell.numpy()
    for shift in itertools.product(range(-reach, reach + 1), repeat=3):
        offset = np.array(shift) @ box
        d = pos[None, :, :] + offset - pos[:, None, :]
        dist = np.linalg.norm(d, axis=-1)
        for i, j in zip(*np.nonzero(dist < cutoff)):
            if i == j and shift == (0, 0, 0):
                continue
            pairs.add((int(i), int(j), shift, round(float(dist[i, j]), 8)))
    return pairs


def _our_pairs(positions, cell, cutoff):
    edge_index, shifts = neighbor_list(positions, cutoff, cell)
    distances = edge_vectors(positions, edge_index, shifts, cell).norm(dim=1)
    return {
        (int(i), int(j), tuple(int(s) for s in shift), round(float(d), 8))
        for i, j, shift, d in zip(edge_index[0], edge_index[1], shifts.round().long(), distances)
    }


@pytest.mark.parametrize("widths", [(10.5, 10.2, 10.1), (8.1, 8.05, 8.01), (7.9, 8.5, 9.0), (5.0, 6.0, 4.5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_neighbor_list_matches_brute_force_over_images_in_reduced_triclinic_boxes(widths, seed):
    """Boxes above, just above, just below and well below twice the 4 Å cutoff."""
    rng = np.random.default_rng(seed)
    cell = _reduced_box(rng, widths)
    positions = torch.tensor(rng.uniform(-0.2, 1.2, size=(25, 3)), dtype=torch.float64) @ cell
    assert _our_pairs(positions, cell, 4.0) == _brute_force_pairs(positions, cell, 4.0)


def test_neighbor_list_matches_ase_in_a_general_cell_and_without_a_cell():
    rng = np.random.default_rng(4)
    cell = torch.tensor([[9.0, 1.0, 0.5], [2.0, 8.0, 1.5], [-1.0, 2.0, 7.0]], dtype=torch.float64)
    positions = torch.tensor(rng.uniform(0, 1, size=(30, 3)), dtype=torch.float64) @ cell
    for periodic in (True, False):
        edge_index, shifts = neighbor_list(positions, 4.5, cell if periodic else None)
        ours = edge_vectors(positions, edge_index, shifts, cell if periodic else None).norm(dim=1)
        atoms = Atoms(numbers=[1] * 30, positions=positions.numpy(), cell=cell.numpy(), pbc=periodic)
        i, j, d = ase_neighbor_list("ijd", atoms, 4.5)
        assert sorted(zip(edge_index[0].tolist(), edge_index[1].tolist(), np.round(ours.numpy(), 8))) == sorted(
            zip(i.tolist(), j.tolist(), np.round(d, 8))
        )


def test_energy_unchanged_when_an_atom_moves_by_a_lattice_vector_or_molecules_are_wrapped():
    model = make_model(torch.float64, cutoff=3.5)
    positions, species, cell = water_tensors(8, seed=6)
    cell = cell + torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [-1.0, 2.0, 0.0]], dtype=torch.float64)
    energy, forces = energy_and_forces(model, positions, species, cell)
    shifted = positions.clone()
    shifted[4] += 2 * cell[0] - cell[2]
    energy2, forces2 = energy_and_forces(model, shifted, species, cell)
    assert abs(float(energy2 - energy)) < 1e-10 and torch.allclose(forces2, forces, atol=1e-10)
    fractional = positions @ torch.linalg.inv(cell)
    wrapped = (fractional - torch.floor(fractional)) @ cell  # breaks molecules across the boundary
    energy3, forces3 = energy_and_forces(model, wrapped, species, cell)
    assert abs(float(energy3 - energy)) < 1e-10 and torch.allclose(forces3, forces, atol=1e-10)


def test_small_box_energy_is_one_27th_of_the_3x3x3_supercell():
    """A cell narrower than 2 × cutoff (all-images path) against a supercell wide enough for minimum image."""
    model = make_model(torch.float64, cutoff=4.0)
    rng = np.random.default_rng(8)
    cell = _reduced_box(rng, (6.0, 5.5, 5.2))
    positions = torch.tensor(rng.uniform(0, 1, size=(9, 3)), dtype=torch.float64) @ cell
    species = torch.tensor([1, 0, 0] * 3)
    energy, forces = energy_and_forces(model, positions, species, cell)
    translations = torch.tensor(list(itertools.product(range(3), repeat=3)), dtype=torch.float64) @ cell
    super_positions = (positions.unsqueeze(0) + translations.unsqueeze(1)).reshape(-1, 3)
    super_energy, super_forces = energy_and_forces(model, super_positions, species.repeat(27), 3 * cell)
    assert abs(float(super_energy / 27 - energy)) < 1e-9 * max(1.0, abs(float(energy)))
    assert torch.allclose(super_forces[:9], forces, atol=1e-9)


@pytest.mark.parametrize("widths", [(10.5, 10.2, 10.1), (6.0, 5.5, 5.2)])
def test_native_neighbor_op_gives_the_reference_energy_and_forces(widths):
    model = make_model(torch.float64, cutoff=4.0)
    rng = np.random.default_rng(12)
    cell = _reduced_box(rng, widths)
    positions = torch.tensor(rng.uniform(-0.1, 1.1, size=(20, 3)), dtype=torch.float64) @ cell
    species = torch.tensor([1, 0, 0, 1, 0] * 4)
    model.native_neighbors = True
    native = energy_and_forces(model, positions, species, cell)
    model.native_neighbors = False
    reference = energy_and_forces(model, positions, species, cell)
    assert abs(float(native[0] - reference[0])) < 1e-10
    assert torch.allclose(native[1], reference[1], atol=1e-10)
