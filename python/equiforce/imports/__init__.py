"""Pretrained models of other projects, imported into equiforce's runtime (one TorchScript file each).

An imported file wraps the foreign network in :class:`GraphPotential`: equiforce's native neighbour list builds
the edges, forces come from autograd, and the file has the same call and metadata as equiforce's own files, so
``MLPotential("equiforce", modelPath=...)``, ``create_force``, ``equiforce info``, ``equiforce bench speed`` and
the ASE calculator take it as they are. Importing needs the foreign package; running the file does not.
"""
from ._errors import ImportedModelError
from ._graph_potential import GraphPotential
from ._nequip import import_nequip
from ._sevennet import import_sevennet

__all__ = ["GraphPotential", "ImportedModelError", "import_nequip", "import_sevennet"]
