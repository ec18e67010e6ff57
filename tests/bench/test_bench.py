"""The benchmark pipelines produce well-formed records (checked for shape, never for speed)."""
import dataclasses
import json
import math
import os

import numpy as np
import pytest
import torch

from equiforce.bench import NVEInterrupted, NVEProtocol, nve_table, run_nve, run_nve_case, run_speed, speed_goals, speed_table
from equiforce.bench import case_key

SPEED_KEYS = {"system", "n_atoms", "method", "platform", "dtype", "ms_per_step", "ns_per_day"}
NVE_KEYS = {"method", "dtype", "dt_fs", "n_atoms", "duration_ps", "drift_kT_per_ns_per_dof",
            "drift_stderr_kT_per_ns_per_dof", "drift_meV_per_atom_per_ps", "fluctuation_kJ_per_mol", "drift_ratio"}


def test_quick_speed_benchmark_writes_well_formed_records(exported_model, tmp_path):
    path, _ = exported_model
    out = tmp_path / "speed.json"
    result = run_speed([8], model_file=path, dtypes=["float64"], warmup_steps=1, block_steps=1, blocks=2,
                       out=str(out), progress=False)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert {"cpu", "torch", "openmm"} <= set(result["machine"])
    methods = {r["method"] for r in result["records"]}
    assert methods == {"bare-eager", "bare-torchscript", "torchforce", "pythonforce", "ase", "classical"}
    for record in result["records"]:
        assert SPEED_KEYS <= set(record) and record["n_atoms"] == 24
        assert record["ms_per_step"] > 0 and math.isclose(
            record["ns_per_day"], 86400e3 / record["ms_per_step"] * 1e-6, rel_tol=1e-9)  # reported at 1 fs
    assert "torchforce" in speed_table(result)
    goals = speed_goals(result).splitlines()  # no float32 records here: every ratio cell is empty
    assert len(goals) == 2 + 4 and goals[2].startswith("| torchforce / bare-torchscript") and "–" in goals[2]


def test_a_speed_run_continues_from_its_file_and_restarts_when_settings_change(exported_model, tmp_path):
    path, _ = exported_model
    out = str(tmp_path / "speed.json")
    kwargs = dict(model_file=path, dtypes=["float64"], warmup_steps=1, block_steps=1, blocks=1, out=out,
                  progress=False, threads=1)
    threads_before = torch.get_num_threads()
    first = run_speed([8], methods=["bare-eager", "classical"], **kwargs)
    assert torch.get_num_threads() == threads_before  # the benchmark's one thread is not left behind
    continued = run_speed([8], methods=["bare-eager", "classical", "torchforce"], **kwargs)
    assert continued["records"][:2] == first["records"]  # kept, not re-timed
    assert [r["method"] for r in continued["records"]] == ["bare-eager", "classical", "torchforce"]
    restarted = run_speed([8], methods=["classical"], **dict(kwargs, blocks=2))
    assert [r["method"] for r in restarted["records"]] == ["classical"]


def test_timing_shortens_blocks_and_warm_up_for_slow_steps():
    import time

    from equiforce.bench import time_steps

    calls = []

    def step(n):
        calls.append(n)
        time.sleep(0.01 * n)

    timing = time_steps(step, warmup_steps=10, block_steps=10, blocks=3, max_block_seconds=0.03,
                        max_warmup_seconds=0.0)
    assert calls[:2] == [1, 1] and len(calls) == 5  # warm-up stopped after two steps, then three blocks
    assert 1 <= timing["block_steps"] <= 3 and calls[2:] == [timing["block_steps"]] * 3
    assert timing["ms_min"] >= 10.0


