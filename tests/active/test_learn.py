"""equiforce learn: the whole loop on a small water cluster (4 molecules, open boundaries, GFN2-xTB), and its
resume. (A periodic box this small makes GFN2-xTB slow: its lattice sums need many images.)"""
import json
import os

import pytest
import yaml
from openmm import app, unit

from equiforce.active import LearnConfig, learn
from equiforce.active._frames import read_frames
from equiforce.systems import water_box

pytest.importorskip("tblite")


def _config(tmp_path, **changes):
    topology, positions = water_box(4, 1.0, seed=1)
    topology.setPeriodicBoxVectors(None)  # a cluster: no box
    with open(tmp_path / "start.pdb", "w") as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)
    settings = {
        "workdir": "work", "structure": "start.pdb", "forcefield": ["amber14/tip3pfb.xml"],
        "initial": {"temperatures_K": [300], "frames": 10, "every": 20, "equilibration_steps": 100},
        "sample": {"temperatures_K": [350], "frames": 6, "every": 10, "equilibration_steps": 20, "select": 5},
        "label": {"workers": 0},
        "committee": 2, "rounds": 1, "hold_out_every": 5, "platform": "Reference",
        "train": {"model": {"cutoff": 3.0, "num_features": 4, "num_layers": 1, "num_basis": 4, "radial_hidden": 8},
                  "split": [0.75, 0.25, 0.0], "batch_size": 4, "max_epochs": 2, "patience": None, "device": "cpu"},
    }
    settings.update(changes)
    path = tmp_path / "learn.yaml"
    path.write_text(yaml.safe_dump(settings))
    return LearnConfig.from_yaml(str(path))


def test_loop_samples_labels_trains_and_selects_disputed_frames(tmp_path):
    config = _config(tmp_path)
    record = learn(config, progress=False)
    work = tmp_path / "work"
    assert [r["round"] for r in record["rounds"]] == [0, 1]
    round0, round1 = record["rounds"]
    # Round 0: 10 classical frames labelled, every 5th held out.
    assert len(read_frames(str(work / "round0" / "train.extxyz"))) == 8
    assert len(read_frames(str(work / "round0" / "heldout.extxyz"))) == 2
    labelled = read_frames(str(work / "round0" / "labelled.extxyz"))
    assert len(labelled) == 10 and abs(labelled[0].get_potential_energy()) > 100  # eV, a real GFN2 energy
    # Round 1: 6 candidates from the round-0 committee's MD; the 5 with the largest spread were labelled,
    # largest first, and the selection record says so.
    selection = round1["selection"]
    assert selection["candidates"] == 6 and selection["selected"] == 5
    chosen = read_frames(str(work / "round1" / "to_label.extxyz"))
    spreads = [a.info["committee_force_std"] for a in chosen]
    assert spreads == sorted(spreads, reverse=True) and spreads[0] > 0
    assert round1["training_frames"] == 8 + 4  # round 1: 5 labelled, 1 held out
    # The committee file of each round runs, and the members differ (their spread on held-out frames is > 0).
    for entry in record["rounds"]:
        assert entry["held_out_spread_eV_per_A"]["median"] > 0
        assert entry["errors"]["frames"] == entry["held_out_frames"]
    assert record["model"].endswith(os.path.join("round1", "committee.pt"))
    with open(work / "learn.json") as handle:
        assert json.load(handle)["stopped"] == "all 1 active rounds done"

    # A rerun finds every round done and changes nothing.
    stamp = os.path.getmtime(work / "round1" / "committee.pt")
    again = learn(_config(tmp_path), progress=False)
    assert again["rounds"] == record["rounds"]
    assert os.path.getmtime(work / "round1" / "committee.pt") == stamp


def test_config_errors_name_the_setting(tmp_path):
    with pytest.raises(ValueError, match="exactly one of 'forcefield'"):
        _config(tmp_path, forcefield=None)
    with pytest.raises(ValueError, match=r"\['seed'\] are set by the loop"):
        _config(tmp_path, train={"seed": 3})
    with pytest.raises(ValueError, match="unknown settings"):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"workdir": "w", "structure": "s.pdb", "forcefield": ["x.xml"], "roundz": 2}))
        LearnConfig.from_yaml(str(path))


@pytest.mark.parametrize("recipe", ["water", "nacl"])
def test_recipe_configs_are_valid(recipe):
    """The shipped loop configs read, and point at start structures that exist."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = LearnConfig.from_yaml(os.path.join(root, "recipes", recipe, "learn.yaml"))
    assert os.path.exists(config.structure) and config.forcefield == ["amber14/tip3pfb.xml"]
    assert config.sample_plan.select > 0 and config.committee >= 2
