"""Write ``start.pdb``: one Na+ and one Cl- in 30 water molecules, a cubic periodic box at 1.0 g/cm³ of water.

The waters sit on a jittered lattice with random orientations (``equiforce.systems.water_box`` of 32 molecules);
two of them, far apart, are replaced by the ions at their oxygen positions, so the pair starts solvent-separated
(about half a box edge apart). ``equiforce sample`` minimises it with the classical force field before any MD.

    python recipes/nacl/make_start.py            # -> recipes/nacl/start.pdb
"""
import argparse
import os

import numpy as np
from openmm import app, unit

from equiforce.systems import box_edge_nm, water_box

HERE = os.path.dirname(os.path.abspath(__file__))


def solvated_ion_pair(n_molecules: int = 32, seed: int = 0):
    """Topology and positions (nm) of NaCl in ``n_molecules - 2`` waters."""
    water_topology, positions_nm = water_box(n_molecules, 1.0, seed=seed)
    oxygens = positions_nm[0::3]
    # The ions take the places of molecule 0 and of the molecule farthest from it (minimum image).
    edge = box_edge_nm(n_molecules, 1.0)
    delta = oxygens - oxygens[0]
    delta -= edge * np.round(delta / edge)
    far = int(np.argmax(np.linalg.norm(delta, axis=1)))
    topology = app.Topology()
    chain = topology.addChain()
    kept = []
    for name, element, where in (("NA", app.element.sodium, 0), ("CL", app.element.chlorine, far)):
        residue = topology.addResidue(name, chain)
        topology.addAtom(name, element, residue)
        kept.append(oxygens[where])
    for k in range(n_molecules):
        if k in (0, far):
            continue
        residue = topology.addResidue("HOH", chain)
        for atom_name, element in (("O", app.element.oxygen), ("H1", app.element.hydrogen),
                                   ("H2", app.element.hydrogen)):
            topology.addAtom(atom_name, element, residue)
        kept.extend(positions_nm[3 * k:3 * k + 3])
    topology.setPeriodicBoxVectors(water_topology.getPeriodicBoxVectors())
    return topology, np.array(kept)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=os.path.join(HERE, "start.pdb"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    topology, positions = solvated_ion_pair(seed=args.seed)
    with open(args.output, "w") as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)
    print(f"wrote {args.output}: {topology.getNumAtoms()} atoms, box edge "
          f"{topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.angstrom):.3f} Å")


if __name__ == "__main__":
    main()
