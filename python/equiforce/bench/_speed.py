"""Speed benchmark: ms/step and ns/day of equiforce and the ways a user could run the same weights instead.

Every method runs in this one process on the same water box and the same weights, so the ratios compare
like with like. Records: {"system", "n_atoms", "method", "platform", "dtype", "ms_per_step", "ns_per_day", ...}.
"""
import json
import os
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import openmm
from openmm import unit

from ..export import architecture, load_model
from ..export._metadata import DTYPES, OWN_ARCHITECTURE
from ..nn import (EquivariantPotential, ModelConfig, copy_radial_tables, copy_self_interaction_matrices,
                  set_fused_convolution)
from ..openmm import create_force, create_pythonforce, species_for_atoms
from ..systems import classical_water_system, water_box
from ..units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV
from ._machine import describe_machine, file_sha256
from ._timing import ns_per_day, time_interleaved
from ._threads import torch_threads

#: Integration step of the timed runs (fs): safe for flexible water started from a fresh box.
TIMESTEP_FS = 0.5
#: ns/day is reported at this step (fs), as the benchmark's specification asks; the cost of a step does not
#: depend on its length.
REPORT_TIMESTEP_FS = 1.0
METHODS = ["bare-eager", "bare-torchscript", "torchforce", "pythonforce", "ase", "classical"]
#: Opt-in peers (need ``requirements-bench.txt`` and ``benchmarks/peers/nequip/build.py``). openmm-ml 1.8 leaves
#: the NequIP model in training mode; "-eval" is the same weights after ``.eval()`` (the fair comparison).
PEER_METHODS = ["nequip-openmmml", "nequip-openmmml-eval"]
#: Methods that rebuild equiforce's own eager network from a file's config (:func:`eager_copy`): an imported file
#: (``equiforce import``) has none, so they are left out for it.
EAGER_METHODS = ["bare-eager", "pythonforce"]
NEQUIP_PEER_MODEL = os.path.join("runs", "peers", "nequip", "water.nequip.zip")
#: Opt-in: the same weights compiled by torch.export + AOTInductor, run through ``openmm.PythonForce``
#: (:func:`equiforce.openmm.create_pythonforce`); compiled once per model and dtype into ``AOTI_CACHE``.
AOTI_METHODS = ["aoti-pythonforce"]
AOTI_CACHE = os.path.join("runs", "bench", "aoti")


def aoti_package(model_file: str, dtype_name: str, cache: str = AOTI_CACHE, threads: Optional[int] = None) -> str:
    """The AOTInductor package of ``model_file``'s weights in ``dtype_name``, with the native code paths of
    :func:`equiforce.export.export_aoti`'s defaults: compiled into ``cache`` (named by the file's SHA-256) the
    first time, reused after (a package whose own metadata says otherwise is rebuilt). ``threads``: the CPU
    threads compiled into it (default: torch's now)."""
    from ..export import aoti_from_torchscript, read_aoti_metadata

    threads = int(threads) if threads else torch.get_num_threads()
    path = os.path.join(cache, f"{file_sha256(model_file)[:16]}-{dtype_name}-{threads}threads.pt2")
    if os.path.exists(path):
        try:
            metadata = read_aoti_metadata(path)
            if (metadata["dtype"] == dtype_name and metadata["fused_convolution"] and metadata["radial_table"]
                    and metadata["aoti"].get("threads") == threads):
                return path
        except ValueError:  # damaged or from another equiforce: compile again
            pass
    aoti_from_torchscript(model_file, path, dtype=dtype_name, threads=threads)
    return path


class WaterCase:
    """One periodic water box: topology, positions (nm), species and box (Å) for the model."""

    def __init__(self, n_molecules: int, metadata: dict, seed: int = 0) -> None:
        self.topology, self.positions_nm = water_box(n_molecules, 1.0, seed=seed)
        self.n_atoms = self.topology.getNumAtoms()
        self.name = f"water-{n_molecules}"
        self.species = species_for_atoms(list(self.topology.atoms()), metadata["elements"], "benchmark model")
        self.box_nm = np.array(self.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))

    def masses_system(self) -> openmm.System:
        system = openmm.System()
        for atom in self.topology.atoms():
            system.addParticle(atom.element.mass)
        system.setDefaultPeriodicBoxVectors(*self.topology.getPeriodicBoxVectors())
        return system


