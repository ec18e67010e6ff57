"""Vibrational spectra from MD: IR from the dipole, isotropic/anisotropic Raman from the polarizability.

- :mod:`._correlation`: windowed, zero-padded Fourier transforms of autocorrelation functions (cm⁻¹ axis, harmonic
  quantum correction), and peak positions.
- :mod:`._md`: NVE trajectories of one molecule in OpenMM with an exported energy model, and the properties of an
  exported property model along them (frames read with mdtraj).
- :mod:`._harmonic`: harmonic frequencies from a finite-difference Hessian (ase.vibrations), for comparison.
"""
from ._correlation import (
    MIN_FRAMES,
    Spectrum,
    autocorrelation,
    band_centroid,
    correlation_spectrum,
    harmonic_quantum_correction,
    ir_spectrum,
    isotropic_anisotropic,
    peak_position,
    raman_spectra,
    wavenumber_per_fs,
)
from ._harmonic import harmonic_frequencies
from ._md import NVESettings, molecule_topology, remove_rotation, run_nve_trajectories, trajectory_properties
from ._pipeline import md_spectra, peaks, save_spectra

__all__ = [
    "MIN_FRAMES", "Spectrum", "autocorrelation", "band_centroid", "correlation_spectrum", "harmonic_quantum_correction",
    "ir_spectrum", "isotropic_anisotropic", "peak_position", "raman_spectra", "wavenumber_per_fs",
    "harmonic_frequencies", "NVESettings", "molecule_topology", "remove_rotation", "run_nve_trajectories",
    "trajectory_properties", "md_spectra", "peaks", "save_spectra",
]
