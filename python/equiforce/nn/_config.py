"""Hyperparameters of an :class:`~equiforce.nn.EquivariantPotential`, in one small dataclass."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ase.data import atomic_numbers as _ATOMIC_NUMBERS

HIDDEN_PARITY_CHOICES = ("natural", "both")
#: Property heads that :class:`~equiforce.nn.PropertyModel` can add to the trunk (see ``equiforce.nn._heads``).
HEAD_CHOICES = ("dipole", "polarizability", "pseudoscalar")


@dataclass
class ModelConfig:
    """Architecture of an equivariant potential.

    Parameters
    ----------
    elements
        Chemical symbols the model knows, e.g. ``["H", "O"]``; species index ``k`` means ``elements[k]``.
    cutoff
        Radial cutoff in Å. Energy and forces go smoothly to zero there.
    lmax
        Highest angular momentum of the spherical harmonics and hidden features (0–3). ``lmax=0`` is a
        distance-only (invariant) message-passing model.
    parity
        ``True``: features carry O(3) irreps, so the energy is invariant under reflections too.
        ``False``: SO(3) only (rotations); the model can tell a structure from its mirror image.
    hidden_parity
        With ``parity=True``: ``"natural"`` keeps features of parity (-1)^l only (cheaper, enough for an
        energy); ``"both"`` keeps even and odd features for every l (needed for pseudoscalar outputs).
    num_features
        Channels per irrep in the hidden layers.
    num_layers
        Number of interaction (message-passing) blocks.
    num_basis
        Number of Bessel radial basis functions.
    envelope_exponent
        Exponent p of the polynomial cutoff envelope (smooth to second derivative at the cutoff).
    radial_hidden, radial_layers
        Width and depth of the MLP that maps the radial basis to tensor-product weights.
    avg_num_neighbors
        Normalisation of the summed messages (typical neighbour count within the cutoff).
    atomic_energy_shifts
        Per-element energy shift in eV (one per element, default 0), added to each atomic energy.
    atomic_energy_scales
        Per-element energy scale in eV (one per element, default 1), multiplying each atomic output.
    repulsion_radii, repulsion_strength
        Optional short-range wall (see ``equiforce.nn._repulsion``): onset radius in Å per element pair
        (``{"H-H": 1.35, ...}``) and its strength A in eV; off when ``repulsion_strength`` is 0 (the default).
    heads
        Property heads on the shared trunk, any of ``"dipole"`` (e·Å), ``"polarizability"`` (Å³) and
        ``"pseudoscalar"`` (needs odd-parity hidden channels: ``parity=True, hidden_parity="both"``). Default
        empty: an energy-only model. Used by :class:`~equiforce.nn.PropertyModel`; the energy path ignores it.
    """

    elements: List[str]
    cutoff: float = 5.0
    lmax: int = 1
    parity: bool = True
    hidden_parity: str = "natural"
    num_features: int = 32
    num_layers: int = 3
    num_basis: int = 8
    envelope_exponent: int = 6
    radial_hidden: int = 64
    radial_layers: int = 2
    avg_num_neighbors: float = 20.0
    atomic_energy_shifts: Optional[List[float]] = None
    atomic_energy_scales: Optional[List[float]] = None
    heads: List[str] = dataclasses.field(default_factory=list)
    repulsion_radii: Dict[str, float] = dataclasses.field(default_factory=dict)
    repulsion_strength: float = 0.0

    def __post_init__(self) -> None:
        self.elements = list(self.elements)
        if not self.elements:
            raise ValueError("ModelConfig.elements is empty: give the chemical symbols the model should know")
        unknown = [e for e in self.elements if e not in _ATOMIC_NUMBERS or e == "X"]
        if unknown:
            raise ValueError(f"ModelConfig.elements: {unknown} are not chemical symbols")
        if len(set(self.elements)) != len(self.elements):
            raise ValueError(f"ModelConfig.elements has duplicates: {self.elements}")
        if not self.cutoff > 0:
            raise ValueError(f"ModelConfig.cutoff must be positive (Å), got {self.cutoff}")
        if not 0 <= self.lmax <= 3:
            raise ValueError(f"ModelConfig.lmax must be between 0 and 3, got {self.lmax}")
        if self.hidden_parity not in HIDDEN_PARITY_CHOICES:
            raise ValueError(f"ModelConfig.hidden_parity must be one of {HIDDEN_PARITY_CHOICES}")
        for name in ("num_features", "num_layers", "num_basis", "radial_hidden", "envelope_exponent"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.avg_num_neighbors <= 0:
            raise ValueError("ModelConfig.avg_num_neighbors must be positive")
        for name, default in (("atomic_energy_shifts", 0.0), ("atomic_energy_scales", 1.0)):
            values = getattr(self, name)
            if values is None:
                setattr(self, name, [default] * len(self.elements))
            elif len(values) != len(self.elements):
                raise ValueError(
                    f"ModelConfig.{name} has {len(values)} values for {len(self.elements)} elements {self.elements}"
                )
            else:
                setattr(self, name, [float(v) for v in values])
        self.heads = [str(h) for h in (self.heads or [])]
        unknown_heads = [h for h in self.heads if h not in HEAD_CHOICES]
        if unknown_heads:
            raise ValueError(f"ModelConfig.heads: unknown heads {unknown_heads}; choose from {HEAD_CHOICES}")
        if len(set(self.heads)) != len(self.heads):
            raise ValueError(f"ModelConfig.heads has duplicates: {self.heads}")
        self.repulsion_radii = {str(k): float(v) for k, v in (self.repulsion_radii or {}).items()}
        self.repulsion_strength = float(self.repulsion_strength)
        for key, radius in self.repulsion_radii.items():
            pair = key.split("-")
            if len(pair) != 2 or any(e not in self.elements for e in pair) or pair != sorted(pair):
                raise ValueError(f"ModelConfig.repulsion_radii: {key!r} is not a pair 'A-B' (sorted) of {self.elements}")
            if not 0 <= radius < self.cutoff:
                raise ValueError(f"ModelConfig.repulsion_radii[{key!r}] = {radius} Å must lie in [0, cutoff)")
        if self.repulsion_strength < 0:
            raise ValueError(f"ModelConfig.repulsion_strength must be >= 0 eV, got {self.repulsion_strength}")

    @property
    def atomic_numbers(self) -> List[int]:
        """Atomic numbers of :attr:`elements`, in order."""
        return [_ATOMIC_NUMBERS[e] for e in self.elements]

    def to_dict(self) -> Dict[str, Any]:
        """Plain-Python dictionary (JSON- and ``weights_only``-safe).

        ``heads`` is written only when non-empty, so the checkpoints and exported files of energy-only models
        are exactly what they were before heads existed (and :meth:`from_dict` reads dictionaries without it).
        """
        data = dataclasses.asdict(self)
        if not data["heads"]:
            del data["heads"]
        if not data["repulsion_strength"]:  # likewise for models without a wall
            del data["repulsion_strength"], data["repulsion_radii"]
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise a clear error."""
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise ValueError(f"unknown ModelConfig fields {extra}; known fields are {sorted(known)}")
        return cls(**data)
