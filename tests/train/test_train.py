"""The trainer: it learns, it initialises the model from the data, it resumes exactly, it stops early, the CLI."""
import json
import os

import pytest
import torch
import yaml

import equiforce
from equiforce.checkpoint import load_checkpoint, model_from_checkpoint
from equiforce.cli import main as cli_main
from equiforce.data import GraphDataset, average_num_neighbors, fit_energy_shifts, force_rms, read_structures
from equiforce.train import TrainConfig, Trainer, train
from conftest import energy_and_forces, random_frames, write_frames

TINY_MODEL = dict(cutoff=3.0, lmax=1, num_features=4, num_layers=1, num_basis=4, radial_hidden=8)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """12 labelled H/O frames (3-8 atoms; half periodic) in an extxyz file."""
    path = tmp_path_factory.mktemp("data") / "tiny.extxyz"
    return write_frames(path, random_frames(12, seed=0, max_atoms=8))


def tiny_config(data, output_dir, **overrides):
    settings = dict(
        data=data,
        output_dir=str(output_dir),
        split=[0.5, 0.25, 0.25],
        seed=1,
        model=dict(TINY_MODEL),
        batch_size=3,
        lr=2e-2,
        ema_decay=0.5,
        max_epochs=4,
        progress=False,
        dtype="float64",
        device="cpu",
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_a_short_training_reduces_the_loss_and_reports_metrics(tiny_data, tmp_path):
    metrics = train(tiny_config(tiny_data, tmp_path, max_epochs=5))
    history = json.load(open(tmp_path / "history.json"))
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert open(tmp_path / "history.csv").readline().startswith("epoch,lr,train_loss")
    assert json.load(open(tmp_path / "metrics.json")) == json.loads(json.dumps(metrics))
    for split in ("validation", "test"):
        assert metrics[split]["num_frames"] == 3
        assert set(metrics[split]["force_mae_per_element"]) == {"H", "O"}
        for key in ("energy_mae", "energy_rmse", "force_mae", "force_rmse"):
            assert 0 < metrics[split][key] < float("inf")
        assert metrics[split]["energy_mae"] <= metrics[split]["energy_rmse"]
    assert metrics["units"]["energy"] == "meV/atom" and metrics["units"]["forces"] == "meV/angstrom"
    assert os.path.exists(tmp_path / "best.ckpt") and os.path.exists(tmp_path / "last.ckpt")


def test_model_is_initialised_from_training_split_statistics(tiny_data, tmp_path):
    trainer = Trainer(tiny_config(tiny_data, tmp_path))
    config = trainer.model.config
    assert config.elements == ["H", "O"]  # inferred from the data, by atomic number
    graphs = GraphDataset(read_structures(tiny_data), ["H", "O"], TINY_MODEL["cutoff"]).subset(trainer.split["train"])
    assert config.atomic_energy_shifts == pytest.approx(fit_energy_shifts(graphs, 2), rel=1e-12)
    assert config.atomic_energy_scales == pytest.approx([force_rms(graphs)] * 2, rel=1e-12)
    assert config.avg_num_neighbors == pytest.approx(average_num_neighbors(graphs), rel=1e-12)
    shifts = torch.tensor(config.atomic_energy_shifts, dtype=torch.float64)
    scales = torch.tensor(config.atomic_energy_scales, dtype=torch.float64)
    torch.testing.assert_close(trainer.model.network.energy_shift, shifts, rtol=0, atol=0)  # float64 buffers, exact
    torch.testing.assert_close(trainer.model.network.energy_scale, scales, rtol=0, atol=0)


def test_explicit_model_settings_are_kept(tiny_data, tmp_path):
    model = dict(TINY_MODEL, elements=["H", "C", "O"], avg_num_neighbors=7.0, atomic_energy_scales=[1.0, 2.0, 3.0])
    config = Trainer(tiny_config(tiny_data, tmp_path, model=model)).model.config
    assert config.elements == ["H", "C", "O"] and config.avg_num_neighbors == 7.0
    assert config.atomic_energy_scales == [1.0, 2.0, 3.0]


def _state_equal(a, b):
    """Bitwise equality of nested checkpoint contents (tensors, dicts, lists, numbers)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_resuming_after_two_epochs_repeats_four_straight_epochs_bitwise(tiny_data, tmp_path):
    settings = dict(schedule="cosine", weight_decay=1e-3, clip_grad_norm=0.05)
    straight = Trainer(tiny_config(tiny_data, tmp_path / "straight", **settings))
    straight.fit()
    interrupted = Trainer(tiny_config(tiny_data, tmp_path / "resumed", **settings))
    assert interrupted.fit(stop_after=2) is None
    assert load_checkpoint(str(tmp_path / "resumed" / "last.ckpt"))["epoch"] == 2
    resumed = Trainer(tiny_config(tiny_data, tmp_path / "resumed", **settings))  # finds last.ckpt by itself
    assert resumed.epoch == 2
    resumed.fit()
    a = load_checkpoint(str(tmp_path / "straight" / "last.ckpt"))
    b = load_checkpoint(str(tmp_path / "resumed" / "last.ckpt"))
    for key in ("model_state", "ema_state", "optimizer_state", "scheduler_state", "rng_state", "epoch", "best_epoch",
                "best_metric", "epochs_without_improvement"):
        assert _state_equal(a[key], b[key]), key
    drop_time = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert drop_time(a["history"]) == drop_time(b["history"])
    assert json.load(open(tmp_path / "straight" / "metrics.json"))["test"] == json.load(
        open(tmp_path / "resumed" / "metrics.json"))["test"]


def test_checkpoints_load_with_weights_only_and_hold_the_averaged_weights(tiny_data, tmp_path):
    train(tiny_config(tiny_data, tmp_path, max_epochs=2, ema_decay=0.9))
    payload = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert payload["ema_state"].keys() == payload["model_state"].keys()
    assert not torch.equal(payload["ema_state"]["network.readout.weight"], payload["model_state"]["network.readout.weight"])
    model = model_from_checkpoint(str(tmp_path / "best.ckpt")).double()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, payload["ema_state"][name].to(value.dtype))


def test_resuming_with_different_settings_or_data_is_refused(tmp_path):
    data = write_frames(tmp_path / "growing.extxyz", random_frames(8, seed=0, max_atoms=6))
    Trainer(tiny_config(data, tmp_path / "run")).fit(stop_after=1)
    with pytest.raises(ValueError, match=r"\['lr'\]"):
        Trainer(tiny_config(data, tmp_path / "run", lr=1e-3))
    write_frames(data, random_frames(10, seed=0, max_atoms=6))  # the data file grew
    with pytest.raises(ValueError, match="data changed"):
        Trainer(tiny_config(data, tmp_path / "run"))
    assert Trainer(tiny_config(data, tmp_path / "run", max_frames=8)).epoch == 1  # the same 8 frames
    Trainer(tiny_config(data, tmp_path / "run", lr=1e-3), resume=False)  # an explicit restart is allowed
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        Trainer(tiny_config(tiny_data, tmp_path / "empty"), resume=True)


def test_training_stops_early_when_the_validation_loss_stops_improving(tiny_data, tmp_path):
    metrics = train(tiny_config(tiny_data, tmp_path, lr=0.0, max_epochs=10, patience=2))  # weights never change
    assert metrics["epochs"] == 3 and metrics["best_epoch"] == 1 and metrics["stopped_early"]


def test_cli_trains_from_yaml_and_exports_the_best_model(tiny_data, tmp_path, capsys):
    config = tiny_config(tiny_data, tmp_path / "run", max_epochs=2, export=str(tmp_path / "model.pt")).to_dict()
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert cli_main(["train", str(config_path)]) == 0
    assert "metrics.json" in capsys.readouterr().out
    metrics = json.load(open(tmp_path / "run" / "metrics.json"))
    assert metrics["epochs"] == 2 and metrics["export"]["dtype"] == "float32"
    exported, metadata = equiforce.load_model(str(tmp_path / "model.pt"))
    assert metadata["elements"] == ["H", "O"] and metadata["dtype"] == "float32"
    best = model_from_checkpoint(str(tmp_path / "run" / "best.ckpt"))
    structure = read_structures(tiny_data)[0]
    species = torch.tensor([["H", "O"].index(s) for s in structure.symbols])
    positions, cell = structure.positions.float(), structure.cell.float()
    dtype = best.network.energy_scale.dtype  # checkpoints keep the training precision
    torch.testing.assert_close(energy_and_forces(exported, positions, species, cell)[0].to(dtype),
                               energy_and_forces(best, positions.to(dtype), species, cell.to(dtype))[0],
                               rtol=1e-5, atol=1e-5)


def test_yaml_with_an_unknown_key_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("data: x.extxyz\nlearning_rate: 0.1\n")
    assert cli_main(["train", str(path)]) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_train_repeats_visit_one_files_training_frames_more_often_and_leave_the_split_alone(tmp_path):
    common = write_frames(tmp_path / "common.extxyz", random_frames(8, seed=5, max_atoms=8))
    rare = write_frames(tmp_path / "rare.extxyz", random_frames(4, seed=6, max_atoms=8))
    plain = Trainer(tiny_config([common, rare], tmp_path / "plain"))
    weighted = Trainer(tiny_config([common, rare], tmp_path / "weighted", train_repeats=[1, 3]))
    assert weighted.split == plain.split  # validation, test and the statistics see each frame once
    assert weighted.model.config.atomic_energy_shifts == plain.model.config.atomic_energy_shifts
    train = plain.split["train"]
    from_rare = [i for i in train if i >= 8]
    assert from_rare, "the split should put some frames of the second file into training"
    assert len(weighted.graphs["train"]) == len(train) + 2 * len(from_rare)
    runs = []  # [graph, consecutive visits]: each training frame's visits are listed together, in split order
    for graph in weighted.graphs["train"]:
        if not runs or runs[-1][0] is not graph:
            runs.append([graph, 0])
        runs[-1][1] += 1
    assert [visits for _, visits in runs] == [3 if i >= 8 else 1 for i in train]
    for (graph, _), expected in zip(runs, plain.graphs["train"]):
        torch.testing.assert_close(graph.positions, expected.positions, rtol=0, atol=0)
    for bad in ([1], [1, 0], [1, 1.5]):
        with pytest.raises(ValueError, match="train_repeats"):
            tiny_config([common, rare], tmp_path / "bad", train_repeats=bad)


def test_fine_tuning_starts_from_the_checkpoint_weights_and_may_add_a_wall(tiny_data, tmp_path):
    train(tiny_config(tiny_data, tmp_path / "first", max_epochs=2))
    first = str(tmp_path / "first" / "best.ckpt")
    original = model_from_checkpoint(first)
    more_data = write_frames(tmp_path / "more.extxyz", random_frames(8, seed=5, max_atoms=8))
    wall = {"repulsion_radii": {"H-H": 0.3, "H-O": 0.3, "O-O": 0.3}, "repulsion_strength": 50.0}
    trainer = Trainer(tiny_config([tiny_data, more_data], tmp_path / "tuned", model=dict(TINY_MODEL, **wall),
                                  init_from=first, max_epochs=1, lr=1e-3))
    assert trainer.model_config.repulsion_strength == 50.0
    assert trainer.model_config.atomic_energy_shifts == original.config.atomic_energy_shifts
    original = original.double()

    def energy(model, structure):
        species = torch.tensor([original.config.elements.index(x) for x in structure.symbols])
        cell = None if structure.cell is None else torch.as_tensor(structure.cell, dtype=torch.float64)
        positions = torch.as_tensor(structure.positions, dtype=torch.float64)
        return float(energy_and_forces(model, positions, species, cell)[0])

    structures = read_structures(tiny_data)
    started = [energy(trainer.model, s) for s in structures[:3]]
    expected = [energy(original, s) for s in structures[:3]]
    # the same weights; the wall (r_on 0.3 Å) is zero at these frames' distances
    assert started == pytest.approx(expected, rel=1e-10, abs=1e-10)
    trainer.fit()
    assert load_checkpoint(str(tmp_path / "tuned" / "last.ckpt"))["train_config"]["init_from"] == first


def test_fine_tuning_refuses_a_different_architecture(tiny_data, tmp_path):
    train(tiny_config(tiny_data, tmp_path / "first", max_epochs=1))
    with pytest.raises(ValueError, match=r"\['num_features'\] differ from the checkpoint"):
        Trainer(tiny_config(tiny_data, tmp_path / "tuned", model=dict(TINY_MODEL, num_features=8),
                            init_from=str(tmp_path / "first" / "best.ckpt")))
