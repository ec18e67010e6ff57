"""The potential with property heads on its shared trunk: energy (and forces) plus dipole, polarizability, ..."""
from typing import Dict, Optional

import torch
from torch import Tensor

from ..neighbors import edge_vectors, neighbor_list
from ._config import ModelConfig
from ._heads import build_heads
from ._model import EquivariantPotential


class PropertyModel(EquivariantPotential):
    """:class:`EquivariantPotential` plus the property heads named in ``config.heads``.

    The energy path is inherited unchanged (``forward``, ``batch_energy`` and the parameters under ``network.*``
    are those of an energy-only model, so its weights load into one); the heads live under ``heads.<name>.*``
    and read ``network.features``, the final per-atom features of the trunk (irreps ``irreps_features``).

    Outputs (see :mod:`equiforce.nn._heads`): ``"energy"`` [B] eV, ``"dipole"`` [B, 3] e·Å (non-periodic
    structures only), ``"polarizability"`` [B, 3, 3] Å³, ``"pseudoscalar"`` [B].
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if not config.heads:
            raise ValueError("PropertyModel needs at least one head in ModelConfig.heads; use EquivariantPotential")
        self.irreps_features = self.network.irreps_features
        self.heads = build_heads(list(config.heads), self.irreps_features)
        self.has_dipole = "dipole" in config.heads

    @torch.jit.export
    def batch_properties(
        self,
        positions: Tensor,
        species: Tensor,
        edge_index: Tensor,
        edge_offsets: Tensor,
        batch: Tensor,
        num_graphs: int,
    ) -> Dict[str, Tensor]:
        """Energies and head outputs of a batch, from one pass through the trunk.

        Inputs as :meth:`batch_energy` (positions [N, 3] Å, ..., batch [N]). Returns ``{"energy": [B] eV, name:
        [B, ...]}``; a dipole computed for a periodic frame has no meaning (training masks such frames out).
        """
        vectors = positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0]) + edge_offsets
        return self._outputs(positions, species, edge_index, vectors, batch, num_graphs)

    def _outputs(
        self, positions: Tensor, species: Tensor, edge_index: Tensor, vectors: Tensor, batch: Tensor, num_graphs: int
    ) -> Dict[str, Tensor]:
        """Trunk once, then the energy readout and every head: vectors [E, 3] Å -> {name: [B, ...]}."""
        features = self.network.features(positions, species, edge_index, vectors)  # [N, F]
        atomic = self.network.energies(features, species)  # [N] eV
        atomic = self.network.with_wall(atomic, species, edge_index, vectors)
        outputs: Dict[str, Tensor] = {
            "energy": torch.zeros(num_graphs, dtype=atomic.dtype, device=atomic.device).index_add(0, batch, atomic)
        }
        for name, head in self.heads.items():
            outputs[name] = head(features, positions, batch, num_graphs)
        return outputs

    @torch.jit.export
    def properties(self, positions: Tensor, species: Tensor, cell: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Energy and head outputs of one structure (positions [N, 3] Å, species [N], cell [3, 3] Å or None).

        Returns ``{"energy": [] eV, "dipole": [3] e·Å, "polarizability": [3, 3] Å³, "pseudoscalar": []}`` for
        the configured heads. A dipole is refused for a periodic cell (it depends on the choice of images).
        """
        if cell is not None and self.has_dipole:
            raise ValueError("the dipole head is for non-periodic structures: call properties(..., cell=None)")
        if self.native_neighbors:
            edge_index, vectors, _ = torch.ops.equiforce.neighbor_list(positions, self.cutoff, cell, False)
        else:
            edge_index, shifts = neighbor_list(positions, self.cutoff, cell)
            vectors = edge_vectors(positions, edge_index, shifts, cell)  # [E, 3] Å
        batch = torch.zeros(positions.shape[0], dtype=torch.long, device=positions.device)  # [N]
        outputs = self._outputs(positions, species, edge_index, vectors, batch, 1)
        return {name: value[0] for name, value in outputs.items()}


def build_model(config: ModelConfig) -> EquivariantPotential:
    """:class:`PropertyModel` when ``config.heads`` names any head, else the energy-only :class:`EquivariantPotential`."""
    return PropertyModel(config) if config.heads else EquivariantPotential(config)
