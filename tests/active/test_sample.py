"""equiforce sample: classical candidate frames, resume after an interruption, and selection by disagreement."""
import json
import os

import ase
import numpy as np
import pytest

from equiforce.active import SampleSettings, select_by_disagreement, sample
from equiforce.active._frames import append_frame, count_whole_frames, keep_frames, read_frames

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START = os.path.join(REPO, "recipes", "nacl", "start.pdb")
SETTINGS = dict(frames=4, every=20, equilibration_steps=50, platform="Reference", seed=3)


def test_classical_sampling_writes_frames_with_box_and_no_labels(tmp_path):
    out = str(tmp_path / "c.extxyz")
    record = sample(START, out, SampleSettings(**SETTINGS), forcefield=["amber14/tip3pfb.xml"], progress=False)
    frames = read_frames(out)
    assert record["frames_written"] == len(frames) == 4
    assert [a.info["sample_step"] for a in frames] == [70, 90, 110, 130]
    first = frames[0]
    assert sorted(set(first.get_chemical_symbols())) == ["Cl", "H", "Na", "O"] and len(first) == 92
    assert first.pbc.all() and np.allclose(np.diag(first.cell.array), 9.856, atol=1e-3)  # Å, from CRYST1
    assert first.calc is None  # sampled frames carry no energies or forces: those are the reference's job
    # Frames differ (the MD moves) but not wildly: 20 steps of 0.5 fs at 300 K.
    shift = np.abs(frames[1].positions - frames[0].positions).max()
    assert 1e-3 < shift < 1.0


def test_rerun_continues_after_interruption_and_matches_one_run(tmp_path):
    whole = str(tmp_path / "whole.extxyz")
    sample(START, whole, SampleSettings(**SETTINGS), forcefield=["amber14/tip3pfb.xml"], progress=False)
    # An interrupted run of the same command: its record and checkpoint say 2 frames, and a half-written third
    # frame follows them (made here by a run of 2 frames whose record is then set to ask for 4).
    part = str(tmp_path / "part.extxyz")
    sample(START, part, SampleSettings(**{**SETTINGS, "frames": 2}), forcefield=["amber14/tip3pfb.xml"],
           progress=False)
    with open(part + ".sample.json") as handle:
        record = json.load(handle)
    record["settings"]["frames"] = 4  # the command that was interrupted asked for 4
    with open(part + ".sample.json", "w") as handle:
        json.dump(record, handle)
    with open(part, "a") as handle:
        handle.write("92\nLattice=\"9.8 0 0 0 9.8 0 0 0 9.8\" Properties=species:S:1:pos:R:3\nO 0 0 0\n")
    assert count_whole_frames(part) == 2
    sample(START, part, SampleSettings(**SETTINGS), forcefield=["amber14/tip3pfb.xml"], progress=False)
    resumed, reference = read_frames(part), read_frames(whole)
    assert len(resumed) == 4
    for a, b in zip(resumed, reference):
        assert a.info["sample_step"] == b.info["sample_step"]
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)  # Reference platform: the same trajectory


def test_rerun_with_other_settings_is_refused(tmp_path):
    out = str(tmp_path / "c.extxyz")
    sample(START, out, SampleSettings(**{**SETTINGS, "frames": 1}), forcefield=["amber14/tip3pfb.xml"],
           progress=False)
    with pytest.raises(ValueError, match="temperature_K|settings"):
        sample(START, out, SampleSettings(**{**SETTINGS, "frames": 1, "temperature_K": 400.0}),
               forcefield=["amber14/tip3pfb.xml"], progress=False)
    assert len(read_frames(out)) == 1  # nothing lost


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="either a model file or classical force-field"):
        sample(START, str(tmp_path / "x.extxyz"), SampleSettings(**SETTINGS), progress=False)
    with pytest.raises(ValueError, match="PDB"):
        sample(str(tmp_path / "start.xyz"), str(tmp_path / "x.extxyz"), SampleSettings(**SETTINGS),
               forcefield=["amber14/tip3pfb.xml"], progress=False)
    with pytest.raises(ValueError, match="frames and every"):
        SampleSettings(frames=0)


