"""NequIP models (a training checkpoint ``.ckpt`` or a ``nequip-package`` file ``.nequip.zip``) as equiforce files.

The network is NequIP's own, loaded by ``nequip`` (0.19.x) with its weights, without its force wrapper
(``ForceStressOutput``): its energy model takes the edge vectors (``AtomicDataDict.EDGE_VECTORS_KEY``) directly, the
way NequIP's LAMMPS ML-IAP integration feeds it, so equiforce's neighbour list builds the edges and the forces come
from autograd through those vectors into the positions. NequIP's edge convention is ours: ``edge_index[0]`` is the
centre, ``edge_index[1]`` the neighbour and the vector is ``r[edge_index[1]] - r[edge_index[0]]``.

Four of NequIP's modules are replaced by equivalents written here, which compute the same values in whatever dtype
the file runs in. NequIP computes the edge geometry and the per-type energy scale and shift in float64 and the rest in
its ``model_dtype``, and casts to fixed dtypes stored in its modules; an equiforce file must follow ``.to(dtype)``
(``precision=`` of the calculator and of ``create_force``), so the replacements cast to nothing. The length
normaliser also maps an edge at or beyond ``r_max`` to exactly the cutoff function's zero (``x = 1``), so the padding
edges of the fixed-capacity neighbour list contribute exactly nothing whatever the rounding of ``1 / r_max``.
``nequip`` is needed to import, not to run the file.
"""
import contextlib
import json
import os
import random
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from ..hashing import file_sha256
from ._errors import ImportedModelError
from ._nequip_fused import FusedTensorProductScatter

#: The nequip releases whose saved-model layout and modules this importer was written against and tested with.
SUPPORTED_NEQUIP = ("0.19.",)
#: Where the code and the weights come from (recorded in the file's metadata).
NEQUIP_LICENSE = ("NequIP (code) is distributed under the MIT licence by the MIR group at Harvard University; cite "
                  "Batzner et al., Nat. Commun. 13, 2453 (2022). The weights belong to whoever trained the model "
                  "(for a model you trained, yours); a published model's weights carry their own licence.")
#: NequIP's names (``AtomicDataDict``) of the input fields every GraphModel declares; a model that declares any
#: other (a charge, a spin, ...) cannot be driven by equiforce's ``forward(positions, species, cell)``.
_STANDARD_INPUT_KEYS = ("POSITIONS_KEY", "EDGE_INDEX_KEY", "EDGE_TRANSPOSE_PERM_KEY", "EDGE_CELL_SHIFT_KEY",
                        "EDGE_VECTORS_KEY", "CELL_KEY", "BATCH_KEY", "NUM_NODES_KEY", "ATOM_TYPE_KEY",
                        "LMP_MLIAP_DATA_KEY", "NUM_LOCAL_GHOST_NODES_KEY")
#: NequIP modules that keep a dtype attribute which their forward never uses (safe to carry over).
_DTYPE_ATTRIBUTE_UNUSED = frozenset({"TensorProductScatter"})


def _nequip_version() -> str:
    try:
        import nequip
    except ImportError:
        raise ImportedModelError(
            "importing a NequIP model needs the `nequip` package (pip install 'nequip==0.19.1', or "
            "pip install -r requirements-bench.txt); it is not needed to run the imported file"
        ) from None
    return str(nequip.__version__)


@contextlib.contextmanager
def nequip_global_state():
    """nequip's global state (``set_global_state``), which its checkpoint loader requires, for the duration of the
    block only: it seeds every random generator, makes float64 torch's default dtype and changes TorchScript's
    fusion strategy, e3nn's optimisation flags, torch's multiprocessing sharing strategy and some environment
    variables. All of these are restored on exit and nequip's own flag reset, so a later user of nequip in the same
    process sets its state up afresh. Where nequip's state was set up before, it is left as it is."""
    import e3nn
    import numpy as np
    from nequip.utils import global_state

    if global_state.global_state_initialized():
        yield
        return
    environment = {key: os.environ.get(key) for key in
                   ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "PYTORCH_JIT_USE_NNC_NOT_NVFUSER")}
    dtype = torch.get_default_dtype()
    rng = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    fusion = torch.jit.set_fusion_strategy([("STATIC", 2), ("DYNAMIC", 10)])
    torch.jit.set_fusion_strategy(fusion)
    e3nn_flags = e3nn.get_optimization_defaults()
    sharing = torch.multiprocessing.get_sharing_strategy()
    dynamo = torch._dynamo.config
    dynamo_flags = (dynamo.capture_dynamic_output_shape_ops, dynamo.capture_scalar_outputs)
    fp32_precision = torch.backends.fp32_precision
    latest = dict(global_state.get_latest_global_state())
    try:
        global_state.set_global_state()
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        torch.jit.set_fusion_strategy(fusion)
        e3nn.set_optimization_defaults(**e3nn_flags)
        torch.multiprocessing.set_sharing_strategy(sharing)
        dynamo.capture_dynamic_output_shape_ops, dynamo.capture_scalar_outputs = dynamo_flags
        if torch.backends.fp32_precision != fp32_precision:
            torch.backends.fp32_precision = fp32_precision
        for key, value in environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        global_state._latest_global_config.clear()
        global_state._latest_global_config.update(latest)
        global_state._GLOBAL_STATE_INITIALIZED = False


