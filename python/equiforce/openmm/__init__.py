"""OpenMM integration: TorchForce creation, the AOTInductor PythonForce and the openmm-ml potential."""
from ._boundary import OpenMMEnergy
from ._force import create_force, species_for_atoms
from ._guard import GuardReporter, SimulationBlowUp
from ._pythonforce import AOTIModel, BoundsError, create_pythonforce
from ._serialization import load_system, save_system

__all__ = ["create_force", "species_for_atoms", "OpenMMEnergy", "save_system", "load_system", "GuardReporter",
           "SimulationBlowUp", "create_pythonforce", "AOTIModel", "BoundsError"]
