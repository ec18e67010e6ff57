"""equiforce label: GFN2-xTB labels equal tblite's own numbers, units as read back by ASE, resume, failures."""
import json

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.units import Bohr, Hartree, kB

from equiforce import cli
from equiforce.label import (LabelError, LabelSettings, SOURCE_INDEX_KEY, failures_path, label_atoms, label_frames,
                             sidecar_path)
from equiforce.systems import box_edge_nm, water_box
from equiforce.units import nm_to_angstrom


def water_molecule() -> Atoms:
    return molecule("H2O")


def periodic_waters(n_molecules: int = 3, seed: int = 1) -> Atoms:
    """A cubic periodic box of ``n_molecules`` waters at 1 g/cm³ (Å)."""
    _, positions_nm = water_box(n_molecules, 1.0, seed=seed)
    edge = nm_to_angstrom(box_edge_nm(n_molecules, 1.0))
    return Atoms("OHH" * n_molecules, positions=nm_to_angstrom(positions_nm), cell=np.eye(3) * edge, pbc=True)


def small_molecules():
    return [molecule(name) for name in ("H2O", "NH3", "CH4", "HCN")]


def direct_tblite(atoms: Atoms, charge: int = 0):
    """Energy (Hartree), gradient (Hartree/bohr) and dipole (e·bohr) from tblite's own interface, no ASE."""
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", atoms.numbers, atoms.positions / Bohr, charge, 0, atoms.cell[:] / Bohr,
                      np.asarray(atoms.pbc))
    calc.set("verbosity", 0)
    calc.set("accuracy", 1.0)
    calc.set("temperature", 300.0 * kB / Hartree)
    calc.set("max-iter", 250)
    result = calc.singlepoint()
    return result["energy"], result["gradient"], result["dipole"]


def write_frames(path, frames):
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def read_labelled(path):
    return ase.io.read(path, index=":")


def test_labels_read_back_in_ev_and_ev_per_angstrom_equal_direct_tblite(tmp_path):
    frames = [water_molecule(), periodic_waters()]
    source = write_frames(tmp_path / "in.extxyz", frames)
    summary = label_frames(source, str(tmp_path / "out.extxyz"), workers=0, progress=False)
    assert (summary["n_labelled"], summary["n_failed"], summary["labelled_now"]) == (2, 0, 2)
    labelled = read_labelled(tmp_path / "out.extxyz")
    frames = ase.io.read(source, index=":")  # the positions as written (8 decimals) are what was labelled
    for k, (frame, done) in enumerate(zip(frames, labelled)):
        energy_hartree, gradient, _ = direct_tblite(frame)
        assert done.info[SOURCE_INDEX_KEY] == k and done.info["label_method"] == "GFN2-xTB"
        np.testing.assert_allclose(done.positions, frame.positions, atol=1e-8)
        assert done.get_potential_energy() == pytest.approx(energy_hartree * Hartree, rel=1e-10)  # eV
        np.testing.assert_allclose(done.get_forces(), -gradient * Hartree / Bohr, atol=1e-7)  # eV/Å
    # A water molecule's GFN2 energy is about -138 eV (-5.07 Hartree): eV, not Hartree, in the file.
    assert -140.0 < labelled[0].get_potential_energy() < -136.0
    assert labelled[1].pbc.all() and "dipole" not in labelled[1].calc.results  # no dipole for a periodic frame


def test_forces_are_minus_the_central_difference_of_the_labelled_energy():
    step = 1e-3  # Å
    for atoms, components in ((water_molecule(), [(0, 2), (1, 1)]), (periodic_waters(), [(4, 0)])):
        forces = label_atoms(atoms)["forces"]
        for atom, axis in components:
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[atom, axis] += sign * step
                energies.append(label_atoms(moved)["energy"])
            finite_difference = -(energies[0] - energies[1]) / (2 * step)
            assert abs(forces[atom, axis]) > 0.05  # a component worth checking
            assert forces[atom, axis] == pytest.approx(finite_difference, abs=2e-4), (atom, axis)


