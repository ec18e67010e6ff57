"""Vibrational spectra from time series: IR from the dipole, isotropic and anisotropic Raman from the polarizability.

Every spectrum here is the Fourier transform of a time autocorrelation function C(τ), averaged over time origins
and over independent trajectories, from a classical (MD) trajectory:

1. The mean of each component over each trajectory is removed, C(τ) = ⟨x(0)·x(τ)⟩ is computed with FFTs
   (zero-padded to twice the length, so there is no wrap-around) and divided by the number of time origins of
   each lag (unbiased estimate), up to a maximum lag L.
2. C(τ) is multiplied by the right half of a Hann window, w(τ) = cos²(πτ / 2L), which takes it smoothly to 0 at
   τ = L (no truncation ripples; the cost is a line width of about 1 / (L Δt)).
3. The even extension of w·C is zero-padded to ``pad`` times its length and cosine transformed:
   C̃(ω) = Δt [w₀C₀ + 2 Σ_τ w_τ C_τ cos(ωτΔt)]. Frequencies are given as wavenumbers ν̃ = ω / 2πc in cm⁻¹
   (``scipy.constants``).

Quantum correction. A classical C̃_cl obeys no detailed balance. The harmonic correction factor
Q(ω) = βħω / (1 - exp(-βħω)) (exact for a harmonic system with a linear observable) gives the quantum line shape
C̃_qm ≈ Q C̃_cl. Then

- IR: the absorption coefficient times the refractive index, α(ω)n(ω) ∝ ω (1 - exp(-βħω)) C̃_qm(ω)
  = βħ ω² C̃_cl(ω): with the harmonic factor the IR line shape is ω² C̃_μ,cl(ω), in arbitrary units.
- Raman: the Stokes line shapes Q(ω) C̃_cl(ω) of the isotropic polarizability ā = tr α / 3
  (C_iso = ⟨ā(0) ā(τ)⟩) and of its anisotropic part β = α - ā I (C_aniso = ⟨tr β(0) β(τ)⟩, the sum of
  β_ij(0) β_ij(τ) over all nine components), without the (ω_laser - ω)⁴ factor of a given excitation wavelength.
  For an orientational average the polarised and depolarised intensities are I_VV = iso + (2/15) aniso and
  I_VH = aniso / 10 (with the anisotropy γ² = (3/2) tr β²).

``quantum_correction="none"`` returns ω² C̃_cl (IR, the classical limit, identical) and C̃_cl (Raman) instead.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy import constants

#: Shortest series (frames per trajectory) a spectrum is computed from.
MIN_FRAMES = 16
QUANTUM_CORRECTIONS = ("harmonic", "none")
#: Speed of light in cm/s, and the factor taking a frequency in 1/fs to a wavenumber in cm⁻¹.
_C_CM_PER_S = constants.c / constants.centi
_PER_FS_TO_CM = 1.0 / constants.femto / _C_CM_PER_S


@dataclass
class Spectrum:
    """A spectrum on a wavenumber grid.

    Attributes
    ----------
    wavenumber : [F] cm⁻¹, from 0 to the Nyquist wavenumber 1 / (2 c Δt).
    intensity : [F] arbitrary units (see the module docstring for what each spectrum is).
    resolution : cm⁻¹, 1 / (2 c L Δt) for a maximum lag L: two lines closer than about this are not resolved
        (the Hann-windowed line has a full width at half maximum of about 1.4 of it).
    """

    wavenumber: np.ndarray
    intensity: np.ndarray
    resolution: float


def wavenumber_per_fs(frequency_per_fs):
    """Frequency (cycles per fs) -> wavenumber (cm⁻¹)."""
    return np.asarray(frequency_per_fs) * _PER_FS_TO_CM


def harmonic_quantum_correction(wavenumber_cm, temperature_K: float) -> np.ndarray:
    """Q = x / (1 - exp(-x)), x = βħω = h c ν̃ / (k_B T); 1 at ν̃ = 0. Dimensionless, shape of ``wavenumber_cm``."""
    if temperature_K <= 0:
        raise ValueError(f"temperature must be positive (K), got {temperature_K}")
    x = constants.h * _C_CM_PER_S * np.asarray(wavenumber_cm, dtype=np.float64) / (constants.k * temperature_K)
    small = np.abs(x) < 1e-8
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0, safe / -np.expm1(-safe))


def _as_trajectories(series, name: str, component_shape: Tuple[int, ...]) -> np.ndarray:
    """series [T, *component_shape] or [M, T, *component_shape] -> [M, T, K] float64 (K = prod component_shape)."""
    array = np.asarray(series, dtype=np.float64)
    k = len(component_shape)
    if array.ndim not in (k + 1, k + 2) or tuple(array.shape[array.ndim - k:]) != component_shape:
        raise ValueError(
            f"{name} must have shape [frames, {', '.join(map(str, component_shape))}] or [trajectories, frames, "
            f"{', '.join(map(str, component_shape))}], got {list(array.shape)}"
        )
    if array.ndim == k + 1:
        array = array[None]
    if array.shape[1] < MIN_FRAMES:
        raise ValueError(f"{name}: {array.shape[1]} frames per trajectory is too short for a spectrum "
                         f"(at least {MIN_FRAMES})")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values")
    return array.reshape(array.shape[0], array.shape[1], -1)


def autocorrelation(series: np.ndarray, max_lag: int) -> np.ndarray:
    """C(τ) = ⟨x(t)·x(t + τ)⟩ for τ = 0..max_lag frames: [M, T, K] -> [max_lag + 1].

    Means over the time origins of each trajectory (unbiased: the sum at lag τ is divided by T - τ), summed over
    the K components, then averaged over the M trajectories. Each component's mean is removed first.
    """
    _, frames, _ = series.shape
    if not 1 <= max_lag < frames:
        raise ValueError(f"max_lag must be between 1 and frames - 1 = {frames - 1}, got {max_lag}")
    centred = series - series.mean(axis=1, keepdims=True)  # [M, T, K]
    size = 2 * frames  # zero padding: no circular wrap-around
    transform = np.fft.rfft(centred, n=size, axis=1)  # [M, size // 2 + 1, K]
    products = np.fft.irfft((transform * transform.conj()).real, n=size, axis=1)[:, : max_lag + 1]  # [M, L+1, K]
    origins = frames - np.arange(max_lag + 1)  # [L + 1]
    return products.sum(axis=2).mean(axis=0) / origins


def correlation_spectrum(
    series, timestep_fs: float, max_lag_fs: Optional[float] = None, pad: int = 4, name: str = "series",
    component_shape: Tuple[int, ...] = (1,),
) -> Spectrum:
    """Hann-windowed, zero-padded cosine transform C̃ of the autocorrelation of ``series`` (classical, no factor).

    Parameters
    ----------
    series
        [T, *component_shape] or [M, T, *component_shape]: one or M trajectories of T frames.
    timestep_fs
        Time between frames, fs.
    max_lag_fs
        Longest lag of C(τ), fs (default: half the trajectory length).
    pad
        Zero padding: the windowed C(τ) is transformed on a grid ``pad`` times longer (a finer grid, not a finer
        resolution).
    """
    if timestep_fs <= 0:
        raise ValueError(f"timestep_fs must be positive, got {timestep_fs}")
    if pad < 1:
        raise ValueError(f"pad must be >= 1, got {pad}")
    data = _as_trajectories(series, name, component_shape)  # [M, T, K]
    frames = data.shape[1]
    max_lag = frames // 2 if max_lag_fs is None else int(round(max_lag_fs / timestep_fs))
    if not 1 <= max_lag < frames:
        raise ValueError(f"max_lag_fs = {max_lag_fs} fs is {max_lag} frames; it must be between "
                         f"{timestep_fs} fs and {(frames - 1) * timestep_fs} fs (the trajectory length)")
    correlation = autocorrelation(data, max_lag)  # [L + 1]
    lags = np.arange(max_lag + 1)
    windowed = correlation * np.cos(0.5 * np.pi * lags / max_lag) ** 2  # [L + 1], right half of a Hann window
    size = pad * 2 * max_lag
    one_sided = np.zeros(size)
    one_sided[: max_lag + 1] = windowed
    # even extension: C̃(ω) = Δt [w0 C0 + 2 Σ_{τ>0} wτ Cτ cos(ωτΔt)]
    intensity = timestep_fs * (2.0 * np.fft.rfft(one_sided).real - windowed[0])  # [size // 2 + 1]
    wavenumber = wavenumber_per_fs(np.fft.rfftfreq(size, d=timestep_fs))
    resolution = float(wavenumber_per_fs(1.0 / (2.0 * max_lag * timestep_fs)))
    return Spectrum(wavenumber=wavenumber, intensity=intensity, resolution=resolution)


def _check_correction(quantum_correction: str, temperature_K: float) -> None:
    if quantum_correction not in QUANTUM_CORRECTIONS:
        raise ValueError(f"quantum_correction must be one of {QUANTUM_CORRECTIONS}, got {quantum_correction!r}")
    if temperature_K <= 0:
        raise ValueError(f"temperature must be positive (K), got {temperature_K}")


def ir_spectrum(dipoles, timestep_fs: float, temperature_K: float = 300.0, max_lag_fs: Optional[float] = None,
                pad: int = 4, quantum_correction: str = "harmonic") -> Spectrum:
    """IR line shape α(ω)n(ω) ∝ ω² C̃_μ(ω) (arbitrary units) from dipoles [T, 3] or [M, T, 3] (any unit, e·Å).

    With the harmonic quantum correction (default) and in the classical limit (``"none"``) the line shape is the
    same, ω² C̃_μ,cl; ``temperature_K`` is checked but does not enter (see the module docstring).
    """
    _check_correction(quantum_correction, temperature_K)
    spectrum = correlation_spectrum(dipoles, timestep_fs, max_lag_fs, pad, "dipoles", (3,))
    spectrum.intensity = spectrum.wavenumber**2 * spectrum.intensity  # ω² ∝ ν̃²; the overall scale is arbitrary
    return spectrum


def isotropic_anisotropic(polarizabilities) -> Tuple[np.ndarray, np.ndarray]:
    """α [..., 3, 3] -> (ā = tr α / 3 [..., 1], β = α - ā I [..., 3, 3]), in the unit of α."""
    alpha = np.asarray(polarizabilities, dtype=np.float64)
    iso = np.trace(alpha, axis1=-2, axis2=-1) / 3.0  # [...]
    aniso = alpha - iso[..., None, None] * np.eye(3)  # [..., 3, 3], traceless
    return iso[..., None], aniso


def raman_spectra(polarizabilities, timestep_fs: float, temperature_K: float = 300.0,
                  max_lag_fs: Optional[float] = None, pad: int = 4,
                  quantum_correction: str = "harmonic") -> Tuple[Spectrum, Spectrum]:
    """Isotropic and anisotropic Raman line shapes from polarizabilities [T, 3, 3] or [M, T, 3, 3] (Å³).

    Returns (iso, aniso): Q(ω) C̃(ω) of ā = tr α / 3 and of β = α - ā I (summed over its nine components), with Q
    the harmonic quantum correction at ``temperature_K`` (or Q = 1 for ``"none"``); arbitrary units, the same
    scale for both, so that I_VV = iso + (2/15) aniso and I_VH = aniso / 10.
    """
    _check_correction(quantum_correction, temperature_K)
    array = np.asarray(polarizabilities, dtype=np.float64)
    if array.ndim not in (3, 4) or array.shape[-2:] != (3, 3):
        raise ValueError(f"polarizabilities must have shape [frames, 3, 3] or [trajectories, frames, 3, 3], "
                         f"got {list(array.shape)}")
    iso, aniso = isotropic_anisotropic(array)  # [..., 1], [..., 3, 3]
    spectra = (
        correlation_spectrum(iso, timestep_fs, max_lag_fs, pad, "isotropic polarizability", (1,)),
        correlation_spectrum(aniso, timestep_fs, max_lag_fs, pad, "anisotropic polarizability", (3, 3)),
    )
    if quantum_correction == "harmonic":
        for spectrum in spectra:
            spectrum.intensity = harmonic_quantum_correction(spectrum.wavenumber, temperature_K) * spectrum.intensity
    return spectra


def peak_position(spectrum: Spectrum, low_cm: float, high_cm: float) -> float:
    """Wavenumber (cm⁻¹) of the highest point of ``spectrum`` in [low_cm, high_cm], refined by a parabola through
    it and its two neighbours (when they exist)."""
    inside = np.flatnonzero((spectrum.wavenumber >= low_cm) & (spectrum.wavenumber <= high_cm))
    if inside.size == 0:
        raise ValueError(f"no grid point between {low_cm} and {high_cm} cm⁻¹ "
                         f"(grid 0 to {spectrum.wavenumber[-1]:.0f} cm⁻¹)")
    k = int(inside[np.argmax(spectrum.intensity[inside])])
    if 0 < k < len(spectrum.intensity) - 1:
        left, centre, right = spectrum.intensity[k - 1: k + 2]
        curvature = left - 2.0 * centre + right
        if curvature < 0:
            step = spectrum.wavenumber[1] - spectrum.wavenumber[0]
            return float(spectrum.wavenumber[k] + 0.5 * (left - right) / curvature * step)
    return float(spectrum.wavenumber[k])


def band_centroid(spectrum: Spectrum, low_cm: float, high_cm: float) -> float:
    """Intensity-weighted mean wavenumber (cm⁻¹) of ``spectrum`` in [low_cm, high_cm], negative values (window
    side lobes) counted as 0. Unlike :func:`peak_position` it weighs every line of a band that is a sum of lines
    (e.g. trajectories of different energies), so it is the band's centre of mass."""
    inside = (spectrum.wavenumber >= low_cm) & (spectrum.wavenumber <= high_cm)
    weights = np.clip(spectrum.intensity[inside], 0.0, None)
    if not inside.any() or weights.sum() <= 0:
        raise ValueError(f"no positive intensity between {low_cm} and {high_cm} cm⁻¹")
    return float((weights * spectrum.wavenumber[inside]).sum() / weights.sum())
