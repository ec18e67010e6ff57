#!/usr/bin/env python
"""Is float32 rounding what heats the float32 NVE runs? The force error of the float32 model, measured, and the
drift it predicts.

Along a float64 Verlet trajectory of the NVE benchmark's 96-atom water box (started from the saved state of the
float64, 0.5 fs NVE run), the same positions are given to a second OpenMM context whose TorchForce runs the
shipped model in float32. The difference dF = F32 - F64 is the float32 force error, exactly as the NVE runs see
it. If that error is noise that forgets itself from one step to the next, each Verlet step adds on average
sum_i |dF_i|^2 dt^2 / (2 m_i) of kinetic energy (the cross term v.dF averages to zero; that is checked too), a
steady heating of

    dE/dt = dt * sum_i <|dF_i|^2> / (2 m_i)

which grows in proportion to the time step. The script writes the measured error, this prediction for 0.25,
0.5 and 1 fs in the NVE benchmark's unit (kT per ns per degree of freedom), the measured cross term, and the
float32 drifts recorded in ``benchmarks/results/nve.json`` beside them, to
``benchmarks/results/float32_force_noise.json``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/float32_force_noise.py [--samples 200] [--every 10]``
"""
import argparse
import json
import os
import sys

import numpy as np

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATE = os.path.join(REPOSITORY, "runs", "bench", "nve", "equiforce-float64-0.5fs-32mol", "state.xml")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="configurations compared")
    parser.add_argument("--every", type=int, default=10, help="float64 Verlet steps (0.5 fs) between them")
    parser.add_argument("--state", default=STATE, help="OpenMM state XML of the 96-atom water box to start from")
    parser.add_argument("--out", default=os.path.join(REPOSITORY, "benchmarks", "results",
                                                      "float32_force_noise.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    import torch  # before openmm and openmmtorch (see README)

    import equiforce  # noqa: F401  (loads the TorchForce plugin)
    import openmm
    from openmm import unit
    from tqdm import tqdm

    from equiforce.bench import NVE_TEMPERATURE_K as TEMPERATURE_K
    from equiforce.bench import describe_machine, nve_system, write_json
    from equiforce.demo import SHIPPED_MODEL
    from equiforce.systems import water_box
    from equiforce.units import boltzmann_kj_per_mol

    torch.set_num_threads(1)
    if not os.path.exists(args.state):
        raise SystemExit(f"{args.state} is missing: run the NVE benchmark's float64 0.5 fs case first "
                         "(equiforce bench nve --dtypes float64 --timesteps 0.5 --molecules 32 --threads 1)")
    topology, _ = water_box(32, 1.0, seed=1)
    platform = openmm.Platform.getPlatformByName("CPU")
    contexts = {}
    for dtype in ("float64", "float32"):
        integrator = openmm.VerletIntegrator(0.5 * unit.femtoseconds)
        contexts[dtype] = (openmm.Context(nve_system("equiforce", dtype, SHIPPED_MODEL, topology), integrator, platform,
                                          {"Threads": "1"}), integrator)
    with open(args.state) as handle:
        contexts["float64"][0].setState(openmm.XmlSerializer.deserialize(handle.read()))
    masses = np.array([a.element.mass.value_in_unit(unit.dalton) for a in topology.atoms()])  # [N] g/mol
    n_dof = 3 * len(masses) - 3

    squared_error = []  # [samples, N] |dF_i|^2, (kJ/mol/nm)^2
    squared_force = []  # [samples] mean |F_i|^2
    power = []  # [samples] sum_i v_i . dF_i, kJ/mol/ps
    context64, integrator64 = contexts["float64"]
    context32, _ = contexts["float32"]
    for _ in tqdm(range(args.samples), desc="float32 vs float64 forces"):
        integrator64.step(args.every)
        state = context64.getState(getPositions=True, getVelocities=True, getForces=True)
        context32.setPositions(state.getPositions())
        forces64 = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        forces32 = context32.getState(getForces=True).getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer)
        error = forces32 - forces64  # [N, 3]
        velocities = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
        squared_error.append((error ** 2).sum(axis=1))
        squared_force.append(float((forces64 ** 2).sum(axis=1).mean()))
        power.append(float((velocities * error).sum()))

    squared_error = np.array(squared_error)
    kT = boltzmann_kj_per_mol(TEMPERATURE_K)
    # <sum_i |dF_i|^2 / (2 m_i)>: (kJ/mol/nm)^2 / (g/mol) = kJ/mol/ps^2; times dt (ps) gives kJ/mol/ps
    heating_per_ps2 = float((squared_error / (2.0 * masses)).sum(axis=1).mean())
    per_ns = 1000.0
    predicted = {f"{dt_fs:g}": heating_per_ps2 * dt_fs * 1e-3 * per_ns / kT / n_dof for dt_fs in (0.25, 0.5, 1.0)}
    measured = {}
    nve_file = os.path.join(REPOSITORY, "benchmarks", "results", "nve.json")
    if os.path.exists(nve_file):
        with open(nve_file) as handle:
            for record in json.load(handle)["records"]:
                if record["method"] == "equiforce" and record["n_atoms"] == len(masses):
                    measured[f"{record['dtype']} {record['dt_fs']:g}"] = (
                        record.get("failed") or [record["drift_kT_per_ns_per_dof"],
                                                 record["drift_stderr_kT_per_ns_per_dof"]])
    power = np.array(power)
    result = {
        "machine": describe_machine(), "state": os.path.relpath(args.state, REPOSITORY), "n_atoms": len(masses),
        "samples": args.samples, "steps_between_samples": args.every,
        "rms_force_error_kJ_per_mol_per_nm": {
            element: float(np.sqrt(squared_error[:, [a.element.symbol == element for a in topology.atoms()]].mean()))
            for element in ("H", "O")},
        "rms_force_kJ_per_mol_per_nm": float(np.sqrt(np.mean(squared_force))),
        "cross_term_v_dot_dF_kJ_per_mol_per_ps": {"mean": float(power.mean()),
                                                  "stderr": float(power.std(ddof=1) / np.sqrt(len(power)))},
        "predicted_heating_kT_per_ns_per_dof": predicted,
        "measured_nve_drift_kT_per_ns_per_dof": measured,
    }
    write_json(result, args.out)  # atomic: a run cut short leaves the last complete file
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
