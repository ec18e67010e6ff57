"""SevenNet checkpoints (SevenNet-0 and kin, from the installed ``sevenn`` package) as equiforce model files.

The network is SevenNet's own, built by ``sevenn`` from its checkpoint with its weights, and compiled with
TorchScript the way SevenNet's LAMMPS deployment compiles it (its force module dropped, one structure at a time,
types given as SevenNet's type indices). equiforce adds what the deployment leaves to LAMMPS: the neighbour list
(``torch.ops.equiforce.neighbor_list``), forces by autograd through the edge vectors into the positions, periodic
boxes and the file's metadata. ``sevenn`` is needed to import, not to run the file.
"""
import json
import os
import warnings
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from ..hashing import file_sha256
from ..export._metadata import DTYPES
from ._errors import ImportedModelError
from ._sevennet_layers import OneHotInModelDtype, fuse_convolutions

#: The sevenn releases whose checkpoint layout and modules this importer was written against and tested with.
SUPPORTED_SEVENN = ("0.13",)
#: Names of the pretrained SevenNet models this importer knows, as ``sevenn`` spells them.
PRETRAINED_NAMES = ("7net-0", "sevennet-0", "7net-0_11july2024", "7net-0_22may2024", "7net-l3i5")
#: SevenNet hyperparameters copied into the file's ``config`` (informative; the weights define the network).
_CONFIG_KEYS = ("cutoff", "channel", "lmax", "num_convolution_layer", "radial_basis", "cutoff_function",
                "interaction_type", "is_parity", "conv_denominator", "weight_nn_hidden_neurons", "version")
#: Where to read about the weights (recorded in the file's metadata).
SEVENNET_LICENSE = ("SevenNet (code and pretrained weights, incl. SevenNet-0) is distributed under the MIT licence "
                    "by the MDIL at Seoul National University; cite Park et al., J. Chem. Theory Comput. 20, "
                    "4857 (2024) when you use it.")


class SevenNetEdgeEnergy(nn.Module):
    """``forward(types [N], edge_index [2, E], vectors [E, 3] Å) -> energy (eV, 0-dim)`` of SevenNet's network.

    ``network`` is SevenNet's ``AtomGraphSequential`` without its force module, in single-structure mode and
    compiled with TorchScript; it reads a dict of tensors (SevenNet's data keys) and adds its outputs to it.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, types: Tensor, edge_index: Tensor, vectors: Tensor) -> Tensor:
        data: Dict[str, Tensor] = {
            "x": types,  # [N] SevenNet type indices (embedded one-hot by its first module)
            "edge_index": edge_index,  # [2, E] (source i, destination j)
            "edge_vec": vectors,  # [E, 3] Å, r_j - r_i
            "num_atoms": torch.tensor(types.shape[0], dtype=torch.long, device=types.device),
        }
        output = self.network(data)
        return output["inferred_total_energy"].reshape(())  # eV


def _with_onehot_in_model_dtype(model: nn.Module) -> None:
    """Replace SevenNet's one-hot module of ``model`` (in place, same position) by :class:`OneHotInModelDtype`."""
    original = model._modules.get("onehot_idx_to_onehot")
    if original is None:
        raise ImportedModelError("this SevenNet network has no 'onehot_idx_to_onehot' module: not a layout this "
                                 "importer knows")
    model.replace_module("onehot_idx_to_onehot", OneHotInModelDtype(
        original.num_classes, original.key_x, original.key_output, original.key_save,
        original.key_additional_output))


def _version_tuple(version: str) -> tuple:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_checkpoint_version(written_by: str, installed: str, path: str) -> None:
    """A checkpoint written by a newer sevenn than the installed one may hold a layout it cannot build: refuse it,
    naming both versions (older checkpoints are upgraded by sevenn's own reader)."""
    if written_by != "unknown" and _version_tuple(written_by) > _version_tuple(installed):
        raise ImportedModelError(f"{path} was written by sevenn {written_by}, newer than the installed sevenn "
                                 f"{installed}: import it where that sevenn is installed")


def _sevenn_version() -> str:
    try:
        import sevenn
    except ImportError:
        raise ImportedModelError(
            "importing a SevenNet model needs the `sevenn` package (pip install 'sevenn==0.13.*', or "
            "`make install`, which installs it); it is not needed to run the imported file"
        ) from None
    return str(sevenn.__version__)