# ----------------------------------------------------------------------------------------------------------------
# Dtype-following stand-ins for the NequIP modules that cast to a fixed dtype.
# Each reads and writes the same AtomicDataDict fields as the module it replaces, with the same values.
# ----------------------------------------------------------------------------------------------------------------


class EdgeLengthsNormalized(nn.Module):
    """For ``EdgeLengthNormalizer``: edge lengths ``r`` (field ``edge_lengths``) and ``x = r / r_max`` (its field,
    per edge type when the model has per-edge-type cutoffs), with ``x = 1`` exactly for ``r >= r_max`` (only the
    padding edges are that long): NequIP's cutoff function is zero there, and so is its gradient."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.per_edge_type = bool(original._per_edge_type)
        self.num_types = int(original.num_types)
        self.edge_type_field = str(original.edge_type_field)
        self.norm_length_field = str(original.norm_length_field)
        self.register_buffer("rmax_recip", original._rmax_recip.detach().clone())  # [] or [T * T], 1/Å
        self.register_buffer("r_max", torch.tensor(float(original.r_max), dtype=torch.float64))  # [] Å

    def forward(self, data: Dict[str, Tensor]) -> Dict[str, Tensor]:
        vectors = data["edge_vectors"]  # [E, 3] Å
        lengths = vectors.square().sum(1, keepdim=True).sqrt()  # [E, 1] Å
        data["edge_lengths"] = lengths
        rmax_recip = self.rmax_recip
        if self.per_edge_type:
            if self.edge_type_field in data:
                edge_type = data[self.edge_type_field]
            else:
                edge_type = data["atom_types"].view(-1).index_select(0, data["edge_index"].view(-1)).view(2, -1)
                data[self.edge_type_field] = edge_type  # [2, E]
            rmax_recip = rmax_recip.index_select(0, edge_type[0] * self.num_types + edge_type[1]).unsqueeze(-1)
        normalized = lengths * rmax_recip  # [E, 1]
        data[self.norm_length_field] = torch.where(lengths < self.r_max, normalized, torch.ones_like(normalized))
        return data


class EdgeHarmonics(nn.Module):
    """For ``SphericalHarmonicEdgeAttrs``: e3nn spherical harmonics of the edge vectors (NequIP's own ``sh``
    module), in the vectors' dtype."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.sh = original.sh
        self.out_field = str(original.out_field)

    def forward(self, data: Dict[str, Tensor]) -> Dict[str, Tensor]:
        data[self.out_field] = self.sh(data["edge_vectors"])  # [E, (l_max + 1)^2]
        return data


