"""A graph pass over e3nn's generated tensor-product code: column slices of one input become one ``split``.

e3nn's code generator cuts each input of a tensor product (features, spherical harmonics, per-edge weights)
into its irrep or per-path blocks with column slices, ``x[:, a:b]``. The forward pass is free (views), but in
the backward pass every slice hands back a gradient of the *full* input's size, zeros except for its block,
and autograd adds them up: for k blocks of an [E, D] input, k zero-fills, k copies and k - 1 additions of
[E, D] tensors per step. On a CPU those are most of ``aten::fill_`` and ``aten::copy_`` in
``benchmarks/results/profile_cpu.md``.

When the slices of one input tile it exactly (disjoint blocks covering every column, the input's width known
from the ``reshape`` that made it), this pass replaces them with one ``torch.split``, whose backward writes
each block's gradient once into a single buffer. The values are the same to the bit, forward and backward:
the same products are taken, and a gradient is only ever assembled from blocks (nothing is added to zeros).

Only our own tensor products are rewritten (:func:`split_tensor_product_slices`), never e3nn's global code
generator: peers that use e3nn in the same process keep e3nn's code.
"""
import operator
import warnings
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
from torch import fx


def _column_slice(node: fx.Node) -> Optional[Tuple[int, int]]:
    """(a, b) if ``node`` is ``x[:, a:b]`` on a 2-D tensor, else None."""
    if node.op != "call_function" or node.target is not operator.getitem or len(node.args) != 2:
        return None
    index = node.args[1]
    if not (isinstance(index, tuple) and len(index) == 2 and index[0] == slice(None, None, None)):
        return None
    columns = index[1]
    if not isinstance(columns, slice) or columns.step not in (None, 1):
        return None
    if not (isinstance(columns.start, int) and isinstance(columns.stop, int)):
        return None
    return columns.start, columns.stop


def _known_width(node: fx.Node) -> Optional[int]:
    """Number of columns of ``node`` when it is ``t.reshape(-1, D)`` with a literal D."""
    if node.op == "call_method" and node.target == "reshape" and len(node.args) == 3:
        width = node.args[2]
        if node.args[1] == -1 and isinstance(width, int):
            return width
    return None


def split_column_slices(module: fx.GraphModule) -> int:
    """Rewrite ``module`` in place; returns how many inputs were turned from slices into one split."""
    graph = module.graph
    rewritten = 0
    for node in list(graph.nodes):
        width = _known_width(node)
        users = [user for user in node.users if _column_slice(user) is not None]
        if width is None or len(users) < 2:
            continue
        blocks = sorted({_column_slice(user) for user in users})
        if blocks[0][0] != 0 or blocks[-1][1] != width or any(b[0] != a[1] for a, b in zip(blocks, blocks[1:])):
            continue  # overlapping or gapped: leave e3nn's slices alone
        sizes: List[int] = [stop - start for start, stop in blocks]
        with graph.inserting_after(node):
            pieces = graph.call_function(torch.split, (node, sizes), {"dim": 1})
        for user in users:
            with graph.inserting_after(pieces):
                piece = graph.call_function(operator.getitem, (pieces, blocks.index(_column_slice(user))))
            user.replace_all_uses_with(piece)
            graph.erase_node(user)
        rewritten += 1
    graph.lint()
    module.recompile()
    return rewritten


_ENABLED = True


@contextmanager
def e3nn_slices() -> Iterator[None]:
    """Models built inside the block keep e3nn's own sliced code (for measuring what the pass gains)."""
    global _ENABLED
    before, _ENABLED = _ENABLED, False
    try:
        yield
    finally:
        _ENABLED = before


def split_tensor_product_slices(tensor_product) -> int:
    """Regenerate ``tensor_product``'s (an ``e3nn.o3.TensorProduct``) forward code with the split pass applied.

    Returns the number of inputs rewritten (0 leaves the module as it was). Uses e3nn's code generator, the same
    call and arguments as ``TensorProduct.__init__`` (e3nn 0.6), and registers the result the same way.
    """
    import e3nn

    if not _ENABLED:
        return 0
    try:  # e3nn internals (pinned e3nn 0.6.0); another version keeps e3nn's own code, with a warning
        from e3nn.o3._tensor_product._codegen import codegen_tensor_product_left_right

        graph_module = codegen_tensor_product_left_right(
            tensor_product.irreps_in1, tensor_product.irreps_in2, tensor_product.irreps_out,
            tensor_product.instructions, tensor_product.shared_weights, tensor_product._specialized_code,
            tensor_product._optimize_einsums)
    except (ImportError, AttributeError, TypeError) as error:
        warnings.warn(f"e3nn {e3nn.__version__}: tensor-product split pass not applied ({error}); the model is "
                      "unchanged but slower to differentiate")
        return 0
    rewritten = split_column_slices(graph_module)
    if rewritten == 0:
        return 0
    if e3nn.get_optimization_defaults()["jit_mode"] == "script":
        compiled = e3nn.util.jit.compile(graph_module, recurse=False)
    else:
        compiled = graph_module
    tensor_product.add_module("_compiled_main_left_right", compiled)
    return rewritten
