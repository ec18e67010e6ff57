"""Shipped models: registry, the openmm-ml entry point ``equiforce-water-gfn2`` (offline), clear errors.

The entry point is exercised with a stand-in file placed where the shipped model goes (so that those tests do
not depend on the shipped weights); the shipped file itself is checked against GFN2-xTB frames it never saw.
"""
import os
import shutil
from importlib.metadata import entry_points

import numpy as np
import pytest
from openmmml import MLPotential

import equiforce
from equiforce import pretrained
from equiforce.calculator import EquiforceCalculator
from equiforce.data import read_atoms
from equiforce.systems import water_box
from test_openmm_force import _box_angstrom, _expected, _openmm_energy_forces, _species

WATER = pretrained.SHIPPED_MODELS["water-gfn2"]
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WATER_DATA = os.path.join(REPOSITORY, "recipes", "water", "data", "water_gfn2.extxyz.xz")
TRAINED_FRAMES = 1387  # frames of the data set the water model was trained on; later ones were never seen


def test_entry_point_is_registered_with_openmmml():
    names = {e.name: e.value for e in entry_points(group="openmmml.potentials")}
    assert names["equiforce-water-gfn2"] == "equiforce.openmm.mlpotential:ShippedPotentialImplFactory"


def test_entry_point_evaluates_the_file_in_the_shipped_location(exported_model, monkeypatch, tmp_path):
    stand_in, model = exported_model
    shutil.copy(stand_in, tmp_path / WATER.file)
    monkeypatch.setattr(pretrained, "MODELS_DIR", str(tmp_path))
    assert pretrained.available_models() == ["water-gfn2"]
    topology, positions = water_box(8, 1.0, seed=7)
    system = MLPotential("equiforce-water-gfn2").createSystem(topology)
    energy, forces = _openmm_energy_forces(system, positions)
    expected_energy, expected_forces = _expected(model, positions, _species(topology), _box_angstrom(topology))
    assert energy == pytest.approx(expected_energy, rel=1e-7)
    np.testing.assert_allclose(forces, expected_forces, rtol=1e-6, atol=1e-6 * np.abs(expected_forces).max())


def test_unknown_missing_or_misused_shipped_names_give_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(KeyError, match="water-pbe.*shipped models: water-gfn2"):
        pretrained.shipped_model_path("equiforce-water-pbe")
    monkeypatch.setattr(pretrained, "MODELS_DIR", str(tmp_path))
    assert pretrained.available_models() == []
    with pytest.raises(FileNotFoundError, match="water-gfn2.*missing"):
        MLPotential("equiforce-water-gfn2").createSystem(water_box(2, 1.0)[0])
    (tmp_path / WATER.file).write_bytes(b"")
    with pytest.raises(ValueError, match="equiforce-water-gfn2.*modelPath"):
        MLPotential("equiforce-water-gfn2", modelPath="mine.pt")


def test_shipped_water_model_reproduces_unseen_gfn2_frames():
    """Frames labelled after the training run started (never in its train, validation or test split)."""
    assert equiforce.read_metadata(WATER.path)["elements"] == ["H", "O"]
    frames = read_atoms(WATER_DATA, index=f"{TRAINED_FRAMES}:")[-12:]
    calculator = EquiforceCalculator(WATER.path)
    energy_errors, force_errors = [], []
    for atoms in frames:
        reference_energy, reference_forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = calculator
        energy_errors.append(abs(atoms.get_potential_energy() - reference_energy) / len(atoms))
        force_errors.append(np.abs(atoms.get_forces() - reference_forces).ravel())
    # loose bounds (the closing note gives the measured test errors): they fail for an untrained or wrongly
    # exported model, whose errors are hundreds of meV/Å
    assert 1000 * float(np.mean(np.concatenate(force_errors))) < 70.0
    assert 1000 * float(np.mean(energy_errors)) < 3.0


def test_the_shipped_file_runs_through_openmmml_with_its_energy_and_forces():
    """``MLPotential("equiforce-water-gfn2")`` with no path: OpenMM (kJ/mol, nm) equals the file itself (eV, Å)."""
    import torch

    topology, positions = water_box(8, 1.0, seed=7)
    system = MLPotential("equiforce-water-gfn2").createSystem(topology, precision="float64")
    energy, forces = _openmm_energy_forces(system, positions)
    model = torch.jit.load(WATER.path).double()
    expected_energy, expected_forces = _expected(model, positions, _species(topology), _box_angstrom(topology))
    assert energy == pytest.approx(expected_energy, rel=1e-7)  # summation order: 8e-9 seen
    np.testing.assert_allclose(forces, expected_forces, rtol=1e-6, atol=1e-6 * np.abs(expected_forces).max())
    assert np.abs(expected_forces).max() > 10.0  # kJ/mol/nm: a real, non-trivial force field


def test_the_demo_runs_end_to_end_on_the_shipped_model_in_a_few_steps(capsys):
    """`make demo` in miniature: classical start, NVT, NVE with timings, temperature, energy fluctuations and a
    drift fit (values not checked), one progress bar over the three phases."""
    import math

    from equiforce.demo import DemoSettings, run_demo

    result = run_demo(DemoSettings(molecules=8, classical_ps=0.02, nvt_steps=10, nve_steps=40))
    assert result["n_atoms"] == 24 and result["nve_steps"] == 40
    assert all(math.isfinite(result[k]) for k in ("ms_per_step", "ns_per_day", "drift_kT_per_ns_per_dof",
                                                  "mean_temperature_K", "potential_std_kj_per_mol",
                                                  "total_std_kj_per_mol"))
    assert result["drift_detected"] == (result["drift_z"] > 2.0)
    out, err = capsys.readouterr()
    for row in ("speed", "temperature", "potential energy", "total energy", "energy drift"):
        assert f"  {row}" in out
    assert "1/3 classical start" in err and "3/3 NVE" in err  # tqdm writes to stderr
    with pytest.raises(ValueError, match="nve_steps must be at least 20"):
        run_demo(DemoSettings(molecules=8, nve_steps=5))


def test_the_demo_prints_a_drift_only_where_the_run_resolves_it():
    from equiforce.demo import DemoSettings, _report

    base = {"nve_ps": 0.5, "nve_steps": 1000, "n_atoms": 96, "ms_per_step": 10.0, "ns_per_day": 4.32,
            "mean_temperature_K": 301.0, "temperature_std_K": 25.0, "temperature_spread_K": 17.8,
            "potential_std_kj_per_mol": 20.0, "total_std_kj_per_mol": 0.3, "total_over_kinetic_std": 0.015}
    noise = _report(dict(base, drift_kT_per_ns_per_dof=0.07, drift_stderr_kT_per_ns_per_dof=4.6, drift_z=0.015,
                         drift_detected=False), DemoSettings())
    assert "not measurable in 0.5 ps" in noise and "±9.2 kT/ns/dof" in noise and "equiforce bench nve" in noise
    assert "+0.07" not in noise  # a number 60 times smaller than its error is not printed
    assert "expect 300 ± 18 K" in noise
    real = _report(dict(base, drift_kT_per_ns_per_dof=30.0, drift_stderr_kT_per_ns_per_dof=4.0, drift_z=7.5,
                        drift_detected=True), DemoSettings())
    assert "+30 ± 4 kT/ns/dof, 7.5 standard errors" in real