def test_keep_frames_cuts_back_to_the_checkpoint(tmp_path):
    path = str(tmp_path / "f.extxyz")
    for k in range(3):
        append_frame(path, ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7 + 0.1 * k]]))
    keep_frames(path, 2)
    assert [round(a.positions[1, 2], 6) for a in read_frames(path)] == [0.7, 0.8]
    with pytest.raises(RuntimeError, match="checkpoint records 5"):
        keep_frames(path, 5)


def test_selection_takes_the_largest_spreads_below_the_ceiling():
    frames = [ase.Atoms("H", positions=[[0, 0, float(k)]]) for k in range(6)]
    spread = np.array([0.1, 0.5, np.nan, 0.3, 2.0, 0.4])
    chosen, summary = select_by_disagreement(frames, spread, 3, ceiling=1.0)
    assert [a.positions[0, 2] for a in chosen] == [1.0, 5.0, 3.0]
    assert [a.info["committee_force_std"] for a in chosen] == [0.5, 0.4, 0.3]
    assert summary["above_ceiling"] == 1 and summary["not_finite"] == 1 and summary["selected"] == 3
    assert frames[1].info == {}  # the candidates themselves are left as they were
    with pytest.raises(ValueError, match="one disagreement per frame"):
        select_by_disagreement(frames, spread[:3], 1)


def test_committee_spread_is_recorded_and_stops_the_run(tmp_path):
    """With a committee, each frame carries its force spread; past stop_spread the run ends and stays ended."""
    import torch
    from openmm import app, unit

    from equiforce.committee import export_committee, force_disagreement
    from equiforce.nn import EquivariantPotential, ModelConfig
    from equiforce.systems import water_box

    topology, positions = water_box(4, 1.0, seed=1)
    topology.setPeriodicBoxVectors(None)
    start = str(tmp_path / "cluster.pdb")
    with open(start, "w") as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        members.append(EquivariantPotential(ModelConfig(elements=["H", "O"], cutoff=3.0, num_features=4,
                                                        num_layers=1, num_basis=4, radial_hidden=8)))
    committee = str(tmp_path / "committee.pt")
    export_committee(members, committee, dtype="float64")
    out = str(tmp_path / "c.extxyz")
    settings = SampleSettings(frames=5, every=5, equilibration_steps=0, platform="Reference", temperature_K=50.0)
    # Driven by the classical force field, judged by the committee: random members disagree at once.
    record = sample(start, out, settings, forcefield=["amber14/tip3pfb.xml"], committee=committee,
                    stop_spread=1e-6, progress=False)
    frames = read_frames(out)
    assert len(frames) == 1 and record["frames_written"] == 1 and "above 1e-06" in record["stopped"]
    spread = frames[0].info["committee_force_std"]
    assert spread > 1e-6
    assert spread == pytest.approx(float(force_disagreement(committee, frames)[0]), rel=1e-6)
    again = sample(start, out, settings, forcefield=["amber14/tip3pfb.xml"], committee=committee,
                   stop_spread=1e-6, progress=False)
    assert again["stopped"] == record["stopped"] and len(read_frames(out)) == 1
    with pytest.raises(ValueError, match="needs a committee"):
        sample(start, str(tmp_path / "d.extxyz"), settings, forcefield=["amber14/tip3pfb.xml"], stop_spread=1.0)


def test_command_line_sample_and_learn_errors(tmp_path, capsys):
    from equiforce.cli import main

    out = str(tmp_path / "c.extxyz")
    assert main(["sample", START, "-o", out, "--forcefield", "amber14/tip3pfb.xml", "--frames", "2", "--every", "10",
                 "--equilibration-steps", "0", "--platform", "Reference", "--no-progress"]) == 0
    assert len(read_frames(out)) == 2 and "wrote 2 frames" in capsys.readouterr().out
    bad = tmp_path / "learn.yaml"
    bad.write_text("workdir: w\nstructure: s.pdb\n")  # neither a force field nor labelled frames
    assert main(["learn", str(bad)]) == 2
    assert "exactly one of 'forcefield'" in capsys.readouterr().err
