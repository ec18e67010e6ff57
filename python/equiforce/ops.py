"""Native O(N) neighbour list (``torch.ops.equiforce.*``), compiled from ``plugin/``.

The same library also registers the model's fused convolution (``tp_convolution``, see
:mod:`equiforce.nn._fused_convolution`), the radial-table interpolation (``radial_spline``, see
:mod:`equiforce.nn._radial_table`) and a SiLU with eager autograd for TorchScript (``silu``, see
``plugin/activations.cpp``).

Importing this module loads the compiled library, which registers the ops with PyTorch's dispatcher. Import it
before scripting, saving, or loading (``torch.jit.load``, OpenMM's ``TorchForce``) a model that calls them.

Conventions (shared with the pure-PyTorch reference :mod:`equiforce.neighbors`)
-----------------------------------------------------------------------------------
* ``pairs[:, k] = (i, j)``: every ordered pair closer than the cutoff, listed in both directions. Pairs are
  grouped by ``i`` in increasing order; within one ``i`` the order is fixed by the cell grid. The order is
  reproducible: it depends on neither the number of threads nor the scheduling.
* ``vectors[k] = positions[j] + shifts[k] @ box - positions[i]``: the displacement from atom ``i`` to the periodic
  image of atom ``j`` that lies within the cutoff. It is differentiable with respect to ``positions`` and ``box``
  (first and second derivatives).
* ``shifts[k]``: integer lattice translations of ``j``, stored in the positions' dtype.
* ``box`` rows are the lattice vectors a, b, c (OpenMM's ``getPeriodicBoxVectors`` layout). OpenMM's reduced
  triclinic form is the common case, but any non-degenerate box is handled. When the box is narrower than twice
  the cutoff, every periodic image within the cutoff is listed, so an atom may neighbour several images of
  another atom, and its own images. ``box=None`` means an open (non-periodic) system.
* Units: none are assumed. ``positions``, ``cutoff``, ``box`` and ``vectors`` share one length unit (Å inside
  equiforce models, nm at the OpenMM boundary: convert the cutoff accordingly).
* Positions may lie outside the box (they are wrapped internally; shifts refer to the positions as given).

Devices and threads
-------------------
CPU: cell list, multithreaded over ``torch.get_num_threads()`` threads for systems of more than about 8000
atoms (smaller ones run on one thread: waking workers costs more than it saves). CUDA: the same algorithm and
the same order on the device, compiled when the package was built with a CUDA toolkit matching
``torch.version.cuda`` (``EQUIFORCE_BUILD_CUDA=1 pip install --no-build-isolation -e .``); otherwise CUDA
inputs raise a clear error.

Gradients
---------
``vectors`` is differentiable with respect to ``positions`` and ``box`` through a native backward (one pass over
the pairs on the CPU), itself differentiable, so forces (first derivatives) and training on forces (second
derivatives) work. The pair list itself is piecewise constant and carries no gradient.
"""
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    "neighbor_list",
    "neighbor_list_with_shifts",
    "neighbor_list_fixed",
    "padded_neighbor_list",
    "check_overflow",
    "library_path",
]


def _find_library() -> Path:
    here = Path(__file__).resolve().parent
    candidates = sorted(here.glob("_ops*.so")) + sorted(here.glob("_ops*.pyd"))
    if not candidates:
        raise ImportError(
            f"equiforce's native op library (_ops*.so) is missing from {here}: build it with "
            "`pip install --no-build-isolation -e .` (or `make install`)"
        )
    return candidates[0]


_LIBRARY = _find_library()
torch.ops.load_library(str(_LIBRARY))


def library_path() -> str:
    """Path of the compiled library, for ``torch.ops.load_library`` in other processes."""
    return str(_LIBRARY)


