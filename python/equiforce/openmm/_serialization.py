"""Save and load an OpenMM System holding equiforce forces: ``save_system`` / ``load_system``.

``XmlSerializer.deserialize`` of any System with an ``openmmtorch.TorchForce`` crashes the process (segmentation
fault) with the pinned openmm 8.6.1 and openmmtorch 1.5 wheels, even for a trivial TorchScript module: the fault is
in ``TorchForceProxy::deserialize`` (openmmtorch), inside ``SerializationNode::getStringProperty`` of libOpenMM, see
``benchmarks/long_runs/serialization_fault.py``. Serializing works. So ``save_system`` writes the System's XML with
the equiforce TorchForces taken out, plus a JSON file beside it (``<path>.equiforce.json``) that records, for each,
its recipe (:class:`~equiforce.openmm._force.ForceRecipe`: model file and SHA-256, atoms, species, options) and its
place among the forces; ``load_system`` deserializes the rest and rebuilds each force from its model file, refusing a
model file whose SHA-256 changed. A one-line change of a user's script::

    equiforce.openmm.save_system(system, "system.xml")     # instead of open(...).write(XmlSerializer.serialize(system))
    system = equiforce.openmm.load_system("system.xml")    # instead of XmlSerializer.deserialize(open(...).read())

The XML is a System like any other (the equiforce forces are missing from it); a model file and a serialized System
are programs: load only files you trust.
"""
import copy
import dataclasses
import json
import os
import xml.etree.ElementTree as ElementTree
import openmm

from .._files import write_atomic
from ._force import RECIPES, ForceRecipe, force_from_recipe

#: Suffix of the JSON file written beside the XML.
SIDECAR_SUFFIX = ".equiforce.json"
SIDECAR_FORMAT = 1


def save_system(system: openmm.System, path: str) -> None:
    """Write ``system`` to ``path`` (OpenMM XML without its equiforce forces) and ``path + ".equiforce.json"``
    (how to rebuild them). Raises ValueError for a TorchForce that equiforce did not make in this process (it
    could not be read back) and writes nothing then."""
    tree = ElementTree.fromstring(openmm.XmlSerializer.serialize(system))
    container = tree.find("Forces")
    elements = list(container)
    forces = []
    for index, element in enumerate(elements):
        if element.get("type") != "TorchForce":
            continue
        name = system.getForce(index).getName()
        recipe = RECIPES.get(name)
        if recipe is None:
            raise ValueError(f"force {index} ({name or 'unnamed'}) is a TorchForce that equiforce did not make in "
                             "this process, so it cannot be saved by recipe; nothing was written")
        forces.append({"index": index, "recipe": dataclasses.asdict(recipe)})
        container.remove(element)
    sidecar = {"format": SIDECAR_FORMAT, "xml": os.path.basename(path), "forces": forces}
    write_atomic(path, ElementTree.tostring(tree, encoding="unicode"))
    write_atomic(path + SIDECAR_SUFFIX, json.dumps(sidecar, indent=1))


def load_system(path: str) -> openmm.System:
    """Read a System written by :func:`save_system`, with its equiforce forces rebuilt at their old places.

    A plain OpenMM XML without the JSON file beside it is read as it is."""
    with open(path) as handle:
        system = openmm.XmlSerializer.deserialize(handle.read())
    sidecar_path = path + SIDECAR_SUFFIX
    if not os.path.exists(sidecar_path):
        return system
    with open(sidecar_path) as handle:
        sidecar = json.load(handle)
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{sidecar_path}: format {sidecar.get('format')!r}, this equiforce reads {SIDECAR_FORMAT}")
    others = [copy.deepcopy(system.getForce(i)) for i in range(system.getNumForces())]  # outlive removeForce
    total = len(others) + len(sidecar["forces"])
    rebuilt = {entry["index"]: force_from_recipe(ForceRecipe(**entry["recipe"])) for entry in sidecar["forces"]}
    while system.getNumForces():  # put every force back in its saved order
        system.removeForce(system.getNumForces() - 1)
    remaining = iter(others)
    for index in range(total):
        force = rebuilt.get(index) or next(remaining)
        system.addForce(force)
    return system
