"""The energy is invariant, and the forces equivariant, under E(3) and permutations."""
import pytest
import torch

from conftest import DTYPES, TOLERANCE, energy_and_forces, make_model, random_o3, water_tensors


def _cluster(n, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    positions = torch.rand(n, 3, generator=generator, dtype=dtype) * 6.0
    species = torch.randint(0, 2, (n,), generator=generator)
    return positions, species


def _assert_close(a, b, dtype, scale):
    tolerance = TOLERANCE[dtype] * max(1.0, float(scale))
    assert float((a - b).abs().max()) <= tolerance, float((a - b).abs().max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lmax", [0, 1, 2, 3])
def test_energy_invariant_and_forces_equivariant_under_random_o3(dtype, lmax):
    model = make_model(dtype, lmax=lmax)
    positions, species = _cluster(14, dtype, seed=lmax)
    energy, forces = energy_and_forces(model, positions, species)
    generator = torch.Generator().manual_seed(100 + lmax)
    for draw in range(6):
        rotation = random_o3(generator, improper=draw % 2 == 1, dtype=dtype)
        translation = torch.randn(3, generator=generator, dtype=dtype) * 10.0
        moved = positions @ rotation.T + translation
        energy2, forces2 = energy_and_forces(model, moved, species)
        _assert_close(energy2, energy, dtype, energy.abs())
        _assert_close(forces2, forces @ rotation.T, dtype, forces.abs().max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_energy_invariant_under_permutation(dtype):
    model = make_model(dtype)
    positions, species = _cluster(14, dtype, seed=7)
    energy, forces = energy_and_forces(model, positions, species)
    for seed in range(3):
        order = torch.randperm(14, generator=torch.Generator().manual_seed(seed))
        energy2, forces2 = energy_and_forces(model, positions[order], species[order])
        _assert_close(energy2, energy, dtype, energy.abs())
        _assert_close(forces2, forces[order], dtype, forces.abs().max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_periodic_energy_invariant_when_positions_and_cell_rotate_or_reflect(dtype):
    model = make_model(dtype, cutoff=3.5)
    positions, species, cell = water_tensors(8, seed=2, dtype=dtype)
    energy, forces = energy_and_forces(model, positions, species, cell)
    generator = torch.Generator().manual_seed(5)
    for draw in range(4):
        rotation = random_o3(generator, improper=draw % 2 == 0, dtype=dtype)
        energy2, forces2 = energy_and_forces(model, positions @ rotation.T, species, cell @ rotation.T)
        _assert_close(energy2, energy, dtype, energy.abs())
        _assert_close(forces2, forces @ rotation.T, dtype, forces.abs().max())


def test_so3_model_is_rotation_invariant_but_sees_mirror_images():
    dtype = torch.float64
    model = make_model(dtype, parity=False, lmax=2, num_layers=3)
    positions, species = _cluster(10, dtype, seed=11)
    energy, _ = energy_and_forces(model, positions, species)
    generator = torch.Generator().manual_seed(9)
    for _ in range(3):
        rotation = random_o3(generator, improper=False, dtype=dtype)
        _assert_close(energy_and_forces(model, positions @ rotation.T, species)[0], energy, dtype, energy.abs())
    mirrored, _ = energy_and_forces(model, -positions, species)
    # a chiral cluster and its mirror image: an SO(3)-only model is free to give them different energies
    assert float((mirrored - energy).abs()) > 1e-6


def test_o3_model_gives_enantiomers_the_same_energy_and_mirrored_forces():
    dtype = torch.float64
    model = make_model(dtype, parity=True, hidden_parity="both", lmax=2, num_layers=3)
    positions, species = _cluster(10, dtype, seed=11)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=dtype))  # a plane reflection
    energy, forces = energy_and_forces(model, positions, species)
    energy2, forces2 = energy_and_forces(model, positions @ mirror, species)
    _assert_close(energy2, energy, dtype, energy.abs())
    _assert_close(forces2, forces @ mirror, dtype, forces.abs().max())