def torch_device(platform: str) -> torch.device:
    """Where the torch-side methods (bare, pythonforce, ase) run the model for an OpenMM ``platform``."""
    return torch.device("cuda" if platform == "CUDA" else "cpu")


def bare_step(module, case: WaterCase, dtype: torch.dtype,
              device: torch.device = torch.device("cpu")) -> Callable[[int], None]:
    """Forward + backward of the model alone (no integration): the floor for any MD engine.

    ``module`` must already be on ``device``; on a GPU the step waits for the device before it returns, so a
    clock around it measures the work, not the launch.
    """
    positions = torch.tensor(case.positions_nm * ANGSTROM_PER_NM, dtype=dtype, device=device)
    cell = torch.tensor(case.box_nm * ANGSTROM_PER_NM, dtype=dtype, device=device)
    species = case.species.to(device)

    def step(n: int) -> None:
        for _ in range(n):
            x = positions.clone().requires_grad_(True)
            energy = module(x, species, cell)
            torch.autograd.grad(energy, x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def _context_step(system: openmm.System, case: WaterCase, platform: str,
                  threads: Optional[int]) -> Callable[[int], None]:
    integrator = openmm.VerletIntegrator(TIMESTEP_FS * unit.femtoseconds)
    properties = {"Threads": str(threads)} if threads and platform == "CPU" else {}
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), properties)
    context.setPositions(case.positions_nm * unit.nanometer)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)

    def step(n: int) -> None:
        integrator.step(n)
        step.context = context  # the context lives as long as the step function

    return step


def _pythonforce_system(eager: EquivariantPotential, case: WaterCase, dtype: torch.dtype,
                        device: torch.device) -> openmm.System:
    """The same weights through ``openmm.PythonForce``, as openmm-ml 1.8 runs its eager models (``eager`` is on
    ``device``; positions and forces cross to and from the host every step, as they do there)."""
    species = case.species.to(device)

    def compute(state):
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer) * ANGSTROM_PER_NM
        box = np.array(state.getPeriodicBoxVectors().value_in_unit(unit.nanometer)) * ANGSTROM_PER_NM
        x = torch.tensor(positions, dtype=dtype, device=device, requires_grad=True)
        energy = eager(x, species, torch.tensor(box, dtype=dtype, device=device))
        (gradient,) = torch.autograd.grad(energy, x)
        forces = -gradient.cpu().numpy() * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM
        return float(energy.detach()) * KJ_PER_MOL_PER_EV, forces

    system = case.masses_system()
    force = openmm.PythonForce(compute)
    force.setUsesPeriodicBoundaryConditions(True)
    system.addForce(force)
    return system


def ase_dynamics(case: WaterCase, calculator) -> Callable[[int], None]:
    """``step(n)``: n steps of ASE's VelocityVerlet on ``case``'s box (Å, periodic) with ``calculator``, from
    velocities drawn at 300 K."""
    from ase import Atoms
    from ase import units as ase_units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = Atoms(
        [a.element.symbol for a in case.topology.atoms()],
        positions=case.positions_nm * ANGSTROM_PER_NM,
        cell=case.box_nm * ANGSTROM_PER_NM,
        pbc=True,
    )
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    dynamics = VelocityVerlet(atoms, timestep=TIMESTEP_FS * ase_units.fs)
    return lambda n: dynamics.run(n)


def _ase_step(model_file: str, case: WaterCase, precision: str, device: torch.device) -> Callable[[int], None]:
    from ..calculator import EquiforceCalculator

    return ase_dynamics(case, EquiforceCalculator(model_file, device=str(device), precision=precision))


def _nequip_openmmml_system(case: WaterCase, eval_mode: bool) -> openmm.System:
    """NequIP (nequip 0.19.1) through openmm-ml 1.8's ``nequip`` potential, as a user would run it."""
    import nequip.model.saved_models.load_utils as load_utils
    from openmmml import MLPotential

    if not os.path.exists(NEQUIP_PEER_MODEL):
        raise FileNotFoundError(f"{NEQUIP_PEER_MODEL} is missing: run benchmarks/peers/nequip/build.py first")
    original = load_utils.load_saved_model

    def load_in_eval_mode(*args, **kwargs):  # openmm-ml keeps the model inside its PythonForce closure
        return original(*args, **kwargs).eval()

    default_dtype = torch.get_default_dtype()
    if eval_mode:
        load_utils.load_saved_model = load_in_eval_mode
    try:
        potential = MLPotential("nequip", modelPath=NEQUIP_PEER_MODEL, lengthScale=1.0 / ANGSTROM_PER_NM,
                                energyScale=KJ_PER_MOL_PER_EV)
        return potential.createSystem(case.topology)
    finally:
        load_utils.load_saved_model = original
        torch.set_default_dtype(default_dtype)  # nequip switches the global default to float64


