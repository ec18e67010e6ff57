"""Export to and load from one TorchScript file that carries its own metadata."""
from ._export import export_model, load_model
from ._metadata import FORMAT_VERSION, METADATA_FILE, ModelFileError, read_metadata

__all__ = ["export_model", "load_model", "read_metadata", "ModelFileError", "FORMAT_VERSION", "METADATA_FILE"]
