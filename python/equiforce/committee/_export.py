"""``export_committee``: several trained potentials as ONE model file whose energy is their mean."""
import hashlib
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from e3nn.util.jit import script

from ..checkpoint import model_from_checkpoint
from ..export._export import set_export_options
from ..export._metadata import DTYPES, build_metadata, save_model_file
from ..hashing import file_sha256
from ..nn import DEFAULT_KNOTS, EquivariantPotential, knot_spacing
from ._potential import CommitteePotential

#: ``metadata["architecture"]`` of a committee file. It differs from a single model's ``"equiforce"``, so that code
#: rebuilding one eager network from a file's config (``equiforce bench speed``'s eager methods) leaves it alone.
COMMITTEE_ARCHITECTURE = "equiforce-committee"

Member = Union[str, "os.PathLike[str]", EquivariantPotential]


def _state_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a module's state (each entry's name, dtype, shape and bytes, in name order): identifies the
    weights of a member given as a Python object rather than a checkpoint file."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode("utf-8"))
        digest.update(tensor.numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _load_member(member: Member, index: int, use_ema: bool) -> Tuple[EquivariantPotential, Dict[str, Any]]:
    """(model, {"source", "sha256", "sha256_of"}) of one member: a checkpoint path or a model object."""
    if isinstance(member, EquivariantPotential):
        return member, {"source": f"{type(member).__name__} object", "sha256": _state_sha256(member),
                        "sha256_of": "state_dict"}
    if isinstance(member, (str, os.PathLike)):
        path = os.fspath(member)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"committee member {index}: checkpoint {path} does not exist")
        try:
            model = model_from_checkpoint(path, use_ema=use_ema)
        except (ValueError, RuntimeError, KeyError) as error:
            raise ValueError(f"committee member {index} ({path}) is not a usable equiforce training checkpoint: "
                             f"{error}") from None
        return model, {"source": os.path.abspath(path), "sha256": file_sha256(path), "sha256_of": "checkpoint file",
                       "use_ema": bool(use_ema)}
    raise TypeError(f"committee member {index} is a {type(member).__name__}; give a checkpoint path or an "
                    "equiforce.EquivariantPotential")


def check_compatible(models: Sequence[EquivariantPotential], labels: Sequence[str]) -> None:
    """Raise ValueError naming the first member whose elements (in order) or cutoff differ from member 0's.

    The members share one neighbour list and one species numbering, so both must be identical."""
    reference = models[0].config
    for index in range(1, len(models)):
        config = models[index].config
        if list(config.elements) != list(reference.elements):
            how = " (the same, in another order)" if sorted(config.elements) == sorted(reference.elements) else ""
            raise ValueError(f"committee member {index} ({labels[index]}) knows elements {list(config.elements)}"
                             f"{how}, but member 0 ({labels[0]}) knows {list(reference.elements)}: every member "
                             "must have the same elements in the same order")
        if float(config.cutoff) != float(reference.cutoff):
            raise ValueError(f"committee member {index} ({labels[index]}) has a cutoff of {config.cutoff} Å, but "
                             f"member 0 ({labels[0]}) has {reference.cutoff} Å: the members share one neighbour list, "
                             "so their cutoffs must be equal")


def _deployed_network(model: EquivariantPotential, dtype: torch.dtype, fused_convolution: bool,
                      radial_table_knots: Optional[int], self_interaction_matrix: bool
                      ) -> Tuple[torch.nn.Module, Optional[float], Optional[float]]:
    """A fresh copy of ``model``'s atomic-energy network in ``dtype`` with export_model's optimisations set;
    returns (network, radial-table error or None, self-interaction-matrix error or None)."""
    deployed = EquivariantPotential(model.config).to(dtype)  # e3nn modules do not deepcopy: rebuild, then load
    state = {name: value for name, value in model.state_dict().items() if not name.startswith("heads.")}
    deployed.load_state_dict(state)
    deployed = deployed.eval()
    radial_table, matrices = set_export_options(deployed, fused_convolution, radial_table_knots,
                                                self_interaction_matrix)
    for parameter in deployed.parameters():
        parameter.requires_grad_(False)
    return (deployed.network, None if radial_table is None else radial_table["max_relative_error"],
            None if matrices is None else matrices["max_relative_error"])


