"""Timing helper: median milliseconds per step over repeated blocks after warm-up."""
import statistics
import time
from typing import Callable, Dict

from ..units import ns_per_day  # noqa: F401  (re-exported: benchmarks report ns/day)


def time_steps(step: Callable[[int], None], warmup_steps: int, block_steps: int, blocks: int,
               synchronize: Callable[[], None] = lambda: None) -> Dict[str, float]:
    """Run ``step(n)`` (which advances n steps) for warm-up, then ``blocks`` timed blocks of ``block_steps``.

    Returns the median and the spread (min, max) of ms per step over the blocks.
    """
    if warmup_steps:
        step(warmup_steps)
    synchronize()
    per_step = []
    for _ in range(blocks):
        start = time.perf_counter()
        step(block_steps)
        synchronize()
        per_step.append(1000.0 * (time.perf_counter() - start) / block_steps)
    return {"ms_per_step": statistics.median(per_step), "ms_min": min(per_step), "ms_max": max(per_step)}
