"""Export to and load from one TorchScript file that carries its own metadata."""
from ._export import export_model, load_model, model_dtype
from ._metadata import FORMAT_VERSION, METADATA_FILE, ModelFileError, architecture, read_metadata

__all__ = ["export_model", "load_model", "model_dtype", "read_metadata", "architecture", "ModelFileError",
           "FORMAT_VERSION", "METADATA_FILE"]
