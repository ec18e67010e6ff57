"""The traceable copies of the native ops (equiforce.export._fake_ops): same values and first derivatives as
the native ops, shapes from their fake kernels, and a trace that records them (no compiler needed: fast)."""
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import equiforce
from equiforce.export._aoti import EnergyAndForces, eager_network, sample_graph
from equiforce.export._fake_ops import traceable_native_ops
from conftest import make_model, water_tensors


def _deployed(seed=5):
    model = make_model(torch.float64, seed=seed, lmax=2, num_layers=2, num_features=4, radial_hidden=8).eval()
    network = eager_network(model.config, model.state_dict(), torch.float64)
    equiforce.nn.set_fused_convolution(network, True)
    equiforce.nn.set_radial_table(network)
    equiforce.nn.set_self_interaction_matrix(network, True)
    return EnergyAndForces(network), model.config


def test_traceable_ops_give_the_native_energy_and_forces():
    graph, config = _deployed()
    positions, species, cell = water_tensors(8, seed=2)
    edge_index, _, shifts = torch.ops.equiforce.neighbor_list(positions, config.cutoff, cell, True)
    offsets = shifts @ cell  # [E, 3] Å
    native_energy, native_forces = graph(positions, species, edge_index, offsets)
    with traceable_native_ops():
        assert torch.ops.equiforce.tp_convolution is torch.ops.equiforce_export.tp_convolution
        energy, forces = graph(positions, species, edge_index, offsets)
    assert torch.ops.equiforce.tp_convolution is not torch.ops.equiforce_export.tp_convolution  # restored
    torch.testing.assert_close(energy, native_energy, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(forces, native_forces, rtol=1e-12, atol=1e-12)
    assert float(forces.abs().max()) > 1e-3


def test_a_symbolic_trace_records_the_ops_and_their_backward_ops_and_runs_other_sizes():
    graph, config = _deployed(seed=6)
    with traceable_native_ops():
        joint = make_fx(graph, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*sample_graph(config,
                                                                                                   torch.float64))
    recorded = {str(node.target) for node in joint.graph.nodes if "equiforce" in str(node.target)}
    assert recorded == {f"equiforce_export.{name}.default" for name in
                        ("tp_convolution", "tp_convolution_backward", "radial_spline", "radial_spline_backward")}
    positions, species, cell = water_tensors(12, seed=3)  # another N and E than the trace's sample
    edge_index, _, shifts = torch.ops.equiforce.neighbor_list(positions, config.cutoff, cell, True)
    energy, forces = joint(positions, species, edge_index, shifts @ cell)
    expected_energy, expected_forces = graph(positions, species, edge_index, shifts @ cell)
    torch.testing.assert_close(energy, expected_energy, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(forces, expected_forces, rtol=1e-12, atol=1e-12)

