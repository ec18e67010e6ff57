#!/usr/bin/env python
"""Where an NVE run gains energy: the benchmark's NVE case rerun with its geometry traced.

Starts exactly as ``equiforce bench nve`` does (same water box, classical start, NVT with the model, seeds and
protocol), then runs Verlet NVE and, every ``sample_every`` steps, records the kinetic and potential energy, the
largest force on any atom, and the extremes of the water geometry (:func:`equiforce.water_geometry.water_extremes`:
longest and shortest O–H bond, HOH angles, closest intermolecular O···H, H···H, O···O, protons nearer another
oxygen). The start is not bit-reproducible across processes (measured: the first NVE sample already differs
from the benchmark's), so the trace is a new trajectory of the same case: the script compares
its energies with the benchmark's series of the case (``reproduces_benchmark``) and says how far they agree.

It then finds the 0.1 ps blocks across which the total energy jumped most and reports the geometry there
beside the run's typical values and the ranges of the training data (``water_scans.json``), the force spikes
with their molecule, how deep each sample sits in the model's short-range wall
(:func:`equiforce.water_geometry.wall_contacts`) and whether the energy rises follow the wall's peaks.

The trace and the positions of every sample are saved every 500 samples in ``--work`` (``trace.npy``,
``positions.npy``) and a rerun continues it. Output:
``benchmarks/results/nve_events_<case>.{json,png}``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/nve_events.py --dtype float64 --timestep 0.5 --until-ps 12``
"""
import argparse
import json
import os
import sys
import time

import numpy as np

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")
BLOCK_PS = 0.1  # energy jumps are measured between means of blocks this long (the O-H period is ~9 fs)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--molecules", type=int, default=128)
    parser.add_argument("--until-ps", type=float, default=12.0, help="ps of NVE to trace")
    parser.add_argument("--model", default=None, help="exported model (default: the shipped water model)")
    parser.add_argument("--work", default=os.path.join(REPOSITORY, "runs", "nve_events"))
    parser.add_argument("--compare-with", default=os.path.join(RESULTS, "nve.json"),
                        help="benchmark JSON whose series of the same case the trace is checked against")
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--top", type=int, default=8, help="how many of the largest energy jumps to report")
    return parser.parse_args(argv)


def open_case(args, protocol, case_dir):
    """The benchmark's context for this case, started as it starts (or resumed from ``case_dir``).

    Returns (context, integrator, topology, trace rows so far, positions [S, N, 3] nm of those rows).
    """
    import openmm
    from openmm import unit

    from equiforce.bench import NVE_TEMPERATURE_K as TEMPERATURE_K, nve_system, start_nve
    from equiforce.systems import water_box

    topology, grid = water_box(args.molecules, 1.0, seed=protocol.seed)
    dt = args.timestep * unit.femtoseconds
    integrator = openmm.CompoundIntegrator()
    integrator.addIntegrator(openmm.LangevinMiddleIntegrator(
        TEMPERATURE_K * unit.kelvin, protocol.equilibration_friction_per_ps / unit.picosecond, dt))
    integrator.addIntegrator(openmm.VerletIntegrator(dt))
    integrator.getIntegrator(0).setRandomNumberSeed(protocol.seed)
    context = openmm.Context(nve_system("equiforce", args.dtype, args.model, topology), integrator,
                             openmm.Platform.getPlatformByName(protocol.platform), protocol.platform_properties())
    trace_path = os.path.join(case_dir, "trace.npy")
    if os.path.exists(trace_path):
        with open(os.path.join(case_dir, "state.xml")) as handle:
            context.setState(openmm.XmlSerializer.deserialize(handle.read()))
        integrator.setCurrentIntegrator(1)
        frames = list(np.load(os.path.join(case_dir, "positions.npy")))
        return context, integrator, topology, np.load(trace_path).tolist(), frames
    os.makedirs(case_dir, exist_ok=True)
    start_nve(context, integrator, topology, grid, args.timestep, protocol)
    return context, integrator, topology, [], []


