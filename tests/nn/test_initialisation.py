"""Symmetry breaking at initialisation: identical channels stay identical; the default draw breaks that."""
import torch

from conftest import make_model, water_tensors


def _train_a_few_steps(model, steps=3):
    positions, species, cell = water_tensors(4, seed=1)
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        x = positions.clone().requires_grad_(True)
        energy = model(x, species, cell)
        (forces,) = torch.autograd.grad(-energy, x, create_graph=True)
        loss = energy**2 + (forces**2).mean()
        loss.backward()
        optimiser.step()


def _embedding_channels(model):
    """The species-embedding weights as [species, channels]: column c feeds hidden channel c."""
    linear = model.network.embedding
    return linear.weight.detach().reshape(linear.irreps_in.dim, linear.irreps_out.dim)


def test_channels_that_start_identical_get_identical_gradients_and_stay_stuck():
    model = make_model(torch.float64, num_features=6)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(0.3)  # every channel of every layer the same
    _train_a_few_steps(model)
    channels = _embedding_channels(model)
    assert not torch.equal(channels, torch.full_like(channels, 0.3))  # the weights did move ...
    assert torch.allclose(channels, channels[:, :1].expand_as(channels), atol=1e-12)  # ... but in lockstep


def test_default_initialisation_breaks_the_channel_symmetry():
    model = make_model(torch.float64, num_features=6)
    _train_a_few_steps(model)
    channels = _embedding_channels(model)
    spread = (channels - channels[:, :1]).abs().max(dim=0).values[1:]  # each channel against channel 0
    assert bool((spread > 1e-3).all())
