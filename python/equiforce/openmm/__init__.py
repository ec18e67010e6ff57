"""OpenMM integration: TorchForce creation and the openmm-ml potential."""
from ._boundary import OpenMMEnergy
from ._force import create_force, species_for_atoms

__all__ = ["create_force", "species_for_atoms", "OpenMMEnergy"]
