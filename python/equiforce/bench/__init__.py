"""Benchmarks: speed (ms/step, ns/day) and NVE energy conservation, with the alternatives run beside us."""
from ._machine import describe_machine, file_sha256
from ._nve import RUNAWAY_FACTOR as NVE_RUNAWAY_FACTOR
from ._nve import TEMPERATURE_K as NVE_TEMPERATURE_K
from ._nve import (NVEInterrupted, NVEProtocol, case_dir_name, case_key, nve_system, nve_table, reanalyse_record,
                   run_nve, run_nve_case, runaway, start_nve)
from ._plots import plot_nve, plot_replicas, plot_speed
from ._replicas import combine_replicas, replicas_table
from ._speed import (METHODS, PEER_METHODS, SPEED_GOALS, WaterCase, ase_dynamics, bare_step, benchmark_model,
                     eager_copy, goal_thresholds, make_step, run_speed, speed_goals, speed_table, write_json)
from ._threads import torch_threads
from ._timing import ns_per_day, time_interleaved, time_steps
from ._variants import energy_and_forces, export_shipped_variants, variants_main

__all__ = [
    "describe_machine", "file_sha256",
    "run_speed", "speed_table", "speed_goals", "goal_thresholds", "SPEED_GOALS", "write_json", "benchmark_model",
    "METHODS", "PEER_METHODS", "WaterCase", "bare_step", "make_step", "eager_copy", "ase_dynamics",
    "ns_per_day", "time_steps", "time_interleaved", "torch_threads",
    "run_nve", "run_nve_case", "NVEProtocol", "NVEInterrupted", "nve_table", "nve_system", "start_nve", "case_key",
    "case_dir_name", "runaway", "reanalyse_record",
    "NVE_TEMPERATURE_K", "NVE_RUNAWAY_FACTOR",
    "combine_replicas", "replicas_table",
    "plot_nve", "plot_speed", "plot_replicas",
    "energy_and_forces", "export_shipped_variants", "variants_main",
]
