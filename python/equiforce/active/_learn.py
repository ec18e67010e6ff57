"""``equiforce learn CONFIG``: rounds of sample → label → train a committee, until the model is good enough.

Round 0 samples the start structure with a classical force field (or starts from frames the user labelled
already), labels the frames with the reference method and trains a committee of models that differ in their
seed (initial weights, split, batch order). Every later round samples MD with the committee's mean potential,
labels the candidates the committee disagrees on most, and trains the committee again on everything labelled so
far (by default continuing from the previous round's weights). A fixed share of each round's labelled frames is
held out and never trained on; the committee's errors on all held-out frames decide when to stop.

Every step leaves its result on disk before the next starts, and each step resumes where it stopped (sampling
from its checkpoint, labelling frame by frame, training from ``last.ckpt``), so rerunning the same command after
an interruption continues the loop.
"""
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

import openmm

from .._files import write_json
from ._frames import read_frames, write_frames
from ._sample import SampleSettings, sample
from ._select import DISAGREEMENT_KEY, select_by_disagreement

#: Frame ``info`` key recording the round a labelled frame came from.
ROUND_KEY = "learn_round"


@dataclasses.dataclass
class SamplingPlan:
    """How one round samples: one MD run per temperature (K), ``frames`` candidates each, ``every`` steps apart.
    ``select`` (later rounds only): how many candidates, in all, go to the reference method; ``ceiling`` (eV/Å):
    candidates whose committee force spread exceeds it are passed over."""

    temperatures_K: List[float] = dataclasses.field(default_factory=lambda: [300.0])
    frames: int = 50
    every: int = 100
    equilibration_steps: int = 1000
    timestep_fs: float = 0.5
    friction_per_ps: float = 1.0
    select: int = 16
    ceiling: Optional[float] = None

    def settings(self, temperature_K: float, seed: int, platform: str) -> SampleSettings:
        return SampleSettings(temperature_K=float(temperature_K), timestep_fs=self.timestep_fs, frames=self.frames,
                              every=self.every, equilibration_steps=self.equilibration_steps,
                              friction_per_ps=self.friction_per_ps, seed=seed, platform=platform)


@dataclasses.dataclass
class LearnConfig:
    """Settings of ``equiforce learn`` (YAML: these keys at the top level).

    Parameters
    ----------
    workdir : everything is written here (``round0/``, ``round1/``, ... and ``learn.json``).
    structure : PDB (or PDBx) start structure; its CRYST1 box makes the system periodic.
    forcefield : OpenMM force-field files that sample round 0 (flexible: no constraints). Either this or
        ``initial_data``.
    initial_data : already-labelled frames (extxyz, eV, eV/Å) that replace round 0's sampling and labelling.
    initial : sampling of round 0 (:class:`SamplingPlan`, ``select`` unused: every frame is labelled).
    sample : sampling of later rounds (:class:`SamplingPlan`).
    label : keyword arguments of :func:`equiforce.label.label_frames` (``method``, ``workers``, ``charge``, ...).
    train : :class:`~equiforce.train.TrainConfig` settings shared by the members (not ``data``, ``output_dir``,
        ``seed``, ``export``, ``init_from``, which the loop sets).
    committee : number of members; member ``k`` uses seed ``seed + k``.
    rounds : active rounds after round 0 (the loop stops earlier if ``stop_force_rmse`` is reached).
    hold_out_every : every ``hold_out_every``-th labelled frame of each round is held out (never trained on).
    stop_force_rmse : stop when the committee's force RMSE on the held-out frames is at most this (eV/Å).
    fine_tune : later rounds start each member from its weights of the round before (else from scratch).
    seed : base seed of sampling and training.
    platform : OpenMM platform of the sampling runs.
    export_dtype : precision of the committee file.
    wall_margin, wall_strength : each round's committee gets the short-range wall of ``equiforce export
        --repulsion-from`` (:class:`~equiforce.nn.PairRepulsion`): onsets at the shortest distance of each element
        pair in the frames trained on so far minus ``wall_margin`` (Å), strength ``wall_strength`` (eV); zero on
        every training frame, it keeps a young model's MD from pulling atoms together where it has no data.
        ``wall_margin: null`` exports no wall.
    fine_tune_epochs : ``max_epochs`` of the members in rounds after the first when ``fine_tune`` (they start
        from trained weights); default ``train["max_epochs"]``.
    """

    workdir: str
    structure: str
    forcefield: Optional[List[str]] = None
    initial_data: Optional[str] = None
    initial: Dict[str, Any] = dataclasses.field(default_factory=dict)
    sample: Dict[str, Any] = dataclasses.field(default_factory=dict)
    label: Dict[str, Any] = dataclasses.field(default_factory=dict)
    train: Dict[str, Any] = dataclasses.field(default_factory=dict)
    committee: int = 3
    rounds: int = 3
    hold_out_every: int = 5
    stop_force_rmse: Optional[float] = None
    fine_tune: bool = True
    seed: int = 0
    platform: str = "CPU"
    export_dtype: str = "float32"
    wall_margin: Optional[float] = 0.03
    wall_strength: float = 500.0
    fine_tune_epochs: Optional[int] = None

    def __post_init__(self) -> None:
        if (self.forcefield is None) == (self.initial_data is None):
            raise ValueError("LearnConfig needs exactly one of 'forcefield' (round 0 samples classically) and "
                             "'initial_data' (round 0 is frames you labelled already)")
        if self.committee < 1 or self.rounds < 0 or self.hold_out_every < 2:
            raise ValueError(f"committee must be >= 1, rounds >= 0 and hold_out_every >= 2; got {self.committee}, "
                             f"{self.rounds}, {self.hold_out_every}")
        reserved = sorted(set(self.train) & {"data", "output_dir", "seed", "export", "init_from"})
        if reserved:
            raise ValueError(f"train: {reserved} are set by the loop; remove them from the config")
        self.initial_plan = SamplingPlan(**self.initial)
        self.sample_plan = SamplingPlan(**self.sample)
        self.label = dict(self.label)
        self.label.setdefault("method", "gfn2")

    @classmethod
    def from_yaml(cls, path: str) -> "LearnConfig":
        """Read a YAML file; relative paths in it are taken relative to the file's folder."""
        import yaml

        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise ValueError(f"{path}: unknown settings {extra}; known settings are {sorted(known)}")
        here = os.path.dirname(os.path.abspath(path))
        for key in ("workdir", "structure", "initial_data"):
            if data.get(key) is not None:
                data[key] = os.path.join(here, data[key])
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error


