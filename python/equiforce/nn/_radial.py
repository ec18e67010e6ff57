"""Radial embedding of edge lengths: Bessel basis times a smooth polynomial cutoff envelope."""
import math

import torch
from torch import Tensor, nn


class PolynomialEnvelope(nn.Module):
    """u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2) for x = r / cutoff < 1, else 0.

    u(1) = u'(1) = u''(1) = 0, so energies and forces vanish continuously at the cutoff.
    """

    def __init__(self, exponent: int = 6) -> None:
        super().__init__()
        self.p = float(exponent)

    def forward(self, x: Tensor) -> Tensor:
        """x: [E] distances divided by the cutoff -> [E] envelope values in [0, 1]."""
        p = self.p
        value = (
            1.0
            - 0.5 * (p + 1.0) * (p + 2.0) * torch.pow(x, p)
            + p * (p + 2.0) * torch.pow(x, p + 1.0)
            - 0.5 * p * (p + 1.0) * torch.pow(x, p + 2.0)
        )
        return torch.where(x < 1.0, value, torch.zeros_like(x))


class RadialEmbedding(nn.Module):
    """Edge length r (Å) -> [E, num_basis] features: sqrt(2/rc) sin(n π r / rc) / r · u(r / rc)."""

    def __init__(self, cutoff: float, num_basis: int = 8, envelope_exponent: int = 6) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.prefactor = math.sqrt(2.0 / cutoff)
        self.register_buffer("frequencies", torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi)
        self.envelope = PolynomialEnvelope(envelope_exponent)

    def forward(self, lengths: Tensor) -> Tensor:
        """lengths: [E] in Å -> [E, num_basis]."""
        x = lengths / self.cutoff
        bessel = self.prefactor * torch.sin(self.frequencies * x.unsqueeze(-1)) / lengths.unsqueeze(-1)
        return bessel * self.envelope(x).unsqueeze(-1)
