"""Combining independent NVE replicas: the error of the mean comes from their scatter, and bad input is refused."""
import dataclasses
import json
import math
import os

import numpy as np
import pytest

from conftest import load_benchmark_script
from equiforce.analysis import DRIFT_STDERR_METHOD
from equiforce.bench import NVEProtocol, combine_replicas, reanalyse_record, replicas_table

PROTOCOL = dataclasses.asdict(NVEProtocol())


def _result(seed, drift, stderr, failed=None, sha="abc", n_atoms=384, dt_fs=0.5, block_stderr=None):
    """A result of one record already analysed with the current estimator (its series is a placeholder)."""
    record = {"method": "equiforce", "dtype": "float64", "dt_fs": dt_fs, "n_atoms": n_atoms, "failed": failed,
              "model_sha256": sha, "series": {"time_ps": [0.0], "kinetic": [1.0], "potential": [-1.0]}}
    if failed is None:
        record.update({"drift_kT_per_ns_per_dof": drift, "drift_stderr_kT_per_ns_per_dof": stderr,
                       "drift_stderr_method": DRIFT_STDERR_METHOD,
                       "block_means_stderr_kT_per_ns_per_dof": stderr if block_stderr is None else block_stderr,
                       "drift_ratio": abs(drift) / 10.0})
    return {"model": "m.pt", "protocol": dict(PROTOCOL, seed=seed), "records": [record]}


def _combine(drifts, stderrs):
    results = [_result(seed, d, e) for seed, (d, e) in enumerate(zip(drifts, stderrs), start=1)]
    return combine_replicas(results, [f"seed{s}.json" for s in range(1, len(results) + 1)])["cases"][0]


def test_the_mean_and_its_error_come_from_the_scatter_of_the_replicas():
    case = _combine([0.004, 0.006, -0.002, 0.008], [0.001, 0.001, 0.001, 0.001])
    assert case["seeds"] == [1, 2, 3, 4] and case["n_replicas"] == 4
    assert math.isclose(case["mean_drift_kT_per_ns_per_dof"], 0.004, abs_tol=1e-15)
    scatter = math.sqrt(((0.0) ** 2 + 0.002 ** 2 + 0.006 ** 2 + 0.004 ** 2) / 3)  # about the mean 0.004
    assert math.isclose(case["scatter_kT_per_ns_per_dof"], scatter, rel_tol=1e-12)
    assert math.isclose(case["mean_stderr_kT_per_ns_per_dof"], scatter / 2.0, rel_tol=1e-12)
    assert math.isclose(case["scatter_over_one_run_stderr"], scatter / 0.001, rel_tol=1e-12)  # errors too small
    assert math.isclose(case["scatter_over_block_stderr"], scatter / 0.001, rel_tol=1e-12)
    # each of three runs alone is 4-8 block errors from zero, but their scatter puts the mean 1.85 errors from it
    assert math.isclose(case["z"], 0.004 / (scatter / 2.0), rel_tol=1e-12) and case["verdict"] == "none"
    assert math.isclose(case["weighted_mean_drift_kT_per_ns_per_dof"], 0.004, rel_tol=1e-12)  # equal weights
    assert math.isclose(case["weighted_mean_stderr_kT_per_ns_per_dof"], 0.0005, rel_tol=1e-12)


def test_honest_one_run_errors_give_a_scatter_ratio_near_one_and_the_mean_the_true_drift():
    rng = np.random.default_rng(7)
    error = 0.002
    for true_drift in (0.0, 0.01):
        drifts = true_drift + rng.normal(0.0, error, 400)
        case = _combine(drifts.tolist(), [error] * 400)
        assert abs(case["scatter_over_one_run_stderr"] - 1.0) < 0.1  # 400 replicas: the ratio is known to ~4 %
        assert abs(case["mean_drift_kT_per_ns_per_dof"] - true_drift) < 4 * error / math.sqrt(400)
    assert case["verdict"] == "drift" and case["drift_at_95"] and case["z"] > 20


