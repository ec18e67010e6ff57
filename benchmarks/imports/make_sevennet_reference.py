"""Write the stored SevenNet-0 reference of the import tests (tests/data/sevennet0_reference.json).

    python benchmarks/imports/make_sevennet_reference.py

Energies and forces of two small frames computed with SevenNet's own ASE calculator (``SevenNetCalculator('7net-0')``
as shipped, float32): a periodic triclinic cell of mixed elements and an open molecule. The test compares the
imported file against these numbers, so a change in SevenNet, in the import or in the neighbour list shows up
without running SevenNet in the test.
"""
import json
import os
import sys

import numpy as np
from ase import Atoms
from ase.build import molecule

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "sevennet0_reference.json")


def frames():
    rng = np.random.default_rng(7)
    cell = np.array([[6.2, 0.0, 0.0], [1.1, 5.9, 0.0], [-0.8, 0.7, 6.4]])  # Å, triclinic
    symbols = ["Si", "O", "O", "H", "H", "C", "N", "Na", "Cl", "Fe"]
    fractional = (np.arange(len(symbols))[:, None] * np.array([0.37, 0.61, 0.23])) % 1.0
    positions = fractional @ cell + rng.normal(scale=0.15, size=(len(symbols), 3))
    periodic = Atoms(symbols, positions=positions, cell=cell, pbc=True)
    open_molecule = molecule("CH3CH2OH")
    open_molecule.rattle(0.05, seed=3)
    return {"periodic mixed triclinic": periodic, "ethanol in vacuum": open_molecule}


def main() -> int:
    import sevenn
    from sevenn.calculator import SevenNetCalculator

    calculator = SevenNetCalculator("7net-0", device="cpu")
    records = []
    for name, atoms in frames().items():
        atoms.calc = calculator
        records.append({
            "name": name,
            "symbols": atoms.get_chemical_symbols(),
            "positions_angstrom": atoms.positions.tolist(),
            "cell_angstrom": np.asarray(atoms.cell).tolist() if atoms.pbc.all() else None,
            "energy_ev": float(atoms.get_potential_energy()),
            "forces_ev_per_angstrom": atoms.get_forces().tolist(),
        })
        print(f"{name}: {len(atoms)} atoms, E = {records[-1]['energy_ev']:.6f} eV")
    with open(OUT, "w") as handle:
        json.dump({"model": "7net-0", "computed_with": f"sevenn {sevenn.__version__} SevenNetCalculator, float32",
                   "frames": records}, handle, indent=1)
    print(f"wrote {os.path.normpath(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
