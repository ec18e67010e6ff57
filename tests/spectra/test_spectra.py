"""Spectra from time series: known cosines give peaks at known wavenumbers, iso/aniso Raman separate, bad input
is refused with a clear error."""
import numpy as np
import pytest
from scipy import constants

from equiforce.spectra import (
    MIN_FRAMES,
    autocorrelation,
    harmonic_quantum_correction,
    ir_spectrum,
    isotropic_anisotropic,
    peak_position,
    raman_spectra,
)
from equiforce.spectra import remove_rotation

DT_FS = 2.0  # fs between frames
FRAMES = 5000  # 10 ps
C_CM_PER_FS = constants.c / constants.centi * constants.femto  # cm / fs


def cosine(wavenumber_cm, frames=FRAMES, phase=0.0):
    """cos(2π c ν̃ t) sampled every DT_FS: [frames]."""
    t = np.arange(frames) * DT_FS  # fs
    return np.cos(2.0 * np.pi * C_CM_PER_FS * wavenumber_cm * t + phase)


def strongest_peaks(spectrum, count, above_cm=100.0):
    """Wavenumbers of the ``count`` highest local maxima above ``above_cm``, ascending."""
    from scipy.signal import find_peaks

    grid, y = spectrum.wavenumber, spectrum.intensity
    found, _ = find_peaks(np.where(grid > above_cm, y, 0.0))
    best = sorted(found, key=lambda k: -y[k])[:count]
    return np.sort(grid[best])


def test_ir_peaks_of_three_cosines_are_at_their_wavenumbers():
    known = np.array([1595.0, 3657.0, 3756.0])  # water's gas-phase fundamentals, cm⁻¹
    dipoles = np.stack([0.3 * cosine(known[0]), 0.05 * cosine(known[1], phase=0.4), 0.1 * cosine(known[2])], 1)
    spectrum = ir_spectrum(dipoles + [0.0, 0.0, 0.4], DT_FS, max_lag_fs=2000.0)  # a constant dipole adds nothing
    assert spectrum.resolution == pytest.approx(1.0 / (2 * C_CM_PER_FS * 2000.0))  # 8.3 cm⁻¹
    found = strongest_peaks(spectrum, 3)
    assert np.abs(found - known).max() < spectrum.resolution / 2
    for wavenumber in known:  # the refined maximum is much closer than the grid
        assert peak_position(spectrum, wavenumber - 40, wavenumber + 40) == pytest.approx(wavenumber, abs=1.0)
    # nothing where there is no line
    quiet = (spectrum.wavenumber > 2000) & (spectrum.wavenumber < 3400)
    assert np.abs(spectrum.intensity[quiet]).max() < 1e-3 * spectrum.intensity.max()


def test_ir_intensity_scales_as_frequency_squared_times_amplitude_squared():
    low, high = 1000.0, 3000.0
    dipoles = np.stack([cosine(low), cosine(high), np.zeros(FRAMES)], 1)  # equal amplitudes
    spectrum = ir_spectrum(dipoles, DT_FS, max_lag_fs=2000.0)
    ratio = spectrum.intensity[np.argmin(np.abs(spectrum.wavenumber - high))] / \
        spectrum.intensity[np.argmin(np.abs(spectrum.wavenumber - low))]
    assert ratio == pytest.approx((high / low) ** 2, rel=0.05)


def test_independent_trajectories_are_averaged():
    one = np.stack([cosine(1600.0), np.zeros(FRAMES), np.zeros(FRAMES)], 1)
    two = np.stack([np.zeros(FRAMES), cosine(3700.0), np.zeros(FRAMES)], 1)
    spectrum = ir_spectrum(np.stack([one, two]), DT_FS, max_lag_fs=2000.0)  # [2, T, 3]
    assert np.allclose(strongest_peaks(spectrum, 2), [1600.0, 3700.0], atol=spectrum.resolution / 2)


def test_raman_separates_isotropic_and_anisotropic_modulation():
    iso_cm, aniso_cm = 1600.0, 3650.0
    traceless = np.array([[1.0, 0.3, 0.0], [0.3, -0.4, 0.2], [0.0, 0.2, -0.6]])  # symmetric, trace 0
    alpha = (1.4 * np.eye(3) + 0.05 * cosine(iso_cm)[:, None, None] * np.eye(3)
             + 0.02 * cosine(aniso_cm)[:, None, None] * traceless)  # [T, 3, 3]
    iso, aniso = raman_spectra(alpha, DT_FS, temperature_K=300.0, max_lag_fs=2000.0)
    at = lambda s, w: s.intensity[np.argmin(np.abs(s.wavenumber - w))]  # noqa: E731
    assert strongest_peaks(iso, 1)[0] == pytest.approx(iso_cm, abs=iso.resolution / 2)
    assert strongest_peaks(aniso, 1)[0] == pytest.approx(aniso_cm, abs=aniso.resolution / 2)
    assert abs(at(iso, aniso_cm)) < 1e-6 * at(iso, iso_cm)  # no anisotropic modulation in ā
    assert abs(at(aniso, iso_cm)) < 1e-6 * at(aniso, aniso_cm)  # no isotropic modulation in β
    mean_iso, parts = isotropic_anisotropic(alpha)
    assert np.allclose(np.trace(parts, axis1=1, axis2=2), 0.0)
    assert np.allclose(mean_iso[:, 0], 1.4 + 0.05 * cosine(iso_cm))


