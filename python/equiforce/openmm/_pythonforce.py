"""An AOTInductor package (``equiforce export --format aoti``) as an ``openmm.PythonForce``.

The path that needs no TorchScript and no openmm-torch: OpenMM calls :class:`AOTIComputation` with a State each
step; it finds the neighbour list (native op, in the model's precision), runs the compiled graph (energy and
forces in one call) and hands the forces back as a NumPy array. Units: nm and kJ/mol at OpenMM's side, Å and eV
inside, converted with :mod:`equiforce.units` only.
"""
import dataclasses
import os
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np
import torch
import openmm
import openmm.app
from openmm import unit

from .. import ops as _native_ops  # noqa: F401  (registers torch.ops.equiforce.*)
from ..export._aoti import read_aoti_metadata
from ..export._metadata import DTYPES
from ..hashing import file_sha256
from ..units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV
from ._boundary import closest_pair, wrap_into_box
from ._force import _select_atoms, check_box, species_for_atoms


class BoundsError(ValueError):
    """A system lies outside the atom or pair counts an AOTInductor package was compiled for."""


class AOTIModel:
    """A loaded package: ``energy_and_forces(positions Å, species, cell Å or None)`` with its neighbour list.

    Checks every call's atom count N and pair count E against the package's bounds before running the compiled
    code (which would otherwise fail without naming the cause); an empty neighbour list is padded with one edge
    beyond the cutoff, which contributes exactly nothing.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.metadata = read_aoti_metadata(path)
        self.bounds = self.metadata["aoti"]
        self.dtype = DTYPES[self.metadata["dtype"]]
        self.cutoff = float(self.metadata["cutoff"])  # Å
        self.runner = torch._inductor.aoti_load_package(path)

    def check_atoms(self, n_atoms: int) -> None:
        low, high = self.bounds["min_atoms"], self.bounds["max_atoms"]
        if not low <= n_atoms <= high:
            raise BoundsError(f"{self.path} was compiled for {low} to {high} atoms, but the system has {n_atoms}; "
                              f"export it again with a larger max_atoms (equiforce export --format aoti --max-atoms)")

    def neighbors(self, positions: torch.Tensor, cell: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(edge_index [2, E], offsets [E, 3] Å) of ``positions`` [N, 3] Å in the model's dtype."""
        edge_index, _, shifts = torch.ops.equiforce.neighbor_list(positions, self.cutoff, cell, True)
        n_edges = int(edge_index.shape[1])
        if n_edges > self.bounds["max_edges"]:
            raise BoundsError(f"{self.path} was compiled for at most {self.bounds['max_edges']} pairs within its "
                              f"cutoff of {self.cutoff} Å, but this configuration of {positions.shape[0]} atoms has "
                              f"{n_edges}; export it again with a larger max_edges (--max-edges)")
        if cell is None:
            offsets = torch.zeros((n_edges, 3), dtype=positions.dtype)  # [E, 3] Å
        else:
            offsets = shifts.to(positions.dtype) @ cell  # [E, 3] Å
        if n_edges < self.bounds["min_edges"]:  # no pair within the cutoff: one self-pair far beyond it
            edge_index = torch.zeros((2, 1), dtype=torch.long)
            offsets = torch.zeros((1, 3), dtype=positions.dtype)
            offsets[0, 0] = 2.0 * self.cutoff
        return edge_index, offsets

    def energy_and_forces(self, positions: torch.Tensor, species: torch.Tensor,
                          cell: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """positions [N, 3] Å, species [N] long, cell [3, 3] Å rows or None -> (energy [] eV, forces [N, 3] eV/Å),
        computed in the package's dtype."""
        self.check_atoms(int(positions.shape[0]))
        positions = positions.to(self.dtype).contiguous()
        cell = None if cell is None else cell.to(self.dtype)
        edge_index, offsets = self.neighbors(positions, cell)
        energy, forces = self.runner(positions, species, edge_index, offsets)
        return energy, forces


@dataclasses.dataclass(frozen=True)
class AOTIRecipe:
    """What a PythonForce of a package needs: the file and its SHA-256, species of the modelled atoms and
    whether the system is periodic. Pickled with the force (XmlSerializer), the compiled model is not."""

    model_file: str
    model_sha256: str
    species: Tuple[int, ...]
    periodic: bool


class AOTIComputation:
    """The function an ``openmm.PythonForce`` calls: State (nm) -> (energy kJ/mol, forces [n, 3] kJ/mol/nm).

    Positions arrive as OpenMM's float64 array (the modelled atoms only, see ``PythonForce.setParticles``),
    are wrapped into the box in float64 and cast once to the model's dtype; the forces come back as one array.
    Picklable: the package is loaded again, and its SHA-256 checked, on first use after unpickling.
    """

    def __init__(self, recipe: AOTIRecipe, model: Optional[AOTIModel] = None) -> None:
        self.recipe = recipe
        self.model = model
        self.species = torch.tensor(recipe.species, dtype=torch.long)  # [n]
        self.length_scale = float(ANGSTROM_PER_NM)
        self.force_scale = float(KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM)  # eV/Å -> kJ/mol/nm
        self.energy_scale = float(KJ_PER_MOL_PER_EV)

    def __getstate__(self) -> Dict[str, Any]:
        return {"recipe": self.recipe}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["recipe"])

    def loaded(self) -> AOTIModel:
        if self.model is None:
            path = self.recipe.model_file
            if not os.path.isfile(path):
                raise FileNotFoundError(f"the equiforce PythonForce was made from {path}, which no longer exists")
            actual = file_sha256(path)
            if actual != self.recipe.model_sha256:
                raise ValueError(f"{path} is not the package the force was made with: SHA-256 {actual[:16]}… "
                                 f"instead of {self.recipe.model_sha256[:16]}…")
            self.model = AOTIModel(path)
        return self.model

    def __call__(self, state: openmm.State) -> Tuple[float, np.ndarray]:
        model = self.loaded()
        positions = torch.from_numpy(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
        cell = None
        if self.recipe.periodic:
            box = torch.from_numpy(np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))
            positions = wrap_into_box(positions, box)  # float64, see OpenMMEnergy.forward
            cell = (box * self.length_scale).to(model.dtype)  # [3, 3] Å
        finite = torch.isfinite(positions).all(dim=1)  # [n]
        if not bool(finite.all()):
            bad = int(torch.nonzero(~finite)[0, 0])
            raise RuntimeError(f"equiforce: the position of the force's atom {bad} (index among its particles) "
                               "is not finite")
        positions_angstrom = (positions * self.length_scale).to(model.dtype)  # [n, 3] Å
        energy, forces = model.energy_and_forces(positions_angstrom, self.species, cell)
        energy_ev = float(energy)
        if not np.isfinite(energy_ev):
            message = f"equiforce: the model's energy is {energy_ev} eV"
            pair = closest_pair(positions_angstrom, 1.0, cell)
            if pair is not None:
                message += f"; the force's atoms {pair[0]} and {pair[1]} are {pair[2]:.3g} Å apart"
            raise RuntimeError(message)
        return energy_ev * self.energy_scale, (forces.to(torch.float64) * self.force_scale).numpy()