def export_committee(
    members: Sequence[Member], path: str, dtype: str = "float32", use_ema: bool = True,
    fused_convolution: bool = True, radial_table_knots: Optional[int] = DEFAULT_KNOTS,
    self_interaction_matrix: bool = True,
) -> Dict[str, Any]:
    """Write a committee of trained potentials to ONE TorchScript model file; returns the metadata written.

    Parameters
    ----------
    members : training checkpoints (paths; their EMA weights when present and ``use_ema``) or
        :class:`~equiforce.EquivariantPotential` objects (a :class:`~equiforce.PropertyModel` gives its energy
        model). All must have the same elements, in the same order, and the same cutoff (Å); their other
        hyperparameters may differ.
    path : the file to write (nothing appears there until it is complete).
    dtype : "float32" or "float64", the precision of the file.
    fused_convolution, radial_table_knots, self_interaction_matrix : per-member optimisations, as in
        :func:`equiforce.export_model` (each member gets its own radial tables and matrices).

    The file has the format of :func:`equiforce.export_model`'s: ``forward(positions [N, 3] Å, species [N],
    cell [3, 3] Å or None, max_pairs=0)`` returns the members' MEAN energy (eV), so every path that runs a model
    file (``create_force``, ``MLPotential("equiforce", modelPath=...)``, the ASE calculator, ``equiforce bench
    speed --model``) runs the committee's mean. ``member_energies(...)`` returns the members' energies [K] (eV)
    and ``member_forces(positions, species, cell)`` their energies [K] and forces [K, N, 3] (eV/Å); the
    neighbour list is computed once for all members. Metadata: :func:`equiforce.export.read_metadata`'s keys
    (``config`` is member 0's; ``architecture`` is ``"equiforce-committee"``; ``radial_table`` and
    ``self_interaction_matrix`` give the largest error over the members) plus ``"committee"``:
    {"num_members", "energy": "mean", "members": [{"source", "sha256", "sha256_of", "config", ...}]}.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    members = list(members)
    if not members:
        raise ValueError("export_committee needs at least one member")
    loaded = [_load_member(member, index, use_ema) for index, member in enumerate(members)]
    models = [model for model, _ in loaded]
    check_compatible(models, [source["source"] for _, source in loaded])
    networks: List[torch.nn.Module] = []
    entries: List[Dict[str, Any]] = []
    table_errors: List[float] = []
    matrix_errors: List[float] = []
    for model, source in loaded:
        network, table_error, matrix_error = _deployed_network(
            model, DTYPES[dtype], fused_convolution, radial_table_knots, self_interaction_matrix)
        networks.append(network)
        entries.append({**source, "config": model.config.to_dict(),
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "radial_table_max_relative_error": table_error,
                        "self_interaction_matrix_max_relative_error": matrix_error})
        if table_error is not None:
            table_errors.append(table_error)
        if matrix_error is not None:
            matrix_errors.append(matrix_error)
    reference = models[0].config
    committee = CommitteePotential(networks, reference.cutoff,
                                   torch.tensor(reference.atomic_numbers, dtype=torch.long))
    compiled = script(committee.eval())
    radial_table = None
    if radial_table_knots is not None:
        radial_table = {"knots": int(radial_table_knots),
                        "spacing_angstrom": knot_spacing(reference.cutoff, int(radial_table_knots)),
                        "max_relative_error": max(table_errors)}
    matrices = {"max_relative_error": max(matrix_errors)} if self_interaction_matrix else None
    metadata = build_metadata(reference, dtype, fused_convolution, radial_table, matrices)
    metadata["architecture"] = COMMITTEE_ARCHITECTURE
    metadata["committee"] = {"num_members": len(networks), "energy": "mean", "members": entries}
    return save_model_file(compiled, path, metadata)
