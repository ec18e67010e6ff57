"""``equiforce spectra``: NVE trajectories -> dipoles and polarizabilities -> IR and Raman spectra, saved."""
import json
import os
from typing import Dict, Optional

import numpy as np

from ._correlation import band_centroid, ir_spectrum, peak_position, raman_spectra
from ._md import NVESettings, run_nve_trajectories, trajectory_properties


def md_spectra(energy_model: str, property_model: str, atoms, settings: NVESettings, out_dir: str,
               max_lag_fs: Optional[float] = None, log=print) -> Dict:
    """Run (or resume) the NVE trajectories of ``atoms`` with ``energy_model``, evaluate ``property_model`` on
    their frames and return the spectra: ``{"ir", "raman_iso", "raman_aniso"}`` (:class:`Spectrum`, cm⁻¹),
    ``"md"`` (per-trajectory temperatures and energy changes) and ``"properties"`` (dipoles [M, T, 3] e·Å,
    polarizabilities [M, T, 3, 3] Å³). The properties are also written to ``out_dir/properties.npz``.
    """
    md = run_nve_trajectories(energy_model, atoms, settings, out_dir, log=log)
    properties = trajectory_properties(property_model, md["topology"], md["trajectories"])
    np.savez(os.path.join(out_dir, "properties.npz"), **properties, timestep_fs=settings.save_every_fs)
    dt = settings.save_every_fs
    ir = ir_spectrum(properties["dipole"], dt, settings.temperature_K, max_lag_fs)
    iso, aniso = raman_spectra(properties["polarizability"], dt, settings.temperature_K, max_lag_fs)
    return {"ir": ir, "raman_iso": iso, "raman_aniso": aniso, "md": md, "properties": properties}


def peaks(result: Dict, windows_cm: Dict[str, tuple]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Peak (highest point) and centroid wavenumbers (cm⁻¹) of each spectrum of ``result`` in each named window
    {name: (low, high)}: ``{name: {kind: {"peak": ..., "centroid": ...}}}``."""
    return {
        name: {kind: {"peak": peak_position(result[kind], low, high),
                      "centroid": band_centroid(result[kind], low, high)}
               for kind in ("ir", "raman_iso", "raman_aniso")}
        for name, (low, high) in windows_cm.items()
    }


def save_spectra(result: Dict, path: str, extra: Optional[Dict] = None,
                 max_wavenumber_cm: Optional[float] = None) -> None:
    """Write the three spectra (wavenumber cm⁻¹ up to ``max_wavenumber_cm``, intensities normalised to a maximum of
    1 above 500 cm⁻¹ -- a rotational band below is left out of the scale) and ``extra`` to a JSON file."""
    grid = result["ir"].wavenumber
    keep = grid <= (np.inf if max_wavenumber_cm is None else max_wavenumber_cm)
    data = {"wavenumber_cm": grid[keep].round(3).tolist(), "resolution_cm": result["ir"].resolution}
    for kind in ("ir", "raman_iso", "raman_aniso"):
        intensity = result[kind].intensity
        scale = np.abs(intensity[grid > 500.0]).max()
        data[kind] = (intensity[keep] / scale).round(6).tolist()
    data.update(extra or {})
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(data, handle)
