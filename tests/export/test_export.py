"""Exported TorchScript files: round trip equals eager, metadata, version checks, checkpoints and CLI."""
import json
import zipfile

import e3nn
import pytest
import torch

import equiforce
from equiforce.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from equiforce.cli import main as cli_main
from equiforce.export import METADATA_FILE, ModelFileError, load_model, read_metadata
from conftest import DTYPES, TOLERANCE, energy_and_forces, make_model, water_tensors, rewrite_metadata


@pytest.mark.parametrize("tables", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_torchscript_round_trip_equals_eager(tmp_path, dtype, tables):
    name = "float32" if dtype == torch.float32 else "float64"
    model = make_model(dtype, seed=4).eval()
    path = str(tmp_path / "model.pt")
    equiforce.export_model(model, path, dtype=name, radial_table_knots=equiforce.nn.DEFAULT_KNOTS if tables else None)
    loaded, metadata = load_model(path)
    assert metadata["dtype"] == name and bool(metadata["radial_table"]) is tables
    if tables:  # the eager model with the same tables (made from the same weights)
        equiforce.nn.set_radial_table(model)
    positions, species, cell = water_tensors(6, seed=1, dtype=dtype)
    for box in (cell, None):
        energy, forces = energy_and_forces(model, positions, species, box)
        energy2, forces2 = energy_and_forces(loaded, positions, species, box)
        assert float((energy2 - energy).abs()) <= TOLERANCE[dtype] * max(1.0, float(energy.abs()))
        assert float((forces2 - forces).abs().max()) <= TOLERANCE[dtype] * max(1.0, float(forces.abs().max()))


def test_exported_file_carries_its_metadata(exported_model):
    path, model = exported_model
    metadata = read_metadata(path)
    assert metadata["elements"] == ["H", "O"] and metadata["atomic_numbers"] == [1, 8]
    assert metadata["cutoff"] == model.config.cutoff
    assert metadata["units"] == {"length": "angstrom", "energy": "eV", "forces": "eV/angstrom"}
    assert metadata["dtype"] == "float64"
    assert metadata["config"] == model.config.to_dict()
    assert metadata["equiforce_version"] == equiforce.__version__
    assert metadata["torch_version"] == torch.__version__
    assert metadata["e3nn_version"] == e3nn.__version__


def test_file_from_an_incompatible_version_is_refused_naming_both_versions(exported_model, tmp_path):
    path, _ = exported_model
    future = str(tmp_path / "future.pt")
    rewrite_metadata(path, future, format_version=99, equiforce_version="9.0.0")
    with pytest.raises(ModelFileError) as error:
        load_model(future)
    message = str(error.value)
    assert "9.0.0" in message and equiforce.__version__ in message and "format 99" in message


def test_metadata_that_disagrees_with_the_weights_is_refused(exported_model, tmp_path):
    path, _ = exported_model
    wrong = str(tmp_path / "wrong.pt")
    rewrite_metadata(path, wrong, dtype="float32")
    with pytest.raises(ModelFileError, match="float32"):
        load_model(wrong)


def test_files_that_are_not_equiforce_models_are_refused(tmp_path):
    plain = str(tmp_path / "plain.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), plain)
    with pytest.raises(ModelFileError, match="not written by equiforce"):
        read_metadata(plain)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a TorchScript"):
        read_metadata(str(text))
    with pytest.raises(ModelFileError, match="does not exist"):
        read_metadata(str(tmp_path / "missing.pt"))


def test_checkpoint_round_trip_uses_weights_only_loading(tmp_path):
    model = make_model(torch.float32, seed=2)
    path = str(tmp_path / "model.ckpt")
    save_checkpoint(model, path, extra={"epoch": 3})
    payload = load_checkpoint(path)
    assert payload["epoch"] == 3 and payload["config"] == model.config.to_dict()
    restored = model_from_checkpoint(path)
    positions, species, cell = water_tensors(4, seed=0, dtype=torch.float32)
    assert torch.equal(restored(positions, species, cell), model(positions, species, cell))


def test_checkpoint_loading_refuses_pickled_objects(tmp_path):
    path = str(tmp_path / "evil.ckpt")
    torch.save({"config": {}, "model_state": {}, "payload": object()}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(path)


def test_cli_init_export_and_info(tmp_path, capsys):
    checkpoint = str(tmp_path / "m.ckpt")
    exported = str(tmp_path / "m.pt")
    assert cli_main(["init", "-o", checkpoint, "--elements", "H", "O", "--cutoff", "4.0", "--features", "8",
                     "--layers", "1"]) == 0
    assert cli_main(["export", checkpoint, "-o", exported, "--dtype", "float64"]) == 0
    assert cli_main(["info", exported]) == 0
    assert '"cutoff": 4.0' in capsys.readouterr().out
    assert cli_main(["export", str(tmp_path / "missing.ckpt"), "-o", exported]) == 2
    assert "missing.ckpt" in capsys.readouterr().err


def test_float64_weights_survive_export_and_checkpoints_exactly(tmp_path):
    model = make_model(torch.float64, seed=5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1e-9 * torch.randn_like(parameter))  # not representable in float32
    path = str(tmp_path / "m.pt")
    equiforce.export_model(model, path, dtype="float64")
    loaded, _ = load_model(path)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    checkpoint = str(tmp_path / "m.ckpt")
    save_checkpoint(model, checkpoint)
    restored = model_from_checkpoint(checkpoint)
    for name, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], value), name
