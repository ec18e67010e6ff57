"""Training checkpoints: a plain dictionary of config, weights and state, loaded with ``weights_only=True``."""
import os
from typing import Any, Dict, Optional

import torch

from . import __version__
from .nn import EquivariantPotential, ModelConfig, build_model


def save_checkpoint(model: EquivariantPotential, path: str, extra: Optional[Dict[str, Any]] = None) -> None:
    """Write ``{"config", "model_state", "equiforce_version", **extra}`` atomically to ``path``."""
    payload = {
        "equiforce_version": __version__,
        "config": model.config.to_dict(),
        "model_state": model.state_dict(),
    }
    payload.update(extra or {})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".tmp"
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); raises a clear error for anything else."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "config" not in payload or "model_state" not in payload:
        raise ValueError(f"{path} is not an equiforce checkpoint (needs 'config' and 'model_state')")
    return payload


def model_from_checkpoint(
    path: str, use_ema: bool = True, config_overrides: Optional[Dict[str, Any]] = None
) -> EquivariantPotential:
    """Rebuild the model stored in a checkpoint (the EMA weights when present and ``use_ema``).

    ``config_overrides``: ModelConfig fields to change that hold no weights (e.g. ``repulsion_radii`` and
    ``repulsion_strength``, the short-range wall added at export).

    Energy-only checkpoints give an :class:`EquivariantPotential`; checkpoints whose config names heads give a
    :class:`~equiforce.nn.PropertyModel` (a subclass, so energy code accepts it).
    """
    payload = load_checkpoint(path)
    state = payload.get("ema_state") if use_ema and payload.get("ema_state") is not None else payload["model_state"]
    # build in the stored precision before loading, so float64 weights are not rounded through float32
    # (a PropertyModel when the config names heads)
    config = dict(payload["config"], **(config_overrides or {}))
    model = build_model(ModelConfig.from_dict(config)).to(state["network.energy_scale"].dtype)
    model.load_state_dict(state)
    return model
