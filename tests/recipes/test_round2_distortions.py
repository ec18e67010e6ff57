"""The round-2 distortions (recipes/water/active_learning.py distort): one molecule per frame set to the
drawn angle or bond length, every other atom left where it was."""
import json
import os
import sys

import numpy as np
import pytest
from ase import Atoms
from openmm import unit

from equiforce.systems import water_box

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WATER_SCRIPTS = os.path.join(REPOSITORY, "recipes", "water")


@pytest.fixture(scope="module")
def active_learning():
    sys.path.insert(0, WATER_SCRIPTS)
    try:
        import active_learning
        import scans
        yield active_learning, scans
    finally:
        sys.path.remove(WATER_SCRIPTS)


def _frames(count):
    frames = []
    for seed in range(count):
        topology, positions = water_box(8, 1.0, seed=seed)
        edge = topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.angstrom)
        frames.append(Atoms(["O", "H", "H"] * 8, positions=10.0 * positions, cell=np.diag([edge] * 3), pbc=True))
    return frames


def test_each_distortion_sets_its_value_and_moves_one_hydrogen(active_learning):
    module, scans = active_learning
    frames = _frames(8)
    positions, meta = module.distorted_frames(frames, every=1, seed=5)
    assert positions.shape == (8, 24, 3)
    assert [m["distortion"] for m in meta[:4]] == list(module.DISTORTIONS)
    for k, m in enumerate(meta):
        low, high = module.DISTORTIONS[m["distortion"]]
        assert low <= m["value"] <= high
        lengths, angles = scans.molecule_geometry(positions[k], m["box_edge_A"])
        if m["distortion"].startswith("bend"):
            assert angles[m["molecule"]] == pytest.approx(m["value"], abs=1e-6)
        else:
            assert lengths[m["molecule"], 0] == pytest.approx(m["value"], abs=1e-9)
        moved = np.nonzero(np.abs(positions[k] - frames[m["source_frame"]].get_positions()).max(axis=1) > 1e-9)[0]
        assert len(moved) == 1 and moved[0] in (3 * m["molecule"] + 1, 3 * m["molecule"] + 2)
    json.dumps(meta)  # the metadata goes into the configs file as JSON


def test_label_order_puts_every_kth_condition_last_and_keeps_every_frame(active_learning):
    module, _ = active_learning
    meta = [{"condition": c} for c in range(12) for _ in range(3)]  # 12 conditions, 3 frames each
    order = module.label_order(meta, hold_out_every=6)
    assert sorted(order) == list(range(len(meta)))
    tail = order[-6:]
    assert {meta[k]["condition"] for k in tail} == {5, 11}
    assert all(meta[k]["condition"] % 6 != 5 for k in order[:-6])
    assert order[:-6] == sorted(order[:-6]) and tail == sorted(tail)  # sampling order within each part
    assert module.label_order(meta) == list(range(len(meta)))  # no hold-out: sampling order


def test_finetune_held_out_sets_are_the_tails_of_the_selections(tmp_path):
    import ase.io

    sys.path.insert(0, WATER_SCRIPTS)
    try:
        import finetune
    finally:
        sys.path.remove(WATER_SCRIPTS)
    frames = _frames(6)
    for k, atoms in enumerate(frames):
        atoms.info["distortion"] = "stretch" if k % 2 else "bend open"
    distorted = str(tmp_path / "distorted.extxyz")
    liquid = str(tmp_path / "liquid.extxyz")
    ase.io.write(distorted, frames)
    ase.io.write(liquid, _frames(4))
    config = {"data": [f"{liquid}@:3", f"{distorted}@:2", f"{distorted}@1:4", f"{liquid}@::2"]}
    sets = finetune.held_out_sets(config)
    assert sets == {
        "liquid unseen (3-3)": (liquid, {"indices": [3]}),
        "distorted unseen (2-5)": (distorted, {"indices": [2, 3, 4, 5]}),
        "distorted unseen, bend open": (distorted, {"indices": [2, 4]}),
        "distorted unseen, stretch": (distorted, {"indices": [3, 5]}),
    }  # selections with a start or a step have no tail of their own
