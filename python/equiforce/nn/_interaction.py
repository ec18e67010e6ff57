"""One message-passing block: tensor-product convolution, gated nonlinearity, self-interaction."""
from typing import List, Tuple

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import Tensor, nn

from ._fused_convolution import NotFusable, convolution_tables
from ._split_slices import split_tensor_product_slices


def _silu(x: Tensor) -> Tensor:
    """SiLU. Scripted or traced (e3nn traces its activation normalisation), the native op
    (``plugin/activations.cpp``): the same values, but its backward is ATen's fused silu_backward instead of
    TorchScript's five-op symbolic derivative."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return torch.ops.equiforce.silu(x)
    return torch.nn.functional.silu(x)


def _convolution_paths(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
    """'uvu' tensor-product paths from (features ⊗ spherical harmonics) to irreps present in the target."""
    mid: List[Tuple[int, o3.Irrep]] = []
    instructions = []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_edge) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_edge:
                if ir_out in irreps_target:
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir_out))
    irreps_mid = o3.Irreps(mid)
    irreps_sorted, permutation, _ = irreps_mid.sort()
    instructions = [(i, j, permutation[k], mode, train) for i, j, k, mode, train in instructions]
    return irreps_sorted, instructions


class Interaction(nn.Module):
    """NequIP-style interaction block.

    x_i' = Gate( Linear( Σ_j TP(Linear(x_j), Y(r̂_ij); R(|r_ij|)) / sqrt(avg_num_neighbors) )
                 + SelfInteraction(x_i, species_i) )  (+ x_i when the irreps match)

    Irreps are fixed at construction; the output irreps are ``irreps_target`` restricted to what the tensor
    product can reach.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_target: o3.Irreps,
        num_species: int,
        num_basis: int,
        radial_hidden: int,
        radial_layers: int,
        avg_num_neighbors: float,
    ) -> None:
        super().__init__()
        irreps_in = o3.Irreps(irreps_in)
        self.irreps_in = irreps_in
        self.norm = float(avg_num_neighbors) ** -0.5

        irreps_mid, instructions = _convolution_paths(irreps_in, irreps_sh, irreps_target)
        reachable = o3.Irreps([(mul, ir) for mul, ir in irreps_target if ir in irreps_mid])
        scalars = o3.Irreps([(mul, ir) for mul, ir in reachable if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in reachable if ir.l > 0])
        gate_ir = "0e" if "0e" in irreps_mid else "0o"
        gates = o3.Irreps([(mul, gate_ir) for mul, _ in gated])
        self.gate = Gate(
            scalars,
            [_silu if ir.p == 1 else torch.tanh for _, ir in scalars],
            gates,
            [torch.sigmoid] * len(gates),
            gated,
        )
        self.irreps_out = self.gate.irreps_out

        self.linear_up = o3.Linear(irreps_in, irreps_in)
        self.tensor_product = o3.TensorProduct(
            irreps_in, irreps_sh, irreps_mid, instructions, shared_weights=False, internal_weights=False
        )
        split_tensor_product_slices(self.tensor_product)  # same values, one gradient buffer per input
        # The same convolution as one native op (gather, tensor product, scatter; first derivatives only),
        # used when ``fused_convolution`` is switched on (set_fused_convolution; exported models) on the CPU.
        # The tables are plain lists (no buffers: they follow no .to(dtype) and stay out of the state dict).
        try:
            paths, couplings, coefficients = convolution_tables(self.tensor_product)
            self.fusable = True
        except NotFusable:
            paths, couplings, coefficients = [], [], []
            self.fusable = False
        self.fused_paths: List[int] = paths  # 9 per path, see plugin/convolution_cpu.cpp
        self.fused_couplings: List[int] = couplings  # (m1, m2, m3) per coupling
        self.fused_coefficients: List[float] = coefficients  # float64 values measured on e3nn's module
        self.fused_convolution = False
        self.radial = FullyConnectedNet(
            [num_basis] + [radial_hidden] * radial_layers + [self.tensor_product.weight_numel], _silu
        )
        # The radial MLP as a function of the edge length, tabulated at knots k * spacing (Å) with its
        # derivative, [K, 2, weight_numel], and interpolated by torch.ops.equiforce.radial_spline when
        # ``tabulated_radial`` is on (set_radial_table; exported models) on the CPU. Not persistent: it is
        # derived from the MLP's weights, so checkpoints do not carry it (TorchScript files do).
        self.register_buffer("radial_table", torch.zeros(0, 2, self.tensor_product.weight_numel), persistent=False)
        self.radial_table_spacing = 1.0
        self.tabulated_radial = False
        self.linear_down = o3.Linear(irreps_mid.simplify(), self.gate.irreps_in)
        self.self_interaction = o3.FullyConnectedTensorProduct(
            irreps_in, o3.Irreps(f"{num_species}x0e"), self.gate.irreps_in
        )
        # The same self-interaction as one matrix product, [irreps_in.dim, num_species * gate.irreps_in.dim]
        # (column block s: the linear map of species s), used when ``matrix_self_interaction`` is on
        # (set_self_interaction_matrix; exported models). Not persistent: it is measured from the weights.
        self.register_buffer("self_interaction_matrix", torch.zeros(0, 0), persistent=False)
        self.matrix_self_interaction = False
        self.residual = irreps_in == self.irreps_out

    def forward(
        self, features: Tensor, species_onehot: Tensor, edge_index: Tensor, edge_sh: Tensor, edge_radial: Tensor,
        lengths: Tensor,
    ) -> Tensor:
        """features [N, irreps_in.dim], species_onehot [N, S], edge_index [2, E] (centre, neighbour),
        edge_sh [E, irreps_sh.dim], edge_radial [E, num_basis] (unused with a radial table: may be empty),
        lengths [E] Å -> [N, irreps_out.dim]."""
        centre, neighbour = edge_index[0], edge_index[1]
        if self.uses_self_interaction_matrix():
            self_part = self.matrix_self_interaction_of(features, species_onehot, self.self_interaction_matrix)
        else:
            self_part = self.self_interaction(features, species_onehot)  # [N, gate.irreps_in.dim]
        h = self.linear_up(features)
        if self.uses_radial_table(lengths):
            weights = torch.ops.equiforce.radial_spline(lengths, self.radial_table, self.radial_table_spacing)
        else:
            weights = self.radial(edge_radial)  # [E, weight_numel]
        if self.fused_convolution and self.fusable and not features.is_cuda:
            summed = torch.ops.equiforce.tp_convolution(
                h, edge_sh, weights, centre, neighbour, self.fused_paths, self.fused_couplings,
                self.fused_coefficients, features.shape[0])  # [N, mid.dim]
        else:
            messages = self.tensor_product(h.index_select(0, neighbour), edge_sh, weights)  # [E, mid.dim]
            summed = torch.zeros(
                (features.shape[0], messages.shape[1]), dtype=messages.dtype, device=messages.device
            ).index_add(0, centre, messages)
        out = self.gate(self.linear_down(summed * self.norm) + self_part)
        if self.residual:
            out = out + features
        return out

    @torch.jit.export
    def matrix_self_interaction_of(self, features: Tensor, species_onehot: Tensor, matrix: Tensor) -> Tensor:
        """The self-interaction from its matrices: features [N, D_in], species_onehot [N, S],
        matrix [D_in, S * D_out] -> [N, D_out] = sum_s onehot[:, s] * (features @ matrix)[:, s-th block]."""
        n_atoms, n_species = species_onehot.shape[0], species_onehot.shape[1]
        per_species = torch.mm(features, matrix).view(n_atoms, n_species, -1)  # [N, S, D_out]
        return (per_species * species_onehot.unsqueeze(2)).sum(dim=1)

    @torch.jit.export
    def uses_self_interaction_matrix(self) -> bool:
        """Whether this forward uses the measured self-interaction matrices instead of e3nn's module: when
        they are switched on. In training mode they are refused (the weights would get no gradient)."""
        if not self.matrix_self_interaction:
            return False
        if self.training:
            raise RuntimeError(
                "this model computes its self-interaction from measured matrices, which are for inference: call "
                "model.eval(), or switch them off (equiforce.nn.set_self_interaction_matrix(model, False)) to train"
            )
        return True

    @torch.jit.export
    def uses_radial_table(self, lengths: Tensor) -> bool:
        """Whether this forward interpolates the radial table instead of running the radial MLP: when it is
        switched on and the edges are on the CPU. In training mode a table is refused (the MLP's weights would
        get no gradient through it)."""
        if not self.tabulated_radial or lengths.is_cuda:
            return False
        if self.training:
            raise RuntimeError(
                "this model interpolates a radial table, which is for inference: call model.eval(), or switch the "
                "table off (equiforce.nn.set_radial_table(model, None)) to train the radial MLPs"
            )
        return True


def set_fused_convolution(model: torch.nn.Module, enabled: bool = True) -> int:
    """Switch the fused convolution op on or off in every interaction block of ``model``; returns how many.

    On: forward and first derivatives (energies, forces) run through ``torch.ops.equiforce.tp_convolution`` on
    the CPU (CUDA inputs keep e3nn's code). Off (the default for a new model): e3nn's tensor product, which
    can be differentiated twice, as training on forces needs.
    """
    blocks = [module for module in model.modules() if isinstance(module, Interaction)]
    for block in blocks:
        block.fused_convolution = bool(enabled)
    return len(blocks)
