"""Property heads: small modules that read the trunk's final per-atom features and return one property per structure.

Every head has the same call, ``head(features [N, F], positions [N, 3] Å, batch [N], num_graphs) -> [B, ...]``,
so that :class:`~equiforce.nn.PropertyModel` can hold any set of them in a ``ModuleDict`` and TorchScript can
loop over it. A head's symmetry comes from the irreps it reads and writes:

- :class:`DipoleHead`: per atom a charge (0e) and a dipole (1o); μ [3] in e·Å; μ -> R μ (a polar vector).
- :class:`PolarizabilityHead`: per atom 0e + 2e; α [3, 3] in Å³, symmetric; α -> R α Rᵀ.
- :class:`PseudoscalarHead`: per atom 0o; s [] (dimensionless); s -> det(R) s.

(R any rotation or improper rotation of the structure's coordinates.)
"""
from typing import List

import torch
from e3nn import o3
from torch import Tensor, nn

#: Channels per irrep of the small projection whose tensor product with itself feeds the polarizability head.
POLARIZABILITY_CHANNELS = 4


def _per_structure_sum(values: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """values [N, ...] summed over the atoms of each structure -> [num_graphs, ...]."""
    shape = [num_graphs] + list(values.shape[1:])
    return torch.zeros(shape, dtype=values.dtype, device=values.device).index_add(0, batch, values)


def _vector_irrep(irreps: o3.Irreps) -> o3.Irrep:
    """1o when the features are O(3) irreps (a polar vector); 1e in an SO(3)-only model, where parity is absent."""
    parities = {ir.p for _, ir in irreps}
    return o3.Irrep("1e") if parities == {1} else o3.Irrep("1o")


def symmetric_change_of_basis() -> Tensor:
    """[6, 3, 3] float64 map from 0e + 2e coordinates to symmetric 3 × 3 Cartesian tensors (x, y, z axes).

    Row k is the Clebsch-Gordan slice 1o ⊗ 1o -> l (``o3.wigner_3j(1, 1, l)``), scaled to unit Frobenius norm:
    the basis of ``o3.ReducedTensorProducts("ij=ji", i="1o")`` (up to signs), built here in float64 because
    that class rounds it to the default dtype (which would cost float64 models their exact equivariance).
    """
    blocks = [o3.wigner_3j(1, 1, l, dtype=torch.float64).permute(2, 0, 1) for l in (0, 2)]  # [2l+1, 3, 3]
    basis = torch.cat(blocks)  # [6, 3, 3]
    return basis / basis.flatten(1).norm(dim=1)[:, None, None]


class DipoleHead(nn.Module):
    """Molecular dipole μ = Σ_i q_i r_i + Σ_i d_i in e·Å (positions in Å, charges in e).

    The per-atom charges q_i (0e) are shifted so that they sum to zero in each structure (neutral molecules:
    total charge 0), which makes μ independent of the origin. The per-atom dipoles d_i (1o) come from the vector
    channels of the features; a model without them (``lmax=0``) has charges only. Only meaningful for
    non-periodic structures (:meth:`PropertyModel.properties` refuses a cell).
    """

    def __init__(self, irreps_features: o3.Irreps) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_features)
        vector = _vector_irrep(self.irreps_in)
        self.has_atomic_dipoles = any(ir == vector for _, ir in self.irreps_in)
        self.irreps_out = o3.Irreps([(1, (0, 1)), (1, vector)]) if self.has_atomic_dipoles else o3.Irreps("1x0e")
        self.linear = o3.Linear(self.irreps_in, self.irreps_out)

    def forward(self, features: Tensor, positions: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """features [N, F], positions [N, 3] Å, batch [N] -> dipoles [num_graphs, 3] e·Å."""
        out = self.linear(features)  # [N, 1 or 4]
        charges = out[:, 0]  # [N] e
        ones = torch.ones_like(charges)
        counts = _per_structure_sum(ones, batch, num_graphs)  # [B]
        total = _per_structure_sum(charges, batch, num_graphs)  # [B] e
        charges = charges - (total / counts).index_select(0, batch)  # [N] e, sum 0 per structure
        atomic = charges.unsqueeze(1) * positions  # [N, 3] e·Å
        if self.has_atomic_dipoles:
            atomic = atomic + out[:, 1:4]
        return _per_structure_sum(atomic, batch, num_graphs)  # [B, 3]


class PolarizabilityHead(nn.Module):
    """Molecular polarizability α (symmetric 3 × 3, Å³) as a sum of per-atom 0e + 2e outputs.

    Per atom: a linear map of the features to 0e + 2e (with a bias on 0e) plus the tensor product of a small
    projection of the features with itself, so that models whose features stop at l = 1 still get an anisotropic part
    (1 ⊗ 1 contains 2). The 6 irreps coordinates are mapped to the symmetric Cartesian tensor with
    :func:`symmetric_change_of_basis`.
    """

    def __init__(self, irreps_features: o3.Irreps) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_features)
        self.irreps_out = o3.Irreps("1x0e+1x2e")
        reachable = o3.Irreps([(1, ir) for _, ir in self.irreps_out if ir in self.irreps_in])
        self.linear = o3.Linear(self.irreps_in, reachable, biases=True)
        self.linear_width = reachable.dim  # 6 (0e + 2e) or 1 (0e only, features without l = 2)
        small = o3.Irreps(
            [(POLARIZABILITY_CHANNELS, ir) for _, ir in self.irreps_in.simplify() if ir.l <= 2]
        ).simplify()
        self.project = o3.Linear(self.irreps_in, small)
        self.square = o3.FullyConnectedTensorProduct(small, small, self.irreps_out)  # x ⊗ x, scriptable
        self.register_buffer("change_of_basis", symmetric_change_of_basis())  # [6, 3, 3], float64

    def forward(self, features: Tensor, positions: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """features [N, F], positions [N, 3] (unused), batch [N] -> polarizabilities [num_graphs, 3, 3] Å³."""
        small = self.project(features)  # [N, small.dim]
        atomic = self.square(small, small)  # [N, 6]
        linear = self.linear(features)  # [N, 1 or 6]
        width = self.linear_width
        atomic = torch.cat([atomic[:, :width] + linear, atomic[:, width:]], dim=1)  # [N, 6]
        summed = _per_structure_sum(atomic, batch, num_graphs)  # [B, 6]
        return torch.einsum("bk,kij->bij", summed, self.change_of_basis.to(summed.dtype))  # [B, 3, 3]


class PseudoscalarHead(nn.Module):
    """A pseudoscalar per structure, s = Σ_i s_i with s_i a linear map of the odd scalar (0o) channels.

    s changes sign under any improper operation (a reflection of the structure gives -s): it can tell a chiral
    molecule from its mirror image, which no energy-like (0e) readout can. The features must contain 0o channels:
    ``parity=True`` with ``hidden_parity="both"``, and enough layers for 0o to be reached (3 from the one-hot
    embedding: 0e -> 1o -> 1e -> 0o). Dimensionless unless trained on a labelled quantity.
    """

    def __init__(self, irreps_features: o3.Irreps) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_features)
        if o3.Irrep("0o") not in self.irreps_in:
            raise ValueError(
                f"the pseudoscalar head needs odd scalar (0o) features, but the last interaction layer gives "
                f"{self.irreps_in}: use parity=True, hidden_parity='both' and num_layers >= 3"
            )
        self.irreps_out = o3.Irreps("1x0o")
        self.linear = o3.Linear(self.irreps_in, self.irreps_out)

    def forward(self, features: Tensor, positions: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """features [N, F], positions [N, 3] (unused), batch [N] -> pseudoscalars [num_graphs]."""
        return _per_structure_sum(self.linear(features).squeeze(-1), batch, num_graphs)  # [B]


#: Head name (``ModelConfig.heads``) -> module class.
HEADS = {"dipole": DipoleHead, "polarizability": PolarizabilityHead, "pseudoscalar": PseudoscalarHead}


def build_heads(names: List[str], irreps_features: o3.Irreps) -> nn.ModuleDict:
    """``ModuleDict`` of the named heads (in the order given), each reading features of ``irreps_features``."""
    unknown = [name for name in names if name not in HEADS]
    if unknown:
        raise ValueError(f"unknown property heads {unknown}; choose from {sorted(HEADS)}")
    return nn.ModuleDict({name: HEADS[name](irreps_features) for name in names})
