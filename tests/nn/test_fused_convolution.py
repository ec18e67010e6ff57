"""The fused convolution op computes e3nn's gather -> tensor product -> scatter, values and first derivatives."""
import pytest
import torch
from e3nn import o3

import equiforce
from conftest import TOLERANCE, assert_o3_and_permutation_invariant, energy_and_forces, make_model, water_tensors
from equiforce.nn import NotFusable, convolution_tables, set_fused_convolution
from equiforce.nn._interaction import _convolution_paths

TARGET = o3.Irreps("6x0e+6x0o+6x1o+6x1e+6x2e+6x2o")


def _tensor_product(irreps_in: str, lmax: int, parity: bool = True) -> o3.TensorProduct:
    irreps_sh = o3.Irreps([(1, (l, (-1) ** l if parity else 1)) for l in range(lmax + 1)])
    irreps_mid, instructions = _convolution_paths(o3.Irreps(irreps_in), irreps_sh, TARGET)
    return o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, instructions, shared_weights=False,
                            internal_weights=False).double()


def _graph(tp, n_nodes=9, n_edges=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_nodes, tp.irreps_in1.dim, dtype=torch.float64, generator=generator)
    y = torch.randn(n_edges, tp.irreps_in2.dim, dtype=torch.float64, generator=generator)
    w = torch.randn(n_edges, tp.weight_numel, dtype=torch.float64, generator=generator)
    centre = torch.randint(0, n_nodes - 1, (n_edges,), generator=generator)  # the last node has no edge
    neighbour = torch.randint(0, n_nodes, (n_edges,), generator=generator)
    return x, y, w, centre, neighbour


def _reference(tp, x, y, w, centre, neighbour):
    messages = tp(x.index_select(0, neighbour), y, w)  # [E, out.dim]
    return torch.zeros(x.shape[0], messages.shape[1], dtype=x.dtype).index_add(0, centre, messages)


def _fused(tables, x, y, w, centre, neighbour):
    return torch.ops.equiforce.tp_convolution(x, y, w, centre, neighbour, *tables, x.shape[0])


@pytest.mark.parametrize("irreps_in, lmax, parity", [
    ("6x0e", 1, True), ("6x0e+6x1o", 1, True), ("6x0e+6x1o+6x2e", 2, True),
    ("6x0e+6x0o+6x1o+6x1e", 1, True), ("6x0e+6x1e+6x2e", 2, False), ("6x0e+6x1o+6x2e+6x2o", 3, True)])
def test_fused_op_equals_e3nn_values_and_gradients(irreps_in, lmax, parity):
    tp = _tensor_product(irreps_in, lmax, parity)
    tables = convolution_tables(tp)
    inputs = _graph(tp)
    results = []
    for compute in (lambda *a: _reference(tp, *a), lambda *a: _fused(tables, *a)):
        leaves = [t.clone().requires_grad_(True) for t in inputs[:3]]
        out = compute(*leaves, *inputs[3:])
        weight = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
        results.append([out, *torch.autograd.grad((out * weight).sum(), leaves)])
    assert results[1][0].abs().max() > 0.1  # something was computed
    assert results[1][0][-1].abs().max() == 0.0  # a node without edges receives nothing
    for fused, reference in zip(results[1], results[0]):
        torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)


def test_fused_op_passes_gradcheck():
    tp = _tensor_product("3x0e+3x1o", 1)
    tables = convolution_tables(tp)
    x, y, w, centre, neighbour = _graph(tp, n_nodes=4, n_edges=7)
    leaves = [t.clone().requires_grad_(True) for t in (x, y, w)]
    assert torch.autograd.gradcheck(lambda a, b, c: _fused(tables, a, b, c, centre, neighbour), leaves)