class BesselWithCutoff(nn.Module):
    """For ``BesselEdgeLengthEncoding``: ``n sinc(n x)`` for n = 1..num_bessels times NequIP's cutoff function of
    ``x`` (NequIP's own ``cutoff`` module and Bessel weights), in the dtype of ``x``; also stores the cutoff."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.cutoff = original.cutoff
        weights = original.bessel_weights
        if isinstance(weights, nn.Parameter):
            self.bessel_weights = weights
        else:
            self.register_buffer("bessel_weights", weights.detach().clone())  # [1, num_bessels]
        self.edge_invariant_field = str(original.edge_invariant_field)
        self.norm_length_field = str(original.norm_length_field)

    def forward(self, data: Dict[str, Tensor]) -> Dict[str, Tensor]:
        x = data[self.norm_length_field]  # [E, 1]
        basis = torch.sinc(x * self.bessel_weights) * self.bessel_weights  # [E, num_bessels]
        envelope = self.cutoff(x)  # [E, 1]
        data["edge_cutoff"] = envelope
        data[self.edge_invariant_field] = basis * envelope
        return data


class ScaleShiftPerType(nn.Module):
    """For ``PerTypeScaleShift``: ``scale[type] * e + shift[type]`` of the per-atom energy (one value for all types
    when NequIP stores one), in the dtype of its scales and shifts (the file's) rather than always float64."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.field = str(original.field)
        self.out_field = str(original.out_field)
        self.has_scales = bool(original.has_scales)
        self.has_shifts = bool(original.has_shifts)
        for name in ("scales", "shifts"):
            value = getattr(original, name)
            if isinstance(value, nn.Parameter):
                setattr(self, name, value)
            else:
                self.register_buffer(name, value.detach().clone())  # [T, 1] or [1, 1] (or empty if absent)
        self.scales_shortcut = self.scales.numel() == 1
        self.shifts_shortcut = self.shifts.numel() == 1

    def forward(self, data: Dict[str, Tensor]) -> Dict[str, Tensor]:
        energy = data[self.field]  # [N, 1]
        types = data["atom_types"].view(-1)[: energy.size(0)]
        energy = energy.to(self.shifts.dtype if self.has_shifts else self.scales.dtype)
        if self.has_scales:
            scales = self.scales if self.scales_shortcut else torch.nn.functional.embedding(types, self.scales)
            energy = energy * scales
        if self.has_shifts:
            shifts = self.shifts if self.shifts_shortcut else torch.nn.functional.embedding(types, self.shifts)
            energy = energy + shifts
        data[self.out_field] = energy
        return data


_REPLACEMENTS: Dict[str, Callable[[nn.Module], nn.Module]] = {
    "EdgeLengthNormalizer": EdgeLengthsNormalized,
    "SphericalHarmonicEdgeAttrs": EdgeHarmonics,
    "BesselEdgeLengthEncoding": BesselWithCutoff,
    "PerTypeScaleShift": ScaleShiftPerType,
}


class NequIPEdgeEnergy(nn.Module):
    """``forward(types [N], edge_index [2, E], vectors [E, 3] Å) -> energy (eV, 0-dim)`` of NequIP's energy model.

    ``energy_model`` is the ``SequentialGraphNetwork`` inside NequIP's ``ForceStressOutput``; it reads a dict of
    tensors (NequIP's ``AtomicDataDict``) and adds its outputs to it.
    """

    def __init__(self, energy_model: nn.Module) -> None:
        super().__init__()
        self.energy_model = energy_model

    def forward(self, types: Tensor, edge_index: Tensor, vectors: Tensor) -> Tensor:
        data: Dict[str, Tensor] = {
            "atom_types": types,  # [N] NequIP type indices
            "edge_index": edge_index,  # [2, E] (centre, neighbour)
            "edge_vectors": vectors,  # [E, 3] Å, r_neighbour - r_centre
        }
        output = self.energy_model(data)
        return output["total_energy"].reshape(()).to(vectors.dtype)  # eV


def _check_keys() -> None:
    """The AtomicDataDict field names hard-coded above are nequip's."""
    from nequip.data import AtomicDataDict as K

    expected = {"ATOM_TYPE_KEY": "atom_types", "EDGE_INDEX_KEY": "edge_index", "EDGE_VECTORS_KEY": "edge_vectors",
                "EDGE_LENGTH_KEY": "edge_lengths", "EDGE_CUTOFF_KEY": "edge_cutoff",
                "TOTAL_ENERGY_KEY": "total_energy"}
    for name, value in expected.items():
        if getattr(K, name, None) != value:
            raise ImportedModelError(f"nequip's AtomicDataDict.{name} is {getattr(K, name, None)!r}, not {value!r}: "
                                     "a nequip this importer does not know")


def _energy_model(graph_model: nn.Module, path: str, fused_convolution: bool = True) -> nn.Module:
    """The energy model of a loaded NequIP ``GraphModel`` with the fixed-dtype modules replaced (in place), and
    with ``fused_convolution`` its ``TensorProductScatter`` modules by :class:`FusedTensorProductScatter`."""
    if not getattr(graph_model, "is_graph_model", False) or not hasattr(graph_model, "model"):
        raise ImportedModelError(f"{path}: nequip loaded a {type(graph_model).__name__}, not a NequIP GraphModel")
    from nequip.data import AtomicDataDict as K

    standard = {getattr(K, key) for key in _STANDARD_INPUT_KEYS if hasattr(K, key)}
    extra = sorted(set(getattr(graph_model, "model_input_fields", [])) - standard)
    if extra:
        raise ImportedModelError(f"{path}: the model needs inputs equiforce cannot give it: {extra}")
    inner = graph_model.model
    kind = type(inner).__name__
    if kind == "ForceStressOutput":
        energy_model = inner.func  # forces come from autograd through equiforce's edge vectors
    elif kind == "SequentialGraphNetwork":
        energy_model = inner
    else:
        raise ImportedModelError(f"{path}: the NequIP model is wrapped in {kind}; this importer knows "
                                 "ForceStressOutput (NequIP's energy-and-forces wrapper)")
    if "total_energy_sum" not in energy_model._modules and not any(
            type(m).__name__ == "AtomwiseReduce" for m in energy_model.children()):
        raise ImportedModelError(f"{path}: the NequIP model sums no total energy (no AtomwiseReduce module)")
    replacements = dict(_REPLACEMENTS)
    if fused_convolution:
        replacements["TensorProductScatter"] = FusedTensorProductScatter
    replaced = set()
    for parent in list(energy_model.modules()):
        for name, child in list(parent._modules.items()):
            make = replacements.get(type(child).__name__) if child is not None else None
            if make is not None:
                parent._modules[name] = make(child)
                replaced.add(type(child).__name__)
    if "EdgeLengthNormalizer" not in replaced:  # it makes the padding edges (at r_max) contribute exactly nothing
        raise ImportedModelError(f"{path}: no EdgeLengthNormalizer in the NequIP model: not a layout this importer "
                                 "knows")
    for name, module in energy_model.named_modules():
        kind = type(module).__name__
        fixed = [key for key, value in vars(module).items() if isinstance(value, torch.dtype)]
        if fixed and kind not in _DTYPE_ATTRIBUTE_UNUSED:
            raise ImportedModelError(
                f"{path}: module {name or '(top)'} ({kind}) computes in a fixed dtype ({', '.join(fixed)}); this "
                "importer supports NequIP's own modules (NequIPGNNModel without pair potentials or node tensors)"
            )
    return energy_model


def _saved_model_facts(path: str) -> Dict[str, Any]:
    """The nequip version that wrote ``path`` and the model's hyperparameters, read without building the model."""
    import yaml

    facts: Dict[str, Any] = {"written_by_nequip": "unknown", "hyperparameters": {}}
    if path.endswith(".nequip.zip"):
        importer = torch.package.PackageImporter(path)
        metadata = yaml.safe_load(importer.load_text(package="model", resource="package_metadata.txt"))
        facts["written_by_nequip"] = str(metadata.get("versions", {}).get("nequip", "unknown"))
        facts["package_metadata"] = metadata
        try:
            config = yaml.safe_load(importer.load_text(package="model", resource="config.yaml"))
            facts["hyperparameters"] = dict(config.get("training_module", {}).get("model", {}))
        except Exception:  # noqa: BLE001 - the hyperparameters are informative only
            pass
    else:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # nequip's own format (pickled)
        parameters = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
        if "model" not in parameters:
            raise ImportedModelError(f"{path} is not a NequIP training checkpoint (no hyper_parameters.model)")
        versions = parameters.get("info_dict", {}).get("versions", {})
        facts["written_by_nequip"] = str(versions.get("nequip", "unknown"))
        facts["hyperparameters"] = dict(parameters["model"])
    return facts


def build_nequip(path: str, chemical_species_to_atom_type_map: Optional[Dict[str, str]] = None,
                 model_name: str = "sole_model", fused_convolution: bool = True,
                 progress: Callable[[str], None] = lambda message: None) -> Dict[str, Any]:
    """NequIP's energy model from a ``.ckpt`` or ``.nequip.zip``, ready to script: {"network": eager
    NequIPEdgeEnergy, "config", "cutoff": Å, "elements", "atomic_numbers": [S] sorted, "type_of_species": [S],
    "source": metadata dict}.

    ``chemical_species_to_atom_type_map``: element symbol -> NequIP type name, as nequip's own calculators take it;
    by default the type names must be element symbols. ``model_name``: which model of a multi-model file.
    ``fused_convolution``: NequIP's convolutions run equiforce's fused native op on the CPU; False keeps e3nn's code.
    """
    from ase.data import atomic_numbers as number_of_symbol
    from ase.data import chemical_symbols

    version = _nequip_version()
    if not version.startswith(SUPPORTED_NEQUIP):
        raise ImportedModelError(f"nequip {version} is installed; this importer supports nequip "
                                 f"{', '.join(v + 'x' for v in SUPPORTED_NEQUIP)} (pip install 'nequip==0.19.1')")
    _check_keys()
    if str(path).startswith("nequip.net:"):
        raise ImportedModelError(f"{path}: download the model first and give the local .nequip.zip file")
    if not os.path.isfile(path):
        raise ImportedModelError(f"{path}: no such file")
    path = os.path.abspath(path)
    if path.endswith((".nequip.pth", ".nequip.pt2")):
        raise ImportedModelError(f"{path} was compiled by nequip-compile; import the .ckpt or .nequip.zip it was "
                                 "compiled from")
    from nequip.model.saved_models.load_utils import load_saved_model

    progress(f"reading NequIP model {path}")
    try:
        with nequip_global_state():
            facts = _saved_model_facts(path)
            graph_model = load_saved_model(path, model_key=model_name)
    except ImportedModelError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of the foreign reader is reported with the file
        raise ImportedModelError(f"{path} is not a NequIP model nequip {version} can read "
                                 f"({type(error).__name__}: {error})") from error
    metadata = dict(graph_model.metadata)
    if metadata.get("r_max") is None or metadata.get("type_names") is None:
        raise ImportedModelError(f"{path}: the NequIP model names no r_max or type_names")
    cutoff = float(metadata["r_max"])
    type_names: List[str] = metadata["type_names"].split(" ")
    energy_model = _energy_model(graph_model, path, fused_convolution)
    energy_model.eval()

    if chemical_species_to_atom_type_map is None:
        unknown = [name for name in type_names if name not in number_of_symbol]
        if unknown:
            raise ImportedModelError(f"{path}: NequIP type names {unknown} are not element symbols; give "
                                     "chemical_species_to_atom_type_map (element symbol -> type name)")
        chemical_species_to_atom_type_map = {name: name for name in type_names}
    type_of_symbol: Dict[str, int] = {}
    for symbol, type_name in chemical_species_to_atom_type_map.items():
        if symbol not in number_of_symbol:
            raise ImportedModelError(f"{symbol!r} is not an element symbol")
        if type_name not in type_names:
            raise ImportedModelError(f"{path}: no NequIP type {type_name!r} (the model has {type_names})")
        type_of_symbol[symbol] = type_names.index(type_name)
    numbers: List[int] = sorted(number_of_symbol[s] for s in type_of_symbol)
    hyperparameters = json.loads(json.dumps(facts["hyperparameters"], default=str))
    source = {
        "architecture": "nequip",
        "model_file": path,
        "model_file_sha256": file_sha256(path),
        "model_name": model_name,
        "written_by_nequip": facts["written_by_nequip"],
        "imported_with_nequip": version,
        "nequip_type_names": type_names,
        "nequip_model_dtype": metadata.get("model_dtype"),
        "licence": NEQUIP_LICENSE,
        "fused_convolution": bool(fused_convolution),
        "num_parameters": int(sum(p.numel() for p in energy_model.parameters())),
    }
    return {
        "network": NequIPEdgeEnergy(energy_model),
        "config": {"architecture": "nequip", **{k: v for k, v in metadata.items() if isinstance(v, str)},
                   "model": hyperparameters},
        "cutoff": cutoff,
        "elements": [chemical_symbols[z] for z in numbers],
        "atomic_numbers": torch.tensor(numbers, dtype=torch.long),
        "type_of_species": torch.tensor([type_of_symbol[chemical_symbols[z]] for z in numbers], dtype=torch.long),
        "source": source,
    }


def import_nequip(path: str, output: str, dtype: str = "float32", progress: bool = True,
                  chemical_species_to_atom_type_map: Optional[Dict[str, str]] = None,
                  model_name: str = "sole_model", fused_convolution: bool = True) -> Dict[str, Any]:
    """Write a NequIP model (a ``.ckpt`` from ``nequip-train`` or a ``.nequip.zip`` from ``nequip-package``) as one
    equiforce model file.

    The file runs wherever an equiforce file runs (``MLPotential("equiforce", modelPath=output)``,
    :func:`equiforce.openmm.create_force`, :class:`equiforce.calculator.EquiforceCalculator`), without ``nequip``.
    ``dtype``: "float32" or "float64" (the weights converted; NequIP's float64 parts, the edge geometry and the
    energy scale and shift, are then computed in the file's dtype). Reading a checkpoint or package unpickles it:
    import only files you trust. Returns the metadata written.
    """
    from ._write import write_imported

    say = print if progress else (lambda message: None)
    built = build_nequip(path, chemical_species_to_atom_type_map=chemical_species_to_atom_type_map,
                         model_name=model_name, fused_convolution=fused_convolution, progress=say)
    say(f"NequIP: {len(built['elements'])} elements ({' '.join(built['elements'])}), cutoff {built['cutoff']} Å, "
        f"{built['source']['num_parameters']} parameters")
    return write_imported(built, output, dtype, progress=say)
