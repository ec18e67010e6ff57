"""``create_force``: an exported equiforce model as an ``openmmtorch.TorchForce``."""
import dataclasses
import logging
import math
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch  # must come before openmmtorch (it needs torch's libraries)
import openmm.app
from openmm import unit


class _HideSimtkNotice(logging.Filter):
    """openmmtorch 1.5 imports the old ``simtk.openmm`` name, which logs a deprecation notice meant for its authors,
    not for our users; hide that one record while importing it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "simtk.openmm" not in record.getMessage()


_notice_filter = _HideSimtkNotice()
logging.getLogger().addFilter(_notice_filter)
try:
    import openmmtorch
except ImportError:  # a torch other than openmm-torch's (2.9.1): AOTI packages still run, see docs/aoti.md
    openmmtorch = None
finally:
    logging.getLogger().removeFilter(_notice_filter)


def _reload_torch_plugins() -> List[str]:
    """Load again the openmm-torch platform plugins that failed when ``openmm`` was imported before ``torch``.

    OpenMM loads its plugins when it is imported; openmm-torch's need torch's libraries (libnvrtc, libtorch), which
    are only found once torch is imported. A script that imports openmm first then has TorchForce without kernels
    ("Specified a Platform for a Context which does not support all required kernels"). equiforce has imported torch
    by now, so those plugins load. Returns the libraries loaded."""
    loaded = []
    for failure in openmm.Platform.getPluginLoadFailures():
        match = re.match(r"Error loading library (\S*libOpenMMTorch\S*)\s*:", failure)
        if match and any(name in failure for name in ("libnvrtc", "libtorch", "libc10")):
            try:
                openmm.Platform.loadPluginLibrary(match.group(1))
                loaded.append(match.group(1))
            except Exception:  # noqa: BLE001 - a plugin that still cannot load is reported by OpenMM when used
                pass
    return loaded


_reload_torch_plugins()

from ..hashing import file_sha256
from ..export import load_model
from ..units import ANGSTROM_PER_NM
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


#: The neighbour list reaches at most this many box heights (plugin/ops.cpp: kMaxReach).
MAX_BOX_HEIGHTS_PER_CUTOFF = 60


def check_box(box_vectors, cutoff_angstrom: float, model_file: str) -> None:
    """Raise ValueError naming the box vector whose height is too small for the model's cutoff (more than
    ``MAX_BOX_HEIGHTS_PER_CUTOFF`` heights), or that is not in OpenMM's reduced, lower-triangular form."""
    a, b, c = (np.array(v.value_in_unit(unit.nanometer)) for v in box_vectors)
    heights = {"a": a[0], "b": b[1], "c": c[2]}  # reduced form: the heights are the diagonal
    cutoff_nm = cutoff_angstrom / ANGSTROM_PER_NM
    for name, height in heights.items():
        if not height > 0 or cutoff_nm > MAX_BOX_HEIGHTS_PER_CUTOFF * height:
            raise ValueError(f"the box is too small for {model_file}: the height across box vector {name} is "
                             f"{height:.4g} nm, and the model's cutoff of {cutoff_nm:.4g} nm would need more than "
                             f"{MAX_BOX_HEIGHTS_PER_CUTOFF} periodic images of it")


def default_max_pairs(n_model_atoms: int, n_total_atoms: int, cutoff_angstrom: float,
                      box_volume_angstrom3: Optional[float], headroom: float = 1.5) -> int:
    """Capacity of the fixed-size neighbour list: the system's mean number density times the cutoff sphere,
    times ``headroom`` for density fluctuations; every pair when there is no box."""
    all_pairs = n_model_atoms * (n_model_atoms - 1)
    if box_volume_angstrom3 is None:
        return max(all_pairs, 1)
    density = n_total_atoms / box_volume_angstrom3  # atoms / Å³
    per_atom = density * 4.0 / 3.0 * math.pi * cutoff_angstrom**3
    return max(1, int(math.ceil(n_model_atoms * per_atom * headroom)))


