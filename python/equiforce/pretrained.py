"""Models shipped inside the package (trained by this project, nothing is downloaded).

Each shipped model is one exported TorchScript file under ``equiforce/models/`` and is registered with openmm-ml
under ``"equiforce-<name>"``::

    from openmmml import MLPotential
    potential = MLPotential("equiforce-water-gfn2")
    system = potential.createSystem(topology)

How each model was made (data, hyperparameters, errors) is in ``recipes/water/README.md``.
"""
import os
from dataclasses import dataclass
from typing import Dict, List

MODELS_DIR = os.path.join(os.path.dirname(__file__), "models")
OPENMMML_PREFIX = "equiforce-"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    file: str
    description: str

    @property
    def path(self) -> str:
        return os.path.join(MODELS_DIR, self.file)

    @property
    def openmmml_name(self) -> str:
        return OPENMMML_PREFIX + self.name


SHIPPED_MODELS: Dict[str, ShippedModel] = {
    model.name: model
    for model in (
        ShippedModel(
            name="water-gfn2",
            file="water-gfn2.pt",
            description="liquid water (H, O; periodic) trained on GFN2-xTB energies and forces: liquid frames "
            "at 250-450 K and 0.9-1.1 g/cm^3, molecules with stretched and bent bonds, and frames of the "
            "model's own MD at 300-550 K; data and training in recipes/water/ (round 4)",
        ),
    )
}


def available_models() -> List[str]:
    """Names of the shipped models whose files are present in this installation."""
    return [name for name, model in SHIPPED_MODELS.items() if os.path.isfile(model.path)]


def shipped_model_path(name: str) -> str:
    """Path of the shipped model ``name`` (``"water-gfn2"``; an ``"equiforce-"`` prefix is accepted).

    Raises ``KeyError`` for an unknown name and ``FileNotFoundError`` when the file is missing from the install.
    """
    key = name[len(OPENMMML_PREFIX):] if name.startswith(OPENMMML_PREFIX) else name
    if key not in SHIPPED_MODELS:
        known = ", ".join(sorted(SHIPPED_MODELS))
        raise KeyError(f"no shipped equiforce model named {name!r}; shipped models: {known}")
    path = SHIPPED_MODELS[key].path
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"the shipped model {key!r} should be at {path} but is missing from this installation "
            "(reinstall equiforce, or train it with recipes/water/train_water_round4.yaml and copy the "
            "exported file there)"
        )
    return path
