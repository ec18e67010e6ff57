"""The physics of an exported model, checked on both export paths: TorchScript (run by TorchForce) and
torch.export + AOTInductor (run by openmm.PythonForce). Each test is parametrised over the file format and
compares against the eager model the files were made from.

One small float64 model is compiled once per session (AOTInductor needs a C++ compiler: without one the "aoti"
cases are skipped, saying so)."""
import json
import shutil

import numpy as np
import pytest
import torch
import openmm
from openmm import unit
from openmmml import MLPotential

import equiforce
from equiforce.cli import main as cli_main
from equiforce.export import export_aoti, load_model, read_metadata
from equiforce.openmm import AOTIModel, BoundsError, create_pythonforce
from equiforce.systems import water_box
from equiforce.units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV
from conftest import energy_and_forces, make_model, random_o3, water_tensors

FORMATS = ["torchscript", "aoti"]
#: Bounds the test package is compiled with: small, so that the tests can step outside them.
MAX_ATOMS = 64
MAX_EDGES = 3000
#: The test model: one message-passing layer, lmax 1, a short-range wall (every code path of the graph).
TINY = dict(lmax=1, num_layers=1, num_features=4, radial_hidden=8,
            repulsion_radii={"H-H": 0.9, "H-O": 0.7, "O-O": 2.2}, repulsion_strength=50.0)


