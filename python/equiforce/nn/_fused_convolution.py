"""Tables for the fused tensor-product convolution op, read off an e3nn ``TensorProduct``.

The native op ``torch.ops.equiforce.tp_convolution`` (``plugin/convolution_cpu.cpp``) computes, in one pass over
the edges and without any per-edge intermediate tensor,

    out[i] = Σ_{e: centre[e] = i} TP(features[neighbour[e]], edge_sh[e], edge_weights[e])     [N, irreps_out.dim]

for a 'uvu' tensor product whose second input has multiplicity 1 (spherical harmonics):

    out[i, o3 + u d3 + m3] += c_k w[e, w0 + u] x[j, o1 + u d1 + m1] y[e, o2 + m2]

The couplings (m1, m2, m3, c_k) of each path are not derived here from Wigner 3j symbols and e3nn's
normalisation rules: they are *measured* on the e3nn module itself, one unit input at a time, in float64, and
the result is checked against e3nn on random inputs before it is used. The op therefore computes e3nn's tensor
product, only in another order of operations (values agree to rounding, not to the bit).

The op has first derivatives only (forces). Training on forces differentiates twice, so models keep e3nn's
code unless ``set_fused_convolution`` (next to the ``Interaction`` block it switches, in ``_interaction``) turns the
op on; ``export_model`` does so for CPU inference.
"""
import copy
from typing import List, Tuple

import torch

#: Largest |c_k| treated as zero when reading the couplings off e3nn (they are O(0.1-1)).
_ZERO = 1e-12


class NotFusable(ValueError):
    """The tensor product has a form the fused op does not cover (the message says which)."""


def convolution_tables(tensor_product) -> Tuple[List[int], List[int], List[float]]:
    """(paths: 9 P ints, couplings: 3 K ints (m1, m2, m3), coefficients: K floats) for ``tensor_product``.

    ``tensor_product``: an ``e3nn.o3.TensorProduct`` with per-edge weights (``shared_weights=False``) and only
    'uvu' instructions whose second input has multiplicity 1. Path rows are
    (o1, d1, o2, o3, d3, w0, mul, k_begin, k_end), see ``plugin/convolution_cpu.cpp``.

    Raises
    ------
    NotFusable naming the instruction that does not fit, or when the tables disagree with e3nn.
    """
    tp = tensor_product
    if tp.shared_weights or tp.internal_weights:
        raise NotFusable("the fused convolution needs per-edge weights (shared_weights=False, internal_weights=False)")
    probe = copy.deepcopy(tp).to(torch.float64)
    in1, in2, out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
    paths: List[int] = []
    couplings: List[int] = []
    coefficients: List[float] = []
    weight_offset = 0
    for index, ins in enumerate(tp.instructions):
        mul1, ir1 = in1[ins.i_in1]
        mul2, ir2 = in2[ins.i_in2]
        mul3, ir3 = out[ins.i_out]
        if ins.connection_mode != "uvu" or mul2 != 1 or mul3 != mul1 or not ins.has_weight:
            raise NotFusable(f"instruction {index} ({ins.connection_mode}, {mul1}x{ir1} x {mul2}x{ir2} -> "
                             f"{mul3}x{ir3}, weight {ins.has_weight}): only weighted 'uvu' paths with a "
                             "multiplicity-1 second input are fused")
        o1, o2, o3 = in1.slices()[ins.i_in1].start, in2.slices()[ins.i_in2].start, out.slices()[ins.i_out].start
        d1, d2, d3 = ir1.dim, ir2.dim, ir3.dim
        # one probe per (m1, m2): unit input-1 entry in channel 0, unit input-2 entry, unit weight of this path
        x = torch.zeros(d1 * d2, in1.dim, dtype=torch.float64)
        y = torch.zeros(d1 * d2, in2.dim, dtype=torch.float64)
        w = torch.zeros(d1 * d2, tp.weight_numel, dtype=torch.float64)
        for m1 in range(d1):
            for m2 in range(d2):
                x[m1 * d2 + m2, o1 + m1] = 1.0
                y[m1 * d2 + m2, o2 + m2] = 1.0
        w[:, weight_offset] = 1.0
        with torch.no_grad():
            response = probe(x, y, w)[:, o3:o3 + d3]  # [d1 d2, d3]: channel 0 of this path's output block
        begin = len(coefficients)
        for m1 in range(d1):
            for m2 in range(d2):
                for m3 in range(d3):
                    c = float(response[m1 * d2 + m2, m3])
                    if abs(c) > _ZERO:
                        couplings += [m1, m2, m3]
                        coefficients.append(c)
        paths += [o1, d1, o2, o3, d3, weight_offset, mul1, begin, len(coefficients)]
        weight_offset += mul1
    if weight_offset != tp.weight_numel:
        raise NotFusable(f"the paths use {weight_offset} weights per edge but the tensor product has "
                         f"{tp.weight_numel}")
    tables = (paths, couplings, coefficients)
    _check_against_e3nn(probe, tables)
    return tables


def _check_against_e3nn(tp, tables: Tuple[List[int], List[int], List[float]], n_nodes: int = 5, n_edges: int = 11) -> None:
    """Random float64 graph: the fused op must equal gather -> e3nn -> index_add (else NotFusable)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n_nodes, tp.irreps_in1.dim, dtype=torch.float64, generator=generator)
    y = torch.randn(n_edges, tp.irreps_in2.dim, dtype=torch.float64, generator=generator)
    w = torch.randn(n_edges, tp.weight_numel, dtype=torch.float64, generator=generator)
    centre = torch.randint(0, n_nodes, (n_edges,), generator=generator)
    neighbour = torch.randint(0, n_nodes, (n_edges,), generator=generator)
    with torch.no_grad():
        expected = torch.zeros(n_nodes, tp.irreps_out.dim, dtype=torch.float64).index_add(
            0, centre, tp(x.index_select(0, neighbour), y, w))
        fused = torch.ops.equiforce.tp_convolution(x, y, w, centre, neighbour, *tables, n_nodes)
    error = float((fused - expected).abs().max())
    if fused.shape != expected.shape or error > 1e-10 * max(1.0, float(expected.abs().max())):
        raise NotFusable(f"the fused op disagrees with e3nn's tensor product {tp} (max error {error:.3g})")