def neighbor_list(positions: Tensor, cutoff: float, box: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """All ordered pairs closer than ``cutoff`` and their displacement vectors.

    Parameters
    ----------
    positions : Tensor [N, 3], float32 or float64, CPU or CUDA.
    cutoff : float, > 0; pairs with distance strictly below it are listed.
    box : Tensor [3, 3] (rows a, b, c, same dtype and device as ``positions``) or None for an open system.

    Returns
    -------
    pairs : LongTensor [2, E]; ``pairs[0]`` = i (grouped, increasing), ``pairs[1]`` = j.
    vectors : Tensor [E, 3], ``r_j + shift - r_i``; differentiable w.r.t. ``positions`` and ``box``.

    E is data-dependent: on CUDA the op synchronises once with the host to size its outputs, so it cannot be
    captured in a CUDA graph; use :func:`neighbor_list_fixed` there.

    Raises
    ------
    RuntimeError for non-finite positions, a degenerate or non-finite box (the message names the box vector),
    or a cutoff more than 60 box heights long.

    Examples
    --------
    >>> pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    >>> pairs, vectors = neighbor_list(pos, 1.5)
    >>> pairs.tolist(), vectors.tolist()
    ([[0, 1], [1, 0]], [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    """
    pairs, vectors, _ = torch.ops.equiforce.neighbor_list(positions, cutoff, box, False)
    return pairs, vectors


def neighbor_list_with_shifts(
    positions: Tensor, cutoff: float, box: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor, Tensor]:
    """Like :func:`neighbor_list`, also returning ``shifts`` [E, 3] (integer lattice translations of j in the
    positions' dtype; all zero for ``box=None``), so that ``vectors == positions[j] - positions[i] + shifts @ box``
    up to rounding.
    """
    return torch.ops.equiforce.neighbor_list(positions, cutoff, box, True)


def neighbor_list_fixed(
    positions: Tensor, cutoff: float, max_pairs: int, box: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fixed-capacity neighbour list with static output shapes, for CUDA graphs.

    Nothing in this call synchronises with the host on CUDA (every size is fixed by ``N`` and ``max_pairs``), so it
    can be captured in a CUDA graph and replayed with new positions and a new box (NPT).

    Parameters
    ----------
    positions, cutoff, box : as in :func:`neighbor_list`.
    max_pairs : int >= 0, the capacity (ordered pairs). A liquid at number density rho needs about
        ``N * rho * 4/3 * pi * cutoff**3``; leave headroom for density fluctuations.

    Returns
    -------
    pairs : LongTensor [2, max_pairs]; the first ``min(num_pairs, max_pairs)`` columns are the list in the order
        of :func:`neighbor_list`, the rest is padding with i = j = -1.
    vectors : Tensor [max_pairs, 3]; padding rows are 0 and carry no gradient.
    num_pairs : LongTensor [] (0-dim), the true number of pairs, even when it exceeds ``max_pairs``. On CUDA it is
        -1 when the box or the positions were invalid (the CPU raises instead).
    overflow : BoolTensor [], True when ``num_pairs > max_pairs`` (the list is truncated and must not be used) or
        the input was invalid.

    Overflow is never silent as long as the caller checks it: call :func:`check_overflow` outside the captured
    region (it synchronises), e.g. after each graph replay or every few steps, and rebuild with a larger
    ``max_pairs`` when it raises. Inside a graph, use the padding mask ``pairs[0] >= 0`` instead of slicing.
    """
    pairs, vectors, _, num_pairs, overflow = torch.ops.equiforce.neighbor_list_fixed(
        positions, cutoff, max_pairs, box, False
    )
    return pairs, vectors, num_pairs, overflow


def padded_neighbor_list(positions: Tensor, cutoff: float, max_pairs: int, box: Optional[Tensor],
                         padding_distance: float) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`neighbor_list_fixed` ready for a model: (pairs [2, max_pairs], vectors [max_pairs, 3], overflow []).

    Padding columns become the pair (0, 0) with the vector (``padding_distance``, 0, 0): at or beyond the
    cutoff, where a model's radial functions vanish, so padding contributes exactly nothing and the shapes stay
    static (CUDA graphs). ``overflow`` as in :func:`neighbor_list_fixed`: the caller turns its result into NaN.
    Scriptable; the models' ``forward(..., max_pairs > 0)`` use it.
    """
    pairs, vectors, _, _, overflow = torch.ops.equiforce.neighbor_list_fixed(positions, cutoff, max_pairs, box, False)
    valid = (pairs[0] >= 0).unsqueeze(1)  # [max_pairs, 1]
    outside = torch.zeros_like(vectors)
    outside[:, 0] = padding_distance
    return pairs.clamp(min=0), torch.where(valid, vectors, outside), overflow


def check_overflow(num_pairs: Tensor, overflow: Tensor, max_pairs: int) -> None:
    """Raise if a :func:`neighbor_list_fixed` result is unusable. Synchronises: call outside a CUDA graph.

    Raises
    ------
    RuntimeError naming the number of pairs found and the capacity (or the invalid input).
    """
    if bool(overflow):
        found = int(num_pairs)
        if found < 0:
            raise RuntimeError(
                "neighbor_list_fixed: invalid input (non-finite positions, or a box that is not finite, is "
                "degenerate, or is more than 60 times smaller than the cutoff); run neighbor_list on the same "
                "input for a detailed message"
            )
        raise RuntimeError(
            "neighbor_list_fixed overflow: found {} pairs but max_pairs is {}; the list was truncated. "
            "Rebuild with max_pairs >= {} (plus headroom).".format(found, max_pairs, found)
        )
