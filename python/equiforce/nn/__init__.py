"""Model building blocks, the equivariant potential and its property heads."""
from ._config import HEAD_CHOICES, ModelConfig
from ._heads import HEADS, DipoleHead, PolarizabilityHead, PseudoscalarHead, build_heads
from ._fused_convolution import NotFusable, convolution_tables
from ._interaction import Interaction, set_fused_convolution
from ._model import AtomicEnergies, EquivariantPotential, hidden_irreps, spherical_harmonics_irreps
from ._property_model import PropertyModel, build_model
from ._radial import PolynomialEnvelope, RadialEmbedding
from ._radial_table import DEFAULT_KNOTS, copy_radial_tables, knot_spacing, set_radial_table
from ._repulsion import PairRepulsion, pair_key, repulsion_radii_from_structures
from ._self_interaction_matrix import copy_self_interaction_matrices, set_self_interaction_matrix
from ._split_slices import e3nn_slices, split_tensor_product_slices

__all__ = [
    "ModelConfig",
    "EquivariantPotential",
    "PropertyModel",
    "build_model",
    "HEAD_CHOICES",
    "HEADS",
    "DipoleHead",
    "PolarizabilityHead",
    "PseudoscalarHead",
    "build_heads",
    "AtomicEnergies",
    "Interaction",
    "set_fused_convolution",
    "convolution_tables",
    "NotFusable",
    "set_radial_table",
    "copy_radial_tables",
    "knot_spacing",
    "DEFAULT_KNOTS",
    "set_self_interaction_matrix",
    "copy_self_interaction_matrices",
    "split_tensor_product_slices",
    "e3nn_slices",
    "PairRepulsion",
    "pair_key",
    "repulsion_radii_from_structures",
    "RadialEmbedding",
    "PolynomialEnvelope",
    "hidden_irreps",
    "spherical_harmonics_irreps",
]
