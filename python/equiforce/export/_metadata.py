"""Metadata carried inside an exported model file, and the checks made when loading it."""
import datetime
import hashlib
import json
import os
import zipfile
from typing import Any, Dict, List, Optional

import e3nn
import torch

from .. import __version__
from ..nn import ModelConfig
from ..units import MODEL_UNITS

#: Layout of exported files. Bump it when a file written by this version cannot be read by older code.
#: 2: forward(..., max_pairs) (fixed-size neighbour list), atomic energies in `network`;
#: 3: the interaction blocks may call the fused convolution op (torch.ops.equiforce.tp_convolution);
#: 4: they may interpolate radial tables (torch.ops.equiforce.radial_spline; metadata key "radial_table").
FORMAT_VERSION = 4
#: Formats this version reads: each is the next one without its new op.
READABLE_FORMATS = (2, 3, 4)
#: Name of the JSON extra file inside the TorchScript archive.
METADATA_FILE = "equiforce_metadata.json"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: ``metadata["architecture"]`` of files made from equiforce's own network (files without the key are too).
OWN_ARCHITECTURE = "equiforce"


class ModelFileError(ValueError):
    """An exported model file is missing, malformed or incompatible with this equiforce."""


def build_metadata(config: ModelConfig, dtype: str, fused_convolution: bool = False,
                   radial_table: Optional[Dict[str, Any]] = None,
                   self_interaction_matrix: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Everything a reader needs to use a file without the Python objects that made it.

    ``radial_table``: None (the blocks run their radial MLPs) or {"knots", "spacing_angstrom",
    "max_relative_error"} of the tables the file interpolates. ``self_interaction_matrix``: None (e3nn's
    self-interaction modules) or {"max_relative_error"} of the measured matrices the blocks use instead (plain
    torch code inside the file, so this needs no new format)."""
    return {
        "format_version": FORMAT_VERSION,
        "equiforce_version": __version__,
        "torch_version": torch.__version__,
        "e3nn_version": e3nn.__version__,
        "architecture": OWN_ARCHITECTURE,
        "elements": list(config.elements),
        "atomic_numbers": config.atomic_numbers,
        "cutoff": config.cutoff,
        "units": dict(MODEL_UNITS),
        "dtype": dtype,
        "config": config.to_dict(),
        "fused_convolution": bool(fused_convolution),
        "radial_table": radial_table,
        "self_interaction_matrix": self_interaction_matrix,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def build_imported_metadata(elements: List[str], atomic_numbers: List[int], cutoff: float, dtype: str,
                            config: Dict[str, Any], source: Dict[str, Any]) -> Dict[str, Any]:
    """Metadata of a file wrapping an imported network (:mod:`equiforce.imports`): the keys of
    :func:`build_metadata` (the optimisations of equiforce's own network off), ``architecture`` (e.g.
    ``"sevennet"``), the foreign model's hyperparameters as ``config``, and ``source``: where the weights came
    from (checkpoint path and SHA-256, package versions, licence)."""
    return {
        "format_version": FORMAT_VERSION,
        "equiforce_version": __version__,
        "torch_version": torch.__version__,
        "e3nn_version": e3nn.__version__,
        "architecture": source["architecture"],
        "elements": list(elements),
        "atomic_numbers": [int(z) for z in atomic_numbers],
        "cutoff": float(cutoff),
        "units": dict(MODEL_UNITS),
        "dtype": dtype,
        "config": config,
        "source": source,
        "fused_convolution": False,
        "radial_table": None,
        "self_interaction_matrix": None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def architecture(metadata: Dict[str, Any]) -> str:
    """The network a file carries: ``"equiforce"`` for our own, else the imported one's name (``"sevennet"``)."""
    return str(metadata.get("architecture", OWN_ARCHITECTURE))


#: Archive entries left out of a file's content hash: the metadata that records it, and the random id that
#: torch.jit.save writes anew each time (everything else is the same bytes for the same module).
_UNHASHED_ENTRIES = ("extra/" + METADATA_FILE, ".data/serialization_id")


def content_sha256(path: str) -> str:
    """SHA-256 of a TorchScript archive's content: every entry (name without the archive's top folder, then its
    bytes, in name order) but the metadata and the serialization id. Recorded in the metadata when the file is
    written and checked when it is read, so an edited or damaged model file is refused."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        entries = {name.split("/", 1)[-1]: name for name in archive.namelist()}
        for name in sorted(entries):
            if name in _UNHASHED_ENTRIES:
                continue
            digest.update(name.encode("utf-8") + b"\0")
            digest.update(archive.read(entries[name]))
    return digest.hexdigest()


def save_model_file(compiled: torch.jit.ScriptModule, path: str, metadata: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``compiled`` with ``metadata`` (plus its ``content_sha256``) to ``path``; nothing appears at ``path``
    until the file is complete. Returns the metadata written."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = path + ".partial"
    torch.jit.save(compiled, temporary, _extra_files={METADATA_FILE: json.dumps(metadata, indent=1)})
    metadata = {**metadata, "content_sha256": content_sha256(temporary)}
    torch.jit.save(compiled, temporary, _extra_files={METADATA_FILE: json.dumps(metadata, indent=1)})
    if content_sha256(temporary) != metadata["content_sha256"]:
        os.remove(temporary)
        raise ModelFileError(f"writing {path}: two saves of the same module differ; nothing was written")
    os.replace(temporary, path)
    return metadata


def read_metadata(path: str) -> Dict[str, Any]:
    """Read and check the metadata of an exported file without deserialising the model."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/extra/" + METADATA_FILE)]
            if not names:
                raise ModelFileError(
                    f"{path} is a TorchScript archive without {METADATA_FILE}: it was not written by "
                    "equiforce.export_model"
                )
            metadata = json.loads(archive.read(names[0]).decode("utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist") from None
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path} is not a TorchScript model file (not a zip archive, or truncated)") from None
    check_metadata(metadata, path)
    try:
        actual = content_sha256(path)  # reads every entry to its end, so zipfile checks each one's CRC-32 too
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:  # bad CRC, zlib errors of a damaged entry
        raise ModelFileError(f"{path} is damaged: {error}") from None
    recorded = metadata.get("content_sha256")  # absent from files written before 2026-12-06: CRC checks only
    if recorded is not None and actual != recorded:
        raise ModelFileError(
            f"{path} was changed after it was written: its content hash {actual[:16]}… differs from the "
            f"{recorded[:16]}… recorded in it. Use the original file, or export it again."
        )
    return metadata


def check_metadata(metadata: Dict[str, Any], path: str) -> None:
    """Raise :class:`ModelFileError` naming what does not match this equiforce."""
    version = metadata.get("format_version")
    if version not in READABLE_FORMATS:
        raise ModelFileError(
            f"{path} was written by equiforce {metadata.get('equiforce_version', '?')} in model format "
            f"{version}; this is equiforce {__version__}, which reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}. "
            "Re-export the model from its checkpoint with this version (`equiforce export`)."
        )
    missing = [k for k in ("elements", "cutoff", "dtype", "units", "config") if k not in metadata]
    if missing:
        raise ModelFileError(f"{path}: metadata lacks {missing}")
    if metadata["dtype"] not in DTYPES:
        raise ModelFileError(f"{path}: unknown dtype {metadata['dtype']!r}, expected one of {sorted(DTYPES)}")
    if metadata["units"] != MODEL_UNITS:
        raise ModelFileError(f"{path}: model units {metadata['units']} differ from equiforce's {MODEL_UNITS}")