def create_force(
    model_file: str,
    topology: openmm.app.Topology,
    atoms: Optional[Iterable[int]] = None,
    precision: Optional[str] = None,
    cuda_graphs: bool = False,
    force_group: int = 0,
    max_pairs: Optional[int] = None,
) -> "openmmtorch.TorchForce":
    """An OpenMM force computing the equiforce model's energy (kJ/mol) and forces (kJ/mol/nm).

    Parameters
    ----------
    model_file : a file written by :func:`equiforce.export_model` / ``equiforce export``.
    topology : the OpenMM topology; periodic boundary conditions are used when it has a box.
    atoms : indices of the atoms to model (ML/MM); None models every atom.
    precision : "float32" or "float64" to run the model in that precision, None for the file's own.
    cuda_graphs : ask openmm-torch to capture the model in a CUDA graph (CUDA platform only). The model then
        uses a fixed-capacity neighbour list of ``max_pairs`` ordered pairs (default: :func:`default_max_pairs`);
        if a configuration ever needs more, the energy and forces become NaN and OpenMM stops with a NaN error
        instead of running with a truncated list.
    force_group : OpenMM force group of the returned force.
    max_pairs : capacity of the fixed-size neighbour list; also enables it without CUDA graphs.
    """
    module, metadata = load_model(model_file)
    if precision is not None:
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {sorted(DTYPES)} or None, got {precision!r}")
        module = module.to(DTYPES[precision])
    selected = _select_atoms(topology, atoms)
    species = species_for_atoms(selected, metadata["elements"], model_file)
    periodic = topology.getPeriodicBoxVectors() is not None
    if periodic:
        check_box(topology.getPeriodicBoxVectors(), float(metadata["cutoff"]), model_file)
    subset = None if atoms is None else torch.tensor([a.index for a in selected], dtype=torch.long)
    if max_pairs is None and cuda_graphs:
        volume = None
        if periodic:
            a, b, c = (v.value_in_unit(unit.nanometer) for v in topology.getPeriodicBoxVectors())
            volume = abs(a[0] * b[1] * c[2]) * ANGSTROM_PER_NM**3  # reduced form: the volume is the diagonal product
        max_pairs = default_max_pairs(len(selected), topology.getNumAtoms(), float(metadata["cutoff"]), volume)
    recipe = ForceRecipe(model_file=os.path.abspath(model_file), model_sha256=file_sha256(model_file),
                         species=species.tolist(), atoms=None if subset is None else subset.tolist(),
                         periodic=periodic, precision=precision, cuda_graphs=bool(cuda_graphs),
                         max_pairs=int(max_pairs or 0), force_group=int(force_group))
    return _torch_force(module, recipe)


@dataclasses.dataclass(frozen=True)
class ForceRecipe:
    """Everything needed to build an equiforce TorchForce again without its topology (see
    :func:`equiforce.openmm.save_system`): the model file and its SHA-256, species indices of the modelled
    atoms, their indices in the System (None: all), and the force's options."""

    model_file: str
    model_sha256: str
    species: List[int]
    atoms: Optional[List[int]]
    periodic: bool
    precision: Optional[str]
    cuda_graphs: bool
    max_pairs: int
    force_group: int


#: Recipes of the forces made in this process, by the name given to each force ("equiforce:<n>").
RECIPES: Dict[str, ForceRecipe] = {}


def _torch_force(module: torch.jit.ScriptModule, recipe: ForceRecipe) -> "openmmtorch.TorchForce":
    if openmmtorch is None:
        raise ImportError(f"openmmtorch is not installed here (torch {torch.__version__}); a TorchForce of "
                          f"{recipe.model_file} needs it. Without it, export an AOTInductor package (equiforce export "
                          f"--format aoti) and run it through openmm.PythonForce (docs/aoti.md)")
    subset = None if recipe.atoms is None else torch.tensor(recipe.atoms, dtype=torch.long)
    species = torch.tensor(recipe.species, dtype=torch.long)
    wrapper = torch.jit.script(OpenMMEnergy(module, species, subset, recipe.periodic, recipe.max_pairs))
    force = openmmtorch.TorchForce(wrapper, {"useCUDAGraphs": "true" if recipe.cuda_graphs else "false"})
    force.setUsesPeriodicBoundaryConditions(recipe.periodic)
    force.setOutputsForces(False)
    force.setForceGroup(recipe.force_group)
    name = f"equiforce:{len(RECIPES)}"
    RECIPES[name] = recipe
    force.setName(name)
    return force


def force_from_recipe(recipe: ForceRecipe) -> "openmmtorch.TorchForce":
    """The TorchForce a recipe describes; the model file must still be the one it was made with (SHA-256)."""
    if not os.path.isfile(recipe.model_file):
        raise FileNotFoundError(f"the equiforce force was made from {recipe.model_file}, which no longer exists")
    actual = file_sha256(recipe.model_file)
    if actual != recipe.model_sha256:
        raise ValueError(f"{recipe.model_file} is not the model file the force was made with: SHA-256 "
                         f"{actual[:16]}… instead of {recipe.model_sha256[:16]}…")
    module, _ = load_model(recipe.model_file)
    if recipe.precision is not None:
        module = module.to(DTYPES[recipe.precision])
    return _torch_force(module, recipe)