def test_dipole_of_an_isolated_water_is_tblites_converted_to_e_angstrom(tmp_path):
    water = water_molecule()
    source = write_frames(tmp_path / "in.extxyz", [water])
    label_frames(source, str(tmp_path / "out.extxyz"), workers=0, progress=False)
    dipole = read_labelled(tmp_path / "out.extxyz")[0].get_dipole_moment()  # e·Å
    _, _, dipole_e_bohr = direct_tblite(water)
    np.testing.assert_allclose(dipole, dipole_e_bohr * Bohr, atol=1e-8)
    # GFN2-xTB's water dipole is about 2.3 D = 0.48 e·Å (not 0.9, the e·bohr number)
    assert 0.4 < np.linalg.norm(dipole) < 0.55


def test_charge_comes_from_info_then_option_then_zero(tmp_path):
    anion, neutral = molecule("OH"), water_molecule()
    anion.info["charge"] = -1
    source = write_frames(tmp_path / "in.extxyz", [anion, neutral])
    label_frames(source, str(tmp_path / "out.extxyz"), workers=0, progress=False)
    labelled = read_labelled(tmp_path / "out.extxyz")
    assert [a.info["charge"] for a in labelled] == [-1, 0]
    assert labelled[0].get_potential_energy() == pytest.approx(direct_tblite(anion, charge=-1)[0] * Hartree, rel=1e-10)
    cation = molecule("H2O")
    label_frames(write_frames(tmp_path / "in2.extxyz", [cation]), str(tmp_path / "out2.extxyz"), charge=1,
                 workers=0, progress=False)
    labelled = read_labelled(tmp_path / "out2.extxyz")[0]
    assert labelled.info["charge"] == 1
    assert labelled.get_potential_energy() == pytest.approx(direct_tblite(cation, charge=1)[0] * Hartree, rel=1e-10)