def test_interleaved_timing_takes_the_methods_blocks_in_turns():
    import time

    from equiforce.bench import time_interleaved

    calls = []

    def stepper(name, seconds):
        def step(n):
            calls.append((name, n))
            time.sleep(seconds * n)
        return step

    timings = time_interleaved({"slow": stepper("slow", 0.02), "fast": stepper("fast", 0.002)}, warmup_steps=2,
                               block_steps=4, blocks=3, max_block_seconds=0.05)
    assert calls[:4] == [("slow", 1), ("slow", 1), ("fast", 1), ("fast", 1)]  # warm-up, one method after another
    rounds = calls[4:]
    assert [name for name, _ in rounds] == ["slow", "fast"] * 3  # then one block of each, in turns
    assert timings["slow"]["block_steps"] == 2 and timings["fast"]["block_steps"] == 4  # shortened for the slow one
    assert timings["slow"]["ms_min"] >= 20.0 and timings["fast"]["ms_min"] >= 2.0


QUICK_NVE = NVEProtocol(duration_ps=0.025, equilibration_ps=0.002, classical_ps=0.002, sample_every=2)


def test_quick_nve_benchmark_writes_well_formed_records(exported_model, tmp_path):
    path, _ = exported_model
    result = run_nve([8], [0.5], QUICK_NVE, dtypes=["float64"], model_file=path, out=str(tmp_path / "nve.json"),
                     progress=False)
    assert result["complete"]
    assert [(r["method"], r["dtype"]) for r in result["records"]] == [("equiforce", "float64"),
                                                                      ("classical", "mixed")]
    for record in result["records"]:
        assert NVE_KEYS <= set(record) and record["failed"] is None
        assert len(record["series"]["time_ps"]) == 26
        assert all(math.isfinite(record[k]) for k in NVE_KEYS - {"method", "dtype"})
    assert "drift ratio" in nve_table(result)


def test_an_interrupted_nve_case_resumes_from_its_saved_state(exported_model, tmp_path):
    """Stop after the first save, then finish it twice from copies of the saved state: both continuations keep
    the saved samples and agree (Verlet has no noise; the model's CPU gradients differ only in the last bits)."""
    import shutil

    path, _ = exported_model
    protocol = NVEProtocol(duration_ps=0.02, equilibration_ps=0.002, classical_ps=0.002, sample_every=2, threads=1)
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    with pytest.raises(NVEInterrupted):  # a deadline in the past: save after the first sample and stop
        run_nve_case("equiforce", "float64", 0.5, 8, path, protocol, work_dir=first, deadline=0.0, progress=False)
    shutil.copytree(first, second)
    saved = np.load(os.path.join(first, case_key("equiforce", "float64", 0.5, 8), "samples.npy"))
    assert saved.shape == (1, 3)
    finished = [run_nve_case("equiforce", "float64", 0.5, 8, path, protocol, work_dir=work, save_every_samples=5,
                             progress=False) for work in (first, second)]
    for record in finished:
        assert record["failed"] is None
        np.testing.assert_allclose(record["series"]["time_ps"], np.arange(21) * 0.001, atol=1e-12)
        assert record["series"]["potential"][0] == saved[0, 2] and record["series"]["kinetic"][0] == saved[0, 1]
    np.testing.assert_allclose(finished[0]["series"]["potential"], finished[1]["series"]["potential"], atol=1e-6)


def test_a_rerun_skips_finished_cases_and_refuses_another_protocol(exported_model, tmp_path, monkeypatch):
    path, _ = exported_model
    out = str(tmp_path / "nve.json")
    first = run_nve([8], [0.5], QUICK_NVE, methods=["classical"], model_file=path, out=out, progress=False)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished case was run again")

    monkeypatch.setattr("equiforce.bench._nve.run_nve_case", must_not_run)
    again = run_nve([8], [0.5], QUICK_NVE, methods=["classical"], model_file=path, out=out, progress=False)
    assert again["records"] == first["records"] and again["complete"]
    with pytest.raises(ValueError, match="another model or protocol"):
        run_nve([8], [0.5], NVEProtocol(duration_ps=1.0), methods=["classical"], model_file=path, out=out)


