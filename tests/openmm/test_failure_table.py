"""The failure table: each bad input a user can give an equiforce force gets its own clear error naming the
culprit, and nothing already on disk is changed by the refusal.

| case | where it is caught | the error names |
|---|---|---|
| unknown element | create_force | the atom (index, name, residue) and its element |
| box too small for the cutoff | create_force | the box vector and its height |
| NaN / inf position | the TorchForce (CPU) | the System index of the atom |
| overlapping atoms | the TorchForce (CPU) | both atoms (System indices) and their distance |
| corrupted / truncated / foreign model file | load_model | the file and what is wrong with it |
| wrong dtype | create_force, load_model | the dtype asked for / the one found |
"""
import hashlib
import json
import shutil
import zipfile

import numpy as np
import openmm
import openmm.app as app
import pytest
from openmm import unit

import equiforce
from equiforce.export import ModelFileError
from equiforce.openmm import create_force
from equiforce.pretrained import shipped_model_path
from equiforce.systems import water_box

SHIPPED = shipped_model_path("water-gfn2")


@pytest.fixture()
def model_copy(tmp_path):
    path = tmp_path / "water.pt"
    shutil.copyfile(SHIPPED, path)
    return path


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def ml_context(topology, positions, model):
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    if topology.getPeriodicBoxVectors() is not None:
        system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(str(model), topology))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions * unit.nanometer)
    return context


def test_unknown_element(model_copy):
    topology = app.Topology()
    residue = topology.addResidue("MET", topology.addChain())
    topology.addAtom("C", app.element.carbon, residue)
    with pytest.raises(ValueError, match=r"knows elements \['H', 'O'\], but atom 0 \(C in residue MET 1\) is element C"):
        create_force(str(model_copy), topology)


def test_box_too_small_for_the_cutoff(model_copy):
    topology, _ = water_box(1, seed=0)
    topology.setPeriodicBoxVectors([openmm.Vec3(1.0, 0, 0), openmm.Vec3(0, 1.0, 0), openmm.Vec3(0, 0, 0.005)]
                                   * unit.nanometer)
    with pytest.raises(ValueError, match="height across box vector c is 0.005 nm"):
        create_force(str(model_copy), topology)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_position(model_copy, bad):
    topology, positions = water_box(4, seed=1)
    context = ml_context(topology, positions, model_copy)
    positions = positions.copy()
    positions[5, 2] = bad
    context.setPositions(positions * unit.nanometer)
    with pytest.raises(openmm.OpenMMException, match="the position of atom 5 is not finite"):
        context.getState(getEnergy=True)


def test_overlapping_atoms(model_copy):
    topology, positions = water_box(4, seed=1)
    context = ml_context(topology, positions, model_copy)
    positions = positions.copy()
    positions[7] = positions[3]
    context.setPositions(positions * unit.nanometer)
    with pytest.raises(openmm.OpenMMException, match=r"energy is inf eV; atoms (3 and 7|7 and 3) are 0\.0? Å apart"):
        context.getState(getEnergy=True)


def test_corrupted_model_file(model_copy, tmp_path):
    corrupted = tmp_path / "corrupted.pt"
    data = bytearray(model_copy.read_bytes())
    with zipfile.ZipFile(model_copy) as archive:
        entry = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    header = entry.header_offset  # the local header's own name and extra lengths (torch pads the extra field)
    name_length = int.from_bytes(data[header + 26:header + 28], "little")
    extra_length = int.from_bytes(data[header + 28:header + 30], "little")
    start = header + 30 + name_length + extra_length  # the entry's first byte
    data[start] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    before = digest(corrupted)
    with pytest.raises(ModelFileError, match="corrupted.pt (is damaged|was changed after it was written)"):
        equiforce.load_model(str(corrupted))
    assert digest(corrupted) == before


def test_truncated_model_file(model_copy, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(model_copy.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="truncated.pt is not a TorchScript model file"):
        equiforce.load_model(str(truncated))


def test_foreign_model_file(tmp_path):
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("something/else.txt", "hello")
    with pytest.raises(ModelFileError, match="foreign.zip is a TorchScript archive without equiforce_metadata.json"):
        equiforce.load_model(str(foreign))


def test_wrong_dtype_asked_for(model_copy):
    topology, _ = water_box(2, seed=0)
    with pytest.raises(ValueError, match=r"precision must be one of \['float32', 'float64'\] or None, got 'float16'"):
        create_force(str(model_copy), topology, precision="float16")


def test_metadata_dtype_disagreeing_with_the_weights(model_copy, tmp_path):
    """A file whose metadata was edited to claim float64 over float32 weights (its content hash recomputed, as a
    careless tool might): refused, naming both dtypes."""
    from equiforce.export._metadata import METADATA_FILE, content_sha256

    edited = tmp_path / "edited-dtype.pt"
    with zipfile.ZipFile(model_copy) as old, zipfile.ZipFile(edited, "w", zipfile.ZIP_STORED) as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename.endswith("/extra/" + METADATA_FILE):
                metadata = json.loads(data)
                metadata["dtype"] = "float64"
                data = json.dumps(metadata).encode()
            new.writestr(item, data)
    with pytest.raises(ModelFileError, match="metadata says float64 but the weights are torch.float32"):
        equiforce.load_model(str(edited))
    assert content_sha256(str(edited)) == content_sha256(str(model_copy))  # only the metadata differs
