"""A NequIP model imported into equiforce's runtime: its energies and forces are NequIP's own, the file is an
equiforce file like any other (load_model, ASE calculator, OpenMM), and bad input is named.

Uses the NequIP water peer model (H, O; r_max 4 Å) that ``benchmarks/peers/nequip/build.py`` writes."""
import os
import sys

import numpy as np
import pytest
import torch

nequip = pytest.importorskip("nequip", reason="nequip is not installed (pip install -r requirements-bench.txt)")

from conftest import energy_and_forces, random_o3, water_tensors  # noqa: E402

import equiforce  # noqa: E402
from equiforce.bench._machine import file_sha256  # noqa: E402
from equiforce.imports import GraphPotential, ImportedModelError  # noqa: E402
from equiforce.imports._nequip import build_nequip, import_nequip, nequip_global_state  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEER_MODEL = os.path.join(REPO, "runs", "peers", "nequip", "water.nequip.zip")
PEER_CHECKPOINT = os.path.join(REPO, "runs", "peers", "nequip", "train", "last.ckpt")
pytestmark = pytest.mark.skipif(not os.path.isfile(PEER_MODEL), reason=f"{PEER_MODEL} is missing (make it with "
                                "python benchmarks/peers/nequip/build.py)")
SPECIES_H_O = ("H", "O")  # conftest's water_tensors: H = 0, O = 1, the file's order too


@pytest.fixture(scope="module")
def nequip_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("nequip")
    paths = {dtype: str(directory / f"water-nequip-{dtype}.pt") for dtype in ("float32", "float64")}
    for dtype, path in paths.items():
        import_nequip(PEER_MODEL, path, dtype=dtype, progress=False)
    return paths


@pytest.fixture(scope="module")
def nequip_module(nequip_files):
    return equiforce.load_model(nequip_files["float32"])


def nequip_energy_and_forces(precision, atoms):
    """Energy and forces from NequIP's own ASE calculator on the peer model, under nequip's global state (float64
    geometry): float32 the packaged model; float64 NequIP's own float64 model (the packaged configuration built by
    nequip with model_dtype float64) carrying the packaged weights."""
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
    from nequip.integrations.ase import NequIPCalculator
    from nequip.model.saved_models.load_utils import load_saved_model

    with nequip_global_state():
        model = load_saved_model(PEER_MODEL).eval()
        if precision == "float64":
            import yaml
            from hydra.utils import instantiate

            importer = torch.package.PackageImporter(PEER_MODEL)
            config = yaml.safe_load(importer.load_text(package="model", resource="config.yaml"))
            model64 = instantiate(dict(config["training_module"]["model"], model_dtype="float64"))
            model64.load_state_dict(model.state_dict(), strict=True)
            model = model64.eval()
        mapper = ChemicalSpeciesToAtomTypeMapper(model_type_names=["H", "O"],
                                                 chemical_species_to_atom_type_map={"H": "H", "O": "O"})
        atoms = atoms.copy()
        atoms.calc = NequIPCalculator(model, "cpu", transforms=[mapper, NeighborListTransform(r_max=4.0)])
        return atoms.get_potential_energy(), atoms.get_forces()


def as_atoms(positions, species, cell):
    from ase import Atoms

    return Atoms([SPECIES_H_O[int(s)] for s in species], positions=positions.double().numpy(),
                 cell=cell.double().numpy(), pbc=True)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_energy_and_forces_equal_nequips_own_calculator(nequip_files, precision):
    dtype = {"float32": torch.float32, "float64": torch.float64}[precision]
    module, metadata = equiforce.load_model(nequip_files[precision])
    assert metadata["elements"] == list(SPECIES_H_O)
    positions, species, cell = water_tensors(32, seed=2)  # 96 atoms, periodic, float64
    energy_ref, forces_ref = nequip_energy_and_forces(precision, as_atoms(positions, species, cell))
    energy, forces = energy_and_forces(module, positions.to(dtype), species, cell.to(dtype))
    n = len(species)
    tolerance = {"float32": (2e-4, 1e-3), "float64": (1e-8, 1e-7)}[precision]  # eV/atom, eV/Å (MAE)
    assert abs(float(energy) - energy_ref) / n < tolerance[0]
    assert np.abs(forces.double().numpy() - forces_ref).mean() < tolerance[1]
    assert np.abs(forces_ref).max() > 0.1  # forces worth comparing


def test_rotation_reflection_translation_permutation_invariance(nequip_files):
    module, _ = equiforce.load_model(nequip_files["float64"])
    positions, species, _ = water_tensors(8, seed=5)  # 24 atoms as an open cluster: any rotation is a symmetry
    energy, forces = energy_and_forces(module, positions, species)
    generator = torch.Generator().manual_seed(7)
    for improper in (False, True):
        rotation = random_o3(generator, improper)
        order = torch.randperm(len(species), generator=generator)
        moved = (positions @ rotation.T + torch.tensor([2.5, -1.0, 0.3], dtype=torch.float64))[order]
        moved_energy, moved_forces = energy_and_forces(module, moved, species[order])
        torch.testing.assert_close(moved_energy, energy, rtol=1e-11, atol=0.0)
        torch.testing.assert_close(moved_forces, (forces @ rotation.T)[order], rtol=1e-9, atol=1e-10)


