"""Independent NVE replicas of one case: is a fitted slope drift, or the wander of one trajectory?

One NVE run gives a slope and a standard error (`equiforce.analysis.Drift`: from the slopes of 10 segments; older
results used 10 block means, whose errors were several times too small where the total energy wanders slowly).
Runs of the same case started from other seeds (another box, another classical start, other NVT noise:
`NVEProtocol.seed`) are independent, so the scatter of their slopes is an error bar that assumes nothing about
correlations within a run, and it checks the one-run error bars.

Every record is first brought to the current estimator from its saved series (`reanalyse_record`). For each case
(method, dtype, dt, atoms) with two or more finished replicas, `combine_replicas` gives:

- ``mean_drift_kT_per_ns_per_dof`` and ``mean_stderr_kT_per_ns_per_dof``: the mean slope over the replicas and
  its standard error from their scatter (sample standard deviation / sqrt(n));
- ``z``: |mean| / that error, and ``verdict``: "drift" if z > 2 (the goal's "2 standard errors"), else "none".
  With n replicas the error itself has n - 1 degrees of freedom (with 4, it is uncertain by about 40 %), so
  z > 2 happens by chance more often than 5 % of the time (14 % with 4 replicas). ``t_95`` is Student's t at
  95 % for n - 1 degrees of freedom (3.18 with 4 replicas) and ``drift_at_95`` says whether z exceeds it;
- ``scatter_over_one_run_stderr``: the replicas' standard deviation over the root-mean-square of their own
  one-run errors (``one_run_stderrs_kT_per_ns_per_dof``). Near 1 the one-run error bars are honest; well above 1
  they are too small (slow wander), and a one-run verdict of "drift" means little. ``scatter_over_block_stderr``
  is the same for the older block-means errors (``block_stderrs_kT_per_ns_per_dof``);
- ``weighted_mean_*``: the inverse-variance mean of the slopes with their one-run errors, for comparison (it
  trusts those errors).

``calibration`` pools the cases: the root of the summed squared deviations of the replicas from their case means
over the summed one-run variances (each case's mean square error), per degree of freedom (sum of n - 1), for
the one-run and for the block-means errors. It is the test of the one-run estimator: near 1, a single run's
error bar can be trusted.
"""
from typing import Dict, List, Tuple

import numpy as np
from scipy import stats

from ..analysis import drift_verdict
from ._nve import reanalyse_record

#: Protocol fields that may differ between replicas of one case.
REPLICA_FIELDS = {"seed"}


def _case(record: Dict) -> Tuple:
    return record["method"], record["dtype"], record["dt_fs"], record["n_atoms"]


def _same_protocol(results: List[Dict], sources: List[str]) -> None:
    """Replicas must share model and protocol, seed aside; refuse (naming the file) otherwise."""
    reference = {k: v for k, v in results[0]["protocol"].items() if k not in REPLICA_FIELDS}
    for result, source in zip(results[1:], sources[1:]):
        protocol = {k: v for k, v in result["protocol"].items() if k not in REPLICA_FIELDS}
        if protocol != reference:
            differing = sorted(k for k in set(protocol) | set(reference) if protocol.get(k) != reference.get(k))
            raise ValueError(f"{source}: its protocol differs from {sources[0]}'s in {', '.join(differing)}; "
                             f"replicas may differ only in {', '.join(sorted(REPLICA_FIELDS))}")


def combine_replicas(results: List[Dict], sources: List[str]) -> Dict:
    """Combine NVE results (``equiforce bench nve`` JSON, one per seed) case by case.

    ``sources``: a name for each result (its file), used in errors and in the output. A record of another
    model file (its ``model_sha256``) than the first result's case is refused. Failed runs are counted, not
    averaged. Returns ``{"protocol", "sources", "cases": [...]}`` without the energy series.
    """
    if len(results) != len(sources) or not results:
        raise ValueError("combine_replicas needs one source name per result, and at least one result")
    _same_protocol(results, sources)
    grouped: Dict[Tuple, List[Tuple[int, str, Dict]]] = {}
    for result, source in zip(results, sources):
        for record in result["records"]:
            grouped.setdefault(_case(record), []).append((result["protocol"]["seed"], source, record))
    cases = []
    for key in sorted(grouped, key=lambda k: (k[3], k[0] == "classical", k[1], k[2])):
        runs = sorted(grouped[key], key=lambda run: run[0])
        seeds = [seed for seed, _, _ in runs]
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"{key[0]} {key[1]} {key[2]} fs {key[3]} atoms: seed {repeated[0]} appears in several "
                             f"files ({', '.join(src for s, src, _ in runs if s == repeated[0])}): they are the same "
                             "trajectory, not replicas")
        models = {record.get("model_sha256") for _, _, record in runs}
        if len(models) > 1:
            raise ValueError(f"{key[0]} {key[1]} {key[2]} fs {key[3]} atoms: the replicas ran different model files "
                             f"({', '.join(sorted(str(m)[:12] for m in models))}); combine runs of one file")
        finished = [(seed, reanalyse_record(record)) for seed, _, record in runs if not record.get("failed")]
        case = {"method": key[0], "dtype": key[1], "dt_fs": key[2], "n_atoms": key[3],
                "seeds": [seed for seed, _ in finished],
                "failed_seeds": [seed for seed, _, record in runs if record.get("failed")],
                "drifts_kT_per_ns_per_dof": [r["drift_kT_per_ns_per_dof"] for _, r in finished],
                "one_run_stderrs_kT_per_ns_per_dof": [r["drift_stderr_kT_per_ns_per_dof"] for _, r in finished],
                "block_stderrs_kT_per_ns_per_dof": [r["block_means_stderr_kT_per_ns_per_dof"] for _, r in finished],
                "drift_ratios": [r["drift_ratio"] for _, r in finished],
                "n_replicas": len(finished)}
        if len(finished) >= 2:
            drifts = np.array(case["drifts_kT_per_ns_per_dof"])  # [n]
            errors = np.array(case["one_run_stderrs_kT_per_ns_per_dof"])  # [n]
            block_errors = np.array(case["block_stderrs_kT_per_ns_per_dof"])  # [n]
            scatter = float(drifts.std(ddof=1))
            mean_error = scatter / np.sqrt(len(drifts))
            weights = 1.0 / errors ** 2
            case.update({
                "mean_drift_kT_per_ns_per_dof": float(drifts.mean()),
                "mean_stderr_kT_per_ns_per_dof": float(mean_error),
                "z": float(abs(drifts.mean()) / mean_error) if mean_error > 0 else float("inf"),
                "scatter_kT_per_ns_per_dof": scatter,
                "scatter_over_one_run_stderr": float(scatter / np.sqrt(np.mean(errors ** 2))),
                "scatter_over_block_stderr": float(scatter / np.sqrt(np.mean(block_errors ** 2))),
                "weighted_mean_drift_kT_per_ns_per_dof": float((weights * drifts).sum() / weights.sum()),
                "weighted_mean_stderr_kT_per_ns_per_dof": float(1.0 / np.sqrt(weights.sum())),
                "mean_drift_ratio": float(np.mean(case["drift_ratios"])),
            })
            case["verdict"] = drift_verdict(case["z"])
            case["t_95"] = float(stats.t.ppf(0.975, len(drifts) - 1))
            case["drift_at_95"] = bool(case["z"] > case["t_95"])
        cases.append(case)
    return {"model": results[0].get("model"), "protocol": {k: v for k, v in results[0]["protocol"].items()
                                                           if k not in REPLICA_FIELDS},
            "sources": sources, "cases": cases, "calibration": _calibration(cases)}


