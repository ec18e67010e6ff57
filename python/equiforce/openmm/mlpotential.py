"""openmm-ml integration: ``MLPotential("equiforce", modelPath=FILE)`` and the shipped models, e.g.
``MLPotential("equiforce-water-gfn2")``.

The file's format picks the force: a TorchScript file (``equiforce export``) becomes an
``openmmtorch.TorchForce``, an AOTInductor package (``equiforce export --format aoti``) an ``openmm.PythonForce``.

Registered through the ``openmmml.potentials`` entry points (see setup.py).
"""
from typing import Iterable, Optional

import openmm
import openmm.app
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory

from ..export import AOTI_FORMAT, file_format, read_metadata
from ..pretrained import shipped_model_path
from ._force import create_force
from ._pythonforce import create_pythonforce


class EquiforcePotentialImpl(MLPotentialImpl):
    """Adds the force of an exported equiforce model to a System: a TorchForce for a TorchScript file, a
    PythonForce for an AOTInductor package."""

    def __init__(self, name: str, model_path: str) -> None:
        self.name = name
        self.model_path = model_path

    def addForces(
        self,
        topology: openmm.app.Topology,
        system: openmm.System,
        atoms: Optional[Iterable[int]],
        forceGroup: int,
        precision: Optional[str] = None,
        cudaGraphs: bool = False,
        **args,
    ) -> None:
        if file_format(read_metadata(self.model_path)) == AOTI_FORMAT:
            if cudaGraphs:
                raise ValueError(f"{self.model_path} is an AOTInductor package run through openmm.PythonForce, which "
                                 "has no CUDA graphs; use cudaGraphs=False or the TorchScript file")
            force = create_pythonforce(self.model_path, topology, atoms=atoms, precision=precision,
                                       force_group=forceGroup)
        else:
            force = create_force(self.model_path, topology, atoms=atoms, precision=precision, cuda_graphs=cudaGraphs,
                                 force_group=forceGroup)
        system.addForce(force)

    def getMLLongRange(self) -> bool:
        """equiforce models are short-ranged: every interaction lies within the model's cutoff."""
        return False


class EquiforcePotentialImplFactory(MLPotentialImplFactory):
    """Creates :class:`EquiforcePotentialImpl` for ``MLPotential("equiforce", modelPath=...)``."""

    def createImpl(self, name: str, modelPath: Optional[str] = None, **args) -> MLPotentialImpl:
        if modelPath is None:
            raise ValueError('MLPotential("equiforce") needs modelPath=<file written by equiforce export>')
        return EquiforcePotentialImpl(name, str(modelPath))


class ShippedPotentialImplFactory(MLPotentialImplFactory):
    """Creates the potential of a model shipped with equiforce, e.g. ``MLPotential("equiforce-water-gfn2")``.

    The openmm-ml name selects the file (see :mod:`equiforce.pretrained`); nothing is downloaded.
    """

    def createImpl(self, name: str, modelPath: Optional[str] = None, **args) -> MLPotentialImpl:
        if modelPath is not None:
            raise ValueError(
                f'MLPotential("{name}") uses the model shipped with equiforce; for a file of your own use '
                f'MLPotential("equiforce", modelPath=...)'
            )
        return EquiforcePotentialImpl(name, shipped_model_path(name))
