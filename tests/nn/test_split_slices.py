"""The tensor-product split pass changes how gradients are assembled, never a value."""
import pytest
import torch
from e3nn import o3

from equiforce.nn import EquivariantPotential, ModelConfig
from equiforce.nn._interaction import _convolution_paths
from equiforce.nn import e3nn_slices, split_tensor_product_slices


def _tensor_product(irreps_in: str, lmax: int) -> o3.TensorProduct:
    irreps_in = o3.Irreps(irreps_in)
    irreps_sh = o3.Irreps.spherical_harmonics(lmax)
    target = o3.Irreps("8x0e+8x0o+8x1o+8x1e+8x2e+8x2o")
    irreps_mid, instructions = _convolution_paths(irreps_in, irreps_sh, target)
    return o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, instructions, shared_weights=False,
                            internal_weights=False)


@pytest.mark.parametrize("irreps_in, lmax", [("8x0e", 1), ("8x0e+8x1o", 1), ("8x0e+8x1o+8x2e", 2)])
def test_split_tensor_product_equals_e3nn_to_the_bit(irreps_in, lmax):
    torch.manual_seed(0)
    with e3nn_slices():
        reference = _tensor_product(irreps_in, lmax)
    split = _tensor_product(irreps_in, lmax)  # the pass runs in Interaction only: apply it here by hand
    assert split_tensor_product_slices(split) >= 2  # weights and at least one other input rewritten
    edges = 57
    inputs = [torch.randn(edges, reference.irreps_in1.dim, dtype=torch.float64),
              torch.randn(edges, reference.irreps_in2.dim, dtype=torch.float64),
              torch.randn(edges, reference.weight_numel, dtype=torch.float64)]
    outputs = []
    for module in (reference.double(), split.double()):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        out = module(*leaves)
        grads = torch.autograd.grad((out * torch.arange(out.shape[1], dtype=out.dtype)).sum(), leaves)
        outputs.append([out, *grads])
    for a, b in zip(*outputs):
        assert torch.equal(a, b)


def test_models_built_with_and_without_the_pass_agree_eager_and_scripted():
    from e3nn.util.jit import script

    config = ModelConfig(elements=["H", "O"], cutoff=3.0, lmax=1, num_features=8, num_layers=2)
    torch.manual_seed(1)
    with e3nn_slices():
        reference = EquivariantPotential(config).double()
    model, to_script = EquivariantPotential(config).double(), EquivariantPotential(config).double()
    model.load_state_dict(reference.state_dict())
    to_script.load_state_dict(reference.state_dict())
    positions = torch.rand(9, 3, dtype=torch.float64) * 4.0
    species = torch.tensor([1, 0, 0] * 3)
    cell = torch.eye(3, dtype=torch.float64) * 4.0
    results = []
    for module in (reference, model, script(to_script)):
        x = positions.clone().requires_grad_(True)
        energy = module(x, species, cell)
        results.append((energy.detach(), torch.autograd.grad(energy, x)[0]))
    for energy, forces in results[1:]:
        assert torch.equal(energy, results[0][0]) and torch.equal(forces, results[0][1])