def test_processes_sharing_one_output_skip_claimed_cases_and_merge_records(exported_model, tmp_path, monkeypatch):
    """Two processes run the same command: a case another process holds is skipped, and a record another
    process wrote meanwhile survives this process's writes."""
    import fcntl

    path, _ = exported_model
    out, work = str(tmp_path / "nve.json"), str(tmp_path / "work")
    os.makedirs(work)
    claimed_elsewhere = open(os.path.join(work, case_key("classical", "mixed", 1.0, 8) + ".lock"), "a")
    fcntl.flock(claimed_elsewhere, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a second open file description: another owner

    def fake_case(method, dtype, dt_fs, n_molecules, *args, **kwargs):
        if not os.path.exists(out):  # meanwhile the other process records the case it holds
            other = {"model": path, "protocol": dataclasses.asdict(QUICK_NVE), "complete": False,
                     "records": [{"method": "classical", "dtype": "mixed", "dt_fs": 1.0, "n_atoms": 24}]}
            with open(out, "w") as handle:
                json.dump(other, handle)
        return {"method": method, "dtype": dtype, "dt_fs": dt_fs, "n_atoms": 3 * n_molecules}

    monkeypatch.setattr("equiforce.bench._nve.run_nve_case", fake_case)
    try:
        result = run_nve([8], [0.5, 1.0], QUICK_NVE, methods=["classical"], model_file=path, out=out, work_dir=work,
                         progress=False)
    finally:
        claimed_elsewhere.close()
    written = json.loads(open(out).read())
    assert [r["dt_fs"] for r in written["records"]] == [0.5, 1.0] == [r["dt_fs"] for r in result["records"]]
    assert written["complete"] and result["complete"]  # both requested cases are recorded, one by each process


def test_a_case_claimed_by_another_process_leaves_the_run_incomplete(exported_model, tmp_path, monkeypatch):
    import fcntl

    path, _ = exported_model
    work = str(tmp_path / "work")
    os.makedirs(work)
    with open(os.path.join(work, case_key("classical", "mixed", 0.5, 8) + ".lock"), "a") as claimed_elsewhere:
        fcntl.flock(claimed_elsewhere, fcntl.LOCK_EX | fcntl.LOCK_NB)
        monkeypatch.setattr("equiforce.bench._nve.run_nve_case", lambda *a, **k: pytest.fail("ran a claimed case"))
        result = run_nve([8], [0.5], QUICK_NVE, methods=["classical"], model_file=path, out=str(tmp_path / "o.json"),
                         work_dir=work, progress=False)
    assert result["records"] == [] and not result["complete"]


def _scale_kinetic_energy_after(monkeypatch, good_samples: int, factor: float) -> None:
    """Patch ``Context.getState`` so that every energy state after the first ``good_samples`` reports its kinetic
    energy times ``factor`` (NaN: a blown-up run; 1e3: a runaway)."""
    import openmm

    real_get_state = openmm.Context.getState
    calls = {"n": 0}

    class Scaled:
        def __init__(self, state):
            self.state = state

        def getKineticEnergy(self):
            return self.state.getKineticEnergy() * factor

        def getPotentialEnergy(self):
            return self.state.getPotentialEnergy()

    def get_state(context, *args, **kwargs):
        state = real_get_state(context, *args, **kwargs)
        if not kwargs.get("getEnergy"):
            return state
        calls["n"] += 1
        return Scaled(state) if calls["n"] > good_samples else state

    monkeypatch.setattr(openmm.Context, "getState", get_state)


def test_a_blown_up_run_is_recorded_as_failed(exported_model, tmp_path, monkeypatch):
    path, _ = exported_model
    _scale_kinetic_energy_after(monkeypatch, 4, float("nan"))
    record = run_nve_case("classical", "mixed", 0.5, 8, path, QUICK_NVE, progress=False)
    assert record["failed"].startswith("non-finite energy at")
    assert 0 < record["completed_ps"] < QUICK_NVE.duration_ps
    assert "failed" in nve_table({"records": [record]})


def test_a_runaway_stops_the_run_and_a_failing_step_is_recorded(exported_model, monkeypatch):
    """A sample hotter than 3 x 300 K ends the run there (no drift numbers); a step that raises (as the model
    does for atoms flown far outside the box) is recorded as a failure instead of ending the benchmark."""
    import openmm

    path, _ = exported_model
    real_get_state = openmm.Context.getState
    _scale_kinetic_energy_after(monkeypatch, 4, 1e3)
    hot = run_nve_case("classical", "mixed", 0.5, 8, path, QUICK_NVE, progress=False)
    assert hot["failed"].startswith("runaway:") and "drift_kT_per_ns_per_dof" not in hot
    assert len(hot["series"]["time_ps"]) == 5 and hot["max_temperature_K"] > 900.0
    monkeypatch.setattr(openmm.Context, "getState", real_get_state)

    real_step, steps = openmm.CompoundIntegrator.step, {"n": 0}

    def failing_step(self, n):  # the equilibration (first call) and one NVE block pass, the next one fails
        steps["n"] += 1
        if steps["n"] > 2:
            raise openmm.OpenMMException("neighbor_list: atom 3 lies more than 2^31 box lengths outside the box")
        return real_step(self, n)

    monkeypatch.setattr(openmm.CompoundIntegrator, "step", failing_step)
    broken = run_nve_case("classical", "mixed", 0.5, 8, path, QUICK_NVE, progress=False)
    assert broken["failed"].startswith("the step after 0.001 ps failed") and "outside the box" in broken["failed"]
    assert broken["completed_ps"] == 0.001 and "drift_kT_per_ns_per_dof" not in broken


def test_a_run_that_heats_far_beyond_its_start_is_marked_as_a_runaway():
    from equiforce.bench import runaway
    from equiforce.units import boltzmann_kj_per_mol

    n_dof = 285
    time_ps = np.linspace(0.0, 1.0, 5)
    kinetic_300 = 0.5 * n_dof * boltzmann_kj_per_mol(300.0)  # kJ/mol at 300 K
    hottest, failed = runaway(time_ps, np.full(5, kinetic_300), n_dof)
    assert math.isclose(hottest, 300.0, rel_tol=1e-9) and failed is None
    hottest, failed = runaway(time_ps, kinetic_300 * np.array([1.0, 1.5, 4.0, 10.0, 8.0]), n_dof)
    assert math.isclose(hottest, 3000.0, rel_tol=1e-9)
    assert failed.startswith("runaway: 1200 K at 0.500 ps, 3000 K at most")


def test_the_nve_plot_draws_a_grid_of_runs_and_skips_an_empty_result(tmp_path):
    from equiforce.bench import plot_nve

    time_ps = list(np.linspace(0.0, 2.0, 201))
    kinetic = list(100.0 + np.sin(np.arange(201)))
    potential = list(-100.0 - np.sin(np.arange(201)))
    ok = {"method": "equiforce", "dtype": "float32", "dt_fs": 0.5, "n_atoms": 24, "failed": None,
          "drift_kT_per_ns_per_dof": 0.01, "drift_stderr_kT_per_ns_per_dof": 0.02,
          "series": {"time_ps": time_ps, "kinetic": kinetic, "potential": potential}}
    failed = dict(ok, dt_fs=1.0, failed="runaway: 950 K at 1.000 ps", series=dict(ok["series"]))
    path = tmp_path / "nve.png"
    assert plot_nve({"records": [ok, failed]}, str(path)) and path.stat().st_size > 0
    assert not plot_nve({"records": []}, str(tmp_path / "empty.png"))
    assert not (tmp_path / "empty.png").exists()


def test_the_speed_goal_thresholds_are_the_specification_as_method_over_torchforce_time():
    from equiforce.bench import PEER_METHODS, goal_thresholds

    thresholds = goal_thresholds()
    assert thresholds["ase"] == 1.3 and thresholds["pythonforce"] == 1.3
    assert all(thresholds[peer] == 1.5 for peer in PEER_METHODS)
    assert math.isclose(thresholds["bare-torchscript"], 1 / 1.05)


def test_replot_rewrites_table_and_plot_from_the_json_alone(tmp_path, capsys):
    from equiforce.cli import main

    records = [{"system": f"water-{m}", "n_atoms": 3 * m, "method": method, "platform": "CPU", "dtype": "float32",
                "ms_per_step": ms * m, "ns_per_day": 86.4 / (ms * m)}
               for m in (32, 128) for method, ms in [("torchforce", 1.0), ("ase", 1.2), ("bare-torchscript", 0.98)]]
    out = tmp_path / "speed.json"
    out.write_text(json.dumps({"machine": {}, "records": records}))
    assert main(["bench", "speed", "--replot", "--out", str(out)]) == 0
    table = (tmp_path / "speed.md").read_text()
    assert "| ase / torchforce | ≥ 1.3 | 1.20 | 1.20 |" in table
    assert (tmp_path / "speed.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="no results file"):
        main(["bench", "nve", "--replot", "--out", str(tmp_path / "missing.json")])


def test_block_sensitivity_finds_a_planted_drift_and_no_drift_in_noise(tmp_path):
    from conftest import load_benchmark_script

    module = load_benchmark_script("studies/nve_block_sensitivity")
    rng = np.random.default_rng(0)
    time_ps = np.linspace(0.0, 20.0, 4001)
    kinetic = 400.0 + 20.0 * np.sin(40.0 * time_ps)  # kJ/mol
    records = []
    for slope in (0.0, 0.5):  # kJ/mol/ps; noise 0.3 kJ/mol, so 0.5 kJ/mol/ps is unmistakable over 20 ps
        potential = -kinetic + slope * time_ps + rng.normal(0.0, 0.3, len(time_ps))
        records.append({"method": "equiforce", "dtype": "float64", "dt_fs": 0.5, "n_atoms": 96, "failed": None,
                        "drift_kT_per_ns_per_dof": 0.0, "drift_stderr_kT_per_ns_per_dof": 1.0,
                        "series": {"time_ps": time_ps.tolist(), "kinetic": kinetic.tolist(),
                                   "potential": potential.tolist()}})
    records.append(dict(records[0], failed="runaway"))  # a failed run has no drift to recompute
    source = tmp_path / "nve.json"
    source.write_text(json.dumps({"records": records}))
    out = tmp_path / "sensitivity.json"
    assert module.main([str(source), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["verdict"] for row in rows] == ["none", "drift"]
    from equiforce.units import boltzmann_kj_per_mol

    kT_ns_dof = 1000.0 / boltzmann_kj_per_mol(300.0) / (3 * 96 - 3)  # kJ/mol/ps -> kT/ns/dof at 300 K
    assert math.isclose(rows[1]["blocks"]["10"]["drift_kT_per_ns_per_dof"], 0.5 * kT_ns_dof, rel_tol=0.02)
    assert (tmp_path / "sensitivity.md").read_text().count("\n") == 4


def test_a_replica_with_another_seed_starts_afresh_in_a_shared_work_dir(exported_model, tmp_path):
    """Seed 2 saves in its own folder: it neither resumes seed 1's saved state nor repeats its trajectory."""
    from equiforce.bench import case_dir_name

    path, _ = exported_model
    work = str(tmp_path / "work")
    first = dataclasses.replace(QUICK_NVE, threads=1)
    runs = {}
    for protocol in (first, dataclasses.replace(first, seed=2)):
        with pytest.raises(NVEInterrupted):  # save after the first sample
            run_nve_case("equiforce", "float64", 0.5, 8, path, protocol, work_dir=work, deadline=0.0, progress=False)
        folder = os.path.join(work, case_dir_name("equiforce", "float64", 0.5, 8, protocol.seed))
        runs[protocol.seed] = np.load(os.path.join(folder, "samples.npy"))
    assert sorted(os.listdir(work)) == ["equiforce-float64-0.5fs-8mol", "equiforce-float64-0.5fs-8mol-seed2"]
    assert runs[1].shape == runs[2].shape == (1, 3)
    assert abs(runs[1][0, 2] - runs[2][0, 2]) > 1e-6  # another box and start: another first potential energy


def test_the_ase_overhead_script_times_every_part_and_derives_the_goal_model_time(exported_model, tmp_path):
    from conftest import load_benchmark_script

    module = load_benchmark_script("studies/ase_overhead")
    path, _ = exported_model
    out = tmp_path / "ase.json"
    assert module.main(["--molecules", "8", "--repeats", "1", "--block-steps", "1", "--model", path,
                        "--out", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["n_atoms"] == 24
    assert set(case["ms_per_step"]) == {"bare-torchscript", "torchforce", "ase", "pythonforce", "ase-trivial-model",
                                        "torchforce-trivial-model", "pythonforce-trivial-model", "ase-no-model",
                                        "openmm-no-model"}
    assert all(ms > 0 for ms in case["ms_per_step"].values())
    # The derivation itself, on numbers worked by hand: ASE costs 3 ms, OpenMM 0.3, goal 1.3 -> model <= 8.7 ms.
    derived = module.derived({"bare-torchscript": 10.0, "torchforce": 10.3, "ase": 13.0, "pythonforce": 12.0,
                              "ase-trivial-model": 3.0, "torchforce-trivial-model": 0.3,
                              "pythonforce-trivial-model": 1.6, "ase-no-model": 0.5, "openmm-no-model": 0.1})
    assert math.isclose(derived["model_ms_for_goal"], (3.0 - 1.3 * 0.3) / 0.3)
    model = derived["model_ms_for_goal"]
    assert math.isclose((model + 3.0) / (model + 0.3), 1.3)  # at that model time the ratio is exactly the goal
    assert math.isclose(derived["calculator_glue_ms"], 2.5) and math.isclose(derived["torchforce_glue_ms"], 0.2)
    assert math.isclose(derived["model_ms_for_pythonforce_goal"], (1.6 - 1.3 * 0.3) / 0.3)


def test_the_trivial_models_give_the_harmonic_forces_through_both_engines(exported_model):
    """The ASE-overhead benchmark's stand-in model is really run: forces -x (eV/Å via ASE, kJ/mol/nm via OpenMM)."""
    from ase import Atoms
    from conftest import load_benchmark_script
    from openmm import unit

    from equiforce.bench import WaterCase
    from equiforce.calculator import EquiforceCalculator
    from equiforce.export import load_model
    from equiforce.units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV

    module = load_benchmark_script("studies/ase_overhead")
    path, _ = exported_model
    case = WaterCase(8, load_model(path)[1])
    calculator = EquiforceCalculator(path, precision="float64")
    calculator.module = module.TrivialEnergy.for_calculator()
    atoms = Atoms([a.element.symbol for a in case.topology.atoms()], positions=case.positions_nm * 10.0,
                  cell=case.box_nm * 10.0, pbc=True)
    atoms.calc = calculator
    np.testing.assert_allclose(atoms.get_forces(), -atoms.positions, rtol=1e-12)
    step = module.trivial_torchforce_step(case)
    step(1)
    state = step.context.getState(getForces=True, getPositions=True)
    np.testing.assert_allclose(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
                               -state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), rtol=1e-5, atol=1e-6)
    step = module.trivial_pythonforce_step(case)  # E = sum(x^2)/2 in eV, x in Å: F = -x eV/Å
    step(1)
    state = step.context.getState(getForces=True, getPositions=True)
    np.testing.assert_allclose(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
                               -state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
                               * ANGSTROM_PER_NM ** 2 * KJ_PER_MOL_PER_EV, rtol=1e-4)
