"""Torch's intra-op thread count for the length of one benchmark, restored afterwards."""
from contextlib import contextmanager
from typing import Iterator, Optional

import torch


@contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (``None`` or 0: leave the setting alone).

    The benchmarks pin one thread so that the record describes a fixed amount of hardware; the caller's
    process (a test session, a notebook) gets its own setting back when the benchmark returns or fails.
    """
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
