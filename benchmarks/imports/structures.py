"""Structures the imports are checked and timed on, none of them seen by the import: liquid water boxes
(periodic, after flexible TIP3P-FB MD), diamond Si (64 and 216 atoms, rattled) and a triclinic Si cell."""
from typing import Dict

import numpy as np
from ase import Atoms
from ase.build import bulk

from equiforce.systems import equilibrate_classically, water_box
from equiforce.units import ANGSTROM_PER_NM


def liquid_water(n_molecules: int, seed: int = 0, time_ps: float = 1.0) -> Atoms:
    """``n_molecules`` of liquid water at 1 g/cm³ after ``time_ps`` of classical MD at 300 K (Å, periodic)."""
    topology, grid = water_box(n_molecules, density_g_per_cm3=1.0, seed=seed)
    positions_nm, _ = equilibrate_classically(topology, grid, 300.0, time_ps=time_ps, seed=seed)
    box_nm = np.array([[v.x, v.y, v.z] for v in topology.getPeriodicBoxVectors()])
    symbols = [atom.element.symbol for atom in topology.atoms()]
    return Atoms(symbols, positions=positions_nm * ANGSTROM_PER_NM, cell=box_nm * ANGSTROM_PER_NM, pbc=True)


def diamond_silicon(repeat: int, rattle: float = 0.05, seed: int = 1) -> Atoms:
    """Cubic diamond Si (a = 5.43 Å) repeated ``repeat`` times along each axis (8 repeat³ atoms), rattled (Å)."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((repeat, repeat, repeat))
    atoms.rattle(rattle, seed=seed)
    return atoms


def triclinic_silicon(rattle: float = 0.05, seed: int = 2) -> Atoms:
    """The primitive (rhombohedral, 60°) diamond Si cell 3 x 3 x 3 with one vector sheared: 54 atoms, triclinic."""
    atoms = bulk("Si", "diamond", a=5.43).repeat((3, 3, 3))
    cell = np.array(atoms.cell)
    cell[2] += 0.3 * cell[0] - 0.2 * cell[1]  # a general triclinic cell (the lattice points are unchanged)
    atoms.set_cell(cell, scale_atoms=False)
    atoms.wrap()
    atoms.rattle(rattle, seed=seed)
    return atoms


def agreement_structures() -> Dict[str, Atoms]:
    """The named structures of the agreement check."""
    return {
        "water-32 (96 atoms)": liquid_water(32, seed=0),
        "water-59 (177 atoms)": liquid_water(59, seed=1),
        "Si diamond 64": diamond_silicon(2),
        "Si diamond 216": diamond_silicon(3),
        "Si triclinic 54": triclinic_silicon(),
    }
