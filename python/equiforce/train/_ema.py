"""Exponential moving average of model weights, kept in a second model of the same architecture."""
from typing import Any, Dict

import torch
from torch import nn


class ExponentialMovingAverage:
    """Averaged copy of a model's parameters; buffers are copied as they are.

    After update ``n`` the average is ``avg ← d·avg + (1-d)·param`` with ``d = min(decay, (1+n)/(10+n))``, so the
    average follows the weights closely during the first steps.

    Parameters
    ----------
    model
        The model being trained.
    averaged
        A second instance of the same architecture that holds the average (its weights are overwritten).
    decay
        Asymptotic decay per step in [0, 1); 0 makes the average equal to the current weights.
    """

    def __init__(self, model: nn.Module, averaged: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.num_updates = 0
        self.model = averaged
        self.model.load_state_dict(model.state_dict())
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average."""
        self.num_updates += 1
        decay = min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))
        current = dict(model.named_parameters())
        for name, average in self.model.named_parameters():
            average.lerp_(current[name].detach(), 1.0 - decay)
        buffers = dict(model.named_buffers())
        for name, average in self.model.named_buffers():
            average.copy_(buffers[name])

    def state_dict(self) -> Dict[str, Any]:
        """``{"num_updates": int}``; the averaged weights are saved separately as the checkpoint's ``ema_state``."""
        return {"num_updates": self.num_updates}

    def load_state_dict(self, state: Dict[str, Any], weights: Dict[str, torch.Tensor]) -> None:
        """Restore the update counter and the averaged weights."""
        self.num_updates = int(state["num_updates"])
        self.model.load_state_dict(weights)