class LearningLoop:
    """The rounds of :class:`LearnConfig`, each step skipped when its result is already on disk."""

    def __init__(self, config: LearnConfig, progress: bool = True, log=print) -> None:
        self.config = config
        self.progress = progress
        self.log = log
        os.makedirs(config.workdir, exist_ok=True)
        self.record_path = os.path.join(config.workdir, "learn.json")
        self.record: Dict[str, Any] = {"config": dataclasses.asdict(config),
                                       "rounds": []}
        if os.path.exists(self.record_path):
            with open(self.record_path) as handle:
                self.record["rounds"] = json.load(handle).get("rounds", [])

    # ------------------------------------------------------------------------------------------ paths
    def round_dir(self, r: int) -> str:
        path = os.path.join(self.config.workdir, f"round{r}")
        os.makedirs(path, exist_ok=True)
        return path

    def training_files(self, r: int) -> List[str]:
        return [os.path.join(self.round_dir(k), "train.extxyz") for k in range(r + 1)]

    def held_out_files(self, r: int) -> List[str]:
        return [os.path.join(self.round_dir(k), "heldout.extxyz") for k in range(r + 1)]

    def committee_file(self, r: int) -> str:
        return os.path.join(self.round_dir(r), "committee.pt")

    # ------------------------------------------------------------------------------------------ steps
    def sample_candidates(self, r: int) -> List:
        """Round ``r``'s MD frames (classical in round 0, the round before's committee later)."""
        plan = self.config.initial_plan if r == 0 else self.config.sample_plan
        frames = []
        for t, temperature in enumerate(plan.temperatures_K):
            output = os.path.join(self.round_dir(r), f"candidates_{float(temperature):g}K.extxyz")
            settings = plan.settings(temperature, seed=self.config.seed + 1000 * r + t, platform=self.config.platform)
            source = ({"forcefield": self.config.forcefield} if r == 0 else
                      {"model": self.committee_file(r - 1), "committee": self.committee_file(r - 1),
                       "stop_spread": plan.ceiling, "start_frame": self.start_frame(temperature)})
            failure = None
            try:
                sample(self.config.structure, output, settings, progress=self.progress, **source)
            except (RuntimeError, openmm.OpenMMException) as error:
                # A young model's MD may fail: the frames before the failure are kept, and are the ones it
                # most needs labels for (frames far beyond it are passed over by the selection's ceiling).
                if r == 0:
                    raise
                failure = str(error)
            run_frames = read_frames(output)
            if failure is not None:
                self.log(f"round {r}: sampling at {float(temperature):g} K stopped early ({failure}); "
                         f"{len(run_frames)} candidate frames kept")
                self.failed_runs.append({"temperature_K": float(temperature), "error": failure[:500],
                                         "frames_kept": len(run_frames)})
            frames.extend(run_frames)
        return frames

    def start_frame(self, temperature_K: float) -> str:
        """The round-0 candidates file closest in temperature: its last frame starts a later round's MD (a
        liquid configuration inside the data, equilibrated classically)."""
        temperatures = self.config.initial_plan.temperatures_K
        nearest = min(temperatures, key=lambda t: abs(float(t) - float(temperature_K)))
        if self.config.initial_data is not None:
            return self.config.initial_data
        return os.path.join(self.round_dir(0), f"candidates_{float(nearest):g}K.extxyz")

    def frames_to_label(self, r: int) -> str:
        """Write round ``r``'s frames for the reference method (all of round 0's; the most disputed later)."""
        path = os.path.join(self.round_dir(r), "to_label.extxyz")
        if os.path.exists(path):
            return path
        self.failed_runs: List[Dict[str, Any]] = []
        candidates = self.sample_candidates(r)
        summary: Dict[str, Any] = {"candidates": len(candidates)}
        if r > 0:
            # The sampler stored each frame's spread under the round before's committee (see sample()).
            spread = [atoms.info[DISAGREEMENT_KEY] for atoms in candidates]
            candidates, summary = select_by_disagreement(candidates, spread, self.config.sample_plan.select,
                                                         self.config.sample_plan.ceiling)
            if not candidates:
                raise RuntimeError(
                    f"round {r}: none of the {summary['candidates']} candidate frames has a committee force spread "
                    f"below the ceiling {self.config.sample_plan.ceiling} eV/Å (median "
                    f"{summary['candidate_spread_eV_per_A']['median']:.3g}): the round's MD left the data at once. "
                    f"Sample at lower temperatures or with more round-0 frames (see {self.round_dir(r)})")
        if self.failed_runs:
            summary["sampling_stopped_early"] = self.failed_runs
        for atoms in candidates:
            atoms.info[ROUND_KEY] = r
        write_json(os.path.join(self.round_dir(r), "selection.json"), summary)
        write_frames(path, candidates)
        return path

    def labelled(self, r: int) -> None:
        """Label round ``r`` and split it into ``train.extxyz`` and ``heldout.extxyz``."""
        directory = self.round_dir(r)
        train_path, held_path = os.path.join(directory, "train.extxyz"), os.path.join(directory, "heldout.extxyz")
        if os.path.exists(train_path) and os.path.exists(held_path):
            return
        labelled_path = os.path.join(directory, "labelled.extxyz")
        if r == 0 and self.config.initial_data is not None:
            frames = read_frames(self.config.initial_data)
        else:
            from ..label import label_frames

            label_frames(self.frames_to_label(r), labelled_path, progress=self.progress, **self.config.label)
            frames = read_frames(labelled_path)
        if not frames:
            raise RuntimeError(f"round {r}: no labelled frames (see {labelled_path} and its failures file)")
        every = self.config.hold_out_every
        held = [a for k, a in enumerate(frames) if k % every == every - 1]
        kept = [a for k, a in enumerate(frames) if k % every != every - 1]
        write_frames(held_path, held)
        write_frames(train_path, kept)

    def trained(self, r: int) -> Dict[str, Any]:
        """Train the members of round ``r`` and write its committee file; returns the members' metrics."""
        from ..committee import export_committee
        from ..train import TrainConfig, train

        members = []
        for k in range(self.config.committee):
            output_dir = os.path.join(self.round_dir(r), f"member{k}")
            settings = dict(self.config.train)
            # No per-member export: the committee file is the round's model (``equiforce export
            # member{k}/best.ckpt`` writes one member alone, e.g. for cheaper production MD).
            settings.update(data=self.training_files(r), output_dir=output_dir, seed=self.config.seed + k,
                            export=None, progress=self.progress)
            if r > 0 and self.config.fine_tune:
                settings["init_from"] = os.path.join(self.round_dir(r - 1), f"member{k}", "best.ckpt")
                if self.config.fine_tune_epochs is not None:
                    settings["max_epochs"] = self.config.fine_tune_epochs
                settings["model"] = {key: value for key, value in settings.get("model", {}).items()
                                     if key in ("repulsion_radii", "repulsion_strength")}
            metrics_path = os.path.join(output_dir, "metrics.json")
            if os.path.exists(metrics_path):
                with open(metrics_path) as handle:
                    metrics = json.load(handle)
            else:
                self.log(f"round {r}: training member {k + 1}/{self.config.committee}")
                metrics = train(TrainConfig.from_dict(settings))
            members.append({"validation": metrics.get("validation"), "epochs": metrics.get("epochs")})
        committee = self.committee_file(r)
        overrides = self.wall(r)
        if not os.path.exists(committee):
            from ..checkpoint import model_from_checkpoint

            export_committee([model_from_checkpoint(os.path.join(self.round_dir(r), f"member{k}", "best.ckpt"),
                                                    config_overrides=overrides)
                              for k in range(self.config.committee)], committee, dtype=self.config.export_dtype)
        return {"members": members, "wall": overrides}

    def wall(self, r: int) -> Optional[Dict[str, Any]]:
        """The short-range wall of round ``r``'s committee (ModelConfig overrides), or None."""
        if self.config.wall_margin is None:
            return None
        from ..data import read_structures
        from ..nn import repulsion_radii_from_structures

        from ..checkpoint import load_checkpoint

        cutoff = float(load_checkpoint(os.path.join(self.round_dir(r), "member0", "best.ckpt"))["config"]["cutoff"])
        structures = read_structures([f for f in self.training_files(r) if os.path.getsize(f) > 0])
        radii = repulsion_radii_from_structures(structures, self.config.wall_margin)
        # A pair never seen closer than the cutoff gets no wall: the model cannot tell it from a far pair anyway.
        return {"repulsion_radii": {pair: radius for pair, radius in radii.items() if radius < cutoff},
                "repulsion_strength": self.config.wall_strength}

    def evaluated(self, r: int) -> Dict[str, Any]:
        """The committee's errors and spread on every held-out frame so far."""
        from ..committee import force_disagreement
        from ..evaluate import evaluate_model

        held_by_file = {f: read_frames(f) for f in self.held_out_files(r)}
        errors = evaluate_model(self.committee_file(r), [f for f, frames in held_by_file.items() if frames])
        held = [a for frames in held_by_file.values() for a in frames]
        spread = force_disagreement(self.committee_file(r), held)
        return {"held_out_frames": len(held), "errors": errors,
                "held_out_spread_eV_per_A": {"median": float(_median(spread)), "max": float(max(spread))}}

    # ------------------------------------------------------------------------------------------ loop
    def run(self) -> Dict[str, Any]:
        """Run (or continue) the rounds; returns the record also written to ``workdir/learn.json``."""
        config = self.config
        for r in range(config.rounds + 1):
            if r < len(self.record["rounds"]) and self.record["rounds"][r].get("done"):
                entry = self.record["rounds"][r]
            else:
                self.labelled(r)
                entry = {"round": r, **self.trained(r), **self.evaluated(r), "done": True,
                         "training_frames": sum(len(read_frames(f)) for f in self.training_files(r))}
                selection = os.path.join(self.round_dir(r), "selection.json")
                if os.path.exists(selection):
                    with open(selection) as handle:
                        entry["selection"] = json.load(handle)
                self.record["rounds"] = self.record["rounds"][:r] + [entry]
                write_json(self.record_path, self.record)
            rmse = entry["errors"]["force_rmse"] / 1000.0  # meV/Å -> eV/Å
            self.log(f"round {r}: {entry['training_frames']} training frames; held-out force RMSE {rmse:.4f} eV/Å, "
                     f"energy RMSE {entry['errors']['energy_rmse']:.2f} meV/atom; committee spread median "
                     f"{entry['held_out_spread_eV_per_A']['median']:.4f} eV/Å")
            if config.stop_force_rmse is not None and rmse <= config.stop_force_rmse:
                self.record["stopped"] = f"held-out force RMSE {rmse:.4f} <= {config.stop_force_rmse} eV/Å after round {r}"
                break
        else:
            self.record["stopped"] = f"all {config.rounds} active rounds done"
        self.record["model"] = self.committee_file(len(self.record["rounds"]) - 1)
        write_json(self.record_path, self.record)
        self.log(f"{self.record['stopped']}; committee file {self.record['model']}")
        return self.record


def learn(config: LearnConfig, progress: bool = True) -> Dict[str, Any]:
    """Run :class:`LearningLoop` for ``config``."""
    return LearningLoop(config, progress=progress).run()


def _median(values) -> float:
    import numpy as np

    return float(np.median(np.asarray(values)))

