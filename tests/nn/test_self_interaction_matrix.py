"""Self-interaction matrices: measured on e3nn's module, they compute the same map (to rounding), keep the model
invariant and conservative, are refused in training and travel inside exported files."""
import pytest
import torch

import equiforce
from conftest import (assert_forces_are_central_differences, assert_o3_and_permutation_invariant, energy_and_forces,
                      make_model, water_tensors)
from equiforce.nn import set_self_interaction_matrix
from equiforce.nn._self_interaction_matrix import measure_matrix


@pytest.mark.parametrize("lmax", [1, 2])
def test_matrices_compute_e3nns_self_interaction_for_every_species(lmax):
    model = make_model(torch.float64, seed=21, lmax=lmax).eval()
    generator = torch.Generator().manual_seed(3)
    for block in model.network.layers:
        module = block.self_interaction
        matrix = measure_matrix(block)
        species = module.irreps_in2.dim
        assert matrix.shape == (module.irreps_in1.dim, species * module.irreps_out.dim)
        features = torch.randn(40, module.irreps_in1.dim, generator=generator, dtype=torch.float64)
        onehot = torch.nn.functional.one_hot(torch.arange(40) % species, species).double()
        with torch.no_grad():
            expected = module(features, onehot)
        assert expected.abs().max() > 0.1
        torch.testing.assert_close(block.matrix_self_interaction_of(features, onehot, matrix), expected,
                                   rtol=0, atol=1e-13 * float(expected.abs().max()))


def test_model_with_matrices_matches_e3nn_and_switches_back_exactly():
    model = make_model(torch.float64, seed=22).eval()
    positions, species, cell = water_tensors(8, seed=4)
    energy, forces = energy_and_forces(model, positions, species, cell)
    error = set_self_interaction_matrix(model, True)
    assert 0.0 <= error < 1e-13
    assert all(block.matrix_self_interaction for block in model.network.layers)
    matrix_energy, matrix_forces = energy_and_forces(model, positions, species, cell)
    torch.testing.assert_close(matrix_energy, energy, rtol=1e-13, atol=0.0)
    torch.testing.assert_close(matrix_forces, forces, rtol=0, atol=1e-12 * float(forces.abs().max()))
    assert set_self_interaction_matrix(model, False) == 0.0
    back_energy, back_forces = energy_and_forces(model, positions, species, cell)
    assert torch.equal(back_energy, energy) and torch.equal(back_forces, forces)


def test_matrices_keep_the_model_invariant_and_its_forces_its_gradient():
    model = make_model(torch.float64, seed=23, lmax=1).eval()
    set_self_interaction_matrix(model, True)
    positions, species, _ = water_tensors(4, seed=2)
    _, forces = assert_o3_and_permutation_invariant(model, positions, species, seed=9)
    assert_forces_are_central_differences(model, positions, species, forces, ((0, 0), (4, 2), (10, 1)))


def test_training_mode_is_refused_and_a_second_derivative_works():
    model = make_model(torch.float64, seed=24)
    set_self_interaction_matrix(model, True)
    positions, species, cell = water_tensors(4, seed=1)
    with pytest.raises(RuntimeError, match="measured matrices, which are for inference"):
        model.train()(positions, species, cell)
    model.eval()
    x = positions.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(x, species, cell), x, create_graph=True)  # plain torch: twice
    (second,) = torch.autograd.grad(gradient.square().sum(), x)
    assert second.isfinite().all() and second.abs().max() > 0


def test_exported_file_carries_its_matrices_and_equals_the_e3nn_model(tmp_path):
    model = make_model(torch.float64, seed=25).eval()
    positions, species, cell = water_tensors(8, seed=3)
    path = str(tmp_path / "matrix.pt")
    metadata = equiforce.export_model(model, path, dtype="float64")
    module, loaded = equiforce.load_model(path)
    assert loaded["self_interaction_matrix"] == metadata["self_interaction_matrix"]
    assert 0.0 <= loaded["self_interaction_matrix"]["max_relative_error"] < 1e-13
    assert all(bool(getattr(module.network.layers, str(k)).matrix_self_interaction) for k in range(2))
    assert not any(block.matrix_self_interaction for block in model.network.layers)  # the model is untouched
    equiforce.nn.set_radial_table(model)  # the file's other code paths, so only the matrices differ
    energy, forces = energy_and_forces(model, positions, species, cell)
    file_energy, file_forces = energy_and_forces(module, positions, species, cell)
    torch.testing.assert_close(file_energy, energy, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(file_forces, forces, rtol=0, atol=1e-12 * float(forces.abs().max()))
    plain = str(tmp_path / "e3nn.pt")
    assert equiforce.export_model(model, plain, dtype="float64", self_interaction_matrix=False)[
        "self_interaction_matrix"] is None
    assert not bool(getattr(equiforce.load_model(plain)[0].network.layers, "0").matrix_self_interaction)


def test_a_module_that_is_not_the_expected_product_is_refused():
    model = make_model(torch.float64, seed=26).eval()
    block = model.network.layers[0]
    original = block.self_interaction.forward
    block.self_interaction.forward = lambda x, y: original(x, y) + 1.0  # affine, not the bilinear product
    with pytest.raises(ValueError, match="block 0's measured matrices differ from its e3nn module"):
        set_self_interaction_matrix(model, True)