def resolve_checkpoint(name_or_path: str) -> str:
    """Path of a SevenNet checkpoint: a pretrained name that ships inside ``sevenn`` (``7net-0``) or a file."""
    _sevenn_version()
    if os.path.isfile(name_or_path):
        return os.path.abspath(name_or_path)
    from sevenn.util import pretrained_name_to_path

    if name_or_path.lower() not in PRETRAINED_NAMES:
        raise ImportedModelError(
            f"{name_or_path!r} is neither a file nor a SevenNet model this importer knows "
            f"({', '.join(PRETRAINED_NAMES)})"
        )
    path = pretrained_name_to_path(name_or_path)  # a path inside the installed package; nothing is downloaded
    if not os.path.isfile(path):
        raise ImportedModelError(f"sevenn names {path} for {name_or_path!r}, but the file is not installed")
    return path


def _exact_coupling_coefficients(model: nn.Module) -> float:
    """Replace the Wigner 3j buffers (``*._w3j_l1_l2_l3``) that SevenNet's checkpoint stores in float32 by e3nn's
    values in the model's dtype, keeping each stored sign. They are constants, not learned weights; rounded to
    float32 they break rotation invariance at 1e-9 relative in a float64 run. Returns the largest change (must be
    float32 rounding, else :class:`ImportedModelError`)."""
    from e3nn.o3 import wigner_3j

    largest = 0.0
    for name, buffer in list(model.named_buffers()):
        leaf = name.rsplit(".", 1)[-1]
        if not leaf.startswith("_w3j_"):
            continue
        l1, l2, l3 = (int(x) for x in leaf[len("_w3j_"):].split("_"))
        exact = wigner_3j(l1, l2, l3, dtype=torch.float64)
        sign = 1.0 if torch.allclose(buffer.double(), exact, atol=1e-6) else -1.0  # SevenNet may store -w3j
        change = float((buffer.double() - sign * exact).abs().max())
        if change > 1e-6:
            raise ImportedModelError(f"coupling coefficients {name} differ from e3nn's wigner_3j({l1}, {l2}, {l3}) "
                                     f"by {change:.2g}: not a layout this importer knows")
        largest = max(largest, change)
        buffer.copy_(sign * exact.to(buffer.dtype))
    return largest


