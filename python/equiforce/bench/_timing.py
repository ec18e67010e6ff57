"""Timing helper: median milliseconds per step over repeated blocks after warm-up."""
import math
import statistics
import time
from typing import Callable, Dict, Hashable, Mapping

from ..units import ns_per_day  # noqa: F401  (re-exported: benchmarks report ns/day)


def time_steps(step: Callable[[int], None], warmup_steps: int, block_steps: int, blocks: int,
               synchronize: Callable[[], None] = lambda: None, max_block_seconds: float = math.inf,
               max_warmup_seconds: float = math.inf) -> Dict[str, float]:
    """Run ``step(n)`` (which advances n steps) for warm-up, then ``blocks`` timed blocks of ``block_steps``.

    Warm-up runs one step at a time and stops early (after at least two steps, which TorchScript's profiling
    executor needs to optimise) once it has taken ``max_warmup_seconds``. Its last step estimates the cost
    of a step; blocks are shortened so that one takes about ``max_block_seconds`` (at least one step), which
    keeps large systems affordable without changing what is timed.

    Returns the median and the spread (min, max) of ms per step over the blocks, and the steps per block.
    """
    return time_interleaved({None: step}, warmup_steps, block_steps, blocks, synchronize,
                            max_block_seconds, max_warmup_seconds)[None]


def time_interleaved(steps: Mapping[Hashable, Callable[[int], None]], warmup_steps: int, block_steps: int,
                     blocks: int, synchronize: Callable[[], None] = lambda: None,
                     max_block_seconds: float = math.inf, max_warmup_seconds: float = math.inf,
                     progress: Callable[[int], None] = lambda done: None) -> Dict[Hashable, Dict[str, float]]:
    """Like :func:`time_steps` for several step functions at once, their blocks taken in turn.

    Each function is warmed up (as in :func:`time_steps`) and given its own block length; then ``blocks``
    rounds time one block of every function, in the same order each round. A slow drift of the machine's
    load (another process, turbo, memory) thus reaches every method alike, and the ratios of the medians
    compare the methods under the same conditions. ``progress(round)`` is called after each round.
    """
    lengths = {}
    for key, step in steps.items():
        estimate = None
        started = time.perf_counter()
        for done in range(1, warmup_steps + 1):
            start = time.perf_counter()
            step(1)
            synchronize()
            estimate = time.perf_counter() - start
            if done >= 2 and time.perf_counter() - started > max_warmup_seconds:
                break
        lengths[key] = block_steps
        if estimate is not None and estimate > 0 and math.isfinite(max_block_seconds):
            lengths[key] = max(1, min(block_steps, int(max_block_seconds / estimate)))
    per_step = {key: [] for key in steps}
    for round_index in range(blocks):
        for key, step in steps.items():
            start = time.perf_counter()
            step(lengths[key])
            synchronize()
            per_step[key].append(1000.0 * (time.perf_counter() - start) / lengths[key])
        progress(round_index + 1)
    return {key: {"ms_per_step": statistics.median(times), "ms_min": min(times), "ms_max": max(times),
                  "block_steps": lengths[key]} for key, times in per_step.items()}
