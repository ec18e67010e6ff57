"""NVE trajectories of one molecule in OpenMM with an exported model, and its properties along them.

The pieces of ``equiforce spectra``: :func:`run_nve_trajectories` thermalises an open (non-periodic) molecule at
a temperature with a Langevin integrator, then runs NVE (velocity Verlet) and saves frames to DCD files;
:func:`trajectory_properties` reads them back with mdtraj and evaluates an exported property model
(``export_model(..., properties=True)``) on every frame.
"""
import os
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from ..units import ANGSTROM_PER_NM, kj_per_mol_to_ev


@dataclass
class NVESettings:
    """Protocol of the NVE runs. Times in fs and ps, temperature in K.

    Attributes
    ----------
    temperature_K : thermalisation temperature (Langevin, friction ``friction_per_ps``).
    trajectories : independent trajectories (each with its own velocities and Langevin noise).
    thermalise_ps, nve_ps : length of the Langevin and of the NVE part of each trajectory.
    timestep_fs : integration step of both.
    save_every_fs : time between saved NVE frames (the Δt of the spectra; a multiple of ``timestep_fs``).
    platform : OpenMM platform ("Reference" or "CPU").
    seed : seeds trajectory k with ``seed + k + 1``.
    zero_angular_momentum : remove the overall rotation at the start of NVE (the vibrations keep their thermal
        energy). A freely rotating molecule's IR and anisotropic Raman bands are spread into rotational branches
        (P/R, O/S, tens of cm⁻¹ wide at 300 K) whose maxima are not the band centres; without rotation the bands
        are the vibrational lines alone. The energy model conserves angular momentum, so it stays zero.
    """

    temperature_K: float = 300.0
    trajectories: int = 6
    thermalise_ps: float = 0.5
    nve_ps: float = 10.0
    timestep_fs: float = 0.5
    save_every_fs: float = 2.0
    friction_per_ps: float = 10.0
    platform: str = "Reference"
    seed: int = 0
    zero_angular_momentum: bool = True

    def __post_init__(self) -> None:
        if self.temperature_K <= 0 or self.trajectories < 1 or self.timestep_fs <= 0:
            raise ValueError("temperature_K, trajectories and timestep_fs must be positive")
        if self.thermalise_ps < 0 or self.nve_ps <= 0:
            raise ValueError("thermalise_ps must be >= 0 and nve_ps > 0")
        stride = self.save_every_fs / self.timestep_fs
        if stride < 1 or abs(stride - round(stride)) > 1e-9:
            raise ValueError(f"save_every_fs ({self.save_every_fs}) must be a multiple of timestep_fs "
                             f"({self.timestep_fs})")

    @property
    def stride(self) -> int:
        """Integration steps between saved frames."""
        return int(round(self.save_every_fs / self.timestep_fs))


def remove_rotation(positions, velocities, masses):
    """Velocities [N, 3] minus the rigid rotation ω × (r - r_cm) that carries the angular momentum about the centre
    of mass (ω = I⁻¹ L). Any consistent units; masses [N]."""
    masses = np.asarray(masses, dtype=np.float64)[:, None]  # [N, 1]
    r = positions - (masses * positions).sum(0) / masses.sum()  # [N, 3]
    momentum = (masses * np.cross(r, velocities)).sum(0)  # [3]
    inertia = (masses[:, 0] * (r**2).sum(1)).sum() * np.eye(3) - (masses * r).T @ r  # [3, 3]
    omega = np.linalg.solve(inertia, momentum)  # [3]
    return velocities - np.cross(omega, r)


def molecule_topology(symbols: List[str]):
    """An OpenMM topology of one residue holding ``symbols`` (no box: open boundaries)."""
    from openmm.app import Element, Topology

    topology = Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    for k, symbol in enumerate(symbols):
        topology.addAtom(f"{symbol}{k + 1}", Element.getBySymbol(symbol), residue)
    return topology


