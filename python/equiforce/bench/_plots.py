"""PNG plots of benchmark results (matplotlib, no display needed)."""
from typing import Dict

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ._speed import goal_thresholds  # noqa: E402


def plot_nve(result: Dict, path: str) -> bool:
    """Potential and kinetic energy (left scale) and their total (right scale, magnified), kJ/mol shifted to
    start at 0, against time.

    One panel per run, on a grid: a row for each (atoms, method, dtype), a column for each time step. Returns
    False (and writes nothing) when there is no run yet.
    """
    records = result["records"]
    if not records:
        return False
    rows = sorted({(r["n_atoms"], r["method"] == "classical", r["method"], r["dtype"]) for r in records})
    columns = sorted({r["dt_fs"] for r in records})
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(4.2 * len(columns), 2.4 * len(rows)), squeeze=False)
    for axis in axes.flat:
        axis.set_visible(False)
    for record in records:
        axis = axes[rows.index((record["n_atoms"], record["method"] == "classical", record["method"],
                                record["dtype"])), columns.index(record["dt_fs"])]
        axis.set_visible(True)
        series = record["series"]
        kinetic, potential = series["kinetic"], series["potential"]
        total = [k + p for k, p in zip(kinetic, potential)]
        if total:
            time_ps = np.asarray(series["time_ps"])
            for values, label, colour in ((potential, "potential", "tab:orange"), (kinetic, "kinetic", "tab:green")):
                axis.plot(time_ps, np.asarray(values) - values[0], label=label, lw=0.4, color=colour, alpha=0.5)
            # the total on its own (right-hand) scale, tens of times finer than the exchange between the two:
            # raw samples, their 0.5 ps block means and the least-squares line
            magnified = axis.twinx()
            shifted = np.asarray(total) - total[0]
            magnified.plot(time_ps, shifted, lw=0.3, color="grey", alpha=0.6, label="total (right scale)")
            per_block = max(1, int(round(0.5 / max(time_ps[1] - time_ps[0], 1e-12)))) if len(time_ps) > 1 else 1
            blocks = len(shifted) // per_block
            if blocks >= 2:
                means = shifted[:blocks * per_block].reshape(blocks, per_block).mean(axis=1)
                centres = time_ps[:blocks * per_block].reshape(blocks, per_block).mean(axis=1)
                magnified.plot(centres, means, lw=1.2, color="black", label="total, 0.5 ps means")
            if blocks >= 2 and not record.get("failed"):  # no drift line through a run that blew up
                slope, intercept = np.polyfit(time_ps, shifted, 1)
                magnified.plot(time_ps[[0, -1]], intercept + slope * time_ps[[0, -1]], "--", lw=1.0, color="tab:red",
                               label="total, linear fit")
            magnified.set_ylabel("total ΔE (kJ/mol)", fontsize=8)
            magnified.tick_params(labelsize=7)
        outcome = (f"FAILED: {record['failed']}"[:60] if record.get("failed") else
                   f"{record['drift_kT_per_ns_per_dof']:+.2g}±{record['drift_stderr_kT_per_ns_per_dof']:.1g}"
                   " kT/ns/dof")
        axis.set_title(f"{record['method']} {record['dtype']}, {record['dt_fs']} fs, {record['n_atoms']} atoms\n"
                       f"{outcome}", fontsize=8)
        axis.set_ylabel("ΔE (kJ/mol)", fontsize=8)
        axis.set_xlabel("time (ps)", fontsize=8)
        axis.tick_params(labelsize=7)
    first = next(axis for axis in axes.flat if axis.get_visible())
    handles = [line for a in fig.axes if a.bbox.bounds == first.bbox.bounds for line in a.get_lines()]
    first.legend(handles=handles, fontsize=6, loc="upper left", ncol=2, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_speed(result: Dict, path: str) -> None:
    """Two panels, log-log against atom count. Left: ms/step, one line per method and dtype (dashed: float64).
    Right: each method's time over torchforce's in the same dtype at the same size, so 1 is torchforce and a
    point above it is slower; the goals' thresholds (1.3 for ASE and PythonForce, 1.5 for NequIP, 1/1.05 for
    the bare TorchScript pass; `goal_thresholds`) are dotted lines in the method's colour."""
    fig, (axis, ratio_axis) = plt.subplots(1, 2, figsize=(12.5, 4.8))
    lines: Dict = {}
    for record in result["records"]:
        lines.setdefault((record["method"], record["dtype"]), []).append((record["n_atoms"], record["ms_per_step"]))
    methods = sorted({method for method, _ in lines})
    colours = {method: plt.get_cmap("tab10")(i % 10) for i, method in enumerate(methods)}
    for (method, dtype), points in sorted(lines.items()):  # one colour a method; dashed: float64
        points.sort()
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colours[method],
                  linestyle="--" if dtype == "float64" else "-", label=f"{method} ({dtype})")
        reference = dict(lines.get(("torchforce", dtype), []))
        ratios = [(n, ms / reference[n]) for n, ms in points if n in reference]
        if method != "torchforce" and ratios:
            ratio_axis.plot([p[0] for p in ratios], [p[1] for p in ratios], marker="o", color=colours[method],
                            linestyle="--" if dtype == "float64" else "-")
    for method, threshold in goal_thresholds().items():
        if method in colours:
            ratio_axis.axhline(threshold, color=colours[method], linestyle=":", linewidth=1)
    ratio_axis.axhline(1.0, color="black", linewidth=1)
    for each in (axis, ratio_axis):
        each.set_xscale("log")
        each.set_yscale("log")
        each.set_xlabel("atoms")
    axis.set_ylabel("ms / step")
    ratio_axis.set_ylabel("time / torchforce time (same dtype)")
    ratio_axis.set_title("above 1: slower than torchforce; dotted: goal", fontsize=9)
    ratio_axis.legend(handles=axis.get_lines(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_replicas(combined: Dict, path: str) -> bool:
    """One panel per case with two or more replicas (`combine_replicas`): each replica's slope with its one-run
    error bar (kT/ns/dof) against its seed, the mean as a line with a band of 2 errors of the mean (the replicas'
    scatter), and zero. Returns False (and writes nothing) when no case has two replicas."""
    cases = [c for c in combined["cases"] if c["n_replicas"] >= 2]
    if not cases:
        return False
    columns = min(3, len(cases))
    rows = (len(cases) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.3 * columns, 3.0 * rows), squeeze=False)
    for axis in axes.flat[len(cases):]:
        axis.set_visible(False)
    for axis, case in zip(axes.flat, cases):
        seeds = np.arange(len(case["seeds"]))
        axis.errorbar(seeds, case["drifts_kT_per_ns_per_dof"], yerr=case["one_run_stderrs_kT_per_ns_per_dof"],
                      fmt="o", color="tab:blue", capsize=3, label="one run ± its error (segments)")
        mean, error = case["mean_drift_kT_per_ns_per_dof"], case["mean_stderr_kT_per_ns_per_dof"]
        axis.axhline(mean, color="tab:red", lw=1.0, label="mean ± 2 errors of the mean")
        axis.axhspan(mean - 2 * error, mean + 2 * error, color="tab:red", alpha=0.15)
        axis.axhline(0.0, color="black", lw=0.6)
        axis.set_xticks(seeds)
        axis.set_xticklabels([str(s) for s in case["seeds"]], fontsize=7)
        axis.set_xlabel("seed", fontsize=8)
        axis.set_ylabel("drift (kT/ns/dof)", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.set_title(f"{case['method']} {case['dtype']}, {case['dt_fs']} fs, {case['n_atoms']} atoms\n"
                       f"mean {mean:+.2g} ± {error:.1g} ({case['verdict']}), scatter/one-run error "
                       f"{case['scatter_over_one_run_stderr']:.2f}", fontsize=8)
    axes.flat[0].legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
