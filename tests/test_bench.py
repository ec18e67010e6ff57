"""The benchmark pipelines produce well-formed records (checked for shape, never for speed)."""
import json
import math

from equiforce.bench import nve_table, run_nve, run_speed, speed_table

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
            record["ns_per_day"], 86400e3 / record["ms_per_step"] * 0.5e-6, rel_tol=1e-9)
    assert "torchforce" in speed_table(result)


def test_quick_nve_benchmark_writes_well_formed_records(exported_model, tmp_path):
    path, _ = exported_model
    result = run_nve([8], [0.5], duration_ps=0.025, equilibration_ps=0.002, dtypes=["float64"], sample_every=2,
                     model_file=path, out=str(tmp_path / "nve.json"), minimize_iterations=5, progress=False)
    assert [(r["method"], r["dtype"]) for r in result["records"]] == [("equiforce", "float64"),
                                                                      ("classical", "mixed")]
    for record in result["records"]:
        assert NVE_KEYS <= set(record)
        assert len(record["series"]["time_ps"]) == 26
        assert all(math.isfinite(record[k]) for k in NVE_KEYS - {"method", "dtype"})
    assert "drift ratio" in nve_table(result)