def test_harmonic_quantum_correction_limits():
    # x = h c ν̃ / kT: Q -> 1 for ν̃ -> 0, Q ≈ x at high frequency (x = 17.5 for 3650 cm⁻¹ at 300 K)
    x = constants.h * constants.c / constants.centi * 3650.0 / (constants.k * 300.0)
    q = harmonic_quantum_correction(np.array([0.0, 1e-9, 3650.0]), 300.0)
    assert q[0] == 1.0 and q[1] == pytest.approx(1.0)
    assert q[2] == pytest.approx(x / (1 - np.exp(-x)))
    iso_q, _ = raman_spectra(np.eye(3) * cosine(3650.0)[:, None, None], DT_FS, 300.0, 2000.0)
    iso_c, _ = raman_spectra(np.eye(3) * cosine(3650.0)[:, None, None], DT_FS, 300.0, 2000.0, quantum_correction="none")
    k = np.argmax(iso_c.intensity)
    assert iso_q.intensity[k] / iso_c.intensity[k] == pytest.approx(harmonic_quantum_correction(
        iso_c.wavenumber[k], 300.0))


def test_autocorrelation_of_a_cosine_is_half_a_cosine():
    series = cosine(2000.0)[None, :, None]  # [1, T, 1]
    c = autocorrelation(series, 100)  # [101]
    lags = np.arange(101) * DT_FS
    assert np.allclose(c, 0.5 * np.cos(2 * np.pi * C_CM_PER_FS * 2000.0 * lags), atol=5e-3)


def test_remove_rotation_leaves_no_angular_momentum_and_keeps_vibration():
    rng = np.random.default_rng(0)
    masses = np.array([15.999, 1.008, 1.008])
    positions = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])  # nm
    velocities = rng.normal(size=(3, 3))  # nm/ps
    velocities -= (masses[:, None] * velocities).sum(0) / masses.sum()  # no centre-of-mass motion
    fixed = remove_rotation(positions, velocities, masses)
    centre = (masses[:, None] * positions).sum(0) / masses.sum()
    momentum = (masses[:, None] * np.cross(positions - centre, fixed)).sum(0)
    assert np.abs(momentum).max() < 1e-12
    # the bond-length rates (vibration) are unchanged by removing a rigid rotation
    for i, j in ((0, 1), (0, 2), (1, 2)):
        bond = positions[j] - positions[i]
        assert bond @ (fixed[j] - fixed[i]) == pytest.approx(bond @ (velocities[j] - velocities[i]))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ir_spectrum(np.zeros((MIN_FRAMES - 1, 3)), DT_FS), "too short"),
        (lambda: ir_spectrum(np.zeros((100, 2)), DT_FS), r"shape \[frames, 3\]"),
        (lambda: ir_spectrum(np.zeros(100), DT_FS), r"shape \[frames, 3\]"),
        (lambda: raman_spectra(np.zeros((100, 3)), DT_FS), r"shape \[frames, 3, 3\]"),
        (lambda: raman_spectra(np.zeros((2, 100, 9)), DT_FS), r"shape \[frames, 3, 3\]"),
        (lambda: ir_spectrum(np.full((100, 3), np.nan), DT_FS), "non-finite"),
        (lambda: ir_spectrum(np.zeros((100, 3)), 0.0), "timestep_fs must be positive"),
        (lambda: ir_spectrum(np.zeros((100, 3)), DT_FS, max_lag_fs=500.0), "max_lag_fs"),
        (lambda: ir_spectrum(np.zeros((100, 3)), DT_FS, quantum_correction="standard"), "quantum_correction"),
        (lambda: raman_spectra(np.zeros((100, 3, 3)), DT_FS, temperature_K=0.0), "temperature"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_spectra_subcommand_is_registered_with_its_options():
    from equiforce.cli import build_parser

    args = build_parser().parse_args(["spectra", "h2o.xyz", "--model", "e.pt", "--properties", "p.pt",
                                      "--trajectories", "2", "--nve-ps", "1"])
    assert (args.structure, args.model, args.properties, args.trajectories, args.nve_ps) == \
        ("h2o.xyz", "e.pt", "p.pt", 2, 1.0)
    assert args.temperature == 300.0 and args.platform == "Reference"


def test_band_centroid_weighs_two_lines_by_their_intensity():
    from equiforce.spectra import band_centroid

    dipoles = np.stack([cosine(3600.0), np.sqrt(3.0) * cosine(3700.0), np.zeros(FRAMES)], 1)  # intensities 1 : 3
    spectrum = ir_spectrum(dipoles, DT_FS, max_lag_fs=2000.0, quantum_correction="none")
    weight = 3.0 * (3700.0 / 3600.0) ** 2  # ω² of the IR line shape
    expected = (3600.0 + weight * 3700.0) / (1.0 + weight)
    assert band_centroid(spectrum, 3400.0, 3900.0) == pytest.approx(expected, abs=2.0)
    assert peak_position(spectrum, 3400.0, 3900.0) == pytest.approx(3700.0, abs=1.0)
