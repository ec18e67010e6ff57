"""openmm-ml integration: ``MLPotential("equiforce", modelPath=FILE)`` and the shipped models, e.g.
``MLPotential("equiforce-water-gfn2")``.

Registered through the ``openmmml.potentials`` entry points (see setup.py).
"""
from typing import Iterable, Optional

import openmm
import openmm.app
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory

from ..pretrained import shipped_model_path
from ._force import create_force


class EquiforcePotentialImpl(MLPotentialImpl):
    """Adds the TorchForce of an exported equiforce model to a System."""

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
        force = create_force(
            self.model_path, topology, atoms=atoms, precision=precision, cuda_graphs=cudaGraphs, force_group=forceGroup
        )
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
