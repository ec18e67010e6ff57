"""The native SiLU (torch.ops.equiforce.silu) is ATen's SiLU, with eager autograd inside TorchScript."""
import torch

import equiforce
from conftest import energy_and_forces, make_model, water_tensors


def test_native_silu_equals_torch_silu_values_and_derivatives():
    x = torch.linspace(-12.0, 12.0, 97, dtype=torch.float64).requires_grad_(True)
    y = torch.ops.equiforce.silu(x)
    assert torch.equal(y, torch.nn.functional.silu(x))
    for create_graph in (False, True):
        (first,) = torch.autograd.grad(torch.ops.equiforce.silu(x).sum(), x, create_graph=create_graph)
        (expected,) = torch.autograd.grad(torch.nn.functional.silu(x).sum(), x, create_graph=create_graph)
        assert torch.equal(first, expected)  # the fused kernel for forces, eager's composite form for training
    (second,) = torch.autograd.grad(first.sum(), x)
    (expected_second,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(second, expected_second, rtol=1e-14, atol=1e-14)
    with torch.inference_mode():
        assert torch.equal(torch.ops.equiforce.silu(x.detach()), torch.nn.functional.silu(x.detach()))


def test_exported_models_call_the_native_silu_and_equal_the_eager_model(tmp_path):
    model = make_model(torch.float64, seed=8, lmax=1)
    path = str(tmp_path / "model.pt")
    equiforce.export_model(model, path, dtype="float64", fused_convolution=False, radial_table_knots=None)
    module, _ = equiforce.load_model(path)
    radial = getattr(module.network.layers, "1").radial
    assert "equiforce::silu" in str(radial.graph) + "".join(str(m.graph) for m in radial.modules())
    positions, species, cell = water_tensors(8, seed=4)
    energy, forces = energy_and_forces(model, positions, species, cell)
    file_energy, file_forces = energy_and_forces(module, positions, species, cell)
    torch.testing.assert_close(file_energy, energy, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(file_forces, forces, rtol=1e-10, atol=1e-10 * float(forces.abs().max()))
