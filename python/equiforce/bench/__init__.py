"""Benchmarks: speed (ms/step, ns/day) and NVE energy conservation, with the alternatives run beside us."""
from ._machine import describe_machine, file_sha256
from ._nve import RUNAWAY_FACTOR as NVE_RUNAWAY_FACTOR
from ._nve import TEMPERATURE_K as NVE_TEMPERATURE_K
from ._nve import (NVEInterrupted, NVEProtocol, case_key, nve_system, nve_table, reanalyse_record, run_nve,
                   run_nve_case, start_nve)
from ._plots import plot_nve, plot_replicas, plot_speed
from ._replicas import combine_replicas, replicas_table
from ._speed import (METHODS, PEER_METHODS, WaterCase, bare_step, benchmark_model, eager_copy, make_step, run_speed,
                     speed_goals, speed_table, write_json)
from ._timing import ns_per_day, time_interleaved, time_steps
from ._variants import energy_and_forces, export_shipped_variants, variants_main

__all__ = [
    "describe_machine", "file_sha256",
    "run_speed", "speed_table", "speed_goals", "write_json", "benchmark_model", "METHODS", "PEER_METHODS", "WaterCase",
    "bare_step", "make_step", "eager_copy", "ns_per_day", "time_steps", "time_interleaved",
    "run_nve", "run_nve_case", "NVEProtocol", "NVEInterrupted", "nve_table", "nve_system", "start_nve", "case_key",
    "reanalyse_record",
    "NVE_TEMPERATURE_K", "NVE_RUNAWAY_FACTOR",
    "combine_replicas", "replicas_table",
    "plot_nve", "plot_speed", "plot_replicas",
    "energy_and_forces", "export_shipped_variants", "variants_main",
]
