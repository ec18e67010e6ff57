"""Pick the candidate frames a committee of models disagrees on most."""
from typing import Dict, List, Optional, Sequence, Tuple

import ase
import numpy as np

#: ``info`` key of a selected frame: the committee's largest per-atom force spread on it (eV/Å).
DISAGREEMENT_KEY = "committee_force_std"


def select_by_disagreement(frames: Sequence[ase.Atoms], disagreement: np.ndarray, count: int,
                           ceiling: Optional[float] = None) -> Tuple[List[ase.Atoms], Dict[str, object]]:
    """The ``count`` frames with the largest committee force spread (eV/Å), largest first.

    Frames above ``ceiling`` (eV/Å), if given, are passed over: a spread that large usually means an unphysical
    configuration from a model that has already failed, whose label would teach little. Each chosen frame gets
    its spread in ``info[DISAGREEMENT_KEY]``. Returns the frames and a summary (counts, spreads of the chosen
    and of all candidates) for the round's record.
    """
    disagreement = np.asarray(disagreement, dtype=float)
    if disagreement.shape != (len(frames),):
        raise ValueError(f"one disagreement per frame expected: {len(frames)} frames, {disagreement.shape} values")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    allowed = np.isfinite(disagreement)
    if ceiling is not None:
        allowed &= disagreement <= ceiling
    order = [int(i) for i in np.argsort(-disagreement, kind="stable") if allowed[i]][:count]
    chosen = []
    for i in order:
        atoms = frames[i].copy()
        atoms.info[DISAGREEMENT_KEY] = float(disagreement[i])
        chosen.append(atoms)
    summary = {
        "candidates": len(frames),
        "selected": len(chosen),
        "above_ceiling": int(np.sum(np.isfinite(disagreement) & ~allowed)),
        "not_finite": int(np.sum(~np.isfinite(disagreement))),
        "candidate_spread_eV_per_A": _stats(disagreement[np.isfinite(disagreement)]),
        "selected_spread_eV_per_A": _stats(disagreement[order]) if order else None,
    }
    return chosen, summary


def _stats(values: np.ndarray) -> Optional[Dict[str, float]]:
    if values.size == 0:
        return None
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}