def test_fused_op_does_not_depend_on_the_thread_count():
    tp = _tensor_product("6x0e+6x1o", 1)
    tables = convolution_tables(tp)
    inputs = _graph(tp, n_nodes=50, n_edges=9000)  # several chunks of edges, one a thread
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            leaves = [t.clone().requires_grad_(True) for t in inputs[:3]]
            out = _fused(tables, *leaves, *inputs[3:])
            results.append([out, *torch.autograd.grad(out.sum(), leaves)])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_fused_op_refuses_double_backward_clearly():
    tp = _tensor_product("6x0e+6x1o", 1)
    tables = convolution_tables(tp)
    x, y, w, centre, neighbour = _graph(tp)
    y.requires_grad_(True)
    out = _fused(tables, x, y, w, centre, neighbour).sum()
    with pytest.raises(RuntimeError, match="first derivatives only.*set_fused_convolution"):
        torch.autograd.grad(out, y, create_graph=True)  # refused up front, not a silently wrong second derivative


def test_fused_op_names_an_edge_that_points_past_the_nodes():
    tp = _tensor_product("6x0e+6x1o", 1)
    tables = convolution_tables(tp)
    x, y, w, centre, neighbour = _graph(tp, n_nodes=9)
    neighbour[5] = 9
    with pytest.raises(RuntimeError, match=r"edge 5 joins nodes \(\d+, 9\) but there are 9 nodes"):
        _fused(tables, x, y, w, centre, neighbour)


def test_a_tensor_product_of_another_form_is_not_fused():
    tp = o3.TensorProduct("4x0e", "1x0e", "4x0e", [(0, 0, 0, "uvw", True)], shared_weights=False,
                          internal_weights=False)
    with pytest.raises(NotFusable, match="instruction 0 .uvw"):
        convolution_tables(tp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("overrides", [dict(lmax=1), dict(lmax=2), dict(lmax=2, hidden_parity="both")])
def test_model_energy_and_forces_are_the_same_with_the_fused_op(dtype, overrides):
    model = make_model(dtype, seed=4, **overrides)
    positions, species, cell = water_tensors(8, seed=1, dtype=dtype)
    energy, forces = energy_and_forces(model, positions, species, cell)
    assert set_fused_convolution(model, True) == model.config.num_layers
    fused_energy, fused_forces = energy_and_forces(model, positions, species, cell)
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(fused_energy, energy, rtol=tolerance, atol=0.0)
    torch.testing.assert_close(fused_forces, forces, rtol=tolerance, atol=tolerance * float(forces.abs().max()))


def test_fused_model_is_invariant_under_rotations_reflections_and_permutations():
    model = make_model(torch.float64, seed=5, lmax=1)
    set_fused_convolution(model, True)
    positions, species, _ = water_tensors(4, seed=2)
    assert_o3_and_permutation_invariant(model, positions, species, seed=7)


def test_exported_files_use_the_fused_op_and_match_the_eager_model(tmp_path):
    model = make_model(torch.float64, seed=6, lmax=1)
    positions, species, cell = water_tensors(8, seed=3)
    energy, forces = energy_and_forces(model, positions, species, cell)
    for fused in (True, False):
        path = str(tmp_path / f"fused-{fused}.pt")
        metadata = equiforce.export_model(model, path, dtype="float64", fused_convolution=fused,
                                          radial_table_knots=None)  # the fused op alone against e3nn
        module, loaded = equiforce.load_model(path)
        assert metadata["fused_convolution"] is fused and loaded["fused_convolution"] is fused
        layers = [getattr(module.network.layers, str(k)) for k in range(model.config.num_layers)]
        assert len(layers) == 2 and all(bool(layer.fused_convolution) is fused for layer in layers)
        file_energy, file_forces = energy_and_forces(module, positions, species, cell)
        torch.testing.assert_close(file_energy, energy, rtol=1e-10, atol=0.0)
        torch.testing.assert_close(file_forces, forces, rtol=1e-10, atol=1e-10 * float(forces.abs().max()))
    assert not any(layer.fused_convolution for layer in model.network.layers)  # the trained model is untouched
