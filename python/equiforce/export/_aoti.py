"""Export to one AOTInductor package (torch.export + AOTInductor), the path that outlives TorchScript.

The compiled graph is the model's network without its neighbour list: the caller finds the pairs (the native
``torch.ops.equiforce.neighbor_list``) and passes them in, so the graph has no data-dependent shapes. It takes

    positions [N, 3] Å, species [N] long, edge_index [2, E] long (centre, neighbour),
    offsets [E, 3] Å (lattice translation of each neighbour: shifts · cell, zero without a box)

and returns (energy [] eV, forces [N, 3] eV/Å), the forces by autograd traced into the same graph. N and E are
dynamic within bounds fixed at export (``metadata["aoti"]``); a system outside them is refused by the runner
(:mod:`equiforce.openmm._pythonforce`) before the compiled code is called, never recompiled.

The package is a zip archive like a TorchScript file; its metadata sits in ``<archive>/extra/`` under the same
name, so :func:`equiforce.export.read_metadata` (and ``equiforce info``) read both formats. The metadata adds
``"format": "aoti"`` and ``"aoti": {bounds, inputs, compile time, torch version}``.
"""
import contextlib
import json
import os
import shutil
import time
import zipfile
from typing import Any, Dict, Iterator, Optional, Tuple

import e3nn
import torch
from torch import Tensor, nn

from .. import ops as _native_ops  # noqa: F401  (registers torch.ops.equiforce.*)
from ..nn import DEFAULT_KNOTS, EquivariantPotential, ModelConfig
from ._export import set_export_options
from ._fake_ops import traceable_native_ops  # also registers the ops a package calls (equiforce_export::*)
from ._metadata import DTYPES, METADATA_FILE, OWN_ARCHITECTURE, ModelFileError, build_metadata, content_sha256, \
    read_metadata

#: ``metadata["format"]`` of an AOTInductor package (TorchScript files have no key, or "torchscript").
AOTI_FORMAT = "aoti"
TORCHSCRIPT_FORMAT = "torchscript"
#: Default bounds of the dynamic dimensions: atoms, and ordered pairs within the cutoff (about 27 per atom in
#: liquid water at 4 Å; 100 per atom leaves room for denser systems and longer cutoffs).
DEFAULT_MAX_ATOMS = 20000
DEFAULT_MAX_EDGES_PER_ATOM = 100
#: The smallest sizes a package accepts (torch.export specialises sizes 0 and 1; the runner pads an empty
#: neighbour list with one edge beyond the cutoff).
MIN_ATOMS = 2
MIN_EDGES = 1
#: Names and layout of the compiled graph's inputs and outputs, written to the metadata.
AOTI_SIGNATURE = {
    "inputs": ["positions [N, 3] angstrom", "species [N] int64", "edge_index [2, E] int64 (centre, neighbour)",
               "offsets [E, 3] angstrom (shifts @ cell)"],
    "outputs": ["energy [] eV", "forces [N, 3] eV/angstrom"],
}


def file_format(metadata: Dict[str, Any]) -> str:
    """``"aoti"`` for an AOTInductor package, ``"torchscript"`` for every other equiforce file."""
    return str(metadata.get("format", TORCHSCRIPT_FORMAT))


@contextlib.contextmanager
def eager_e3nn() -> Iterator[None]:
    """e3nn modules built inside are plain Python (``jit_mode="eager"``): torch.export cannot trace the
    TorchScript functions e3nn 0.6 compiles by default under torch < 2.10. Restores the previous defaults."""
    previous = e3nn.get_optimization_defaults()
    e3nn.set_optimization_defaults(jit_mode="eager")
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(jit_mode=previous["jit_mode"])


class EnergyAndForces(nn.Module):
    """The graph a package holds: the network's energy of a given neighbour list and its forces.

    forward(positions [N, 3] Å, species [N], edge_index [2, E], offsets [E, 3] Å) -> (energy [] eV,
    forces [N, 3] eV/Å). Built from an eager :class:`EquivariantPotential` whose e3nn modules were made under
    :func:`eager_e3nn`.
    """

    def __init__(self, model: EquivariantPotential) -> None:
        super().__init__()
        self.network = model.network

    def forward(self, positions: Tensor, species: Tensor, edge_index: Tensor,
                offsets: Tensor) -> Tuple[Tensor, Tensor]:
        positions = positions.detach().requires_grad_(True)
        with torch.enable_grad():
            vectors = (positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0])
                       + offsets)  # [E, 3] Å
            energy = self.network(positions, species, edge_index, vectors).sum()  # eV
            (gradient,) = torch.autograd.grad(energy, positions)  # [N, 3] eV/Å
        return energy.detach(), -gradient