def _same_protocol(stored: Dict, current: Dict) -> bool:
    """Whether a stored trajectory was run with the current settings (their number may differ)."""
    return {k: v for k, v in stored.items() if k != "trajectories"} == \
        {k: v for k, v in current.items() if k != "trajectories"}


def run_nve_trajectories(model_file: str, atoms, settings: NVESettings, out_dir: str, log=print) -> Dict:
    """Thermalise and run ``settings.trajectories`` NVE trajectories of ``atoms`` (ase.Atoms, Å) with the exported
    energy model; writes ``out_dir/molecule.pdb`` and ``out_dir/nve_<k>.dcd``.

    Returns ``{"topology": pdb path, "trajectories": [dcd paths], "mean_temperature_K": [...], "energy_drift_eV":
    [...]}``: the mean kinetic temperature of each NVE part (3N - 3 degrees of freedom, 3N - 6 without rotation)
    and its total-energy change from first to last frame, eV. Resumable: a trajectory whose
    ``nve_<k>.json`` (written after its DCD is complete) matches ``settings`` is not run again.
    """
    import dataclasses
    import json

    import openmm
    from openmm import unit
    from openmm.app import DCDReporter, PDBFile, Simulation

    from ..openmm import create_force

    os.makedirs(out_dir, exist_ok=True)
    symbols = atoms.get_chemical_symbols()
    topology = molecule_topology(symbols)
    positions_nm = np.asarray(atoms.get_positions()) / ANGSTROM_PER_NM  # [N, 3] nm
    pdb_path = os.path.join(out_dir, "molecule.pdb")
    with open(pdb_path, "w") as handle:
        PDBFile.writeFile(topology, positions_nm * unit.nanometer, handle)
    # kinetic degrees of freedom: 3N less the centre of mass, less the rotation when it is removed
    n_dof = 3 * len(symbols) - 3 - (3 if settings.zero_angular_momentum else 0)
    result = {"topology": pdb_path, "trajectories": [], "mean_temperature_K": [], "energy_drift_eV": []}
    for k in range(settings.trajectories):
        dcd_path = os.path.join(out_dir, f"nve_{k}.dcd")
        record_path = os.path.join(out_dir, f"nve_{k}.json")
        if os.path.exists(record_path) and os.path.exists(dcd_path):
            with open(record_path) as handle:
                record = json.load(handle)
            if _same_protocol(record["settings"], dataclasses.asdict(settings)) and \
                    record["model"] == os.path.abspath(model_file):
                for key in ("mean_temperature_K", "energy_drift_eV"):
                    result[key].append(record[key])
                result["trajectories"].append(dcd_path)
                log(f"  NVE trajectory {k + 1}/{settings.trajectories}: done before ({record_path})")
                continue
        system = openmm.System()
        for atom in topology.atoms():
            system.addParticle(atom.element.mass)
        system.addForce(create_force(model_file, topology))
        system.addForce(openmm.CMMotionRemover())
        dt = settings.timestep_fs * unit.femtosecond
        integrator = openmm.CompoundIntegrator()
        langevin = openmm.LangevinMiddleIntegrator(settings.temperature_K * unit.kelvin,
                                                   settings.friction_per_ps / unit.picosecond, dt)
        langevin.setRandomNumberSeed(settings.seed + k + 1)
        integrator.addIntegrator(langevin)
        integrator.addIntegrator(openmm.VerletIntegrator(dt))
        platform = openmm.Platform.getPlatformByName(settings.platform)
        properties = {"Threads": "1"} if settings.platform == "CPU" else {}
        simulation = Simulation(topology, system, integrator, platform, properties)
        simulation.context.setPositions(positions_nm * unit.nanometer)
        simulation.context.setVelocitiesToTemperature(settings.temperature_K * unit.kelvin, settings.seed + k + 1)
        integrator.setCurrentIntegrator(0)
        simulation.step(int(round(settings.thermalise_ps * 1000 / settings.timestep_fs)))
        integrator.setCurrentIntegrator(1)
        if settings.zero_angular_momentum:
            state = simulation.context.getState(getPositions=True, getVelocities=True)
            masses = [system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())]
            speed = unit.nanometer / unit.picosecond
            velocities = remove_rotation(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                                         state.getVelocities(asNumpy=True).value_in_unit(speed), masses)
            simulation.context.setVelocities(velocities * unit.nanometer / unit.picosecond)
        simulation.reporters.append(DCDReporter(dcd_path, settings.stride))
        n_frames = int(round(settings.nve_ps * 1000 / settings.save_every_fs))
        kinetic, total = [], []
        for _ in range(n_frames):
            simulation.step(settings.stride)
            state = simulation.context.getState(getEnergy=True)
            ke = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
            kinetic.append(ke)
            total.append(ke + state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        simulation.reporters.clear()  # closes the DCD file
        del simulation
        r_kj = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
        temperature = 2.0 * float(np.mean(kinetic)) / (n_dof * r_kj)
        drift = float(kj_per_mol_to_ev(total[-1] - total[0]))
        result["trajectories"].append(dcd_path)
        result["mean_temperature_K"].append(temperature)
        result["energy_drift_eV"].append(drift)
        with open(record_path, "w") as handle:
            json.dump({"settings": dataclasses.asdict(settings), "model": os.path.abspath(model_file),
                       "mean_temperature_K": temperature, "energy_drift_eV": drift}, handle, indent=1)
        log(f"  NVE trajectory {k + 1}/{settings.trajectories}: {n_frames} frames, mean T {temperature:.1f} K, "
            f"total-energy change {drift * 1e3:+.3f} meV")
    return result


def trajectory_properties(property_model_file: str, topology_file: str, trajectory_files: List[str]) -> Dict:
    """Dipoles [M, T, 3] (e·Å) and polarizabilities [M, T, 3, 3] (Å³) along M trajectories of T frames each.

    Frames are read with mdtraj (nm, converted to Å); the model file must be a property model
    (``export_model(..., properties=True)``) with ``dipole`` and ``polarizability`` outputs.
    """
    import mdtraj
    import torch

    from ..export import load_model, model_dtype

    module, metadata = load_model(property_model_file)
    outputs = metadata.get("outputs") or []
    missing = [name for name in ("dipole", "polarizability") if name not in outputs]
    if missing:
        raise ValueError(f"{property_model_file} has outputs {outputs}, not {missing}: export the property model "
                         "with export_model(..., properties=True) from a model with these heads")
    dtype = model_dtype(module)
    index = {symbol: k for k, symbol in enumerate(metadata["elements"])}
    dipoles, polarizabilities = [], []
    for path in trajectory_files:
        trajectory = mdtraj.load(path, top=topology_file)
        symbols = [atom.element.symbol for atom in trajectory.topology.atoms]
        unknown = sorted(set(symbols) - set(index))
        if unknown:
            raise ValueError(f"{path}: elements {unknown} are not in the model ({metadata['elements']})")
        species = torch.tensor([index[s] for s in symbols], dtype=torch.long)  # [N]
        xyz = torch.tensor(trajectory.xyz * ANGSTROM_PER_NM, dtype=dtype)  # [T, N, 3] Å
        mu, alpha = [], []
        with torch.no_grad():
            for frame in xyz:
                out = module.properties(frame, species, None)
                mu.append(out["dipole"])  # [3] e·Å
                alpha.append(out["polarizability"])  # [3, 3] Å³
        dipoles.append(torch.stack(mu).double().numpy())
        polarizabilities.append(torch.stack(alpha).double().numpy())
    lengths = {len(d) for d in dipoles}
    if len(lengths) != 1:
        raise ValueError(f"trajectories have different lengths {sorted(lengths)}")
    return {"dipole": np.stack(dipoles), "polarizability": np.stack(polarizabilities)}
