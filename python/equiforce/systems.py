"""Test and benchmark systems: periodic liquid-water boxes and their classical force field."""
import math
from typing import Callable, Optional, Tuple

import numpy as np
import openmm
import openmm.app as app
from openmm import unit

#: TIP3P geometry, used to place molecules (Å and degrees).
OH_BOND_ANGSTROM = 0.9572
HOH_ANGLE_DEGREES = 104.52


def water_mass_dalton() -> float:
    """Mass of one H2O molecule in Da."""
    return app.element.oxygen.mass.value_in_unit(unit.dalton) + 2 * app.element.hydrogen.mass.value_in_unit(
        unit.dalton
    )


def box_edge_nm(n_molecules: int, density_g_per_cm3: float) -> float:
    """Edge (nm) of the cubic box holding ``n_molecules`` waters at the given density."""
    mass_g = (n_molecules * water_mass_dalton() * unit.gram / unit.mole / unit.AVOGADRO_CONSTANT_NA).value_in_unit(
        unit.gram
    )
    volume_cm3 = mass_g / density_g_per_cm3
    return (volume_cm3 ** (1.0 / 3.0) * unit.centimeter).value_in_unit(unit.nanometer)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3×3 rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def water_topology(n_molecules: int, box_nm: float) -> app.Topology:
    """Topology of ``n_molecules`` HOH residues (atoms O, H1, H2, bonded) in a cubic box of edge box_nm."""
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(n_molecules):
        residue = topology.addResidue("HOH", chain)
        o = topology.addAtom("O", app.element.oxygen, residue)
        h1 = topology.addAtom("H1", app.element.hydrogen, residue)
        h2 = topology.addAtom("H2", app.element.hydrogen, residue)
        topology.addBond(o, h1)
        topology.addBond(o, h2)
    topology.setPeriodicBoxVectors(
        (openmm.Vec3(box_nm, 0, 0), openmm.Vec3(0, box_nm, 0), openmm.Vec3(0, 0, box_nm)) * unit.nanometer
    )
    return topology


def water_box(n_molecules: int, density_g_per_cm3: float = 1.0, seed: int = 0) -> Tuple[app.Topology, np.ndarray]:
    """A periodic cubic box of liquid-density water: molecules on a jittered grid, random orientations.

    Returns (topology, positions [3 n_molecules, 3] in nm). Minimise or equilibrate before production.
    """
    if n_molecules < 1:
        raise ValueError(f"n_molecules must be at least 1, got {n_molecules}")
    rng = np.random.default_rng(seed)
    edge_nm = box_edge_nm(n_molecules, density_g_per_cm3)
    per_side = math.ceil(n_molecules ** (1.0 / 3.0) - 1e-9)
    spacing = edge_nm / per_side
    sites = np.array([(i, j, k) for i in range(per_side) for j in range(per_side) for k in range(per_side)], float)
    sites = sites[rng.permutation(len(sites))[:n_molecules]]
    half_angle = math.radians(HOH_ANGLE_DEGREES) / 2
    bond_nm = (OH_BOND_ANGSTROM * unit.angstrom).value_in_unit(unit.nanometer)
    local = np.array(
        [
            [0.0, 0.0, 0.0],
            [bond_nm * math.sin(half_angle), bond_nm * math.cos(half_angle), 0.0],
            [-bond_nm * math.sin(half_angle), bond_nm * math.cos(half_angle), 0.0],
        ]
    )
    positions = []
    for site in sites:
        centre = (site + 0.5 + rng.uniform(-0.1, 0.1, size=3)) * spacing
        positions.append(centre + local @ random_rotation(rng).T)
    return water_topology(n_molecules, edge_nm), np.concatenate(positions)


def classical_water_system(topology: app.Topology, cutoff_nm: float = 0.45, ewald_tolerance: float = 5e-4,
                           flexible: bool = True) -> openmm.System:
    """Flexible (or rigid) TIP3P-FB with PME, from OpenMM's amber14/tip3pfb.xml."""
    forcefield = app.ForceField("amber14/tip3pfb.xml")
    system = forcefield.createSystem(
        topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=cutoff_nm * unit.nanometer,
        constraints=None if flexible else app.HBonds,
        rigidWater=not flexible,
        ewaldErrorTolerance=ewald_tolerance,
    )
    return system


def tip3pfb_system(topology: app.Topology, max_cutoff_fraction: float = 0.49) -> openmm.System:
    """Flexible TIP3P-FB with PME, real-space cutoff 0.9 nm or ``max_cutoff_fraction`` of the shortest box edge if
    smaller (it must stay below half the edge: leave room for the box to shrink under a barostat)."""
    edge_nm = min(v[i] for i, v in enumerate(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)))
    return classical_water_system(topology, cutoff_nm=min(0.9, max_cutoff_fraction * edge_nm))


#: Time step of the classical start (fs).
CLASSICAL_TIMESTEP_FS = 0.5


def classical_steps(time_ps: float) -> int:
    """Steps :func:`equilibrate_classically` runs for ``time_ps``."""
    return int(round(time_ps * 1000.0 / CLASSICAL_TIMESTEP_FS))


def equilibrate_classically(topology: app.Topology, positions_nm: np.ndarray, temperature_K: float,
                            time_ps: float, seed: int = 0, friction_per_ps: float = 1.0,
                            platform: str = "CPU", properties: dict = None,
                            progress: Optional[Callable[[int], None]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Minimise, then run Langevin NVT with flexible TIP3P-FB (0.5 fs steps) for ``time_ps``.

    A machine-learned water model should start from liquid, not from a grid: the grid's close contacts and
    strained molecules lie outside its training data. Returns (positions [n_atoms, 3] in nm, velocities
    [n_atoms, 3] in nm/ps). ``progress``, if given, is called with the number of steps of each block of 200 as
    it finishes (for a progress bar; :func:`classical_steps` is the total).
    """
    timestep = CLASSICAL_TIMESTEP_FS * unit.femtoseconds
    integrator = openmm.LangevinMiddleIntegrator(temperature_K * unit.kelvin, friction_per_ps / unit.picosecond,
                                                 timestep)
    integrator.setRandomNumberSeed(seed)
    context = openmm.Context(tip3pfb_system(topology), integrator, openmm.Platform.getPlatformByName(platform),
                             properties or {})
    context.setPositions(positions_nm * unit.nanometer)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(temperature_K * unit.kelvin, seed)
    remaining = classical_steps(time_ps)
    while remaining > 0:
        block = remaining if progress is None else min(200, remaining)
        integrator.step(block)
        remaining -= block
        if progress is not None:
            progress(block)
    state = context.getState(getPositions=True, getVelocities=True)
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    velocities = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
    return np.asarray(positions), np.asarray(velocities)
