"""The equivariant potential: species embedding -> interaction blocks -> per-atom energies -> total energy."""
from typing import Optional

import torch
from e3nn import o3
from torch import Tensor, nn

from ..ops import padded_neighbor_list  # (importing ops registers torch.ops.equiforce.*)
from ..neighbors import edge_vectors, neighbor_list
from ._config import ModelConfig
from ._interaction import Interaction
from ._radial import RadialEmbedding
from ._repulsion import PairRepulsion


def hidden_irreps(config: ModelConfig) -> o3.Irreps:
    """Irreps of the hidden features implied by ``lmax``, ``parity`` and ``hidden_parity``."""
    c = config.num_features
    terms = []
    for l in range(config.lmax + 1):
        if not config.parity:
            terms.append((c, (l, 1)))
        elif config.hidden_parity == "both":
            terms += [(c, (l, 1)), (c, (l, -1))]
        else:
            terms.append((c, (l, (-1) ** l)))
    return o3.Irreps(terms).sort().irreps.simplify()


def spherical_harmonics_irreps(config: ModelConfig) -> o3.Irreps:
    """Y_0..Y_lmax; polar (p = (-1)^l) with parity, all even (rotations only) without."""
    return o3.Irreps([(1, (l, (-1) ** l if config.parity else 1)) for l in range(config.lmax + 1)])


class AtomicEnergies(nn.Module):
    """Graph -> atomic energies: species embedding, interaction blocks, readout, per-element scale and shift.

    Shared by the entry points of :class:`EquivariantPotential` (``forward`` for one structure, with a dynamic
    or a fixed-capacity neighbour list, and ``batch_energy`` for training batches). ``forward`` is
    :meth:`features` (the shared trunk) followed by :meth:`energies` (the readout); property heads
    (:class:`~equiforce.nn.PropertyModel`) read the same :meth:`features`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        num_species = len(config.elements)
        self.num_species = num_species
        irreps_sh = spherical_harmonics_irreps(config)
        irreps_hidden = hidden_irreps(config)
        self.irreps_hidden = irreps_hidden

        self.embedding = o3.Linear(o3.Irreps(f"{num_species}x0e"), o3.Irreps(f"{config.num_features}x0e"))
        self.spherical_harmonics = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
        self.radial = RadialEmbedding(config.cutoff, config.num_basis, config.envelope_exponent)
        self.num_basis = int(config.num_basis)
        #: True when every block interpolates a radial table (set_radial_table): the basis is then not needed.
        self.tabulated_radial = False
        layers = []
        irreps = o3.Irreps(f"{config.num_features}x0e")
        for _ in range(config.num_layers):
            layer = Interaction(
                irreps,
                irreps_sh,
                irreps_hidden,
                num_species,
                config.num_basis,
                config.radial_hidden,
                config.radial_layers,
                config.avg_num_neighbors,
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        #: Irreps of the final hidden features (the last interaction block's output), see :meth:`features`.
        self.irreps_features = irreps
        self.readout = o3.Linear(irreps, o3.Irreps("1x0e"))
        self.register_buffer("energy_shift", torch.tensor(config.atomic_energy_shifts))  # [S] eV
        self.register_buffer("energy_scale", torch.tensor(config.atomic_energy_scales))  # [S] eV
        self.use_repulsion = config.repulsion_strength > 0
        self.repulsion = PairRepulsion(config.elements, config.repulsion_radii, config.repulsion_strength)

    def forward(self, positions: Tensor, species: Tensor, edge_index: Tensor, vectors: Tensor) -> Tensor:
        """positions [N, 3] Å (only its size and dtype are used), species [N] long, edge_index [2, E],
        vectors [E, 3] Å from centre to neighbour -> [N] atomic energies in eV."""
        atomic = self.energies(self.features(positions, species, edge_index, vectors), species)
        return self.with_wall(atomic, species, edge_index, vectors)

    @torch.jit.export
    def with_wall(self, atomic: Tensor, species: Tensor, edge_index: Tensor, vectors: Tensor) -> Tensor:
        """atomic [N] eV plus the short-range wall's pair energies (unchanged when the wall is off)."""
        if self.use_repulsion:
            return atomic + self.repulsion(species, edge_index, torch.linalg.norm(vectors, dim=1))
        return atomic

    @torch.jit.export
    def features(self, positions: Tensor, species: Tensor, edge_index: Tensor, vectors: Tensor) -> Tensor:
        """The trunk: same inputs as :meth:`forward` -> [N, irreps_features.dim] final hidden features
        (dimensionless), the input of the energy readout and of any property head."""
        species_onehot = torch.nn.functional.one_hot(species, self.num_species).to(positions.dtype)  # [N, S]
        lengths = torch.linalg.norm(vectors, dim=1)  # [E]
        edge_sh = self.spherical_harmonics(vectors)  # [E, sh.dim]
        # Blocks interpolating radial tables read the lengths; the Bessel basis is made only if one needs it.
        if self.tabulated_radial and not lengths.is_cuda and not self.training:
            edge_radial = torch.zeros((0, self.num_basis), dtype=lengths.dtype, device=lengths.device)
        else:
            edge_radial = self.radial(lengths)  # [E, num_basis]
        features = self.embedding(species_onehot)  # [N, C]
        for layer in self.layers:
            features = layer(features, species_onehot, edge_index, edge_sh, edge_radial, lengths)
        return features

    @torch.jit.export
    def energies(self, features: Tensor, species: Tensor) -> Tensor:
        """The energy readout: features [N, irreps_features.dim], species [N] -> [N] atomic energies in eV."""
        raw = self.readout(features).squeeze(-1)  # [N]
        return raw * self.energy_scale.index_select(0, species) + self.energy_shift.index_select(0, species)


