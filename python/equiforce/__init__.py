"""equiforce: E(3)-equivariant machine-learned potentials for OpenMM.

Inside the model lengths are in Å and energies in eV; at the OpenMM boundary positions and box vectors are in nm
and energies in kJ/mol (see :mod:`equiforce.units`).
"""
__version__ = "0.1.0"

from .nn import EquivariantPotential, ModelConfig, PropertyModel  # noqa: E402
from .export import ModelFileError, export_model, load_model, read_metadata  # noqa: E402
from .memory import keep_freed_cpu_memory  # noqa: E402

__all__ = ["ModelConfig", "EquivariantPotential", "PropertyModel", "export_model", "load_model", "read_metadata", "ModelFileError",
           "keep_freed_cpu_memory"]
