"""Training on two processes (torchrun, gloo) follows the single-process run of the same global batches.

One module fixture runs: a single-process reference in this process (3 epochs, its state kept after epoch 2),
``torchrun --nproc_per_node 2 -m equiforce train`` for 2 epochs, and the same command with ``max_epochs: 3``,
which resumes from ``last.ckpt``. 6 training frames in batches of 5 give global batches of 5 and 1 frames: split
3 + 2 between the ranks, and 1 + 0 (rank 1 takes part in the collectives with no frames).
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from equiforce.train import Distributed, TrainConfig, Trainer
from conftest import random_frames, write_frames

TINY_MODEL = dict(cutoff=3.0, lmax=1, num_features=4, num_layers=1, num_basis=4, radial_hidden=8)
COMPARED = ("lr", "train_loss", "train_energy_mae", "train_force_mae", "val_loss", "val_energy_mae",
            "val_energy_rmse", "val_force_mae", "val_force_rmse")
#: Logs, per rank, every file opened for writing or renamed into place under the run's directory.
AUDIT = textwrap.dedent(
    """
    import os, sys
    _watched = os.environ.get("EQUIFORCE_AUDIT_DIR")
    if _watched and "RANK" in os.environ:
        _log = open(os.path.join(os.environ["EQUIFORCE_AUDIT_LOG"], "rank" + os.environ["RANK"]), "a")
        def _hook(event, args):
            if event == "open" and isinstance(args[0], str) and isinstance(args[1], str):
                path = args[0] if any(c in args[1] for c in "wax+") else None
            elif event == "os.rename":
                path = os.fsdecode(args[1])
            else:
                return
            if path and os.path.abspath(path).startswith(_watched):
                _log.write(os.path.abspath(path) + "\\n")
                _log.flush()
        sys.addaudithook(_hook)
    """
)


def _settings(data, output_dir, max_epochs):
    return dict(data=data, output_dir=str(output_dir), split=[0.5, 0.25, 0.25], seed=1, model=dict(TINY_MODEL),
                batch_size=5, lr=2e-2, ema_decay=0.5, max_epochs=max_epochs, patience=None, progress=False,
                dtype="float64", device="cpu")


def _torchrun(config_path, audit_dir, output_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(audit_dir), os.environ.get("PYTHONPATH", "")]),
               EQUIFORCE_AUDIT_DIR=os.path.abspath(output_dir), EQUIFORCE_AUDIT_LOG=str(audit_dir),
               OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "equiforce", "train", str(config_path), "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = write_frames(root / "tiny.extxyz", random_frames(14, seed=0, max_atoms=8))
    # single process, in this process: epochs 1-2 (state kept), then epoch 3
    reference = Trainer(TrainConfig(**_settings(data, root / "single", 3)), resume=False)
    assert len(reference.graphs["train"]) == 6  # global batches of 5 and 1 frames
    reference.fit(stop_after=2)
    shutil.copy(root / "single" / "last.ckpt", root / "single_epoch2.ckpt")
    single_metrics = reference.fit()

    audit = root / "audit"
    audit.mkdir()
    (audit / "sitecustomize.py").write_text(AUDIT)
    ddp = root / "ddp"
    for epochs in (2, 3):  # a fresh 2-epoch run, then the same command with max_epochs 3 resumes it
        config = root / f"ddp_{epochs}.yaml"
        config.write_text(yaml.safe_dump(_settings(data, ddp, epochs)))
        stdout = _torchrun(config, audit, ddp)
        if epochs == 2:
            shutil.copy(ddp / "last.ckpt", root / "ddp_epoch2.ckpt")
            history_epoch2 = json.load(open(ddp / "history.json"))
    return dict(root=root, ddp=ddp, audit=audit, stdout=stdout, single_metrics=single_metrics,
                history_epoch2=history_epoch2)


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_rows_close(single, ddp):
    assert [row["epoch"] for row in ddp] == [row["epoch"] for row in single]
    for a, b in zip(single, ddp):
        for key in COMPARED:
            assert b[key] == pytest.approx(a[key], rel=1e-10, abs=1e-14), (a["epoch"], key)
        assert b["best"] == a["best"]


def _assert_states_close(single, ddp):
    for key in ("model_state", "ema_state"):
        assert single[key].keys() == ddp[key].keys()
        for name, value in single[key].items():
            torch.testing.assert_close(ddp[key][name], value, rtol=1e-9, atol=1e-12, msg=f"{key}[{name}]")
    moments_single = single["optimizer_state"]["state"]
    moments_ddp = ddp["optimizer_state"]["state"]
    assert moments_single.keys() == moments_ddp.keys()
    for index, state in moments_single.items():
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(moments_ddp[index][name], state[name], rtol=1e-9, atol=1e-18)
    assert ddp["epoch"] == single["epoch"] and ddp["best_epoch"] == single["best_epoch"]


def test_two_processes_give_the_single_process_history_and_weights(runs):
    root = runs["root"]
    _assert_rows_close(json.load(open(root / "single" / "history.json"))[:2], runs["history_epoch2"])
    _assert_states_close(_load(root / "single_epoch2.ckpt"), _load(root / "ddp_epoch2.ckpt"))


def test_resumed_two_process_run_matches_three_single_process_epochs(runs):
    root, ddp = runs["root"], runs["ddp"]
    _assert_rows_close(json.load(open(root / "single" / "history.json")), json.load(open(ddp / "history.json")))
    _assert_states_close(_load(root / "single" / "last.ckpt"), _load(ddp / "last.ckpt"))
    metrics = json.load(open(ddp / "metrics.json"))
    for split in ("validation", "test"):
        for key in ("energy_mae", "energy_rmse", "force_mae", "force_rmse"):
            assert metrics[split][key] == pytest.approx(runs["single_metrics"][split][key], rel=1e-10)
        assert metrics[split]["num_frames"] == runs["single_metrics"][split]["num_frames"]


def test_only_rank_zero_writes_files_and_prints(runs):
    written = {name: open(runs["audit"] / name).read().split() for name in os.listdir(runs["audit"])
               if name.startswith("rank")}
    assert written.get("rank1", []) == []
    names = {os.path.basename(path) for path in written["rank0"]}
    assert {"last.ckpt", "best.ckpt", "history.json", "history.csv", "metrics.json"} <= names
    assert runs["stdout"].count("wrote ") == 1  # the CLI summary, from rank 0 only


@pytest.mark.parametrize("num_items", [0, 1, 2, 3, 7, 8])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_are_contiguous_disjoint_and_differ_by_at_most_one(num_items, world_size):
    parts = [Distributed(rank=r, world_size=world_size).shard(num_items) for r in range(world_size)]
    covered = [i for part in parts for i in range(num_items)[part]]
    assert covered == list(range(num_items))
    sizes = [len(range(num_items)[part]) for part in parts]
    assert max(sizes) - min(sizes) <= 1
