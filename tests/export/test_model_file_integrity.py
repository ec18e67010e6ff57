"""A model file records the SHA-256 of its own content and is refused, by name, when that content changes;
damaged, truncated and foreign files get a clear error and nothing on disk is touched."""
import hashlib
import zipfile

import pytest
import torch

from conftest import make_model

import equiforce
from equiforce.export import ModelFileError, read_metadata
from equiforce.export._metadata import content_sha256


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("integrity") / "model.pt"
    equiforce.export_model(make_model(torch.float32), str(path))
    return path


def file_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_entry(source, target, suffix, change):
    """Copy the archive ``source`` to ``target`` with the entry ending in ``suffix`` passed through ``change``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for item in old.infolist():
            data = old.read(item.filename)
            new.writestr(item, change(data) if item.filename.endswith(suffix) else data)


def test_written_file_records_its_content_hash_and_loads(model_file):
    metadata = read_metadata(str(model_file))
    assert metadata["content_sha256"] == content_sha256(str(model_file))
    assert len(metadata["content_sha256"]) == 64
    module, _ = equiforce.load_model(str(model_file))
    assert module is not None


def test_changed_weights_are_refused(model_file, tmp_path):
    edited = tmp_path / "edited.pt"
    rewrite_entry(model_file, edited, "/data/0", lambda data: bytes([data[0] ^ 1]) + data[1:])
    before = file_digest(edited)
    with pytest.raises(ModelFileError, match=r"edited.pt was changed after it was written"):
        equiforce.load_model(str(edited))
    assert file_digest(edited) == before  # refused, not repaired or deleted


def test_changed_code_is_refused(model_file, tmp_path):
    with zipfile.ZipFile(model_file) as archive:
        code = next(name for name in archive.namelist() if name.endswith(".py") and "/code/" in name)
    edited = tmp_path / "code-edited.pt"
    rewrite_entry(model_file, edited, code, lambda data: data + b"\n# edited\n")
    with pytest.raises(ModelFileError, match="changed after it was written"):
        equiforce.load_model(str(edited))


def test_truncated_file_is_refused_and_left_alone(model_file, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    before = file_digest(truncated)
    with pytest.raises(ModelFileError, match="truncated.pt is not a TorchScript model file"):
        equiforce.load_model(str(truncated))
    assert file_digest(truncated) == before


def test_foreign_files_are_refused_by_name(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(ModelFileError, match="notes.pt is not a TorchScript model file"):
        equiforce.load_model(str(text))
    plain = tmp_path / "plain-torchscript.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    with pytest.raises(ModelFileError, match="without equiforce_metadata.json"):
        equiforce.load_model(str(plain))
    with pytest.raises(ModelFileError, match="does not exist"):
        equiforce.load_model(str(tmp_path / "missing.pt"))


def test_a_failed_write_leaves_the_previous_file(model_file, tmp_path):
    target = tmp_path / "kept.pt"
    target.write_bytes(model_file.read_bytes())
    before = file_digest(target)
    with pytest.raises(ValueError):
        equiforce.export_model(make_model(torch.float32), str(target), dtype="float16")
    assert file_digest(target) == before