def eager_network(config: ModelConfig, state: Dict[str, Tensor], dtype: torch.dtype) -> EquivariantPotential:
    """A fresh eager model of ``config`` in ``dtype`` with the weights in ``state`` (heads and buffers that the
    config rebuilds are left out), e3nn in eager mode, self-interaction as matrices; eval mode, no gradients."""
    with eager_e3nn():
        model = EquivariantPotential(config).to(dtype)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelFileError(f"the weights lack {missing[:5]} for the model's config")
    model.load_state_dict({name: value.to(dtype) if value.is_floating_point() else value
                           for name, value in state.items() if name in expected})
    model = model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def sample_graph(config: ModelConfig, dtype: torch.dtype, n_atoms: int = 12,
                 seed: int = 0) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inputs to trace with: ``n_atoms`` atoms at random in a cube (one per ~10 Å³), every element present, with
    their periodic neighbour list. Sizes avoid 0, 1, 2 and 3, which tracing would tie to constants."""
    generator = torch.Generator().manual_seed(seed)
    edge = (10.0 * n_atoms) ** (1.0 / 3.0)  # Å
    positions = torch.rand(n_atoms, 3, generator=generator, dtype=torch.float64) * edge  # [N, 3] Å
    species = torch.arange(n_atoms) % len(config.elements)  # [N]
    cell = torch.eye(3, dtype=torch.float64) * edge  # [3, 3] Å
    edge_index, _, shifts = torch.ops.equiforce.neighbor_list(positions, float(config.cutoff), cell, True)
    offsets = shifts.to(torch.float64) @ cell  # [E, 3] Å
    if edge_index.shape[1] in (0, 1, 2, 3, n_atoms):
        raise RuntimeError(f"the sample graph has {edge_index.shape[1]} edges; choose another seed")
    return positions.to(dtype), species, edge_index, offsets.to(dtype)


def export_aoti(
    model: EquivariantPotential, path: str, dtype: str = "float32", max_atoms: int = DEFAULT_MAX_ATOMS,
    max_edges: Optional[int] = None, fused_convolution: bool = True,
    radial_table_knots: Optional[int] = DEFAULT_KNOTS, self_interaction_matrix: bool = True,
    threads: Optional[int] = None,
) -> Dict[str, Any]:
    """Compile ``model`` (energy and forces) with torch.export + AOTInductor into one package at ``path``.

    Parameters
    ----------
    model : an :class:`EquivariantPotential` (its heads, if any, are left out).
    path : the package to write (``.pt2`` by convention); nothing appears there until it is complete.
    dtype : "float32" or "float64": the package computes in that precision only.
    max_atoms, max_edges : the largest atom count N and ordered-pair count E (pairs within the cutoff, both
        directions) the package accepts; ``max_edges`` defaults to ``DEFAULT_MAX_EDGES_PER_ATOM * max_atoms``.
    fused_convolution, radial_table_knots, self_interaction_matrix : the native code paths, as in
        :func:`equiforce.export_model` and with the same defaults (fused convolution op, radial tables on 1025
        knots, self-interaction matrices). The native ops enter the compiled graph through
        :mod:`equiforce.export._fake_ops`; off, the package runs e3nn's tensor product and the radial MLPs as
        plain PyTorch (no equiforce op inside: it then runs wherever torch does).
    threads : CPU threads of the compiled kernels. AOTInductor writes this number into the library (OpenMP
        ``num_threads``): the package uses as many wherever it runs. Default: ``torch.get_num_threads()`` now.

    Needs a C++ compiler (AOTInductor builds a shared library); takes about a minute for a small model on two
    CPU cores, several for a large one. Returns the metadata written: that of the TorchScript export plus
    ``"format": "aoti"`` and ``"aoti"`` (bounds, signature, compile seconds, torch version).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    max_edges = int(max_edges) if max_edges is not None else DEFAULT_MAX_EDGES_PER_ATOM * int(max_atoms)
    if not MIN_ATOMS < max_atoms or not MIN_EDGES < max_edges:
        raise ValueError(f"max_atoms must exceed {MIN_ATOMS} and max_edges {MIN_EDGES}; got {max_atoms}, {max_edges}")
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        raise RuntimeError("AOTInductor needs a C++ compiler (g++ or c++ on PATH, or $CXX); none was found")
    from torch.fx.experimental.proxy_tensor import make_fx

    torch_dtype = DTYPES[dtype]
    state = {name: value for name, value in model.state_dict().items() if not name.startswith("heads.")}
    deployed = eager_network(model.config, state, torch_dtype)
    radial_table, matrices = set_export_options(deployed, fused_convolution, radial_table_knots,
                                                self_interaction_matrix)
    graph = EnergyAndForces(deployed)
    sample = sample_graph(model.config, torch_dtype)
    start = time.perf_counter()
    # torch.export cannot trace torch.autograd.grad itself: make_fx traces forward and backward into one graph
    # first (symbolic sizes), which torch.export then exports with N and E dynamic.
    with traceable_native_ops():
        joint = make_fx(graph, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*sample)
    atoms = torch.export.Dim("atoms", min=MIN_ATOMS, max=int(max_atoms))
    edges = torch.export.Dim("edges", min=MIN_EDGES, max=max_edges)
    exported = torch.export.export(joint, sample, dynamic_shapes=({0: atoms}, {0: atoms}, {1: edges}, {0: edges}),
                                   strict=False)
    export_seconds = time.perf_counter() - start
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Compiled in a folder of its own under the final name (the archive's top folder is named after the file).
    folder = path + ".partial"
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    temporary = os.path.join(folder, os.path.basename(path))
    threads = int(threads) if threads is not None else torch.get_num_threads()
    torch._inductor.aoti_compile_and_package(exported, package_path=temporary,
                                             inductor_configs={"cpp.threads": threads})
    compile_seconds = time.perf_counter() - start
    metadata = build_metadata(model.config, dtype, fused_convolution, radial_table, matrices)
    metadata["format"] = AOTI_FORMAT
    metadata["aoti"] = {
        "min_atoms": MIN_ATOMS, "max_atoms": int(max_atoms), "min_edges": MIN_EDGES, "max_edges": max_edges,
        **AOTI_SIGNATURE, "device": "cpu", "threads": threads, "torch_version": torch.__version__,
        "export_seconds": round(export_seconds, 2), "compile_seconds": round(compile_seconds, 2),
    }
    metadata["content_sha256"] = content_sha256(temporary)
    _append_metadata(temporary, metadata)
    os.replace(temporary, path)
    shutil.rmtree(folder, ignore_errors=True)
    read_aoti_metadata(path)  # what was written reads back
    return metadata


def _append_metadata(path: str, metadata: Dict[str, Any]) -> None:
    """Add the metadata to the package's ``extra/`` folder (beside its own top-level folder's entries)."""
    with zipfile.ZipFile(path) as archive:
        top = archive.namelist()[0].split("/", 1)[0]
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{top}/extra/{METADATA_FILE}", json.dumps(metadata, indent=1))


def read_aoti_metadata(path: str) -> Dict[str, Any]:
    """:func:`read_metadata` of an AOTInductor package, also checking that it is one, and its bounds."""
    metadata = read_metadata(path)
    if file_format(metadata) != AOTI_FORMAT:
        raise ModelFileError(f"{path} is a {file_format(metadata)} file, not an AOTInductor package "
                             "(equiforce export --format aoti)")
    bounds = metadata.get("aoti") or {}
    missing = [k for k in ("min_atoms", "max_atoms", "min_edges", "max_edges") if k not in bounds]
    if missing:
        raise ModelFileError(f"{path}: the AOTInductor metadata lacks {missing}")
    return metadata


def aoti_from_torchscript(model_file: str, path: str, dtype: Optional[str] = None,
                          **options: Any) -> Dict[str, Any]:
    """Compile the weights of an exported TorchScript file of equiforce's own network (e.g. the shipped
    ``water-gfn2.pt``) into a package at ``path``, in ``dtype`` (default: the file's). ``options`` go to
    :func:`export_aoti`."""
    from ._export import load_model

    module, metadata = load_model(model_file)
    if metadata.get("architecture", OWN_ARCHITECTURE) != OWN_ARCHITECTURE:
        raise ValueError(f"{model_file} holds an imported {metadata['architecture']} network; only equiforce's own "
                         "network can be exported to AOTInductor")
    config = ModelConfig.from_dict(metadata["config"])
    model = eager_network(config, dict(module.state_dict()), DTYPES[metadata["dtype"]])
    return export_aoti(model, path, dtype=dtype or metadata["dtype"], **options)
