"""Check the model ``equiforce learn recipes/nacl/learn.yaml`` made: held-out errors, committee spread near and
far from the data, and 20 ps of NVT in OpenMM.

1. Far-from-data frames: classical flexible TIP3P-FB MD of the same start at 800 K (hot, distorted), and 300 K
   classical frames with the box and every molecule's centre scaled by 0.9 (density x 1.37, close contacts).
   Both are labelled with GFN2-xTB like the training frames.
2. The final committee's force spread (largest per-atom std, eV/Å) and its errors on the held-out frames of
   every round and on each far set.
3. 20 ps of Langevin NVT at 300 K (0.5 fs) under the committee's mean potential, in OpenMM, with a
   CommitteeReporter every 100 steps: speed, temperature, spread along the run. Checkpointed every 2 ps: a
   rerun continues.

Writes ``benchmarks/results/nacl_example.json`` and ``.png``. Run from the repository root after the loop:

    python recipes/nacl/check_model.py
"""
import argparse
import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(ROOT, "runs", "nacl-learn")
RESULTS = os.path.join(ROOT, "benchmarks", "results", "nacl_example")
START = os.path.join(HERE, "start.pdb")


def compressed(frames, factor):
    """Frames whose molecules (waters as O H H, ions alone: the start structure's order) keep their shape while
    their centres, and the box, scale by ``factor`` (Å; the molecules are whole in the sampled frames)."""
    out = []
    for atoms in frames:
        a = atoms.copy()
        positions = a.positions.copy()
        symbols = a.get_chemical_symbols()
        k = 0
        while k < len(a):
            group = slice(k, k + (3 if symbols[k] == "O" else 1))
            positions[group] += (factor - 1.0) * positions[group].mean(axis=0)
            k = group.stop
        a.positions = positions
        a.set_cell(a.cell.array * factor, scale_atoms=False)
        a.info["far_set"] = f"compressed x{factor}"
        out.append(a)
    return out


def far_sets(workers):
    """Labelled far-from-data frames: hot (800 K) and compressed."""
    from equiforce.active import SampleSettings, sample
    from equiforce.active._frames import read_frames, write_frames
    from equiforce.label import label_frames

    far_dir = os.path.join(WORK, "far")
    os.makedirs(far_dir, exist_ok=True)
    hot = os.path.join(far_dir, "hot_800K.extxyz")
    sample(START, hot, SampleSettings(temperature_K=800.0, frames=12, every=200, equilibration_steps=4000, seed=77),
           forcefield=["amber14/tip3pfb.xml"])
    squeezed = os.path.join(far_dir, "compressed.extxyz")
    if not os.path.exists(squeezed):
        base = read_frames(os.path.join(WORK, "round0", "candidates_300K.extxyz"))[-12:]
        write_frames(squeezed, compressed(base, 0.9))
    sets = {}
    for name, path in (("hot 800 K", hot), ("compressed x0.9", squeezed)):
        labelled = path.replace(".extxyz", ".labelled.extxyz")
        label_frames(path, labelled, workers=workers)
        sets[name] = labelled
    return sets


def spread_and_errors(committee, files):
    from equiforce.active._frames import read_frames
    from equiforce.committee import force_disagreement
    from equiforce.evaluate import evaluate_model

    frames = [a for f in files for a in read_frames(f)]
    spread = force_disagreement(committee, frames)
    errors = evaluate_model(committee, files)
    return {"frames": len(frames),
            "force_spread_eV_per_A": {"median": float(np.median(spread)), "mean": float(np.mean(spread)),
                                      "max": float(np.max(spread)), "values": [float(s) for s in spread]},
            "energy_rmse_meV_per_atom": errors["energy_rmse"], "force_rmse_meV_per_A": errors["force_rmse"],
            "force_mae_meV_per_A": errors["force_mae"]}