def _same_labels(path_a, path_b):
    a, b = read_labelled(path_a), read_labelled(path_b)
    assert [x.info[SOURCE_INDEX_KEY] for x in a] == [x.info[SOURCE_INDEX_KEY] for x in b]
    for x, y in zip(a, b):
        assert x.get_potential_energy() == pytest.approx(y.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(x.get_forces(), y.get_forces(), atol=1e-8)


def test_interrupted_run_continues_without_relabelling_and_ends_like_one_shot(tmp_path):
    frames = small_molecules()
    source = write_frames(tmp_path / "in.extxyz", frames)
    one_shot = str(tmp_path / "one_shot.extxyz")
    label_frames(source, one_shot, workers=0, progress=False)

    out = str(tmp_path / "out.extxyz")
    first = label_frames(source, out, workers=0, max_frames=2, progress=False)  # stopped after 2 frames
    assert (first["labelled_now"], first["n_remaining"]) == (2, 2)
    # a killed writer: the third frame torn in the middle of an atom line
    label_frames(source, out, workers=0, max_frames=1, progress=False)
    with open(out, "rb") as handle:
        raw = handle.read()
    torn = len(raw) - 25
    with open(out, "r+b") as handle:
        handle.truncate(torn)
    second = label_frames(source, out, workers=0, progress=False)
    assert (second["labelled_now"], second["n_labelled"], second["n_remaining"]) == (2, 4, 0)  # frames 2 and 3 only
    assert second["in_input_order"]
    _same_labels(out, one_shot)
    third = label_frames(source, out, workers=0, progress=False)  # nothing left: nothing relabelled
    assert third["labelled_now"] == 0 and third["n_labelled"] == 4
    assert json.load(open(sidecar_path(out)))["status"] == "complete"


def test_two_workers_label_like_one_process_and_resume(tmp_path):
    frames = small_molecules()
    source = write_frames(tmp_path / "in.extxyz", frames)
    reference = str(tmp_path / "reference.extxyz")
    label_frames(source, reference, workers=0, progress=False)
    out = str(tmp_path / "out.extxyz")
    label_frames(source, out, workers=0, max_frames=1, progress=False)
    summary = label_frames(source, out, workers=2, progress=False)
    assert (summary["labelled_now"], summary["n_labelled"], summary["workers"]) == (3, 4, 2)
    _same_labels(out, reference)  # in input order once complete, whatever order the workers finished in


def test_frame_whose_scf_fails_after_the_retry_is_recorded_and_skipped(tmp_path):
    # With 1 SCF iteration nothing converges; the retry (damping 0.2, 4 iterations) converges H2 but not water.
    source = write_frames(tmp_path / "in.extxyz", [molecule("H2"), water_molecule()])
    out = str(tmp_path / "out.extxyz")
    summary = label_frames(source, out, workers=0, max_iterations=1, progress=False)
    assert (summary["n_labelled"], summary["n_failed"], summary["n_remaining"]) == (1, 1, 0)
    assert summary["failures"][0]["index"] == 1 and "not converged" in summary["failures"][0]["error"]
    labelled = read_labelled(out)
    assert [a.info[SOURCE_INDEX_KEY] for a in labelled] == [0]
    assert labelled[0].info["label_scf_attempt"] == 1
    records = [json.loads(line) for line in open(failures_path(out))]
    assert [(r["index"], r["attempts"]) for r in records] == [(1, 2)]
    again = label_frames(source, out, workers=0, max_iterations=1, progress=False)
    assert (again["labelled_now"], again["failed_now"], again["skipped_failed"]) == (0, 0, 1)
    retried = label_frames(source, out, workers=0, max_iterations=1, retry_failed=True, progress=False)
    assert (retried["failed_now"], retried["n_failed"]) == (1, 1)
    assert len(open(failures_path(out)).readlines()) == 1


def test_unsupported_element_is_refused_before_any_work_naming_frame_and_element(tmp_path):
    uranium = Atoms("UO2", positions=[[0, 0, 0], [0, 0, 1.8], [0, 0, -1.8]])
    source = write_frames(tmp_path / "in.extxyz", [water_molecule(), uranium])
    out = tmp_path / "out.extxyz"
    with pytest.raises(LabelError, match=r"frame 1: element U \(Z=92\)"):
        label_frames(source, str(out), workers=0, progress=False)
    assert not out.exists()
    slab = periodic_waters()
    slab.pbc = [True, True, False]
    with pytest.raises(LabelError, match="frame 0: periodic in some directions only"):
        label_frames(write_frames(tmp_path / "slab.extxyz", [slab]), str(out), workers=0, progress=False)


def test_changed_input_or_settings_are_refused(tmp_path):
    frames = small_molecules()[:2]
    source = write_frames(tmp_path / "in.extxyz", frames)
    out = str(tmp_path / "out.extxyz")
    label_frames(source, out, workers=0, max_frames=1, progress=False)
    with pytest.raises(ValueError, match="other labelling settings"):
        label_frames(source, out, workers=0, accuracy=0.1, progress=False)
    frames[1].positions[0, 0] += 0.1
    write_frames(source, frames)
    with pytest.raises(ValueError, match="another input file"):
        label_frames(source, out, workers=0, progress=False)
    foreign = tmp_path / "foreign.extxyz"
    write_frames(foreign, frames)
    with pytest.raises(ValueError, match="not written by equiforce label"):
        label_frames(source, str(foreign), workers=0, progress=False)


def test_command_line_labels_and_reports_errors(tmp_path, capsys):
    source = write_frames(tmp_path / "in.extxyz", [water_molecule()])
    out = str(tmp_path / "out.extxyz")
    assert cli.main(["label", source, "--method", "gfn2", "--output", out, "--workers", "0", "--no-progress"]) == 0
    assert "1/1 frames labelled" in capsys.readouterr().out
    assert read_labelled(out)[0].get_potential_energy() == pytest.approx(direct_tblite(water_molecule())[0] * Hartree)
    bad = write_frames(tmp_path / "bad.extxyz", [Atoms("Fr", positions=[[0, 0, 0]])])
    assert cli.main(["label", bad, "--output", str(tmp_path / "bad_out.extxyz"), "--no-progress"]) == 2
    assert "frame 0: element Fr (Z=87)" in capsys.readouterr().err


def test_settings_reject_unknown_method_and_bad_limits():
    with pytest.raises(ValueError, match="unknown labelling method 'gfn1'"):
        LabelSettings(method="gfn1")
    with pytest.raises(ValueError, match="max_iterations"):
        LabelSettings(max_iterations=0)
