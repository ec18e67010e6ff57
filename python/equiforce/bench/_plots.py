"""PNG plots of benchmark results (matplotlib, no display needed)."""
from typing import Dict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_nve(result: Dict, path: str) -> None:
    """Total, potential and kinetic energy (kJ/mol, shifted to start at 0) against time, one panel per run."""
    records = result["records"]
    fig, axes = plt.subplots(len(records), 1, figsize=(7, 2.2 * len(records)), squeeze=False)
    for axis, record in zip(axes[:, 0], records):
        series = record["series"]
        kinetic, potential = series["kinetic"], series["potential"]
        total = [k + p for k, p in zip(kinetic, potential)]
        if not total:
            continue
        for values, label, colour in ((potential, "potential", "tab:orange"), (kinetic, "kinetic", "tab:green"),
                                      (total, "total", "black")):  # total last: on top of the two it sums
            axis.plot(series["time_ps"], [v - values[0] for v in values], label=label, lw=0.8, color=colour)
        outcome = (f"FAILED: {record['failed']}" if record.get("failed") else
                   f"drift {record['drift_kT_per_ns_per_dof']:+.2g}±{record['drift_stderr_kT_per_ns_per_dof']:.1g}"
                   " kT/ns/dof")
        axis.set_title(f"{record['method']} {record['dtype']} dt={record['dt_fs']} fs, {record['n_atoms']} atoms: "
                       f"{outcome}", fontsize=8)
        axis.set_ylabel("ΔE (kJ/mol)", fontsize=8)
    axes[-1, 0].set_xlabel("time (ps)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_speed(result: Dict, path: str) -> None:
    """ms/step against atom count, one line per method and dtype (log-log)."""
    fig, axis = plt.subplots(figsize=(6, 4))
    lines: Dict = {}
    for record in result["records"]:
        lines.setdefault((record["method"], record["dtype"]), []).append((record["n_atoms"], record["ms_per_step"]))
    methods = sorted({method for method, _ in lines})
    colours = {method: plt.get_cmap("tab10")(i % 10) for i, method in enumerate(methods)}
    for (method, dtype), points in sorted(lines.items()):  # one colour a method; dashed: float64
        points.sort()
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colours[method],
                  linestyle="--" if dtype == "float64" else "-", label=f"{method} ({dtype})")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("atoms")
    axis.set_ylabel("ms / step")
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