def build_sevennet(name_or_path: str, modal: Optional[str] = None, dtype: torch.dtype = torch.float32,
                   fused_convolution: bool = True,
                   progress: Callable[[str], None] = lambda message: None) -> Dict[str, Any]:
    """SevenNet's network from its checkpoint, ready to script, in ``dtype``: {"network": eager
    SevenNetEdgeEnergy, "cutoff": Å, "atomic_numbers": [S] sorted, "type_of_species": [S], "source": metadata}.

    In float64 the learned weights are the checkpoint's float32 values, exactly; the coupling coefficients the
    checkpoint also stores in float32 are recomputed in float64 (:func:`_exact_coupling_coefficients`).
    ``fused_convolution``: SevenNet's convolutions run equiforce's fused native op on the CPU
    (:class:`~equiforce.imports._sevennet_layers.FusedSevenNetConvolution`); False keeps e3nn's code."""
    from ase.data import chemical_symbols

    version = _sevenn_version()
    if not version.startswith(SUPPORTED_SEVENN):
        raise ImportedModelError(
            f"sevenn {version} is installed; this importer supports sevenn {', '.join(SUPPORTED_SEVENN)}.x "
            "(pip install 'sevenn==0.13.*')"
        )
    import sevenn._keys as KEY
    from sevenn.util import load_checkpoint

    path = resolve_checkpoint(name_or_path)
    progress(f"reading SevenNet checkpoint {path}")
    try:
        checkpoint = load_checkpoint(path)  # sevenn's own reader (a trusted file inside the installed package)
        config = checkpoint.config
    except Exception as error:  # noqa: BLE001 - any failure of the foreign reader is reported with the file
        raise ImportedModelError(f"{path} is not a SevenNet checkpoint sevenn {version} can read: {error}") from error
    written_by = str(config.get("version", "unknown"))
    check_checkpoint_version(written_by, version, path)
    if config.get(KEY.MODEL_TYPE, "E3_equivariant_model") != "E3_equivariant_model":
        raise ImportedModelError(f"{path}: model type {config.get(KEY.MODEL_TYPE)!r} is not supported "
                                 "(only SevenNet's E3_equivariant_model)")
    progress(f"building SevenNet's network with its weights ({str(dtype).replace('torch.', '')})")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*accelerat.*")  # sevenn's hint about CUDA kernels
        model = checkpoint.build_model(enable_cueq=False, enable_flash=False, enable_oeq=False)
    _with_onehot_in_model_dtype(model)
    model = model.to(dtype)
    with torch.no_grad():
        coefficient_change = _exact_coupling_coefficients(model) if dtype == torch.float64 else 0.0
    if fused_convolution:
        progress("fusing its convolutions (couplings measured on its own tensor products)")
        fuse_convolutions(model)
    if "force_output" in model._modules:
        model.delete_module_by_key("force_output")  # forces come from autograd through equiforce's edge vectors
    model.eval_type_map = False  # we give SevenNet type indices, not atomic numbers
    model.key_grad = None  # the edge vectors carry the positions' gradient already
    modal_map = model.modal_map
    if modal is not None:
        if not modal_map or modal not in modal_map:
            raise ImportedModelError(f"{path}: modal {modal!r} unknown; the checkpoint has "
                                     f"{sorted(modal_map) if modal_map else 'no modalities'}")
        model.prepare_modal_deploy(modal)
    elif modal_map:
        raise ImportedModelError(f"{path} is a multi-fidelity model: choose one of {sorted(modal_map)} (--modal)")
    model.set_is_batch_data(False)
    model.eval()
    type_map: Dict[int, int] = {int(z): int(t) for z, t in config[KEY.TYPE_MAP].items()}
    numbers: List[int] = sorted(type_map)
    source = {
        "architecture": "sevennet",
        "name": name_or_path,
        "checkpoint": path,
        "checkpoint_sha256": file_sha256(path),
        "checkpoint_written_by_sevenn": written_by,
        "imported_with_sevenn": version,
        "modal": modal,
        "licence": SEVENNET_LICENSE,
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "coupling_coefficients_recomputed_change": coefficient_change,
        "fused_convolution": bool(fused_convolution),
    }
    hyperparameters = {key: config[key] for key in _CONFIG_KEYS if key in config}
    return {
        "network": SevenNetEdgeEnergy(model),
        "config": json.loads(json.dumps({"architecture": "sevennet", **hyperparameters}, default=str)),
        "cutoff": float(config[KEY.CUTOFF]),
        "elements": [chemical_symbols[z] for z in numbers],
        "atomic_numbers": torch.tensor(numbers, dtype=torch.long),
        "type_of_species": torch.tensor([type_map[z] for z in numbers], dtype=torch.long),
        "source": source,
    }


def import_sevennet(name_or_path: str = "7net-0", output: str = "sevennet-0.pt", dtype: str = "float32",
                    modal: Optional[str] = None, fused_convolution: bool = True, progress: bool = True) -> Dict[str, Any]:
    """Write a SevenNet model (default: SevenNet-0, from the installed ``sevenn``) as one equiforce model file.

    The file runs wherever an equiforce file runs (``MLPotential("equiforce", modelPath=output)``,
    :func:`equiforce.openmm.create_force`, :class:`equiforce.calculator.EquiforceCalculator`), without ``sevenn``.
    ``dtype``: "float32" (SevenNet's own precision) or "float64" (its weights, converted). ``modal``: the fidelity
    of a multi-fidelity checkpoint. ``fused_convolution`` (default on): SevenNet's convolutions run equiforce's
    fused native op on the CPU (6-11x faster MD than SevenNet's own ASE calculator here,
    ``benchmarks/imports/sevennet_speed.py``); off keeps e3nn's code. Returns the metadata written.
    """
    from ._write import write_imported

    say = print if progress else (lambda message: None)
    if dtype not in DTYPES:
        raise ImportedModelError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    built = build_sevennet(name_or_path, modal=modal, dtype=DTYPES[dtype], fused_convolution=fused_convolution,
                           progress=say)
    say(f"SevenNet: {len(built['elements'])} elements, cutoff {built['cutoff']} Å, "
        f"{built['source']['num_parameters']} parameters")
    return write_imported(built, output, dtype, progress=say)
