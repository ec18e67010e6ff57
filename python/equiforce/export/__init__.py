"""Export to and load from one TorchScript file that carries its own metadata; or compile to one AOTInductor
package (``export_aoti``, run by ``openmm.PythonForce``, see docs/aoti.md)."""
from ._export import export_model, load_model, model_dtype
from ._aoti import AOTI_FORMAT, aoti_from_torchscript, export_aoti, file_format, read_aoti_metadata
from ._metadata import FORMAT_VERSION, METADATA_FILE, ModelFileError, architecture, read_metadata

__all__ = ["export_model", "load_model", "model_dtype", "read_metadata", "architecture", "ModelFileError",
           "FORMAT_VERSION", "METADATA_FILE", "export_aoti", "aoti_from_torchscript", "read_aoti_metadata",
           "file_format", "AOTI_FORMAT"]
