"""Model building blocks and the equivariant potential."""
from ._config import ModelConfig
from ._interaction import Interaction
from ._model import EquivariantPotential, hidden_irreps, spherical_harmonics_irreps
from ._radial import PolynomialEnvelope, RadialEmbedding

__all__ = [
    "ModelConfig",
    "EquivariantPotential",
    "Interaction",
    "RadialEmbedding",
    "PolynomialEnvelope",
    "hidden_irreps",
    "spherical_harmonics_irreps",
]
