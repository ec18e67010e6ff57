"""Training energy, forces, dipole and polarizability jointly: labels are read, every error goes down, metrics."""
import json

import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from equiforce.checkpoint import load_checkpoint, model_from_checkpoint
from equiforce.data import DataError, read_structures
from equiforce.nn import PropertyModel
from equiforce.train import TrainConfig, Trainer, train
from conftest import random_frames

HEAD_MODEL = dict(cutoff=3.0, lmax=1, num_features=6, num_layers=2, num_basis=4, radial_hidden=8)
CHARGE = {"H": 0.4, "O": -0.8}  # e, of the synthetic dipole labels
ALPHA = {"H": 0.6, "O": 1.1}  # Å³, isotropic atomic polarizabilities of the synthetic labels


def synthetic_labels(atoms):
    """A neutral point-charge dipole (e·Å) and an anisotropic, bond-dependent polarizability (Å³)."""
    symbols, positions = atoms.get_chemical_symbols(), atoms.get_positions()  # [N, 3] Å
    charges = np.array([CHARGE[s] for s in symbols])
    charges -= charges.mean()  # neutral
    dipole = charges @ positions  # [3]
    alpha = np.eye(3) * sum(ALPHA[s] for s in symbols)
    for i in range(len(atoms)):
        for j in range(i + 1, len(atoms)):
            r = positions[j] - positions[i]
            alpha += 0.5 * np.exp(-np.dot(r, r) / 4.0) * np.outer(r, r)  # [3, 3], symmetric
    return dipole, alpha


@pytest.fixture(scope="module")
def labelled_data(tmp_path_factory):
    """16 H/O frames, 12 open ones with a dipole (calculator result) and a polarizability (info), 4 periodic
    ones without (so the loss masks them out)."""
    frames = random_frames(24, seed=4, max_atoms=7)
    frames = [a for a in frames if not a.pbc.any()] + [a for a in frames if a.pbc.any()][:4]
    for atoms in frames:
        if not atoms.pbc.any():
            dipole, alpha = synthetic_labels(atoms)
            results = dict(atoms.calc.results)
            atoms.calc = SinglePointCalculator(atoms, dipole=dipole, **results)
            atoms.info["polarizability"] = alpha.reshape(9)
    path = tmp_path_factory.mktemp("heads") / "labelled.extxyz"
    ase.io.write(str(path), frames, format="extxyz")
    return str(path)


def head_config(data, output_dir, **overrides):
    settings = dict(
        data=data,
        output_dir=str(output_dir),
        split=[0.5, 0.25, 0.25],
        seed=2,
        model=dict(HEAD_MODEL, heads=["dipole", "polarizability"]),
        energy_weight=100.0,  # balanced so that no term dominates the shared trunk in this short run
        dipole_weight=0.2,
        polarizability_weight=0.01,
        batch_size=4,
        lr=1e-2,
        ema_decay=0.0,
        max_epochs=8,
        patience=None,
        progress=False,
        dtype="float64",
        device="cpu",
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_dipole_and_polarizability_labels_are_read_from_results_and_info(labelled_data):
    structures = read_structures(labelled_data, dipole_key="dipole", polarizability_key="polarizability")
    open_frames = [s for s in structures if not s.periodic]
    assert open_frames and all(s.dipole.shape == (3,) and s.polarizability.shape == (3, 3) for s in open_frames)
    assert all(s.dipole is None and s.polarizability is None for s in structures if s.periodic)
    frames = ase.io.read(labelled_data, index=":")
    first = next(k for k, a in enumerate(frames) if not a.pbc.any())
    dipole, alpha = synthetic_labels(frames[first])
    np.testing.assert_allclose(structures[first].dipole.numpy(), dipole, atol=1e-6)
    np.testing.assert_allclose(structures[first].polarizability.numpy(), alpha, atol=1e-6)
    assert all(s.dipole is None for s in read_structures(labelled_data))  # not read unless asked for


def test_a_periodic_frame_with_a_dipole_is_refused(tmp_path):
    atoms = random_frames(1, seed=0)[0]  # frame 0 is periodic
    atoms.info["dipole"] = np.ones(3)
    path = str(tmp_path / "periodic.extxyz")
    ase.io.write(path, [atoms], format="extxyz")
    with pytest.raises(DataError, match="periodic frame has a dipole"):
        read_structures(path, dipole_key="dipole")


def test_joint_training_reduces_every_error_and_reports_head_metrics(labelled_data, tmp_path):
    metrics = train(head_config(labelled_data, tmp_path))
    history = json.load(open(tmp_path / "history.json"))
    first, last = history[0], history[-1]
    for key in ("train_energy_mae", "train_force_mae", "train_dipole_mae", "train_polarizability_mae",
                "val_dipole_mae", "val_polarizability_mae", "val_loss"):
        assert last[key] < first[key], (key, first[key], last[key])
    assert metrics["units"]["dipole"] == "e*angstrom" and metrics["units"]["polarizability"] == "angstrom^3"
    for split in ("validation", "test"):
        result = metrics[split]
        assert result["dipole_frames"] == result["polarizability_frames"] > 0
        for head in ("dipole", "polarizability"):
            assert 0 < result[f"{head}_mae"] <= result[f"{head}_rmse"] < float("inf")
    model = model_from_checkpoint(str(tmp_path / "best.ckpt"))
    assert isinstance(model, PropertyModel) and model.config.heads == ["dipole", "polarizability"]


def test_head_weights_need_the_head_and_labels(labelled_data, tmp_path):
    with pytest.raises(ValueError, match="no dipole head"):
        head_config(labelled_data, tmp_path, model=dict(HEAD_MODEL))
    with pytest.raises(DataError, match="no training frame has a polarizability"):
        Trainer(head_config(labelled_data, tmp_path, polarizability_key="alpha"))


def test_a_checkpoint_written_before_head_settings_existed_still_resumes(labelled_data, tmp_path):
    config = head_config(labelled_data, tmp_path, model=dict(HEAD_MODEL), dipole_weight=0.0,
                         polarizability_weight=0.0, max_epochs=2)
    Trainer(config).fit(stop_after=1)
    path = tmp_path / "last.ckpt"
    payload = load_checkpoint(str(path))
    for key in ("dipole_weight", "polarizability_weight", "dipole_key", "polarizability_key"):
        del payload["train_config"][key]  # as written by equiforce before heads
    assert "heads" not in payload["config"]
    torch.save(payload, path)
    assert Trainer(config).epoch == 1