def _calibration(cases: List[Dict]) -> Dict:
    """Pooled scatter of the replicas over their one-run (and block-means) errors; see the module's docstring."""
    judged = [c for c in cases if c["n_replicas"] >= 2]
    dof = sum(c["n_replicas"] - 1 for c in judged)
    if not dof:
        return {"degrees_of_freedom": 0, "cases": 0}
    pooled = {}
    for name, key in (("one_run", "one_run_stderrs_kT_per_ns_per_dof"), ("block", "block_stderrs_kT_per_ns_per_dof")):
        chi2 = 0.0
        for c in judged:
            drifts = np.array(c["drifts_kT_per_ns_per_dof"])  # [n]
            chi2 += float(np.sum((drifts - drifts.mean()) ** 2) / np.mean(np.array(c[key]) ** 2))
        pooled[f"pooled_scatter_over_{name}_stderr"] = float(np.sqrt(chi2 / dof))
    # the ratio's own uncertainty: sqrt(chi2 / dof) has a relative standard deviation of about 1 / sqrt(2 dof)
    return {"degrees_of_freedom": dof, "cases": len(judged), **pooled,
            "relative_uncertainty": float(1.0 / np.sqrt(2.0 * dof))}


def replicas_table(combined: Dict) -> str:
    """Markdown table of `combine_replicas` output (cases with fewer than two replicas are listed, not judged)."""
    lines = ["| method | dtype | dt (fs) | atoms | seeds | slopes (kT/ns/dof) | mean ± error of mean | z | verdict (z > 2) | "
             "z > t(95 %) | scatter / one-run error | scatter / block-means error | weighted mean ± error |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in combined["cases"]:
        slopes = ", ".join(f"{d:+.4f}" for d in c["drifts_kT_per_ns_per_dof"])
        failed = f" (failed: {', '.join(map(str, c['failed_seeds']))})" if c["failed_seeds"] else ""
        seeds = ", ".join(map(str, c["seeds"])) + failed
        if c["n_replicas"] < 2:
            lines.append(f"| {c['method']} | {c['dtype']} | {c['dt_fs']} | {c['n_atoms']} | {seeds} | {slopes} | "
                         "one run: not combined | | | | | | |")
            continue
        lines.append(f"| {c['method']} | {c['dtype']} | {c['dt_fs']} | {c['n_atoms']} | {seeds} | {slopes} | "
                     f"{c['mean_drift_kT_per_ns_per_dof']:+.4f} ± {c['mean_stderr_kT_per_ns_per_dof']:.4f} | "
                     f"{c['z']:.1f} | {c['verdict']} | {'yes' if c['drift_at_95'] else 'no'} (t {c['t_95']:.2f}) | "
                     f"{c['scatter_over_one_run_stderr']:.2f} | {c['scatter_over_block_stderr']:.2f} | "
                     f"{c['weighted_mean_drift_kT_per_ns_per_dof']:+.4f} ± "
                     f"{c['weighted_mean_stderr_kT_per_ns_per_dof']:.4f} |")
    calibration = combined.get("calibration") or {}
    if calibration.get("degrees_of_freedom"):
        lines.append("")
        lines.append(f"Pooled over {calibration['cases']} cases ({calibration['degrees_of_freedom']} degrees of "
                     f"freedom, ratio uncertain by about {100 * calibration['relative_uncertainty']:.0f} %): "
                     f"replica scatter / one-run error {calibration['pooled_scatter_over_one_run_stderr']:.2f}, "
                     f"/ block-means error {calibration['pooled_scatter_over_block_stderr']:.2f}.")
    return "\n".join(lines)