def round_by_round(last):
    """RMSE of each round's committee on each round's held-out frames: a committee meets the frames the next round
    picked before it is trained on them."""
    from equiforce.evaluate import evaluate_model

    table = {}
    for c in range(last + 1):
        row = {}
        for h in range(last + 1):
            errors = evaluate_model(os.path.join(WORK, f"round{c}", "committee.pt"),
                                    [os.path.join(WORK, f"round{h}", "heldout.extxyz")])
            row[f"held-out of round {h}"] = {"frames": errors["frames"],
                                             "energy_rmse_meV_per_atom": errors["energy_rmse"],
                                             "force_rmse_meV_per_A": errors["force_rmse"]}
        table[f"committee of round {c}"] = row
    return table


def nvt(committee, picoseconds=20.0, timestep_fs=0.5, interval=100, chunk_ps=2.0, threads=None):
    """Langevin NVT at 300 K under the committee's mean potential, resumable in chunks of ``chunk_ps``."""
    import torch
    import openmm
    from openmm import app, unit

    from equiforce.active import model_system
    from equiforce.committee import CommitteeReporter

    if threads:
        torch.set_num_threads(threads)
    state_dir = os.path.join(WORK, "nvt")
    os.makedirs(state_dir, exist_ok=True)
    log_path, checkpoint = os.path.join(state_dir, "log.json"), os.path.join(state_dir, "nvt.chk")
    pdb = app.PDBFile(START)
    system = model_system(pdb.topology, committee)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, timestep_fs * unit.femtoseconds)
    integrator.setRandomNumberSeed(5)
    simulation = app.Simulation(pdb.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"),
                                {"Threads": str(threads)} if threads else {})
    from equiforce.hashing import file_sha256

    log = {"model_sha256": file_sha256(committee), "chunks": [], "spread": [], "temperature_K": []}
    earlier = None
    if os.path.exists(log_path) and os.path.exists(checkpoint):
        with open(log_path) as handle:
            earlier = json.load(handle)
    if earlier is not None and earlier.get("model_sha256") == log["model_sha256"]:  # continue the same model's run
        log = earlier
        simulation.loadCheckpoint(checkpoint)
    else:
        # Start from the last 300 K classical frame the loop sampled (liquid, not the lattice).
        from equiforce.active._frames import read_frames

        start = read_frames(os.path.join(WORK, "round0", "candidates_300K.extxyz"))[-1]
        simulation.context.setPositions(start.positions * unit.angstrom)
        simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 5)
    reporter = CommitteeReporter(committee, interval)
    simulation.reporters.append(reporter)
    steps_per_chunk = int(round(chunk_ps * 1000 / timestep_fs))
    n_dof = 3 * system.getNumParticles() - 3
    gas_constant = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    while len(log["chunks"]) * chunk_ps < picoseconds - 1e-9:
        reporter.records.clear()
        temperatures = []
        begin = time.perf_counter()
        for _ in range(steps_per_chunk // interval):
            simulation.step(interval)
            kinetic = simulation.context.getState(getEnergy=True).getKineticEnergy().value_in_unit(
                unit.kilojoule_per_mole)
            temperatures.append(2 * kinetic / (n_dof * gas_constant))
        seconds = time.perf_counter() - begin
        log["chunks"].append({"ps": chunk_ps, "seconds": seconds, "ms_per_step": 1000 * seconds / steps_per_chunk})
        log["temperature_K"].extend(float(t) for t in temperatures)
        log["spread"].extend(float(r["max_force_std_kj_per_mol_nm"]) for r in reporter.records)
        simulation.saveCheckpoint(checkpoint + ".tmp")
        os.replace(checkpoint + ".tmp", checkpoint)
        with open(log_path + ".tmp", "w") as handle:
            json.dump(log, handle)
        os.replace(log_path + ".tmp", log_path)
        print(f"NVT {len(log['chunks']) * chunk_ps:g} ps: {log['chunks'][-1]['ms_per_step']:.1f} ms/step, "
              f"T {np.mean(temperatures):.0f} K", flush=True)
    return log


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--nvt-ps", type=float, default=20.0)
    args = parser.parse_args(argv)
    from equiforce.units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV

    with open(os.path.join(WORK, "learn.json")) as handle:
        record = json.load(handle)
    committee = record["model"]
    last = len(record["rounds"]) - 1
    held_out = [os.path.join(WORK, f"round{r}", "heldout.extxyz") for r in range(last + 1)]
    result = {"model": os.path.relpath(committee, ROOT), "rounds": [
        {k: r[k] for k in ("round", "training_frames", "held_out_frames", "selection") if k in r} |
        {"held_out_force_rmse_meV_per_A": r["errors"]["force_rmse"],
         "held_out_energy_rmse_meV_per_atom": r["errors"]["energy_rmse"]} for r in record["rounds"]]}
    result["held_out"] = spread_and_errors(committee, held_out)
    result["round_by_round"] = round_by_round(last)
    result["far"] = {name: spread_and_errors(committee, [path]) for name, path in far_sets(args.workers).items()}
    log = nvt(committee, picoseconds=args.nvt_ps, threads=args.threads)
    kj_nm_per_ev_a = KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM
    spread_ev_a = np.array(log["spread"]) / kj_nm_per_ev_a
    temperatures = np.array(log["temperature_K"])
    result["nvt"] = {"picoseconds": sum(c["ps"] for c in log["chunks"]), "timestep_fs": 0.5, "temperature_set_K": 300,
                     "temperature_mean_K": float(temperatures.mean()), "temperature_std_K": float(temperatures.std()),
                     # the start is a classical frame: relaxing into the model's geometry heats it for ~3 ps
                     "temperature_after_5ps_mean_K": float(temperatures[len(temperatures) // 4:].mean()),
                     "temperature_after_5ps_std_K": float(temperatures[len(temperatures) // 4:].std()),
                     "ms_per_step": float(np.median([c["ms_per_step"] for c in log["chunks"]])),
                     "force_spread_eV_per_A": {"median": float(np.median(spread_ev_a)),
                                               "max": float(spread_ev_a.max())}}
    with open(RESULTS + ".json", "w") as handle:
        json.dump(result, handle, indent=1)
    plot(result, spread_ev_a, temperatures)
    print(json.dumps({k: v for k, v in result.items() if k != "far"}, indent=1)[:2000])
    for name, entry in [("held-out", result["held_out"])] + list(result["far"].items()):
        print(f"{name:>16}: spread median {entry['force_spread_eV_per_A']['median']:.3f} eV/Å, force RMSE "
              f"{entry['force_rmse_meV_per_A']:.0f} meV/Å, energy RMSE {entry['energy_rmse_meV_per_atom']:.1f} meV/atom")


def plot(result, spread_ev_a, temperatures):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    sets = [("held-out", result["held_out"])] + list(result["far"].items())
    bins = np.linspace(0, max(max(e["force_spread_eV_per_A"]["values"]) for _, e in sets) * 1.05, 30)
    for name, entry in sets:
        left.hist(entry["force_spread_eV_per_A"]["values"], bins=bins, alpha=0.6,
                  label=f"{name} (force RMSE {entry['force_rmse_meV_per_A']:.0f} meV/Å)")
    left.set_xlabel("committee force spread, largest per atom (eV/Å)")
    left.set_ylabel("frames")
    left.legend(fontsize=8)
    left.set_title("NaCl in water: spread near and far from the data")
    time_ps = np.arange(1, len(temperatures) + 1) * result["nvt"]["picoseconds"] / len(temperatures)
    right.plot(time_ps, temperatures, lw=0.6, color="tab:red", label="temperature (K)")
    right.set_xlabel("time (ps)")
    right.set_ylabel("temperature (K)", color="tab:red")
    twin = right.twinx()
    twin.plot(np.arange(1, len(spread_ev_a) + 1) * result["nvt"]["picoseconds"] / len(spread_ev_a), spread_ev_a,
              lw=0.6, color="tab:blue")
    twin.set_ylabel("committee force spread (eV/Å)", color="tab:blue")
    right.set_title(f"{result['nvt']['picoseconds']:g} ps NVT at 300 K in OpenMM (committee mean)")
    fig.tight_layout()
    fig.savefig(RESULTS + ".png", dpi=120)


if __name__ == "__main__":
    main()