def eager_copy(module: torch.jit.ScriptModule, metadata: dict) -> EquivariantPotential:
    """The eager model with the weights of an exported file (equiforce's own network only)."""
    if architecture(metadata) != OWN_ARCHITECTURE:
        raise ValueError(f"the file holds an imported {architecture(metadata)} network, not equiforce's own: it has "
                         f"no eager copy, so methods {EAGER_METHODS} cannot run it")
    model = EquivariantPotential(ModelConfig.from_dict(metadata["config"]))
    expected = model.state_dict()  # TorchScript keeps non-persistent buffers (the wall's onsets) in its state;
    model.load_state_dict({k: v for k, v in module.state_dict().items() if k in expected})  # they come from config
    set_fused_convolution(model, bool(metadata.get("fused_convolution", False)))  # the file's code path
    model = model.to(DTYPES[metadata["dtype"]]).eval()
    if metadata.get("radial_table"):  # the file's own tables (non-persistent buffers, kept by TorchScript)
        copy_radial_tables(module, model)
    if metadata.get("self_interaction_matrix"):  # and its self-interaction matrices, likewise
        copy_self_interaction_matrices(module, model)
    return model


def benchmark_model(path: str) -> str:
    """The shipped water model, or an untrained exported model of the same size."""
    from ..demo import SHIPPED_MODEL, untrained_demo_model

    if os.path.exists(SHIPPED_MODEL):
        return SHIPPED_MODEL
    return untrained_demo_model(path)