def test_with_four_replicas_and_no_drift_two_errors_flag_14_percent_and_students_t_5_percent():
    """The error of the mean from 4 replicas has 3 degrees of freedom: z > 2 by chance in P(|t_3| > 2) = 14 % of
    cases, z > t_95 in 5 %. Measured over 2000 sets of 4 drift-free replicas (binomial error under 1 %)."""
    rng = np.random.default_rng(11)
    cases = [_combine(rng.normal(0.0, 0.002, 4).tolist(), [0.002] * 4) for _ in range(2000)]
    assert cases[0]["t_95"] == pytest.approx(3.182, abs=1e-3)
    assert abs(np.mean([c["verdict"] == "drift" for c in cases]) - 0.139) < 0.03
    assert abs(np.mean([c["drift_at_95"] for c in cases]) - 0.05) < 0.02


def test_failed_runs_are_counted_not_averaged_and_one_run_is_not_judged():
    results = [_result(1, 0.001, 0.001), _result(2, None, None, failed="runaway at 3 ps"), _result(3, 0.003, 0.001),
               _result(4, 0.002, 0.001, n_atoms=96)]
    combined = combine_replicas(results, ["a", "b", "c", "d"])
    big, small = sorted(combined["cases"], key=lambda c: -c["n_atoms"])
    assert big["seeds"] == [1, 3] and big["failed_seeds"] == [2] and big["n_replicas"] == 2
    assert math.isclose(big["mean_drift_kT_per_ns_per_dof"], 0.002, rel_tol=1e-12)
    assert small["n_replicas"] == 1 and "verdict" not in small
    table = replicas_table(combined)
    assert "one run: not combined" in table and "(failed: 2)" in table
    assert "seed" not in combined["protocol"] and "series" not in json.dumps(combined)


def test_replicas_of_another_protocol_seed_or_model_are_refused():
    other = _result(2, 0.001, 0.001)
    other["protocol"]["duration_ps"] = 10.0
    with pytest.raises(ValueError, match=r"b\.json: its protocol differs .* in duration_ps"):
        combine_replicas([_result(1, 0.0, 0.001), other], ["a.json", "b.json"])
    with pytest.raises(ValueError, match=r"seed 1 appears in several files \(a\.json, b\.json\)"):
        combine_replicas([_result(1, 0.0, 0.001), _result(1, 0.0, 0.001)], ["a.json", "b.json"])
    # one seed in two files is fine for different cases (another box size here)
    assert len(combine_replicas([_result(1, 0.0, 0.001), _result(1, 0.0, 0.001, n_atoms=96)], ["a", "b"])["cases"]) == 2
    with pytest.raises(ValueError, match="different model files"):
        combine_replicas([_result(1, 0.0, 0.001), _result(2, 0.0, 0.001, sha="def")], ["a.json", "b.json"])


def test_the_replicas_script_writes_table_json_and_plot(tmp_path):
    module = load_benchmark_script("nve_replicas")
    files = []
    for seed, drift in ((1, 0.001), (2, -0.002), (3, 0.0005)):
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(_result(seed, drift, 0.001)))
        files.append(str(path))
    stem = str(tmp_path / "replicas")
    classical = _result(1, 0.003, 0.001)
    classical["records"].append(dict(classical["records"][0], method="classical", dtype="mixed",
                                     drift_kT_per_ns_per_dof=-0.004))
    (tmp_path / "reference.json").write_text(json.dumps(classical))  # only its classical record is taken
    assert module.main(files + ["--out", stem, "--classical", str(tmp_path / "reference.json")]) == 0
    combined = json.loads(open(stem + ".json").read())
    assert combined["cases"][0]["seeds"] == [1, 2, 3] and combined["cases"][0]["verdict"] == "none"
    assert combined["cases"][1]["method"] == "classical" and combined["cases"][1]["n_replicas"] == 1
    table = open(stem + ".md").read()
    assert table.count("\n") == 6 and "Pooled over 1 cases (2 degrees of freedom" in table
    assert os.path.getsize(stem + ".png") > 0


