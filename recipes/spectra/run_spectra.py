#!/usr/bin/env python
"""IR and Raman spectra of the water monomer from NVE MD with the trained model, against harmonic frequencies.

1. Harmonic frequencies (finite-difference Hessian, ase.vibrations, ±0.01 Å) at the optimised geometry of
   GFN2-xTB itself (tblite) and of the trained energy model (equiforce.calculator.EquiforceCalculator, float64).
2. ``equiforce.spectra.md_spectra``: independent trajectories in OpenMM (Reference platform, open boundaries),
   each thermalised at 300 K (Langevin, 10/ps) and continued in NVE (velocity Verlet) with the overall rotation
   removed; frames every 2 fs read with mdtraj; dipoles and polarizabilities from the property model; IR and
   isotropic / anisotropic Raman spectra (Hann window, harmonic quantum correction).
3. Peak positions: bend in 1200-1900 cm⁻¹, stretches in 3300-3900 cm⁻¹. The symmetric and antisymmetric stretches
   are closer than the resolution, so the stretch band is assigned by symmetry: the isotropic Raman band is the
   symmetric stretch alone (ν3, B2, has no isotropic Raman intensity), the IR band is dominated by the
   antisymmetric stretch (its IR intensity is larger for water).

Writes benchmarks/results/spectra.{json,md,png}; trajectories (resumable) in runs/spectra/md/.

Usage (from the repository root):
    OMP_NUM_THREADS=1 python recipes/spectra/run_spectra.py
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import time
from pathlib import Path

import numpy as np

from equiforce.spectra import NVESettings, harmonic_frequencies, ir_spectrum, peak_position, raman_spectra
from equiforce.spectra import md_spectra, peaks, save_spectra

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "recipes" / "spectra" / "models"
RESULTS = ROOT / "benchmarks" / "results"
WINDOWS_CM = {"bend": (1200.0, 1900.0), "stretch": (3300.0, 3900.0)}
MODES = [  # name, symmetry (C2v), harmonic index, window, which MD spectra carry the mode
    ("ν2 bend", "A1", 0, "bend", ("ir", "raman_iso", "raman_aniso")),
    ("ν1 symmetric stretch", "A1", 1, "stretch", ("raman_iso", "raman_aniso")),
    ("ν3 antisymmetric stretch", "B2", 2, "stretch", ("ir", "raman_aniso")),
]
NOTES = {  # why a cell of the table is empty
    ("ν1 symmetric stretch", "ir"): "under ν3",
    ("ν3 antisymmetric stretch", "raman_iso"): "0 by symmetry",
}


def harmonic(log):
    from ase.build import molecule
    from tblite.ase import TBLite

    from equiforce.calculator import EquiforceCalculator

    start = time.time()
    gfn2, gfn2_geometry = harmonic_frequencies(molecule("H2O"), TBLite(method="GFN2-xTB", accuracy=0.01,
                                                                       verbosity=0))
    model, model_geometry = harmonic_frequencies(
        molecule("H2O"), EquiforceCalculator(str(MODELS / "water_monomer_energy.pt"), precision="float64"))
    log(f"harmonic (cm^-1): GFN2-xTB {np.round(gfn2, 1).tolist()}, model {np.round(model, 1).tolist()} "
        f"({time.time() - start:.1f} s)")
    geometry = {
        name: {"r_OH_A": [float(g.get_distance(0, 1)), float(g.get_distance(0, 2))],
               "angle_HOH_deg": float(g.get_angle(1, 0, 2))}
        for name, g in (("gfn2", gfn2_geometry), ("model", model_geometry))
    }
    return gfn2, model, gfn2_geometry, geometry


def table(rows, resolution, timestep_fs):
    lines = [
        "| mode | symmetry | GFN2-xTB harmonic (cm⁻¹) | model harmonic (cm⁻¹) | MD IR peak (cm⁻¹) "
        "| MD Raman iso peak (cm⁻¹) | MD Raman aniso peak (cm⁻¹) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [f"{row[k]['peak']:.1f} ({row[k]['centroid']:.1f})" if isinstance(row[k], dict) else row[k]
                 for k in ("ir", "raman_iso", "raman_aniso")]
        lines.append(f"| {row['mode']} | {row['symmetry']} | {row['gfn2_harmonic']:.1f} | "
                     f"{row['model_harmonic']:.1f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("MD cells: highest point of the band (its intensity-weighted centroid in brackets); windows "
                 f"{WINDOWS_CM['bend'][0]:.0f}-{WINDOWS_CM['bend'][1]:.0f} and "
                 f"{WINDOWS_CM['stretch'][0]:.0f}-{WINDOWS_CM['stretch'][1]:.0f} cm⁻¹.")
    lines.append("")
    lines.append(f"MD: 300 K classical NVE with the trained model (velocity Verlet, {timestep_fs} fs), spectral "
                 f"resolution {resolution:.1f} cm⁻¹ "
                 "(1/(2 c L Δt), L the longest lag). The stretch band holds ν1 and ν3 (harmonic splitting below "
                 "the resolution); its isotropic Raman peak is ν1 alone, its IR peak mostly ν3, its anisotropic "
                 "Raman peak both.")
    return "\n".join(lines)


def per_trajectory(result, settings, max_lag_fs):
    """Peaks (cm⁻¹) of each trajectory alone, with its mean kinetic temperature: the anharmonic shift vs energy."""
    rows = []
    properties = result["properties"]
    for k, temperature in enumerate(result["md"]["mean_temperature_K"]):
        ir = ir_spectrum(properties["dipole"][k], settings.save_every_fs, settings.temperature_K, max_lag_fs)
        iso, _ = raman_spectra(properties["polarizability"][k], settings.save_every_fs, settings.temperature_K,
                               max_lag_fs)
        rows.append({"temperature_K": float(temperature),
                     "bend_ir": peak_position(ir, *WINDOWS_CM["bend"]),
                     "stretch_ir": peak_position(ir, *WINDOWS_CM["stretch"]),
                     "stretch_raman_iso": peak_position(iso, *WINDOWS_CM["stretch"])})
    rows.sort(key=lambda row: row["temperature_K"])
    lines = ["| trajectory mean T (K) | bend IR peak | stretch IR peak (ν3) | stretch Raman iso peak (ν1) |",
             "|---|---|---|---|"]
    lines += [f"| {r['temperature_K']:.0f} | {r['bend_ir']:.1f} | {r['stretch_ir']:.1f} | "
              f"{r['stretch_raman_iso']:.1f} |" for r in rows]
    return rows, "\n".join(lines)


def plot(result, gfn2, model, path):
    """3 × 3 panels: IR, isotropic and anisotropic Raman (rows); full range, bend and stretch regions (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"ir": "IR (dipole)", "raman_iso": "Raman iso (tr α / 3)", "raman_aniso": "Raman aniso (α - ā I)"}
    ranges = [(0.0, 4200.0), (1480.0, 1600.0), (3560.0, 3720.0)]
    fig, axes = plt.subplots(3, 3, figsize=(11, 7.5), gridspec_kw={"width_ratios": [2, 1, 1]})
    for row, kind in enumerate(titles):
        spectrum = result[kind]
        grid = spectrum.wavenumber
        for col, (low, high) in enumerate(ranges):
            ax = axes[row, col]
            keep = (grid >= low) & (grid <= high)
            scale = np.abs(spectrum.intensity[(grid > max(low, 500.0)) & (grid <= high)]).max()
            ax.plot(grid[keep], spectrum.intensity[keep] / scale, color="k", lw=1, label="MD (model, NVE)")
            for k, value in enumerate(gfn2):
                ax.axvline(value, color="tab:red", ls="--", lw=0.8, label="GFN2-xTB harmonic" if k == 0 else None)
            for k, value in enumerate(model):
                ax.axvline(value, color="tab:blue", ls=":", lw=1.0, label="model harmonic" if k == 0 else None)
            ax.set_xlim(low, high)
            ax.set_ylim(-0.1, 1.1)
            ax.set_title(titles[kind] + ("" if col == 0 else f", {low:.0f}-{high:.0f}"), fontsize=9)
            if col == 0:
                ax.set_ylabel("intensity (arb.)")
            if row == 2:
                ax.set_xlabel("wavenumber (cm⁻¹)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=6)
    parser.add_argument("--nve-ps", type=float, default=8.0)
    parser.add_argument("--thermalise-ps", type=float, default=0.5)
    parser.add_argument("--timestep", type=float, default=0.25, help="fs (velocity Verlet blue-shifts a line of "
                        "angular frequency ω by (2/(ωΔt)) arcsin(ωΔt/2) - 1: +18 cm⁻¹ at 3640 cm⁻¹ for 0.5 fs, "
                        "+4.5 for 0.25 fs)")
    parser.add_argument("--max-lag", type=float, default=3000.0, help="longest correlation lag, fs")
    parser.add_argument("--out-dir", default=str(ROOT / "runs" / "spectra" / "md"))
    parser.add_argument("--metrics", default=str(ROOT / "runs" / "spectra" / "monomer" / "metrics.json"),
                        help="training metrics.json whose test errors go into the results (skipped if absent)")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    from ase.build import molecule

    gfn2, model, gfn2_geometry, geometry = harmonic(log)
    settings = NVESettings(temperature_K=300.0, trajectories=args.trajectories, thermalise_ps=args.thermalise_ps,
                           nve_ps=args.nve_ps, timestep_fs=args.timestep, save_every_fs=2.0, seed=0)
    start = time.time()
    result = md_spectra(str(MODELS / "water_monomer_energy.pt"), str(MODELS / "water_monomer_properties.pt"),
                        gfn2_geometry, settings, args.out_dir, max_lag_fs=args.max_lag, log=log)
    log(f"MD and properties: {time.time() - start:.0f} s")
    found = peaks(result, WINDOWS_CM)
    rows = []
    for name, symmetry, index, window, active in MODES:
        row = {"mode": name, "symmetry": symmetry, "gfn2_harmonic": float(gfn2[index]),
               "model_harmonic": float(model[index])}
        for kind in ("ir", "raman_iso", "raman_aniso"):
            row[kind] = found[window][kind] if kind in active else NOTES.get((name, kind), "—")
        rows.append(row)
    resolution = result["ir"].resolution
    markdown = table(rows, resolution, settings.timestep_fs)
    trajectories, trajectory_table = per_trajectory(result, settings, args.max_lag)
    markdown += ("\n\nEach trajectory alone (its mean kinetic temperature over the 3 vibrational degrees of freedom "
                 "is one draw of its vibrational energy; cm⁻¹):\n\n" + trajectory_table)
    print(markdown)

    os.makedirs(args.results, exist_ok=True)
    md = result["md"]
    summary = {
        "modes": rows,
        "resolution_cm": resolution,
        "harmonic_cm": {"gfn2": gfn2.tolist(), "model": model.tolist()},
        "geometry": geometry,
        "md": {"settings": vars(settings), "max_lag_fs": args.max_lag,
               "mean_temperature_K": md["mean_temperature_K"], "energy_change_eV": md["energy_drift_eV"],
               "frames_per_trajectory": int(result["properties"]["dipole"].shape[1])},
        "per_trajectory": trajectories,
        "quantum_correction": "harmonic, Q = βħω / (1 - exp(-βħω)); IR line shape ω² C̃_μ, Raman Q C̃",
    }
    if os.path.exists(args.metrics):
        with open(args.metrics) as handle:
            metrics = json.load(handle)
        keys = ("energy_mae", "energy_rmse", "force_mae", "force_rmse", "dipole_mae", "dipole_rmse",
                "polarizability_mae", "polarizability_rmse", "num_frames")
        summary["training"] = {"test": {k: metrics["test"][k] for k in keys},
                               "units": "meV/atom, meV/Å, e·Å, Å³", "epochs": metrics.get("epochs")}
    save_spectra(result, os.path.join(args.results, "spectra.json"), summary, max_wavenumber_cm=4500.0)
    with open(os.path.join(args.results, "spectra.md"), "w") as handle:
        handle.write("# Water monomer: harmonic frequencies and MD spectral peaks\n\n" + markdown + "\n")
    plot(result, gfn2, model, os.path.join(args.results, "spectra.png"))
    log(f"wrote {args.results}/spectra.json, spectra.md and spectra.png")


if __name__ == "__main__":
    main()