def test_periodic_box_rotated_with_the_atoms_and_atoms_shifted_by_lattice_vectors(nequip_files):
    module, _ = equiforce.load_model(nequip_files["float64"])
    positions, species, cell = water_tensors(16, seed=6)
    energy, forces = energy_and_forces(module, positions, species, cell)
    rotation = random_o3(torch.Generator().manual_seed(8), improper=True)
    turned_energy, turned_forces = energy_and_forces(module, positions @ rotation.T, species, cell @ rotation.T)
    torch.testing.assert_close(turned_energy, energy, rtol=1e-11, atol=0.0)
    torch.testing.assert_close(turned_forces, forces @ rotation.T, rtol=1e-9, atol=1e-10)
    shifts = torch.tensor([[1, 0, -2], [0, 3, 1]], dtype=torch.float64).repeat(24, 1) @ cell
    shifted_energy, shifted_forces = energy_and_forces(module, positions + shifts, species, cell)
    torch.testing.assert_close(shifted_energy, energy, rtol=1e-11, atol=0.0)
    torch.testing.assert_close(shifted_forces, forces, rtol=1e-9, atol=1e-10)


def test_load_model_round_trip_and_metadata(nequip_files, nequip_module):
    module, metadata = nequip_module
    assert metadata["architecture"] == "nequip" and metadata["dtype"] == "float32"
    assert metadata["elements"] == ["H", "O"] and metadata["atomic_numbers"] == [1, 8]
    assert metadata["cutoff"] == 4.0 and float(module.cutoff) == 4.0
    source = metadata["source"]
    assert source["model_file"] == PEER_MODEL and source["model_file_sha256"] == file_sha256(PEER_MODEL)
    assert source["imported_with_nequip"] == nequip.__version__ and "MIT" in source["licence"]
    assert source["num_parameters"] == 224352
    assert source["round_trip_check"]["energy_difference_ev_per_atom"] < 1e-6
    assert equiforce.export.read_metadata(nequip_files["float32"]) == metadata
    built = build_nequip(PEER_MODEL)
    eager = GraphPotential(built["network"], built["cutoff"], built["atomic_numbers"], built["type_of_species"])
    eager = eager.to(torch.float32).eval()  # NequIP's float64 parts (geometry, scale and shift) in the file's dtype
    positions, species, cell = water_tensors(8, seed=1, dtype=torch.float32)
    energy_file, forces_file = energy_and_forces(module, positions, species, cell)
    energy_eager, forces_eager = energy_and_forces(eager, positions, species, cell)
    torch.testing.assert_close(energy_file, energy_eager, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(forces_file, forces_eager, rtol=1e-4, atol=1e-5)


def test_float32_file_run_in_float64_computes_in_float64(nequip_files):
    module32, _ = equiforce.load_model(nequip_files["float32"])
    module64, _ = equiforce.load_model(nequip_files["float64"])
    module32 = module32.to(torch.float64)  # what precision="float64" of the calculator and create_force does
    positions, species, cell = water_tensors(8, seed=3)
    energy, forces = energy_and_forces(module32, positions, species, cell)
    energy64, forces64 = energy_and_forces(module64, positions, species, cell)
    torch.testing.assert_close(energy, energy64, rtol=1e-7, atol=0.0)  # constants rounded to float32 once
    torch.testing.assert_close(forces, forces64, rtol=1e-5, atol=1e-6)
    moved = positions.clone()
    moved[0, 0] += 1e-6  # Å: an energy change of ~1e-6 eV, far below float32 resolution of ~1e3 eV
    with torch.no_grad():
        change = module32(moved, species, cell) - module32(positions, species, cell)
        change64 = module64(moved, species, cell) - module64(positions, species, cell)
    assert abs(float(change) + 1e-6 * float(forces64[0, 0])) < 1e-9
    torch.testing.assert_close(change, change64, rtol=1e-4, atol=1e-12)


@pytest.mark.skipif(not os.path.isfile(PEER_CHECKPOINT), reason=f"{PEER_CHECKPOINT} is missing")
def test_training_checkpoint_imports_to_the_same_model_and_leaves_global_state_alone(nequip_module, tmp_path):
    import random

    module, _ = nequip_module
    default_dtype = torch.get_default_dtype()
    torch.manual_seed(1234)
    random.seed(1234)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(1234)
    random.seed(1234)
    built = build_nequip(PEER_CHECKPOINT)  # nequip builds the model under its global state
    assert torch.get_default_dtype() == default_dtype
    torch.testing.assert_close(torch.rand(3), expected[0], rtol=0, atol=0)  # the random streams go on unseeded
    assert random.random() == expected[1]
    assert built["source"]["num_parameters"] == 224352
    path = str(tmp_path / "from-checkpoint.pt")
    import_nequip(PEER_CHECKPOINT, path, progress=False)
    from_checkpoint, metadata = equiforce.load_model(path)
    assert metadata["source"]["model_file"] == PEER_CHECKPOINT
    positions, species, cell = water_tensors(8, seed=7, dtype=torch.float32)
    torch.testing.assert_close(from_checkpoint(positions, species, cell), module(positions, species, cell),
                               rtol=1e-6, atol=1e-4)


def test_fixed_capacity_neighbour_list_gives_the_same_energy(nequip_module):
    module, _ = nequip_module
    positions, species, cell = water_tensors(8, seed=4, dtype=torch.float32)
    dynamic = module(positions, species, cell)
    padded = module(positions, species, cell, 3000)  # padding edges sit at r_max, where NequIP gives exactly 0
    torch.testing.assert_close(padded, dynamic, rtol=1e-6, atol=1e-6)
    assert torch.isnan(module(positions, species, cell, 10))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_edge_at_exactly_r_max_contributes_exactly_nothing(nequip_module, dtype):
    module, _ = nequip_module
    network = module.network.to(dtype)
    try:
        types = torch.tensor([1, 0])
        vectors = torch.tensor([[4.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)  # |v| = r_max, as padding is
        with_edge = network(types, torch.tensor([[0], [1]]), vectors)
        without = network(types, torch.zeros((2, 0), dtype=torch.long), torch.zeros((0, 3), dtype=dtype))
        assert float(with_edge.detach()) == float(without)
        (gradient,) = torch.autograd.grad(with_edge, vectors)
        assert bool((gradient == 0).all())
    finally:
        module.network.to(torch.float32)


def test_ase_calculator_and_openmm_run_the_imported_file(nequip_files, nequip_module):
    import openmm
    from openmm import unit

    from equiforce.calculator import EquiforceCalculator
    from equiforce.openmm import create_force
    from equiforce.systems import water_box
    from equiforce.units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV

    module, metadata = nequip_module
    topology, positions_nm = water_box(8, seed=3)
    box = np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    species = torch.tensor([metadata["elements"].index(a.element.symbol) for a in topology.atoms()])
    energy, forces = energy_and_forces(module, torch.tensor(positions_nm * ANGSTROM_PER_NM, dtype=torch.float32),
                                       species, torch.tensor(box * ANGSTROM_PER_NM, dtype=torch.float32))
    atoms = as_atoms(torch.tensor(positions_nm * ANGSTROM_PER_NM), species, torch.tensor(box * ANGSTROM_PER_NM))
    atoms.calc = EquiforceCalculator(nequip_files["float32"])
    assert atoms.get_potential_energy() == pytest.approx(float(energy), rel=1e-6)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(nequip_files["float32"], topology))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    openmm_energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert openmm_energy == pytest.approx(float(energy) * KJ_PER_MOL_PER_EV, rel=1e-5)
    openmm_forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    np.testing.assert_allclose(openmm_forces, forces.numpy() * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM, rtol=1e-4,
                               atol=1e-2)


def test_unsupported_nequip_version_is_refused_by_name(monkeypatch, tmp_path):
    monkeypatch.setattr(nequip, "__version__", "0.7.1")
    with pytest.raises(ImportedModelError, match=r"nequip 0.7.1 is installed; this importer supports nequip 0.19.x"):
        import_nequip(PEER_MODEL, str(tmp_path / "never.pt"), progress=False)
    assert not (tmp_path / "never.pt").exists()


def test_missing_nequip_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nequip", None)  # `import nequip` now raises ImportError
    with pytest.raises(ImportedModelError, match="needs the `nequip` package"):
        import_nequip(PEER_MODEL, str(tmp_path / "never.pt"), progress=False)


@pytest.mark.parametrize("name", ["not-a-model.ckpt", "not-a-model.nequip.zip"])
def test_a_file_that_is_not_a_nequip_model_is_refused_with_its_path(tmp_path, name):
    bogus = tmp_path / name
    bogus.write_bytes(b"this is not a torch file")
    with pytest.raises(ImportedModelError, match=f"{name} is not a NequIP model"):
        import_nequip(str(bogus), str(tmp_path / "never.pt"), progress=False)
    assert not (tmp_path / "never.pt").exists()


def test_type_names_that_are_not_elements_need_a_species_map(tmp_path):
    with pytest.raises(ImportedModelError, match="no NequIP type 'Ow'"):
        import_nequip(PEER_MODEL, str(tmp_path / "never.pt"), progress=False,
                      chemical_species_to_atom_type_map={"H": "H", "O": "Ow"})
