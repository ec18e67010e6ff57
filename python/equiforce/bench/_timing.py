"""Timing helper: median milliseconds per step over repeated blocks after warm-up."""
import statistics
import time
from typing import Callable, Dict


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


def ns_per_day(ms_per_step: float, timestep_fs: float) -> float:
    """Simulated nanoseconds per day at ``timestep_fs`` for a cost of ``ms_per_step``."""
    from openmm import unit

    steps_per_day = unit.day.conversion_factor_to(unit.millisecond) / ms_per_step
    return steps_per_day * (timestep_fs * unit.femtosecond).value_in_unit(unit.nanosecond)
