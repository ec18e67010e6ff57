"""Radial tables: the spline op interpolates exactly what it should, and tabulated models stay the same
conservative, invariant potentials to within the interpolation error."""
import pytest
import torch

import equiforce
from conftest import (assert_forces_are_central_differences, assert_o3_and_permutation_invariant, energy_and_forces,
                      make_model, water_tensors)
from equiforce.nn import set_radial_table
from equiforce.nn._radial_table import tabulate


def _random_table(knots=33, width=5, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(knots, 2, width, dtype=dtype, generator=generator)
    table[-1] = 0.0  # the op's contract: the function vanishes with its slope at the last knot
    return table


def _hermite(lengths, table, spacing):
    """Reference: the cubic Hermite interpolant written out with torch ops."""
    last = table.shape[0] - 1
    s = lengths / spacing
    k = s.floor().long().clamp(max=last - 1)
    t = (s - k).unsqueeze(1)
    value = ((2 * t**3 - 3 * t**2 + 1) * table[k, 0] + (t**3 - 2 * t**2 + t) * spacing * table[k, 1]
             + (3 * t**2 - 2 * t**3) * table[k + 1, 0] + (t**3 - t**2) * spacing * table[k + 1, 1])
    return torch.where((lengths < last * spacing).unsqueeze(1), value, torch.zeros_like(value))


def test_spline_op_is_the_hermite_interpolant_and_meets_the_knots():
    table, spacing = _random_table(), 0.125  # knots 0 .. 4 Å
    lengths = torch.rand(200, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 4.5
    torch.testing.assert_close(torch.ops.equiforce.radial_spline(lengths, table, spacing),
                               _hermite(lengths, table, spacing), rtol=1e-13, atol=1e-13)
    knots = (torch.arange(table.shape[0] - 1, dtype=torch.float64) * spacing).requires_grad_(True)
    values = torch.ops.equiforce.radial_spline(knots, table, spacing)
    torch.testing.assert_close(values, table[:-1, 0], rtol=1e-13, atol=1e-13)
    for w in range(table.shape[2]):  # d/dr at the knots are the tabulated slopes
        (slope,) = torch.autograd.grad(values[:, w].sum(), knots, retain_graph=True)
        torch.testing.assert_close(slope, table[:-1, 1, w], rtol=1e-12, atol=1e-12)


def test_spline_op_gradient_passes_gradcheck_and_is_continuous_across_knots():
    table, spacing = _random_table(knots=9, width=3), 0.5
    lengths = (torch.rand(30, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 3.9 + 0.05)
    assert torch.autograd.gradcheck(lambda r: torch.ops.equiforce.radial_spline(r, table, spacing),
                                    (lengths.requires_grad_(True),))
    for knot in (1.0, 2.5):  # values and first derivatives agree from both sides of a knot
        around = torch.tensor([knot - 1e-9, knot + 1e-9], dtype=torch.float64, requires_grad=True)
        out = torch.ops.equiforce.radial_spline(around, table, spacing)
        torch.testing.assert_close(out[0], out[1], rtol=0, atol=1e-7)
        weight = torch.linspace(1.0, 2.0, table.shape[2], dtype=torch.float64)
        (gradient,) = torch.autograd.grad((out * weight).sum(dim=1), around, torch.ones(2, dtype=torch.float64))
        torch.testing.assert_close(gradient[0], gradient[1], rtol=0, atol=1e-6)


def test_spline_op_is_exactly_zero_from_the_last_knot_and_vanishes_smoothly_towards_it():
    table, spacing = _random_table(knots=17, width=4), 0.25  # last knot at 4 Å
    far = torch.tensor([4.0, 4.0 + 1e-12, 5.0, 8.0], dtype=torch.float64, requires_grad=True)  # 8 Å: padding
    out = torch.ops.equiforce.radial_spline(far, table, spacing)
    assert torch.equal(out, torch.zeros_like(out))
    (gradient,) = torch.autograd.grad(out.sum(), far)
    assert torch.equal(gradient, torch.zeros_like(gradient))
    # zero value and slope at the last knot: the output falls off as (distance to it)^2
    gaps = torch.tensor([1e-2, 1e-3], dtype=torch.float64)
    near = torch.ops.equiforce.radial_spline(4.0 - gaps, table, spacing).abs().max(dim=1).values
    assert 50.0 < float(near[0] / near[1]) < 200.0


def test_spline_op_refuses_bad_input_with_the_culprit_named():
    table, spacing = _random_table(knots=5, width=2), 1.0
    with pytest.raises(RuntimeError, match="edge 2 has a negative length"):
        torch.ops.equiforce.radial_spline(torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64), table, spacing)
    with pytest.raises(RuntimeError, match=r"table must be \[K, 2, W\]"):
        torch.ops.equiforce.radial_spline(torch.ones(3, dtype=torch.float64), table[:, 0], spacing)
    with pytest.raises(RuntimeError, match="one dtype"):
        torch.ops.equiforce.radial_spline(torch.ones(3), table, spacing)
    with pytest.raises(RuntimeError, match="spacing must be a positive length"):
        torch.ops.equiforce.radial_spline(torch.ones(3, dtype=torch.float64), table, 0.0)
    with pytest.raises(RuntimeError, match="table is a constant"):
        torch.ops.equiforce.radial_spline(torch.ones(3, dtype=torch.float64), table.requires_grad_(True), spacing)
    nan = torch.ops.equiforce.radial_spline(torch.tensor([float("nan")], dtype=torch.float64), table.detach(), spacing)
    assert torch.isnan(nan).all()  # a NaN length is not hidden as a zero weight


def test_spline_op_has_first_derivatives_only():
    table = _random_table(knots=5, width=2)
    lengths = torch.tensor([0.7, 1.9], dtype=torch.float64, requires_grad=True)
    out = torch.ops.equiforce.radial_spline(lengths, table, 1.0)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(out.sum(), lengths, create_graph=True)  # a graph of the backward: refused
    (gradient,) = torch.autograd.grad(out.sum(), lengths)
    assert gradient.abs().max() > 0


def test_table_reproduces_the_radial_mlp_values_and_derivatives():
    model = make_model(torch.float64, seed=11)
    block, embedding = model.network.layers[1], model.network.radial
    table = tabulate(block, embedding, model.cutoff, 2049)
    radii = torch.linspace(0.6, 3.9, 7, dtype=torch.float64, requires_grad=True)
    expected = block.radial(embedding(radii))  # [7, W]
    assert expected.abs().max() > 0.1
    spacing = model.cutoff / 2048
    interpolated = torch.ops.equiforce.radial_spline(radii, table, spacing)
    torch.testing.assert_close(interpolated, expected, rtol=0, atol=1e-8 * float(expected.detach().abs().max()))
    weight = torch.linspace(-1.0, 1.0, expected.shape[1], dtype=torch.float64)
    (d_expected,) = torch.autograd.grad((expected * weight).sum(), radii)
    (d_interpolated,) = torch.autograd.grad((interpolated * weight).sum(), radii)
    torch.testing.assert_close(d_interpolated, d_expected, rtol=0, atol=1e-6 * float(d_expected.abs().max()))


def test_tabulated_model_matches_the_mlp_model_and_switches_back_exactly():
    model = make_model(torch.float64, seed=12).eval()
    positions, species, cell = water_tensors(8, seed=4)
    energy, forces = energy_and_forces(model, positions, species, cell)
    error = set_radial_table(model, 2049)  # 0.002 Å apart: errors of a few 1e-10
    assert 0.0 < error < 1e-8
    assert all(block.tabulated_radial for block in model.network.layers) and model.network.tabulated_radial
    table_energy, table_forces = energy_and_forces(model, positions, species, cell)
    assert not torch.equal(table_forces, forces)  # the tables are in use
    torch.testing.assert_close(table_energy, energy, rtol=1e-9, atol=0.0)
    torch.testing.assert_close(table_forces, forces, rtol=0, atol=1e-8 * float(forces.abs().max()))
    assert set_radial_table(model, None) == 0.0
    back_energy, back_forces = energy_and_forces(model, positions, species, cell)
    assert torch.equal(back_energy, energy) and torch.equal(back_forces, forces)


def test_too_few_knots_and_training_mode_are_refused():
    model = make_model(torch.float64, seed=13)
    with pytest.raises(ValueError, match="block 0's radial MLP is interpolated with a relative error"):
        set_radial_table(model, 9)
    set_radial_table(model)
    positions, species, cell = water_tensors(4, seed=1)
    with pytest.raises(RuntimeError, match="radial table, which is for inference"):
        model.train()(positions, species, cell)
    assert model.eval()(positions, species, cell).isfinite()


def test_tabulated_model_is_invariant_and_its_forces_are_its_gradient():
    model = make_model(torch.float64, seed=14, lmax=1).eval()
    set_radial_table(model)
    positions, species, _ = water_tensors(4, seed=2)
    _, forces = assert_o3_and_permutation_invariant(model, positions, species, seed=8)
    # central differences of the tabulated energy itself
    assert_forces_are_central_differences(model, positions, species, forces, ((0, 0), (5, 2), (9, 1)))


def test_exported_file_carries_its_tables_and_matches_the_tabulated_eager_model(tmp_path):
    model = make_model(torch.float64, seed=15)
    positions, species, cell = water_tensors(8, seed=3)
    path = str(tmp_path / "table.pt")
    metadata = equiforce.export_model(model, path, dtype="float64")
    module, loaded = equiforce.load_model(path)
    assert loaded["format_version"] == 4 and loaded["radial_table"]["knots"] == equiforce.nn.DEFAULT_KNOTS
    assert 0.0 < loaded["radial_table"]["max_relative_error"] < 1e-8
    assert all(bool(getattr(module.network.layers, str(k)).tabulated_radial) for k in range(2))
    assert not any(block.tabulated_radial for block in model.network.layers)  # the trained model is untouched
    eager = make_model(torch.float64, seed=15).eval()
    set_radial_table(eager)
    energy, forces = energy_and_forces(eager, positions, species, cell)
    file_energy, file_forces = energy_and_forces(module, positions, species, cell)
    torch.testing.assert_close(file_energy, energy, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(file_forces, forces, rtol=0, atol=1e-12 * float(forces.abs().max()))
    plain = str(tmp_path / "mlp.pt")
    assert equiforce.export_model(model, plain, dtype="float64", radial_table_knots=None)["radial_table"] is None
    assert not bool(getattr(equiforce.load_model(plain)[0].network.layers, "0").tabulated_radial)
    assert metadata["radial_table"] == loaded["radial_table"]
