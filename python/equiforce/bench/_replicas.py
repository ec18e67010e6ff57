"""Independent NVE replicas of one case: is a fitted slope drift, or the wander of one trajectory?

One NVE run gives a slope and a standard error from 10 block means (`equiforce.analysis.energy_drift`). Where
the total energy wanders on time scales near a block's length, that error is itself uncertain, and a slope a few
errors from zero may still be chance. Runs of the same case started from other seeds (another box, another
classical start, other NVT noise: `NVEProtocol.seed`) are independent, so the scatter of their slopes is an
error bar that assumes nothing about correlations within a run.

For each case (method, dtype, dt, atoms) with two or more finished replicas, `combine_replicas` gives:

- ``mean_drift_kT_per_ns_per_dof`` and ``mean_stderr_kT_per_ns_per_dof``: the mean slope over the replicas and
  its standard error from their scatter (sample standard deviation / sqrt(n));
- ``z``: |mean| / that error, and ``verdict``: "drift" if z > 2 (the goal's "2 standard errors"), else "none".
  With n replicas the error itself has n - 1 degrees of freedom (with 4, it is uncertain by about 40 %), so
  z > 2 happens by chance more often than 5 % of the time (14 % with 4 replicas). ``t_95`` is Student's t at
  95 % for n - 1 degrees of freedom (3.18 with 4 replicas) and ``drift_at_95`` says whether z exceeds it;
- ``scatter_over_block_stderr``: the replicas' standard deviation over the root-mean-square of their own block
  errors. Near 1 the one-run error bars are honest; well above 1 they are too small (slow wander), and a
  one-run verdict of "drift" at z of 2-5 means little.
- ``weighted_mean_*``: the inverse-variance mean of the slopes with their block errors, for comparison (it
  trusts the block errors).
"""
from typing import Dict, List, Tuple

import numpy as np
from scipy import stats

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
        finished = [(seed, record) for seed, _, record in runs if not record.get("failed")]
        case = {"method": key[0], "dtype": key[1], "dt_fs": key[2], "n_atoms": key[3],
                "seeds": [seed for seed, _ in finished],
                "failed_seeds": [seed for seed, _, record in runs if record.get("failed")],
                "drifts_kT_per_ns_per_dof": [r["drift_kT_per_ns_per_dof"] for _, r in finished],
                "block_stderrs_kT_per_ns_per_dof": [r["drift_stderr_kT_per_ns_per_dof"] for _, r in finished],
                "drift_ratios": [r["drift_ratio"] for _, r in finished],
                "n_replicas": len(finished)}
        if len(finished) >= 2:
            drifts = np.array(case["drifts_kT_per_ns_per_dof"])  # [n]
            errors = np.array(case["block_stderrs_kT_per_ns_per_dof"])  # [n]
            scatter = float(drifts.std(ddof=1))
            mean_error = scatter / np.sqrt(len(drifts))
            weights = 1.0 / errors ** 2
            case.update({
                "mean_drift_kT_per_ns_per_dof": float(drifts.mean()),
                "mean_stderr_kT_per_ns_per_dof": float(mean_error),
                "z": float(abs(drifts.mean()) / mean_error) if mean_error > 0 else float("inf"),
                "scatter_kT_per_ns_per_dof": scatter,
                "scatter_over_block_stderr": float(scatter / np.sqrt(np.mean(errors ** 2))),
                "weighted_mean_drift_kT_per_ns_per_dof": float((weights * drifts).sum() / weights.sum()),
                "weighted_mean_stderr_kT_per_ns_per_dof": float(1.0 / np.sqrt(weights.sum())),
                "mean_drift_ratio": float(np.mean(case["drift_ratios"])),
            })
            case["verdict"] = "drift" if case["z"] > 2.0 else "none"
            case["t_95"] = float(stats.t.ppf(0.975, len(drifts) - 1))
            case["drift_at_95"] = bool(case["z"] > case["t_95"])
        cases.append(case)
    return {"model": results[0].get("model"), "protocol": {k: v for k, v in results[0]["protocol"].items()
                                                           if k not in REPLICA_FIELDS},
            "sources": sources, "cases": cases}


def replicas_table(combined: Dict) -> str:
    """Markdown table of `combine_replicas` output (cases with fewer than two replicas are listed, not judged)."""
    lines = ["| method | dtype | dt (fs) | atoms | seeds | slopes (kT/ns/dof) | mean ± error of mean | z | verdict (z > 2) | "
             "z > t(95 %) | scatter / block error | weighted mean ± error |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in combined["cases"]:
        slopes = ", ".join(f"{d:+.4f}" for d in c["drifts_kT_per_ns_per_dof"])
        failed = f" (failed: {', '.join(map(str, c['failed_seeds']))})" if c["failed_seeds"] else ""
        seeds = ", ".join(map(str, c["seeds"])) + failed
        if c["n_replicas"] < 2:
            lines.append(f"| {c['method']} | {c['dtype']} | {c['dt_fs']} | {c['n_atoms']} | {seeds} | {slopes} | "
                         "one run: not combined | | | | | |")
            continue
        lines.append(f"| {c['method']} | {c['dtype']} | {c['dt_fs']} | {c['n_atoms']} | {seeds} | {slopes} | "
                     f"{c['mean_drift_kT_per_ns_per_dof']:+.4f} ± {c['mean_stderr_kT_per_ns_per_dof']:.4f} | "
                     f"{c['z']:.1f} | {c['verdict']} | {'yes' if c['drift_at_95'] else 'no'} (t {c['t_95']:.2f}) | "
                     f"{c['scatter_over_block_stderr']:.2f} | "
                     f"{c['weighted_mean_drift_kT_per_ns_per_dof']:+.4f} ± "
                     f"{c['weighted_mean_stderr_kT_per_ns_per_dof']:.4f} |")
    return "\n".join(lines)