def sample(context, time_ps):
    """One trace row: time (ps), kinetic, potential (kJ/mol), largest force (eV/Å), its atom, then the extremes;
    and the positions [N, 3] (nm, float32)."""
    from openmm import unit

    from equiforce.units import kj_per_mol_to_ev, nm_to_angstrom
    from equiforce.water_geometry import EXTREME_NAMES, water_extremes

    state = context.getState(getEnergy=True, getForces=True, getPositions=True)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)  # [N, 3]
    magnitudes = kj_per_mol_to_ev(np.linalg.norm(forces, axis=1)) / nm_to_angstrom(1.0)  # [N] eV/Å
    extremes = water_extremes(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                              state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    return [time_ps, state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            float(magnitudes.max()), float(np.argmax(magnitudes))] + [extremes[name] for name in EXTREME_NAMES], \
        state.getPositions(asNumpy=True).value_in_unit(unit.nanometer).astype(np.float32)


def save(case_dir, context, rows, frames):
    """The state (to continue from), the trace rows and the positions of every row, each written atomically."""
    import openmm

    state = context.getState(getPositions=True, getVelocities=True)
    for name, write in (("state.xml", lambda h: h.write(openmm.XmlSerializer.serialize(state))),
                        ("positions.npy", lambda h: np.save(h, np.array(frames))),
                        ("trace.npy", lambda h: np.save(h, np.array(rows)))):
        path = os.path.join(case_dir, name)
        with open(path + ".tmp", "w" if name.endswith(".xml") else "wb") as handle:
            write(handle)
        os.replace(path + ".tmp", path)


def recorded_series(path, key):
    """The benchmark's (time, kinetic, potential) series of case ``key`` from its JSON, or None."""
    from equiforce.bench import case_key

    if not os.path.exists(path):
        return None
    with open(path) as handle:
        result = json.load(handle)
    for record in result["records"]:
        if case_key(record["method"], record["dtype"], record["dt_fs"], record["n_atoms"] // 3) == key:
            series = record["series"]
            return np.array([series["time_ps"], series["kinetic"], series["potential"]]).T  # [S, 3]
    return None


def agreement(trace, recorded):
    """How far the trace reproduces the benchmark's series: samples compared, first differing time, largest
    difference of the total energy (kJ/mol) over the common samples."""
    if recorded is None:
        return None
    n = min(len(trace), len(recorded))
    difference = np.abs(trace[:n, 1] + trace[:n, 2] - recorded[:n, 1] - recorded[:n, 2])  # [n] kJ/mol
    differing = np.nonzero(difference > 1e-6)[0]
    return {"samples_compared": int(n), "max_total_energy_difference_kJ_per_mol": float(difference.max()),
            "first_differing_ps": float(trace[differing[0], 0]) if len(differing) else None}


def energy_jumps(trace, sample_every_ps, top):
    """The ``top`` largest rises of the total energy between consecutive BLOCK_PS block means, each with the
    geometry extremes inside the two blocks; and the extremes' 1st/50th/99th percentiles over the run."""
    from equiforce.water_geometry import EXTREME_NAMES

    per_block = max(1, int(round(BLOCK_PS / sample_every_ps)))
    n_blocks = len(trace) // per_block
    blocks = trace[:n_blocks * per_block].reshape(n_blocks, per_block, -1)  # [B, per_block, columns]
    total = blocks[:, :, 1] + blocks[:, :, 2]  # [B, per_block] kJ/mol
    rises = np.diff(total.mean(axis=1))  # [B - 1]
    order = np.argsort(rises)[::-1][:top]
    columns = {name: 5 + i for i, name in enumerate(EXTREME_NAMES)}

    def extremes(rows):
        found = {"max_force_eV_per_angstrom": float(rows[:, 3].max())}
        for name, column in columns.items():
            pick = np.max if name.endswith("_max") or name.startswith("protons") else np.min
            found[name] = float(pick(rows[:, column]))
        return found

    jumps = [dict(start_ps=float(blocks[i, 0, 0]), end_ps=float(blocks[i + 1, -1, 0]),
                  rise_kJ_per_mol=float(rises[i]), **extremes(blocks[i:i + 2].reshape(-1, trace.shape[1])))
             for i in order]
    typical = {"max_force_eV_per_angstrom": np.percentile(trace[:, 3], [1, 50, 99]).tolist()}
    typical.update({name: np.percentile(trace[:, column], [1, 50, 99]).tolist() for name, column in columns.items()})
    return {"block_ps": BLOCK_PS, "rise_std_kJ_per_mol": float(rises.std()), "largest_rises": jumps,
            "percentiles_1_50_99": typical}


def culprits(trace, frames, box_nm, spike_factor=3.0):
    """Which molecules the extremes belong to: for every sample whose largest force is over ``spike_factor`` x
    the run's median largest force, and for the last sample, the molecule of the most-pushed atom with its
    two O–H bond lengths (Å) and angle; plus the history of the longest bond at the end of the run.

    frames [S, N, 3] nm (O, H, H per molecule), box_nm [3, 3]."""
    from equiforce.units import nm_to_angstrom
    from equiforce.water_geometry import bonds_and_angles, orthorhombic_edges_nm

    molecules = nm_to_angstrom(frames.reshape(len(frames), -1, 3, 3).astype(float))  # [S, M, 3, 3] Å
    lengths, angles = bonds_and_angles(molecules, nm_to_angstrom(orthorhombic_edges_nm(box_nm)))  # [S, M, 2], [S, M]
    threshold = spike_factor * np.median(trace[:, 3])
    picked = sorted(set(np.nonzero(trace[:, 3] > threshold)[0].tolist()) | {len(trace) - 1})
    rows = []
    for index in picked:
        molecule = int(trace[index, 4]) // 3
        rows.append({"time_ps": float(trace[index, 0]), "max_force_eV_per_angstrom": float(trace[index, 3]),
                     "atom": int(trace[index, 4]), "molecule": molecule,
                     "oh_bonds_angstrom": lengths[index, molecule].tolist(), "hoh_degrees": float(angles[index, molecule])})
    last_molecule, last_bond = np.unravel_index(np.argmax(lengths[-1]), lengths[-1].shape)
    window = slice(max(0, len(trace) - 60), len(trace))
    return {"spike_threshold_eV_per_angstrom": float(threshold), "spikes": rows,
            "longest_bond_at_end": {"molecule": int(last_molecule), "hydrogen": int(last_bond) + 1,
                                    "time_ps": trace[window, 0].tolist(),
                                    "length_angstrom": lengths[window, last_molecule, last_bond].tolist(),
                                    "other_bond_angstrom": lengths[window, last_molecule, 1 - last_bond].tolist()}}


def wall_trace(frames, box_nm, config):
    """Per sample, how deep the box sits in the model's short-range wall: [S, 4] = wall energy (eV), its
    intramolecular part (eV), the largest pair energy (eV), shortest intramolecular H–H (Å). None without a wall."""
    from equiforce.water_geometry import wall_contacts

    if not config.get("repulsion_strength"):
        return None
    rows = []
    for positions in frames:
        found = wall_contacts(positions, box_nm, config["repulsion_radii"], config["repulsion_strength"])
        rows.append([found["wall_energy_eV"], found["intramolecular_wall_energy_eV"], found["largest_pair_energy_eV"],
                     found["hh_intra_min"]])
    return np.array(rows)


def wall_versus_jumps(trace, walls, sample_every_ps):
    """Do the energy rises come with the wall? Per BLOCK_PS block: the rise of the mean total energy into the
    next block and the largest single-pair wall energy in the two blocks; their correlation, and the mean rise
    of the blocks whose wall peak is in the top tenth against the others."""
    per_block = max(1, int(round(BLOCK_PS / sample_every_ps)))
    n_blocks = len(trace) // per_block
    total = (trace[:n_blocks * per_block, 1] + trace[:n_blocks * per_block, 2]).reshape(n_blocks, per_block)
    rises = np.diff(total.mean(axis=1))  # [B - 1] kJ/mol
    peak = walls[:n_blocks * per_block, 2].reshape(n_blocks, per_block).max(axis=1)  # [B] eV
    pair_peak = np.maximum(peak[:-1], peak[1:])  # [B - 1]
    top = pair_peak >= np.percentile(pair_peak, 90)
    return {"blocks": int(len(rises)),
            "correlation_rise_vs_wall_peak": float(np.corrcoef(rises, pair_peak)[0, 1]) if len(rises) > 2 else None,
            "mean_rise_top_tenth_wall_kJ_per_mol": float(rises[top].mean()),
            "mean_rise_other_blocks_kJ_per_mol": float(rises[~top].mean()),
            "share_of_samples_inside_the_wall": float(np.mean(walls[:, 0] > 0)),
            "wall_energy_eV_percentiles_50_99_max": np.percentile(walls[:, 0], [50, 99, 100]).tolist(),
            "largest_pair_energy_eV_percentiles_50_99_max": np.percentile(walls[:, 2], [50, 99, 100]).tolist(),
            "hh_intra_min_angstrom_percentiles_1_50_99": np.percentile(walls[:, 3], [1, 50, 99]).tolist()}


def plot(trace, data_ranges, walls, title, path, ran_away=False, wall_energy=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equiforce.water_geometry import EXTREME_NAMES

    column = {name: 5 + i for i, name in enumerate(EXTREME_NAMES)}
    if ran_away:  # the last sample is the blow-up itself; drawn, it would flatten every panel
        trace = trace[:-1]
        wall_energy = None if wall_energy is None else wall_energy[:-1]
    time_ps = trace[:, 0]
    figure, axes = plt.subplots(5 if wall_energy is not None else 4, 1, figsize=(9, 12), sharex=True)
    total = trace[:, 1] + trace[:, 2]
    axes[0].plot(time_ps, total - total[0], lw=0.5)
    axes[0].set_ylabel("total energy − start (kJ/mol)")
    axes[1].plot(time_ps, trace[:, column["oh_bond_max"]], lw=0.5, label="longest O–H bond")
    axes[1].plot(time_ps, trace[:, column["oh_bond_min"]], lw=0.5, label="shortest O–H bond")
    if data_ranges:
        for value in (data_ranges["oh_min_angstrom"], data_ranges["oh_max_angstrom"]):
            axes[1].axhline(value, color="k", ls=":", lw=0.8)
    axes[1].set_ylabel("Å (dotted: data range)")
    axes[1].legend(fontsize=8, loc="upper right")
    for name, label in (("oh_inter_min", "closest O···H"), ("hh_inter_min", "closest H···H"),
                        ("oo_min", "closest O···O")):
        axes[2].plot(time_ps, trace[:, column[name]], lw=0.5, label=label)
    for pair in walls or {}:
        axes[2].axhline(walls[pair], color="k", ls=":", lw=0.8)
    axes[2].set_ylabel("Å (dotted: wall onsets)")
    axes[2].legend(fontsize=8, loc="upper right")
    axes[3].semilogy(time_ps, trace[:, 3], lw=0.5)
    axes[3].set_ylabel("largest force on an atom (eV/Å)")
    if wall_energy is not None:
        axes[4].plot(time_ps, wall_energy[:, 0], lw=0.5, label="whole box")
        axes[4].plot(time_ps, wall_energy[:, 2], lw=0.5, label="largest pair")
        axes[4].set_ylabel("short-range wall energy (eV)")
        axes[4].legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("NVE time (ps)")
    axes[0].set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> int:
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    import torch
    from openmm import unit
    from tqdm import tqdm

    from equiforce.bench import NVE_RUNAWAY_FACTOR as RUNAWAY_FACTOR
    from equiforce.bench import NVE_TEMPERATURE_K as TEMPERATURE_K
    from equiforce.bench import NVEProtocol, benchmark_model, case_key, describe_machine, file_sha256, write_json
    from equiforce.export import read_metadata
    from equiforce.units import boltzmann_kj_per_mol
    from equiforce.water_geometry import EXTREME_NAMES

    args = parse(argv)
    args.model = args.model or benchmark_model(os.path.join("runs", "bench", "untrained-water.pt"))
    torch.set_num_threads(1)
    protocol = NVEProtocol(threads=1)  # the benchmark's protocol, one thread (as the recorded runs)
    key = case_key("equiforce", args.dtype, args.timestep, args.molecules)
    case_dir = os.path.join(args.work, key)
    context, integrator, topology, rows, frames = open_case(args, protocol, case_dir)
    n_dof = 3 * topology.getNumAtoms() - 3
    hot = 0.5 * n_dof * boltzmann_kj_per_mol(RUNAWAY_FACTOR * TEMPERATURE_K)  # kJ/mol
    sample_every_ps = protocol.sample_every * args.timestep / 1000.0
    n_samples = int(round(args.until_ps / sample_every_ps)) + 1
    deadline = None if args.max_minutes is None else time.monotonic() + 60 * args.max_minutes
    stopped = f"runaway at {rows[-1][0]:.3f} ps" if rows and rows[-1][1] > hot else None  # a resumed runaway
    with tqdm(total=n_samples, initial=len(rows), desc=f"traced NVE {key}") as bar:
        while len(rows) < n_samples and not stopped:
            if rows:
                integrator.step(protocol.sample_every)
            row, positions = sample(context, len(rows) * sample_every_ps)
            rows.append(row)
            frames.append(positions)
            bar.update(1)
            if rows[-1][1] > hot:
                stopped = f"runaway at {rows[-1][0]:.3f} ps"
            out_of_time = deadline is not None and time.monotonic() > deadline
            if len(rows) % 500 == 0 or stopped or out_of_time:
                save(case_dir, context, rows, frames)
            if stopped:
                break
            if out_of_time:
                print(f"stopped at the time limit ({len(rows)}/{n_samples} samples saved in {case_dir}); "
                      f"the report covers them; rerun the same command to continue")
                break
    save(case_dir, context, rows, frames)

    trace = np.array(rows)  # [S, 5 + len(EXTREME_NAMES)]
    scans_path = os.path.join(RESULTS, "water_scans.json")
    scans = json.load(open(scans_path)) if os.path.exists(scans_path) else {}
    result = {
        "machine": describe_machine(), "model": args.model, "model_sha256": file_sha256(args.model),
        "case": key, "dtype": args.dtype, "dt_fs": args.timestep, "n_atoms": topology.getNumAtoms(),
        "protocol": protocol.__dict__, "traced_ps": float(trace[-1, 0]), "requested_ps": args.until_ps,
        "complete": stopped is not None or len(rows) >= n_samples, "stopped": stopped,
        "reproduces_benchmark": agreement(trace, recorded_series(args.compare_with, key)),
        "data_ranges": scans.get("data_ranges"), "wall_onsets_angstrom": scans.get("wall_onsets_angstrom"),
        "events": energy_jumps(trace, sample_every_ps, args.top),
        "columns": ["time_ps", "kinetic_kJ_per_mol", "potential_kJ_per_mol", "max_force_eV_per_angstrom",
                    "max_force_atom"] + list(EXTREME_NAMES),
    }
    if not stopped:  # the same fit as the benchmark's records (block-average standard error)
        from equiforce.analysis import energy_drift

        n_atoms = topology.getNumAtoms()
        drift = energy_drift(trace[:, 0], trace[:, 1] + trace[:, 2], trace[:, 1], n_atoms, n_dof, TEMPERATURE_K)
        result["drift"] = {k: float(v) for k, v in drift.as_dict().items()}
    state_box = context.getState().getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    result["culprits"] = culprits(trace, np.array(frames), state_box)
    walls = wall_trace(frames, state_box, read_metadata(args.model)["config"])
    if walls is not None:
        result["wall"] = wall_versus_jumps(trace, walls, sample_every_ps)
        np.save(os.path.join(case_dir, "wall_final.npy"), walls)
    if stopped:  # the last samples before the runaway, at full resolution
        result["last_samples"] = trace[-40:].tolist()
    out = os.path.join(RESULTS, f"nve_events_{key}")
    write_json(result, out + ".json")
    np.save(os.path.join(case_dir, "trace_final.npy"), trace)
    plot(trace, scans.get("data_ranges"), scans.get("wall_onsets_angstrom"),
         f"traced NVE, shipped model {args.dtype}, {args.timestep} fs, {topology.getNumAtoms()} atoms"
         + (f" ({stopped}; last sample not drawn)" if stopped else ""), out + ".png", ran_away=stopped is not None,
         wall_energy=walls)
    print(json.dumps({k: result[k] for k in ("traced_ps", "stopped", "reproduces_benchmark")}, indent=1))
    for jump in result["events"]["largest_rises"]:
        print(jump)
    print(result["events"]["percentiles_1_50_99"])
    print(result.get("wall"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
