"""Resident memory of a long MD run with an equiforce force: it must stay flat.

    python benchmarks/long_runs/memory_long_run.py [--steps 100000] [--molecules 16] [--out benchmarks/results/memory_long_run.json]

The shipped water model on a small liquid box, Langevin 0.5 fs at 300 K, OpenMM CPU platform, one thread, with
GuardReporter every 100 steps and a StateDataReporter, so the run looks like a user's. The process's resident
set size (VmRSS from /proc/self/status) is recorded every ``--every`` steps. Every ``--save-every`` steps the
run writes its checkpoint and the JSON, so a rerun of the same command continues where it stopped (the series then
has a segment per process, told apart by ``pid``). Reported: RSS at the first record after warm-up and at the end,
and the slope of a line through the records after the first 10 % (MiB per 10 000 steps).
"""
import argparse
import io
import json
import os
import sys
import time

import numpy as np
import openmm
import openmm.app as app
import torch
from openmm import unit

from equiforce.bench._machine import describe_machine
from equiforce.bench._speed import write_json
from equiforce.openmm import GuardReporter, create_force
from equiforce.pretrained import shipped_model_path
from equiforce.systems import equilibrate_classically, water_box


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def build(molecules: int, work: str):
    topology, grid = water_box(molecules, seed=0)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(shipped_model_path("water-gfn2"), topology))
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtoseconds)
    run = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    checkpoint = os.path.join(work, "run.chk")
    if os.path.exists(checkpoint):
        run.loadCheckpoint(checkpoint)
    else:
        positions, velocities = equilibrate_classically(topology, grid, 300.0, time_ps=1.0)
        run.context.setPositions(positions * unit.nanometer)
        run.context.setVelocities(velocities * unit.nanometer / unit.picosecond)
    run.reporters.append(GuardReporter(100, os.path.join(work, "last_good.chk")))
    run.reporters.append(app.StateDataReporter(io.StringIO(), 1000, step=True, potentialEnergy=True, temperature=True))
    return run, checkpoint


def summarise(records, steps):
    after = [r for r in records if r["step"] >= 0.1 * steps]
    if len(after) < 2:
        return {}
    x = np.array([r["step"] for r in after], dtype=float)
    y = np.array([r["rss_mib"] for r in after])
    slope = float(np.polyfit(x, y, 1)[0]) * 10_000
    return {"rss_mib_after_warmup": float(y[0]), "rss_mib_at_end": float(y[-1]), "rss_mib_max": float(y.max()),
            "slope_mib_per_10000_steps": slope}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--molecules", type=int, default=16)
    parser.add_argument("--every", type=int, default=1000, help="steps between RSS records")
    parser.add_argument("--save-every", type=int, default=5000, help="steps between checkpoints and JSON writes")
    parser.add_argument("--work", default="runs/long_runs/memory")
    parser.add_argument("--out", default="benchmarks/results/memory_long_run.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    state_file = os.path.join(args.work, "records.json")
    records = json.load(open(state_file)) if os.path.exists(state_file) else []
    run, checkpoint = build(args.molecules, args.work)
    started = time.perf_counter()
    while run.currentStep < args.steps:
        run.step(min(args.every, args.steps - run.currentStep))
        records.append({"step": run.currentStep, "rss_mib": rss_mib(), "pid": os.getpid(),
                        "seconds": time.perf_counter() - started})
        if run.currentStep % args.save_every == 0 or run.currentStep >= args.steps:
            run.saveCheckpoint(checkpoint)
            with open(state_file, "w") as handle:
                json.dump(records, handle)
            result = {"machine": describe_machine(), "atoms": run.topology.getNumAtoms(), "steps": args.steps,
                      "done_steps": run.currentStep, "records": records, **summarise(records, args.steps)}
            write_json(result, args.out)
            print(f"step {run.currentStep}: RSS {records[-1]['rss_mib']:.1f} MiB", flush=True)
    print(json.dumps(summarise(records, args.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