def run_speed(
    molecules: List[int],
    model_file: Optional[str] = None,
    methods: Optional[List[str]] = None,
    dtypes: Optional[List[str]] = None,
    platform: str = "CPU",
    warmup_steps: int = 5,
    block_steps: int = 5,
    blocks: int = 7,
    out: Optional[str] = None,
    progress: bool = True,
    threads: Optional[int] = None,
    max_block_seconds: float = 2.0,
    max_warmup_seconds: float = 20.0,
) -> Dict:
    """Time every method on each water box; writes JSON to ``out`` as results come in (if given).

    The methods of one box are set up together and timed in turns: ``blocks`` rounds, one block of each
    method a round (``time_interleaved``), so that they share the machine's conditions; the record of a
    method is the median of its blocks. A box is recorded once all its methods are timed.

    ``threads``: torch intra-op threads and OpenMM CPU threads (default: as configured). Blocks are shortened to
    about ``max_block_seconds`` and warm-up to ``max_warmup_seconds`` for large boxes (see ``time_steps``).
    If ``out`` holds a run of the same model and settings, its records are kept and those cases skipped, so an
    interrupted full run continues where it stopped.
    """
    model_file = model_file or benchmark_model(os.path.join("runs", "bench", "untrained-water.pt"))
    methods = methods or METHODS
    dtypes = dtypes or ["float32", "float64"]
    unknown = sorted(set(methods) - set(METHODS) - set(PEER_METHODS) - set(AOTI_METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {METHODS + PEER_METHODS + AOTI_METHODS}")
    with torch_threads(threads):
        return _run_speed(molecules, model_file, methods, dtypes, platform, warmup_steps, block_steps, blocks, out,
                          progress, threads, max_block_seconds, max_warmup_seconds)


def _run_speed(molecules: List[int], model_file: str, methods: List[str], dtypes: List[str], platform: str,
               warmup_steps: int, block_steps: int, blocks: int, out: Optional[str], progress: bool,
               threads: Optional[int], max_block_seconds: float, max_warmup_seconds: float) -> Dict:
    from tqdm import tqdm

    module, metadata = load_model(model_file)
    skipped = [m for m in methods if m in EAGER_METHODS + AOTI_METHODS and architecture(metadata) != OWN_ARCHITECTURE]
    if skipped:
        print(f"{model_file} holds an imported {architecture(metadata)} network: skipping {skipped} (they rebuild "
              "equiforce's own eager network)")
        methods = [m for m in methods if m not in skipped]
    settings = {"model": model_file, "model_sha256": file_sha256(model_file), "model_config": metadata["config"],
                "timestep_fs": TIMESTEP_FS,
                "ns_per_day_timestep_fs": REPORT_TIMESTEP_FS, "openmm_cpu_threads": threads or "default",
                "timing": {"warmup_steps": warmup_steps, "block_steps": block_steps, "blocks": blocks,
                           "max_block_seconds": max_block_seconds, "max_warmup_seconds": max_warmup_seconds,
                           "interleaved": True}}
    previous = _previous_run(out, settings)
    result = {"machine": describe_machine(), "load_average_at_start": list(os.getloadavg()), **settings,
              "records": previous}
    done = {(r["system"], r["method"], r["dtype"]) for r in previous}
    fixed_dtype = {"classical": ["mixed"], "nequip-openmmml": ["float32"], "nequip-openmmml-eval": ["float32"]}
    bar = tqdm(total=len(molecules) * blocks, desc="speed", unit="round", disable=not progress)
    for n_molecules in molecules:  # every method of one box is timed in turns (time_interleaved)
        case = WaterCase(n_molecules, metadata)
        pending = [(m, d) for m in methods for d in fixed_dtype.get(m, dtypes) if (case.name, m, d) not in done]
        if not pending:
            bar.update(blocks)
            continue
        bar.set_postfix_str(f"{case.name}: setting up {len(pending)} methods")
        steps = {(m, d): make_step(m, d, module, metadata, model_file, case, platform, threads) for m, d in pending}
        bar.set_postfix_str(f"{case.name}: warm-up, then rounds")
        timings = time_interleaved(steps, warmup_steps, block_steps, blocks, max_block_seconds=max_block_seconds,
                                   max_warmup_seconds=max_warmup_seconds, progress=lambda _: bar.update(1))
        for (method, dtype_name), timing in timings.items():
            result["records"].append({
                "system": case.name, "n_atoms": case.n_atoms, "method": method,
                "platform": ({"cpu": "python", "cuda": "python-cuda"}[torch_device(platform).type]
                             if method.startswith("bare") or method == "ase" else platform),
                "dtype": dtype_name, **timing, "ns_per_day": ns_per_day(timing["ms_per_step"], REPORT_TIMESTEP_FS),
            })
        del steps
        if out:
            write_json(result, out)
    bar.close()
    return result


def _previous_run(out: Optional[str], settings: Dict) -> List[Dict]:
    """Records of an earlier run in ``out`` with the same settings (to continue it), else none."""
    if not out or not os.path.exists(out):
        return []
    with open(out) as handle:
        earlier = json.load(handle)
    same = all(earlier.get(key) == json.loads(json.dumps(value)) for key, value in settings.items())
    return earlier.get("records", []) if same else []


def make_step(method: str, dtype_name: str, module: torch.jit.ScriptModule, metadata: dict, model_file: str,
              case: WaterCase, platform: str = "CPU", threads: Optional[int] = None) -> Callable[[int], None]:
    """The benchmark's step function ``step(n)`` (n MD steps, or n forward + backward passes for ``bare-*``) of
    ``method`` (one of ``METHODS``, ``PEER_METHODS`` or ``AOTI_METHODS``) on ``case``, in precision ``dtype_name``.

    ``module``, ``metadata``: the exported model as :func:`equiforce.export.load_model` returns them (left as
    it is: the methods that need the file load it again from ``model_file``), so that several steps can
    coexist (:func:`time_interleaved`).
    """
    dtype = DTYPES.get(dtype_name, torch.float64)
    device = torch_device(platform)
    if method == "bare-eager":
        return bare_step(eager_copy(module, metadata).to(device=device, dtype=dtype), case, dtype, device)
    if method == "bare-torchscript":  # a module of its own: .to() converts in place, and steps coexist
        return bare_step(load_model(model_file)[0].to(device=device, dtype=dtype), case, dtype, device)
    if method == "torchforce":
        system = case.masses_system()
        system.addForce(create_force(model_file, case.topology, precision=dtype_name))
        return _context_step(system, case, platform, threads)
    if method == "pythonforce":
        eager = eager_copy(module, metadata).to(device=device, dtype=dtype)
        return _context_step(_pythonforce_system(eager, case, dtype, device), case, platform, threads)
    if method == "aoti-pythonforce":
        if device.type != "cpu":
            raise ValueError("aoti-pythonforce packages are compiled for the CPU; run it with platform CPU")
        system = case.masses_system()
        system.addForce(create_pythonforce(aoti_package(model_file, dtype_name, threads=threads), case.topology))
        return _context_step(system, case, platform, threads)
    if method == "ase":
        return _ase_step(model_file, case, dtype_name, device)
    if method in PEER_METHODS:
        return _context_step(_nequip_openmmml_system(case, method.endswith("-eval")), case, platform, threads)
    if method == "classical":
        edge = case.box_nm[0, 0]
        system = classical_water_system(case.topology, cutoff_nm=min(0.9, 0.45 * edge))
        return _context_step(system, case, platform, threads)
    raise ValueError(method)


def write_json(result: Dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(result, handle, indent=1)
    os.replace(temporary, path)


def speed_table(result: Dict) -> str:
    """Markdown table: ms/step, ns/day and the ratio to ``torchforce`` in the same dtype (float32 for others)."""
    records = result["records"]
    reference = {}
    for r in records:
        if r["method"] == "torchforce":
            reference[(r["system"], r["dtype"])] = r["ms_per_step"]
    step_fs = result.get("ns_per_day_timestep_fs", TIMESTEP_FS)
    lines = [f"| system | atoms | method | dtype | ms/step | ns/day at {step_fs:g} fs | × torchforce time |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        base = reference.get((r["system"], r["dtype"])) or reference.get((r["system"], "float32"))
        ratio = f"{r['ms_per_step'] / base:.2f}" if base else "–"
        lines.append(f"| {r['system']} | {r['n_atoms']} | {r['method']} | {r['dtype']} | "
                     f"{r['ms_per_step']:.2f} | {r['ns_per_day']:.3f} | {ratio} |")
    return "\n".join(lines)


#: The speed goals of the benchmark specification: (label, method compared, dtype, goal on its time ratio).
SPEED_GOALS = [
    ("torchforce / bare-torchscript (OpenMM adds almost nothing)", "bare-torchscript", "float32", "≤ 1.05"),
    ("ase / torchforce", "ase", "float32", "≥ 1.3"),
    ("pythonforce / torchforce", "pythonforce", "float32", "≥ 1.3"),
    ("nequip-openmmml (faster of as-shipped and eval) / torchforce", "nequip", "float32", "≥ 1.5"),
]


def goal_thresholds() -> Dict[str, float]:
    """The goals of SPEED_GOALS as thresholds on one ratio, a method's ms/step over torchforce's: the peers
    must lie above theirs (ASE and PythonForce 1.3, each NequIP variant 1.5), the bare TorchScript pass above
    1/1.05 (torchforce at most 5 % slower than it)."""
    thresholds = {}
    for _, method, _, goal in SPEED_GOALS:
        value = float(goal.split()[-1])
        for name in (PEER_METHODS if method == "nequip" else [method]):
            thresholds[name] = 1.0 / value if goal.startswith("≤") else value
    return thresholds


def speed_goals(result: Dict) -> str:
    """Markdown table of the time ratios that the goals are stated in, per box, float32."""
    times = {(r["system"], r["method"], r["dtype"]): r["ms_per_step"] for r in result["records"]}
    systems = sorted({r["system"] for r in result["records"]}, key=lambda name: int(name.split("-")[-1]))
    lines = ["| ratio (float32) | goal | " + " | ".join(systems) + " |", "|---|---|" + "---|" * len(systems)]
    for label, method, dtype, goal in SPEED_GOALS:
        cells = []
        for system in systems:
            ours = times.get((system, "torchforce", dtype))
            if method == "nequip":
                peers = [times.get((system, m, dtype)) for m in PEER_METHODS]
                other = min([t for t in peers if t is not None], default=None)
            else:
                other = times.get((system, method, dtype))
            if ours is None or other is None:
                cells.append("–")
            elif method == "bare-torchscript":
                cells.append(f"{ours / other:.3f}")
            else:
                cells.append(f"{other / ours:.2f}")
        lines.append(f"| {label} | {goal} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