def create_pythonforce(model_file: str, topology: openmm.app.Topology, atoms: Optional[Iterable[int]] = None,
                       precision: Optional[str] = None, force_group: int = 0) -> openmm.PythonForce:
    """An ``openmm.PythonForce`` computing an AOTInductor package's energy (kJ/mol) and forces (kJ/mol/nm).

    Parameters
    ----------
    model_file : a package written by :func:`equiforce.export.export_aoti` / ``equiforce export --format aoti``.
    topology : the OpenMM topology; periodic boundary conditions are used when it has a box.
    atoms : indices of the atoms to model (ML/MM), passed to ``PythonForce.setParticles``; None models all.
    precision : None or the package's own dtype (a package is compiled for one precision only).
    force_group : OpenMM force group of the returned force.

    Raises :class:`BoundsError` here if the modelled atoms are more than the package was compiled for, and at
    the first step whose neighbour list is longer than its bounds.
    """
    model = AOTIModel(model_file)
    metadata = model.metadata
    if precision is not None and precision != metadata["dtype"]:
        raise ValueError(f"{model_file} is compiled for {metadata['dtype']} only, precision {precision!r} was asked; "
                         f"export it again with --dtype {precision}")
    selected = _select_atoms(topology, atoms)
    model.check_atoms(len(selected))
    species = species_for_atoms(selected, metadata["elements"], model_file)
    periodic = topology.getPeriodicBoxVectors() is not None
    if periodic:
        check_box(topology.getPeriodicBoxVectors(), model.cutoff, model_file)
    recipe = AOTIRecipe(model_file=os.path.abspath(model_file), model_sha256=file_sha256(model_file),
                        species=tuple(species.tolist()), periodic=periodic)
    force = openmm.PythonForce(AOTIComputation(recipe, model))
    if atoms is not None:
        force.setParticles([atom.index for atom in selected])
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setForceGroup(int(force_group))
    force.setName("equiforce-aoti")
    return force
