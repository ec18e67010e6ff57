"""Benchmarks: speed (ms/step, ns/day) and NVE energy conservation, with the alternatives run beside us."""
from ._machine import describe_machine
from ._nve import NVEInterrupted, NVEProtocol, nve_table, run_nve, run_nve_case
from ._plots import plot_nve, plot_speed
from ._speed import (METHODS, PEER_METHODS, WaterCase, bare_step, benchmark_model, make_step, run_speed, speed_goals,
                     speed_table, write_json)
from ._timing import ns_per_day, time_steps

__all__ = [
    "describe_machine", "run_speed", "speed_table", "speed_goals", "run_nve", "run_nve_case", "NVEProtocol", "NVEInterrupted",
    "nve_table", "plot_nve", "plot_speed",
    "write_json", "benchmark_model", "METHODS", "PEER_METHODS", "ns_per_day", "time_steps", "WaterCase", "bare_step",
    "make_step",
]