class EquivariantPotential(nn.Module):
    """E(3)-equivariant message-passing potential (NequIP class) built from e3nn.

    Units: positions and cell in Å, energies in eV, forces (by autograd) in eV/Å.
    Species are indices into ``config.elements`` (not atomic numbers).

    The energy is a sum of atomic energies E_i = scale[s_i] · ε_i + shift[s_i] (``network``), so it is invariant
    under permutations, translations, rotations and (with ``parity=True``) reflections, and forces are exactly
    -∇E.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.cutoff = float(config.cutoff)
        self.network = AtomicEnergies(config)
        self.irreps_hidden = self.network.irreps_hidden
        self.register_buffer("atomic_numbers", torch.tensor(config.atomic_numbers, dtype=torch.long))  # [S]
        #: True: the native O(N) op (torch.ops.equiforce); False: the pure-PyTorch reference neighbour list.
        self.native_neighbors = True

    @torch.jit.export
    def batch_energy(
        self,
        positions: Tensor,
        species: Tensor,
        edge_index: Tensor,
        edge_offsets: Tensor,
        batch: Tensor,
        num_graphs: int,
    ) -> Tensor:
        """Energies of a batch of structures with precomputed neighbours.

        positions [N, 3] Å, species [N], edge_index [2, E], edge_offsets [E, 3] Å (shifts · cell, treated as
        constant), batch [N] structure index of each atom -> [num_graphs] energies in eV.
        """
        vectors = positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0]) + edge_offsets
        atomic = self.network(positions, species, edge_index, vectors)
        return torch.zeros(num_graphs, dtype=atomic.dtype, device=atomic.device).index_add(0, batch, atomic)

    def forward(self, positions: Tensor, species: Tensor, cell: Optional[Tensor] = None, max_pairs: int = 0) -> Tensor:
        """Energy (eV, 0-dim) of one structure: positions [N, 3] Å, species [N], cell [3, 3] Å rows or None.

        ``max_pairs > 0`` selects a fixed-capacity neighbour list of that many ordered pairs: static shapes and
        no host synchronisation (capturable in a CUDA graph). Padding edges are placed beyond the cutoff, where
        they contribute exactly nothing; if the true list is longer the energy is NaN, never a silently
        truncated sum.
        """
        if max_pairs > 0:
            edge_index, vectors, overflow = padded_neighbor_list(positions, self.cutoff, max_pairs, cell,
                                                                 2.0 * self.cutoff)
            energy = self.network(positions, species, edge_index, vectors).sum()
            return torch.where(overflow, torch.full_like(energy, float("nan")), energy)
        if self.native_neighbors:
            edge_index, vectors, _ = torch.ops.equiforce.neighbor_list(positions, self.cutoff, cell, False)
        else:
            edge_index, shifts = neighbor_list(positions, self.cutoff, cell)
            vectors = edge_vectors(positions, edge_index, shifts, cell)
        return self.network(positions, species, edge_index, vectors).sum()
