"""``create_force``: an exported equiforce model as an ``openmmtorch.TorchForce``."""
from typing import Iterable, List, Optional, Sequence

import torch  # must come before openmmtorch (it needs torch's libraries)
import openmm.app
import openmmtorch

from ..export import load_model
from ..export._metadata import DTYPES
from ._boundary import OpenMMEnergy


def _atom_label(atom: openmm.app.Atom) -> str:
    residue = atom.residue
    return f"atom {atom.index} ({atom.name} in residue {residue.name} {residue.id})"


def _select_atoms(topology: openmm.app.Topology, atoms: Optional[Iterable[int]]) -> List[openmm.app.Atom]:
    all_atoms = list(topology.atoms())
    if atoms is None:
        return all_atoms
    indices = [int(i) for i in atoms]
    if len(indices) == 0:
        raise ValueError("atoms is empty: give the indices of the atoms the model should describe")
    if len(set(indices)) != len(indices):
        duplicate = next(i for i in indices if indices.count(i) > 1)
        raise ValueError(f"atoms lists atom {duplicate} more than once")
    for i in indices:
        if not 0 <= i < len(all_atoms):
            raise ValueError(f"atoms contains index {i}, but the topology has {len(all_atoms)} atoms")
    return [all_atoms[i] for i in indices]


def species_for_atoms(atoms: Sequence[openmm.app.Atom], elements: Sequence[str], model_path: str) -> torch.Tensor:
    """Species indices [n] for OpenMM atoms; the first atom of an unknown element raises a ValueError."""
    index_of = {symbol: k for k, symbol in enumerate(elements)}
    species = []
    for atom in atoms:
        if atom.element is None:
            raise ValueError(f"{_atom_label(atom)} has no element (a virtual site?); the model needs one")
        symbol = atom.element.symbol
        if symbol not in index_of:
            raise ValueError(
                f"the model {model_path} knows elements {list(elements)}, but {_atom_label(atom)} is "
                f"element {symbol}"
            )
        species.append(index_of[symbol])
    return torch.tensor(species, dtype=torch.long)


def create_force(
    model_file: str,
    topology: openmm.app.Topology,
    atoms: Optional[Iterable[int]] = None,
    precision: Optional[str] = None,
    cuda_graphs: bool = False,
    force_group: int = 0,
) -> openmmtorch.TorchForce:
    """An OpenMM force computing the equiforce model's energy (kJ/mol) and forces (kJ/mol/nm).

    Parameters
    ----------
    model_file : a file written by :func:`equiforce.export_model` / ``equiforce export``.
    topology : the OpenMM topology; periodic boundary conditions are used when it has a box.
    atoms : indices of the atoms to model (ML/MM); None models every atom.
    precision : "float32" or "float64" to run the model in that precision, None for the file's own.
    cuda_graphs : ask openmm-torch to capture the model in a CUDA graph (CUDA platform only).
    force_group : OpenMM force group of the returned force.
    """
    module, metadata = load_model(model_file)
    if precision is not None:
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {sorted(DTYPES)} or None, got {precision!r}")
        module = module.to(DTYPES[precision])
    selected = _select_atoms(topology, atoms)
    species = species_for_atoms(selected, metadata["elements"], model_file)
    periodic = topology.getPeriodicBoxVectors() is not None
    subset = None if atoms is None else torch.tensor([a.index for a in selected], dtype=torch.long)
    wrapper = torch.jit.script(OpenMMEnergy(module, species, subset, periodic))
    force = openmmtorch.TorchForce(wrapper, {"useCUDAGraphs": "true" if cuda_graphs else "false"})
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setOutputsForces(False)
    force.setForceGroup(force_group)
    return force