def _old_style_record(seed):
    """A record as `bench nve` wrote it before ``drift_stderr_method``: the error from 10 block means."""
    from equiforce.analysis import block_means_stderr
    from equiforce.bench import NVE_TEMPERATURE_K
    from equiforce.units import boltzmann_kj_per_mol

    rng = np.random.default_rng(seed)
    time_ps = np.linspace(0.0, 20.0, 2001)  # [n_samples]
    kinetic = 1400.0 + rng.normal(0.0, 30.0, len(time_ps))
    total = -5000.0 + np.concatenate([[0.0], np.cumsum(rng.normal(0.0, 0.05, len(time_ps) - 1))])
    n_atoms = 384
    per_kT_ns_dof = 1000.0 / boltzmann_kj_per_mol(NVE_TEMPERATURE_K) / (3 * n_atoms - 3)
    return {"method": "equiforce", "dtype": "float64", "dt_fs": 0.5, "n_atoms": n_atoms, "failed": None,
            "model_sha256": "abc", "drift_ratio": 0.0, "duration_ps": 20.0, "fluctuation_kJ_per_mol": 0.1,
            "drift_meV_per_atom_per_ps": 0.0,
            "drift_kT_per_ns_per_dof": np.polyfit(time_ps, total, 1)[0] * per_kT_ns_dof,
            "drift_stderr_kT_per_ns_per_dof": block_means_stderr(time_ps, total) * per_kT_ns_dof,
            "series": {"time_ps": time_ps.tolist(), "kinetic": kinetic.tolist(),
                       "potential": (total - kinetic).tolist()}}


def test_older_records_are_reanalysed_from_their_series_and_a_foreign_series_is_refused():
    old = _old_style_record(1)
    new = reanalyse_record(old)
    assert new["drift_stderr_method"] == DRIFT_STDERR_METHOD and "drift_stderr_method" not in old  # a copy
    assert new["block_means_stderr_kT_per_ns_per_dof"] == pytest.approx(old["drift_stderr_kT_per_ns_per_dof"],
                                                                        rel=1e-9)
    assert new["drift_kT_per_ns_per_dof"] == pytest.approx(old["drift_kT_per_ns_per_dof"], rel=1e-9)
    assert new["drift_stderr_kT_per_ns_per_dof"] > 1.5 * old["drift_stderr_kT_per_ns_per_dof"]  # a random walk
    assert reanalyse_record(new) == new
    foreign = dict(old, drift_stderr_kT_per_ns_per_dof=2 * old["drift_stderr_kT_per_ns_per_dof"])
    with pytest.raises(ValueError, match=r"equiforce float64 0\.5 fs 384 atoms: its stored "
                                         r"drift_stderr_kT_per_ns_per_dof .* does not belong"):
        reanalyse_record(foreign)
    results = [{"model": "m.pt", "protocol": dict(PROTOCOL, seed=s), "records": [_old_style_record(s)]}
               for s in (1, 2, 3)]
    case = combine_replicas(results, ["a", "b", "c"])["cases"][0]
    assert case["block_stderrs_kT_per_ns_per_dof"] == pytest.approx(
        [r["records"][0]["drift_stderr_kT_per_ns_per_dof"] for r in results], rel=1e-9)
    assert all(o > b for o, b in zip(case["one_run_stderrs_kT_per_ns_per_dof"], case["block_stderrs_kT_per_ns_per_dof"]))


def test_the_reanalysis_script_rewrites_a_result_in_place_and_reports_both_verdicts(tmp_path):
    module = load_benchmark_script("studies/nve_reanalyse")
    old = _old_style_record(4)
    failed = {"method": "classical", "dtype": "mixed", "dt_fs": 1.0, "n_atoms": 96, "failed": "runaway at 2 ps",
              "duration_ps": 20.0,
              "series": {"time_ps": [0.0], "kinetic": [1.0], "potential": [-1.0]}}
    path = tmp_path / "nve.json"
    path.write_text(json.dumps({"model": "m.pt", "protocol": dict(PROTOCOL, seed=1), "records": [old, failed]}))
    assert module.main([str(path), "--out", str(tmp_path / "report")]) == 0
    rewritten = json.loads(path.read_text())["records"]
    assert rewritten[0]["drift_stderr_method"] == DRIFT_STDERR_METHOD and rewritten[1] == failed
    assert rewritten[0]["block_means_stderr_kT_per_ns_per_dof"] == pytest.approx(old["drift_stderr_kT_per_ns_per_dof"])
    (row,) = json.loads((tmp_path / "report.json").read_text())["rows"]
    assert row["z"] == pytest.approx(abs(old["drift_kT_per_ns_per_dof"]) / rewritten[0]["drift_stderr_kT_per_ns_per_dof"])
    assert row["z_block_means"] > row["z"]
    assert "1 runs:" in (tmp_path / "report.md").read_text() and (tmp_path / "nve.md").exists()