def _compiler_or_skip():
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("AOTInductor needs a C++ compiler (g++ or c++); none is on PATH")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{format: path} of one tiny float64 model written both ways with the default code paths (native fused
    convolution, radial tables, self-interaction matrices), and the eager model with the same radial tables (so
    that all three agree to rounding)."""
    model = make_model(torch.float64, seed=7, **TINY).eval()
    folder = tmp_path_factory.mktemp("aoti")
    paths = {"torchscript": str(folder / "tiny.pt")}
    equiforce.export_model(model, paths["torchscript"], dtype="float64")
    if shutil.which("g++") or shutil.which("c++"):
        paths["aoti"] = str(folder / "tiny.pt2")
        export_aoti(model, paths["aoti"], dtype="float64", max_atoms=MAX_ATOMS, max_edges=MAX_EDGES)
    equiforce.nn.set_radial_table(model)
    return paths, model


@pytest.fixture(scope="module")
def potentials(files):
    """{format: f(positions Å, species, cell Å or None) -> (energy eV, forces eV/Å)} loaded from the files."""
    paths, _ = files
    module, _ = load_model(paths["torchscript"])
    result = {"torchscript": lambda x, s, c=None: energy_and_forces(module, x, s, c)}
    if "aoti" in paths:
        compiled = AOTIModel(paths["aoti"])
        result["aoti"] = lambda x, s, c=None: tuple(t.detach() for t in compiled.energy_and_forces(x, s, c))
    return result


def _potential(potentials, file_format):
    if file_format == "aoti":
        _compiler_or_skip()
    return potentials[file_format]


def _cluster(n_molecules=6, seed=2):
    positions, species, _ = water_tensors(n_molecules, seed=seed)
    return positions, species


@pytest.mark.parametrize("file_format", FORMATS)
def test_file_equals_the_eager_model_open_and_periodic(files, potentials, file_format):
    potential = _potential(potentials, file_format)
    _, model = files
    positions, species, cell = water_tensors(8, seed=1)
    for box in (cell, None):
        energy, forces = potential(positions, species, box)
        expected_energy, expected_forces = energy_and_forces(model, positions, species, box)
        torch.testing.assert_close(energy, expected_energy, rtol=1e-11, atol=1e-11)
        torch.testing.assert_close(forces, expected_forces, rtol=1e-10, atol=1e-10)
        assert float(forces.abs().max()) > 1e-3  # the comparison is not between zeros


@pytest.mark.parametrize("file_format", FORMATS)
def test_energy_invariant_forces_equivariant_under_rotation_reflection_translation_permutation(potentials,
                                                                                               file_format):
    potential = _potential(potentials, file_format)
    positions, species = _cluster()
    energy, forces = potential(positions, species)
    generator = torch.Generator().manual_seed(11)
    for improper in (False, True):
        rotation = random_o3(generator, improper)
        order = torch.randperm(len(species), generator=generator)
        shift = torch.randn(3, generator=generator, dtype=positions.dtype) * 2.0  # Å
        moved_energy, moved_forces = potential((positions @ rotation.T + shift)[order], species[order])
        torch.testing.assert_close(moved_energy, energy, rtol=1e-10, atol=0.0)
        torch.testing.assert_close(moved_forces, (forces @ rotation.T)[order], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("file_format", FORMATS)
def test_forces_equal_central_finite_differences_float64(potentials, file_format):
    potential = _potential(potentials, file_format)
    positions, species, cell = water_tensors(8, seed=3)
    _, forces = potential(positions, species, cell)
    step = 1e-5  # Å
    for atom, axis in [(0, 0), (1, 2), (5, 1), (17, 0)]:
        plus, minus = positions.clone(), positions.clone()
        plus[atom, axis] += step
        minus[atom, axis] -= step
        numeric = -(potential(plus, species, cell)[0] - potential(minus, species, cell)[0]) / (2 * step)
        torch.testing.assert_close(forces[atom, axis], numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("file_format", FORMATS)
def test_periodic_images_give_the_same_energy_and_a_supercell_twice_the_energy(potentials, file_format):
    potential = _potential(potentials, file_format)
    positions, species, cell = water_tensors(8, seed=5)
    energy, forces = potential(positions, species, cell)
    generator = torch.Generator().manual_seed(3)
    lattice = torch.randint(-3, 4, (len(species), 3), generator=generator).to(positions.dtype)  # [N, 3]
    imaged_energy, imaged_forces = potential(positions + lattice @ cell, species, cell)
    torch.testing.assert_close(imaged_energy, energy, rtol=1e-10, atol=0.0)
    torch.testing.assert_close(imaged_forces, forces, rtol=1e-9, atol=1e-9)
    doubled = torch.cat([positions, positions + cell[0]])  # [2N, 3]: two copies along a
    supercell = cell.clone()
    supercell[0] *= 2
    double_energy, double_forces = potential(doubled, torch.cat([species, species]), supercell)
    torch.testing.assert_close(double_energy, 2 * energy, rtol=1e-10, atol=0.0)
    torch.testing.assert_close(double_forces, torch.cat([forces, forces]), rtol=1e-9, atol=1e-9)


def _openmm_energy_forces(system, positions_nm, platform):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions_nm * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("file_format", FORMATS)
def test_openmm_through_mlpotential_equals_the_model(files, file_format, periodic, platform):
    if file_format == "aoti":
        _compiler_or_skip()
    paths, model = files
    topology, positions_nm = water_box(8, 1.0, seed=4)
    species = torch.tensor([1 if a.element.symbol == "O" else 0 for a in topology.atoms()])
    cell = None
    if periodic:
        cell = torch.tensor(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)) * ANGSTROM_PER_NM)
    else:
        topology.setPeriodicBoxVectors(None)
    system = MLPotential("equiforce", modelPath=paths[file_format]).createSystem(topology)
    python_forces = [f for f in system.getForces() if isinstance(f, openmm.PythonForce)]
    assert len(python_forces) == (1 if file_format == "aoti" else 0)  # else openmm-torch's TorchForce
    energy, forces = _openmm_energy_forces(system, positions_nm, platform)
    expected_energy, expected_forces = energy_and_forces(model, torch.tensor(positions_nm * ANGSTROM_PER_NM),
                                                         species, cell)
    assert energy == pytest.approx(float(expected_energy) * KJ_PER_MOL_PER_EV, rel=1e-9, abs=1e-8)
    np.testing.assert_allclose(forces, expected_forces.numpy() * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM,
                               rtol=1e-7, atol=1e-7)


# ------------------------------------------------------------------------------------ AOTInductor-specific


def test_package_carries_the_metadata_of_the_torchscript_file_and_its_bounds(files):
    _compiler_or_skip()
    paths, model = files
    aoti, script = read_metadata(paths["aoti"]), read_metadata(paths["torchscript"])
    assert aoti["format"] == "aoti" and "format" not in script
    for key in ("elements", "atomic_numbers", "cutoff", "units", "dtype", "config", "format_version",
                "fused_convolution", "radial_table"):
        assert aoti[key] == script[key], key
    bounds = aoti["aoti"]
    assert (bounds["min_atoms"], bounds["max_atoms"], bounds["max_edges"]) == (2, MAX_ATOMS, MAX_EDGES)
    assert bounds["torch_version"] == torch.__version__ and bounds["compile_seconds"] > 0
    assert bounds["threads"] == torch.get_num_threads()


def test_equiforce_info_reads_a_package(files, capsys):
    _compiler_or_skip()
    paths, _ = files
    assert cli_main(["info", paths["aoti"]]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["format"] == "aoti" and printed["aoti"]["max_edges"] == MAX_EDGES


def test_torchscript_loaders_name_a_package(files):
    """A package given to load_model (and so to create_force or the ASE calculator) is named as what it is."""
    _compiler_or_skip()
    paths, _ = files
    with pytest.raises(equiforce.export.ModelFileError, match="AOTInductor package.*create_pythonforce"):
        load_model(paths["aoti"])


def test_systems_outside_the_compiled_bounds_are_refused_with_a_clear_error(files, potentials):
    _compiler_or_skip()
    paths, _ = files
    topology, _ = water_box(32, 1.0, seed=0)  # 96 atoms > MAX_ATOMS
    with pytest.raises(BoundsError, match=f"compiled for 2 to {MAX_ATOMS} atoms, but the system has 96"):
        create_pythonforce(paths["aoti"], topology)
    dense = torch.rand(60, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2.0  # 3540 pairs
    with pytest.raises(BoundsError, match=f"at most {MAX_EDGES} pairs"):
        potentials["aoti"](dense, torch.zeros(60, dtype=torch.long))
    with pytest.raises(BoundsError, match="but the system has 1"):
        potentials["aoti"](dense[:1], torch.zeros(1, dtype=torch.long))


def test_atoms_without_neighbours_get_their_shifts_and_zero_forces(files, potentials):
    _compiler_or_skip()
    _, model = files
    positions = torch.tensor([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 30.0, 0.0]], dtype=torch.float64)
    species = torch.tensor([0, 1, 1])
    energy, forces = potentials["aoti"](positions, species)  # no pair within the cutoff
    expected, _ = energy_and_forces(model, positions, species)
    torch.testing.assert_close(energy, expected, rtol=1e-12, atol=1e-12)
    assert float(forces.abs().max()) == 0.0


def test_pythonforce_of_a_subset_and_after_pickling_equals_the_model(files):
    _compiler_or_skip()
    paths, model = files
    topology, positions_nm = water_box(8, 1.0, seed=6)
    atoms = list(range(3, 15))  # four whole molecules
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    force = create_pythonforce(paths["aoti"], topology, atoms=atoms)
    system.addForce(force)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))  # pickles the computation
    species = torch.tensor([1 if a.element.symbol == "O" else 0 for a in topology.atoms()])[atoms]
    cell = torch.tensor(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)) * ANGSTROM_PER_NM)
    expected_energy, expected_forces = energy_and_forces(
        model, torch.tensor(positions_nm[atoms] * ANGSTROM_PER_NM), species, cell)
    for each in (system, copy):
        energy, forces = _openmm_energy_forces(each, positions_nm, "Reference")
        assert energy == pytest.approx(float(expected_energy) * KJ_PER_MOL_PER_EV, rel=1e-9)
        np.testing.assert_allclose(forces[atoms], expected_forces.numpy() * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM,
                                   rtol=1e-7, atol=1e-7)
        others = [i for i in range(len(positions_nm)) if i not in atoms]
        assert np.abs(forces[others]).max() == 0.0
