"""Forces are -∇E (finite differences), and energy and forces are continuous at the cutoff."""
import torch

from conftest import energy_and_forces, make_model, water_tensors


def _central_difference_forces(model, positions, species, cell, step=1e-5):
    forces = torch.zeros_like(positions)
    with torch.no_grad():
        for atom in range(positions.shape[0]):
            for axis in range(3):
                plus, minus = positions.clone(), positions.clone()
                plus[atom, axis] += step
                minus[atom, axis] -= step
                forces[atom, axis] = -(model(plus, species, cell) - model(minus, species, cell)) / (2 * step)
    return forces


def test_forces_match_central_finite_differences_in_float64_open_cluster():
    model = make_model(torch.float64, lmax=2)
    generator = torch.Generator().manual_seed(1)
    positions = torch.rand(7, 3, generator=generator, dtype=torch.float64) * 4.0
    species = torch.tensor([0, 1, 0, 0, 1, 0, 1])
    _, forces = energy_and_forces(model, positions, species)
    numeric = _central_difference_forces(model, positions, species, None)
    assert torch.allclose(forces, numeric, rtol=1e-6, atol=1e-7), (forces - numeric).abs().max()


def test_forces_match_central_finite_differences_in_float64_triclinic_box():
    model = make_model(torch.float64, lmax=1, cutoff=3.0)
    positions, species, cell = water_tensors(4, seed=3)
    cell = cell + torch.tensor([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0], [-0.9, 0.7, 0.0]], dtype=torch.float64)
    _, forces = energy_and_forces(model, positions, species, cell)
    numeric = _central_difference_forces(model, positions, species, cell)
    assert torch.allclose(forces, numeric, rtol=1e-6, atol=1e-7), (forces - numeric).abs().max()


def _dimer_energy_and_force(model, distance):
    positions = torch.tensor([[0.0, 0.0, 0.0], [distance, 0.0, 0.0]], dtype=torch.float64)
    energy, forces = energy_and_forces(model, positions, torch.tensor([1, 0]))
    return float(energy), float(forces[1, 0])


def test_energy_and_force_go_continuously_to_zero_interaction_at_the_cutoff():
    model = make_model(torch.float64, cutoff=4.0)
    far_energy, far_force = _dimer_energy_and_force(model, 10.0)  # isolated atoms: no interaction
    assert far_force == 0.0
    previous = None
    for gap in [1e-1, 1e-2, 1e-3, 1e-4]:
        inside_energy, inside_force = _dimer_energy_and_force(model, 4.0 - gap)
        outside_energy, outside_force = _dimer_energy_and_force(model, 4.0 + gap)
        assert outside_energy == far_energy and outside_force == 0.0
        jump = abs(inside_energy - outside_energy)
        assert abs(inside_force) < 1e-3 or gap > 1e-3
        if previous is not None:
            assert jump <= previous * 0.05 + 1e-14  # the gap shrinks 10×, the energy step at least 20×
        previous = jump
    assert previous < 1e-12
    assert abs(inside_force) < 1e-9


def test_interaction_is_nonzero_inside_the_cutoff():
    """Guards the continuity test against a model that never interacts."""
    model = make_model(torch.float64, cutoff=4.0)
    far_energy, _ = _dimer_energy_and_force(model, 10.0)
    near_energy, near_force = _dimer_energy_and_force(model, 2.0)
    assert abs(near_energy - far_energy) > 1e-4 and abs(near_force) > 1e-4


def test_distant_fragments_add_up():
    model = make_model(torch.float64)
    positions, species, _ = water_tensors(4, seed=5)
    first = positions[:6] - positions[:6].mean(0)
    second = positions[6:12] - positions[6:12].mean(0)
    together = torch.cat([first, second + torch.tensor([50.0, 0.0, 0.0], dtype=torch.float64)])
    energy_a, _ = energy_and_forces(model, first, species[:6])
    energy_b, _ = energy_and_forces(model, second, species[6:12])
    energy_ab, _ = energy_and_forces(model, together, species[:12])
    assert abs(float(energy_ab - energy_a - energy_b)) < 1e-10
