"""Export a trained potential to one self-describing TorchScript file, and load it back."""
from typing import Any, Dict, Optional, Tuple

import torch
from e3nn.util.jit import script

from ..nn import (DEFAULT_KNOTS, EquivariantPotential, build_model, knot_spacing, set_fused_convolution,
                  set_radial_table, set_self_interaction_matrix)
from ._metadata import DTYPES, ModelFileError, build_metadata, read_metadata, save_model_file


def export_model(
    model: EquivariantPotential, path: str, dtype: str = "float32", properties: bool = False,
    fused_convolution: bool = True, radial_table_knots: Optional[int] = DEFAULT_KNOTS,
    self_interaction_matrix: bool = True,
) -> Dict[str, Any]:
    """Compile ``model`` with TorchScript and write it, with its metadata, to ``path``.

    The file's ``forward(positions [N,3] Å, species [N], cell [3,3] Å or None) -> energy (eV)`` and
    ``batch_energy`` methods need no equiforce Python code to run. Returns the metadata written.

    By default the energy model alone is written, also for a :class:`~equiforce.nn.PropertyModel` (its heads
    are left out, so the file is what a TorchForce needs). ``properties=True`` writes the property model
    instead: the same ``forward`` plus ``properties(positions, species, cell)`` and ``batch_properties``
    returning the heads' outputs; its metadata lists them under ``"outputs"``.

    ``fused_convolution`` (default on): the interaction blocks run the fused convolution op
    (``torch.ops.equiforce.tp_convolution``: gather, tensor product and scatter in one native pass, 1.4-2x
    faster on a CPU; CUDA inputs keep e3nn's code). It has first derivatives only, which is all energies and
    forces need; a file to be differentiated twice (training on its forces) needs ``fused_convolution=False``.

    ``radial_table_knots`` (default 1025; ``None``: off): the radial MLPs are tabulated on that many knots
    from 0 to the cutoff and interpolated (``torch.ops.equiforce.radial_spline``, cubic Hermite, CPU; CUDA
    inputs keep the MLPs), see :func:`equiforce.nn.set_radial_table`. The file's potential then differs from
    the MLPs' by the interpolation error, measured here and written to the metadata (``radial_table``:
    knots, spacing in Å, largest error relative to the largest weight), and is itself conservative. Like the
    fused convolution, it has first derivatives only.

    ``self_interaction_matrix`` (default on): each block's species-dependent self-interaction runs as one
    matrix product with matrices measured on its e3nn module (:func:`equiforce.nn.set_self_interaction_matrix`;
    plain torch, CPU and CUDA, same values to rounding); the largest deviation from e3nn measured is written to
    the metadata (``self_interaction_matrix``: {"max_relative_error"}; null when off).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    state = model.state_dict()
    # A fresh copy (e3nn modules do not deepcopy), converted before loading so float64 weights stay exact.
    if properties:
        if not model.config.heads:
            raise ValueError("properties=True needs a model with heads (ModelConfig.heads)")
        deployed = build_model(model.config).to(DTYPES[dtype])
    else:
        deployed = EquivariantPotential(model.config).to(DTYPES[dtype])
        state = {name: value for name, value in state.items() if not name.startswith("heads.")}
    deployed.load_state_dict(state)
    deployed = deployed.eval()
    radial_table, matrices = set_export_options(deployed, fused_convolution, radial_table_knots,
                                                self_interaction_matrix)
    for parameter in deployed.parameters():
        parameter.requires_grad_(False)
    compiled = script(deployed)
    metadata = build_metadata(model.config, dtype, fused_convolution, radial_table, matrices)
    if properties:
        metadata["outputs"] = ["energy"] + list(model.config.heads)
    return save_model_file(compiled, path, metadata)


def set_export_options(
    deployed: EquivariantPotential, fused_convolution: bool, radial_table_knots: Optional[int],
    self_interaction_matrix: bool,
) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """Set the code paths of an exported file on ``deployed`` (already in the file's dtype, with its weights):
    the fused convolution, radial tables on ``radial_table_knots`` knots (None: off) and self-interaction
    matrices. Returns the metadata records of the last two, ``radial_table`` (knots, spacing in Å, largest
    interpolation error relative to the largest weight) and ``self_interaction_matrix`` (largest relative
    deviation from e3nn), each None when off. Shared by :func:`export_model`, the AOTI export and committees."""
    set_fused_convolution(deployed, fused_convolution)
    radial_table = None
    if radial_table_knots is not None:
        error = set_radial_table(deployed, int(radial_table_knots))  # from the weights in the file's dtype
        radial_table = {"knots": int(radial_table_knots),
                        "spacing_angstrom": knot_spacing(deployed.config.cutoff, int(radial_table_knots)),
                        "max_relative_error": error}
    matrices = None
    if self_interaction_matrix:
        matrices = {"max_relative_error": set_self_interaction_matrix(deployed, True)}
    return radial_table, matrices


def model_dtype(module: torch.nn.Module) -> torch.dtype:
    """The floating-point dtype a model file computes in: that of its floating-point weights and buffers.

    Works for every equiforce file, own or imported (:mod:`equiforce.imports`), eager or TorchScript. Raises
    :class:`ModelFileError` if they disagree (a file half converted)."""
    dtypes = {t.dtype for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()}
    if len(dtypes) != 1:
        raise ModelFileError(f"the model's floating-point weights should share one dtype, found {sorted(map(str, dtypes))}")
    return next(iter(dtypes))


def load_model(path: str, device: str = "cpu") -> Tuple[torch.jit.ScriptModule, Dict[str, Any]]:
    """Load an exported file: returns (TorchScript module in eval mode, metadata dict).

    The metadata is checked before the model is deserialised, and the module is checked against it.
    """
    metadata = read_metadata(path)
    if metadata.get("format", "torchscript") != "torchscript":
        raise ModelFileError(
            f"{path} is an AOTInductor package (format {metadata['format']!r}), not a TorchScript file: run it with "
            f"MLPotential('equiforce', modelPath=...) or equiforce.openmm.create_pythonforce (docs/aoti.md)")
    module = torch.jit.load(path, map_location=device).eval()
    expected = DTYPES[metadata["dtype"]]
    actual = model_dtype(module)
    if actual != expected:
        raise ModelFileError(f"{path}: metadata says {metadata['dtype']} but the weights are {actual}")
    if abs(float(module.cutoff) - float(metadata["cutoff"])) > 1e-12:
        raise ModelFileError(f"{path}: metadata cutoff {metadata['cutoff']} Å, model cutoff {module.cutoff} Å")
    numbers = module.atomic_numbers.tolist()
    if numbers != list(metadata["atomic_numbers"]):
        raise ModelFileError(f"{path}: metadata elements {metadata['elements']} disagree with the model {numbers}")
    return module, metadata
