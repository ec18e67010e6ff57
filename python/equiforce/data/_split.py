"""Reproducible train/validation/test split of frame indices."""
from typing import List, Sequence, Tuple

import torch


def split_indices(
    num_frames: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> Tuple[List[int], List[int], List[int]]:
    """Split ``range(num_frames)`` into disjoint (train, validation, test) index lists.

    The frames are permuted with a ``torch.Generator`` seeded with ``seed``; the validation and test sets get
    ``round(fraction · num_frames)`` frames each and the training set the rest when the fractions sum to 1
    (``round(train_fraction · num_frames)`` when they sum to less). Each list is sorted.
    """
    if len(fractions) != 3:
        raise ValueError(f"split fractions must be (train, validation, test), got {list(fractions)}")
    f_train, f_val, f_test = (float(f) for f in fractions)
    if min(f_train, f_val, f_test) < 0 or f_train + f_val + f_test > 1 + 1e-9:
        raise ValueError(f"split fractions must be non-negative and sum to at most 1, got {list(fractions)}")
    n_val = int(round(f_val * num_frames))
    n_test = int(round(f_test * num_frames))
    if abs(f_train + f_val + f_test - 1) <= 1e-9:
        n_train = num_frames - n_val - n_test
    else:
        n_train = min(int(round(f_train * num_frames)), num_frames - n_val - n_test)
    if n_train < 1:
        raise ValueError(f"split {list(fractions)} of {num_frames} frames leaves no training frame")
    order = torch.randperm(num_frames, generator=torch.Generator().manual_seed(int(seed))).tolist()
    train = sorted(order[:n_train])
    val = sorted(order[n_train : n_train + n_val])
    test = sorted(order[n_train + n_val : n_train + n_val + n_test])
    return train, val, test
