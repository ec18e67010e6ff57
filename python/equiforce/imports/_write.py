"""Write an imported network, wrapped in :class:`GraphPotential`, as one self-describing equiforce model file."""
import os
import time
from typing import Any, Callable, Dict

import torch
from e3nn.util.jit import script

from ..export._metadata import DTYPES, build_imported_metadata, save_model_file
from ._errors import ImportedModelError
from ._graph_potential import GraphPotential


def _probe_structure(n_species: int, dtype: torch.dtype, seed: int = 0):
    """A small periodic structure of the file's first species (positions Å, species, cell Å) for the round trip:
    a 3 x 3 x 2 grid 2.2 Å apart, each atom moved by up to 0.2 Å."""
    generator = torch.Generator().manual_seed(seed)
    spacing = 2.2
    grid = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(3), torch.arange(2), indexing="ij"), -1)
    positions = grid.reshape(-1, 3).to(torch.float64) * spacing  # [18, 3] Å
    positions = positions + (torch.rand(positions.shape, generator=generator, dtype=torch.float64) - 0.5) * 0.4
    species = torch.arange(positions.shape[0]) % min(n_species, 4)  # [18]
    cell = torch.diag(torch.tensor([3.0, 3.0, 2.0], dtype=torch.float64)) * spacing  # [3, 3] Å
    return positions.to(dtype), species, cell.to(dtype)


def _energy_and_forces(module, positions, species, cell):
    x = positions.clone().requires_grad_(True)
    energy = module(x, species, cell)
    (gradient,) = torch.autograd.grad(energy, x)
    return energy.detach(), -gradient


def write_imported(built: Dict[str, Any], output: str, dtype: str,
                   progress: Callable[[str], None] = lambda message: None) -> Dict[str, Any]:
    """Script ``built`` (from an importer's build function) in ``dtype``, check the TorchScript module against the
    eager one on a probe structure, and write it with its metadata to ``output``. Returns the metadata."""
    if dtype not in DTYPES:
        raise ImportedModelError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    eager = GraphPotential(built["network"], built["cutoff"], built["atomic_numbers"], built["type_of_species"])
    eager = eager.to(DTYPES[dtype]).eval()
    for parameter in eager.parameters():
        parameter.requires_grad_(False)
    started = time.perf_counter()
    progress(f"compiling with TorchScript ({dtype})")
    compiled = script(eager)
    progress(f"compiled in {time.perf_counter() - started:.1f} s; checking it against the eager network")
    probe = _probe_structure(len(built["elements"]), DTYPES[dtype])
    energy_eager, forces_eager = _energy_and_forces(eager, *probe)
    energy_script, forces_script = _energy_and_forces(compiled, *probe)
    n_atoms = probe[0].shape[0]
    check = {
        "atoms": n_atoms,
        "energy_difference_ev_per_atom": float((energy_script - energy_eager).abs()) / n_atoms,
        "max_force_difference_ev_per_angstrom": float((forces_script - forces_eager).abs().max()),
    }
    tolerance = 1e-4 if dtype == "float32" else 1e-10
    if check["energy_difference_ev_per_atom"] > tolerance or not torch.isfinite(energy_script):
        raise ImportedModelError(f"the compiled network disagrees with the eager one on a probe structure: {check}")
    config = dict(built.get("config", {}))
    metadata = build_imported_metadata(built["elements"], built["atomic_numbers"].tolist(), built["cutoff"], dtype,
                                       config, {**built["source"], "round_trip_check": check})
    metadata = save_model_file(compiled, output, metadata)
    progress(f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB)")
    return metadata
