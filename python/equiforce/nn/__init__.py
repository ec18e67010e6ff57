"""Model building blocks and the equivariant potential."""
from ._config import ModelConfig
from ._interaction import Interaction
from ._model import AtomicEnergies, EquivariantPotential, hidden_irreps, spherical_harmonics_irreps
from ._radial import PolynomialEnvelope, RadialEmbedding

__all__ = [
    "ModelConfig",
    "EquivariantPotential",
    "AtomicEnergies",
    "Interaction",
    "RadialEmbedding",
    "PolynomialEnvelope",
    "hidden_irreps",
    "spherical_harmonics_irreps",
]
