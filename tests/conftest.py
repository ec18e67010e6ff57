"""Shared fixtures and helpers: small models, random O(3) matrices, water boxes, exported files."""
import ase
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from e3nn import o3

from openmm import unit

import equiforce
from equiforce.neighbors import edge_vectors, neighbor_list
from equiforce.systems import water_box
from equiforce.units import ANGSTROM_PER_NM

DTYPES = [torch.float32, torch.float64]
#: Relative tolerances for comparing energies/forces computed two mathematically equal ways.
TOLERANCE = {torch.float32: 2e-4, torch.float64: 1e-10}


def small_config(**overrides) -> equiforce.ModelConfig:
    settings = dict(elements=["H", "O"], cutoff=4.0, lmax=2, num_features=8, num_layers=2, radial_hidden=16)
    settings.update(overrides)
    return equiforce.ModelConfig(**settings)


def make_model(dtype=torch.float64, seed=0, **overrides) -> equiforce.EquivariantPotential:
    torch.manual_seed(seed)
    return equiforce.EquivariantPotential(small_config(**overrides)).to(dtype)


def random_o3(generator: torch.Generator, improper: bool, dtype=torch.float64) -> torch.Tensor:
    """A random rotation, times -1 (a reflection through the origin composed with it) when ``improper``."""
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    matrix = o3.rand_matrix(dtype=dtype)
    return -matrix if improper else matrix


def energy_and_forces(model, positions, species, cell=None):
    """Energy (eV) and forces (eV/Å) of one structure, forces by autograd."""
    positions = positions.detach().clone().requires_grad_(True)
    energy = model(positions, species, cell)
    (gradient,) = torch.autograd.grad(energy, positions)
    return energy.detach(), -gradient


def assert_o3_and_permutation_invariant(model, positions, species, seed):
    """Energy invariant and forces equivariant (float64 rounding) under a random rotation and a random
    improper rotation, each with a translation and a permutation of the atoms; returns (energy, forces)."""
    energy, forces = energy_and_forces(model, positions, species)
    generator = torch.Generator().manual_seed(seed)
    for improper in (False, True):
        rotation = random_o3(generator, improper)
        order = torch.randperm(len(species), generator=generator)
        shift = torch.randn(3, generator=generator, dtype=positions.dtype) * 2.0  # Å
        moved = (positions @ rotation.T + shift)[order]
        moved_energy, moved_forces = energy_and_forces(model, moved, species[order])
        torch.testing.assert_close(moved_energy, energy, rtol=1e-10, atol=0.0)
        torch.testing.assert_close(moved_forces, (forces @ rotation.T)[order], rtol=1e-9, atol=1e-9)
    return energy, forces


def assert_forces_are_central_differences(model, positions, species, forces, atoms_and_axes, step=1e-5):
    """forces[atom, axis] (eV/Å) equal minus the central difference (float64, ``step`` Å) of the model's energy,
    for each (atom, axis) in ``atoms_and_axes``."""
    for atom, axis in atoms_and_axes:
        shifted = [positions.clone(), positions.clone()]
        shifted[0][atom, axis] += step
        shifted[1][atom, axis] -= step
        with torch.no_grad():
            numeric = -(model(shifted[0], species) - model(shifted[1], species)) / (2 * step)
        torch.testing.assert_close(forces[atom, axis], numeric, rtol=1e-6, atol=1e-7)


def water_tensors(n_molecules=8, seed=0, dtype=torch.float64):
    """(positions [N,3] Å, species [N] with H=0, O=1, cell [3,3] Å) of a liquid water box."""
    topology, positions_nm = water_box(n_molecules, 1.0, seed=seed)
    species = torch.tensor([1 if a.element.symbol == "O" else 0 for a in topology.atoms()])
    box = np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    scale = ANGSTROM_PER_NM
    return (torch.tensor(positions_nm * scale, dtype=dtype), species, torch.tensor(box * scale, dtype=dtype))


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory):
    """A small H/O model exported in float64 (with radial tables, the default), with the eager model it came
    from, in eval mode and tabulated as the file is (the same code path: equal to rounding)."""
    model = make_model(torch.float64, seed=3)
    path = str(tmp_path_factory.mktemp("models") / "small-f64.pt")
    equiforce.export_model(model, path, dtype="float64")
    equiforce.nn.set_radial_table(model.eval())
    return path, model


def load_benchmark_script(name: str):
    """Import ``benchmarks/<name>.py`` (scripts, not a package; ``name`` may name a subfolder, as in
    ``"studies/ase_overhead"``) as a module, to call its ``main`` in a test."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", name + ".py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no benchmark script {path}")
    spec = importlib.util.spec_from_file_location(os.path.basename(name), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- labelled frames of an analytic potential
#: Per-element reference energies (eV) of the analytic test potential.
ATOM_ENERGIES = {"H": -13.6, "O": -432.0}
PAIR_CUTOFF = 3.0  # Å


def pair_potential(symbols, positions, cell):
    """Energy (eV) and forces (eV/Å) of a smooth Morse-like pair potential plus per-element energies."""
    positions = torch.tensor(np.asarray(positions), dtype=torch.float64, requires_grad=True)  # [N, 3]
    cell = None if cell is None else torch.tensor(np.asarray(cell), dtype=torch.float64)
    edge_index, shifts = neighbor_list(positions, PAIR_CUTOFF, cell)
    r = torch.linalg.norm(edge_vectors(positions, edge_index, shifts, cell), dim=1)  # [E] Å
    depth = torch.where(edge_index[0] == edge_index[1], 0.3, 0.5)  # [E] eV
    phi = depth * (torch.exp(-2 * (r - 1.2)) - 2 * torch.exp(-(r - 1.2))) * (1 - (r / PAIR_CUTOFF) ** 2) ** 2
    energy = 0.5 * phi.sum() + sum(ATOM_ENERGIES[s] for s in symbols)
    (gradient,) = torch.autograd.grad(energy, positions)
    return float(energy.detach()), (-gradient).numpy()


def random_frames(n_frames, seed=0, min_atoms=3, max_atoms=10, box=5.0):
    """Labelled H/O frames of 3-10 atoms: even ones periodic in a cubic ``box`` (Å), odd ones open clusters."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        periodic = k % 2 == 0
        n = int(rng.integers(min_atoms, max_atoms + 1))
        while True:
            positions = rng.uniform(0.0, box if periodic else 3.5, (n, 3))
            distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1) + 10 * np.eye(n)
            if distances.min() > 0.9:
                break
        symbols = ["O"] + list(rng.choice(["H", "O"], n - 1))
        cell = box * np.eye(3) if periodic else None
        energy, forces = pair_potential(symbols, positions, cell)
        atoms = ase.Atoms(symbols, positions, cell=cell, pbc=periodic)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    return frames


def write_frames(path, frames):
    ase.io.write(str(path), frames, format="extxyz")
    return str(path)


def rewrite_metadata(source, target, **changes):
    """Copy the model file ``source`` to ``target`` with ``changes`` made to its metadata (a tampered file)."""
    import json
    import zipfile

    from equiforce.export import METADATA_FILE

    with zipfile.ZipFile(source) as archive_in, zipfile.ZipFile(target, "w") as archive_out:
        for item in archive_in.infolist():
            data = archive_in.read(item.filename)
            if item.filename.endswith("/extra/" + METADATA_FILE):
                metadata = json.loads(data)
                metadata.update(changes)
                data = json.dumps(metadata).encode()
            archive_out.writestr(item, data)
