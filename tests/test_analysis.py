"""The NVE drift fit: its slope, and a standard error that holds when the total energy wanders like a random walk.

Synthetic total-energy series stand in for NVE runs (no simulation): an O-H-stretch-like oscillation, white
noise, a random walk (the slow wander that made the older block-means error too small) and a linear drift.
"""
import numpy as np
import pytest

from equiforce.analysis import block_means_stderr, energy_drift, segment_slopes_stderr
from equiforce.units import boltzmann_kj_per_mol

N_SAMPLES = 10001  # 20 ps sampled every 2 fs, as the 384-atom 0.5 fs benchmark runs
TIME_PS = np.linspace(0.0, 20.0, N_SAMPLES)  # [n_samples]


def _series(rng, drift_per_ps=0.0, walk_kj_per_mol_per_sqrt_ps=0.0, white_kj_per_mol=0.0):
    """A total energy (kJ/mol) [n_samples] at TIME_PS."""
    dt = TIME_PS[1] - TIME_PS[0]
    oscillation = 0.5 * np.sin(2 * np.pi * TIME_PS / 0.0093 + rng.uniform(0, 2 * np.pi))
    walk = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, walk_kj_per_mol_per_sqrt_ps * np.sqrt(dt),
                                                       N_SAMPLES - 1))])
    return -1000.0 + drift_per_ps * TIME_PS + oscillation + walk + rng.normal(0.0, white_kj_per_mol, N_SAMPLES)


def _replicas(drift_per_ps, walk, white, n=300, seed=3):
    rng = np.random.default_rng(seed)
    slopes, segments, blocks = [], [], []
    for _ in range(n):
        total = _series(rng, drift_per_ps, walk, white)
        slopes.append(np.polyfit(TIME_PS, total, 1)[0])
        segments.append(segment_slopes_stderr(TIME_PS, total))
        blocks.append(block_means_stderr(TIME_PS, total))
    rms = lambda values: float(np.sqrt(np.mean(np.square(values))))  # noqa: E731
    return np.array(slopes), rms(segments), rms(blocks)


def test_with_a_random_walk_the_segment_error_matches_the_scatter_and_block_means_fall_short():
    """300 replicas of a drifting, wandering series: the mean slope is the drift, the scatter of the slopes
    (known to about 4 %) equals the one-run segment error within 15 %, and the block-means error is more than
    twice too small, as the committed water replicas showed (benchmarks/results/nve_replicas.json)."""
    drift = 0.05  # kJ/mol/ps
    slopes, segment_error, block_error = _replicas(drift, walk=0.5, white=0.2)
    scatter = slopes.std(ddof=1)
    assert abs(slopes.mean() - drift) < 4 * scatter / np.sqrt(len(slopes))
    assert abs(scatter / segment_error - 1.0) < 0.15
    assert scatter / block_error > 2.0


def test_with_white_noise_only_the_segment_error_is_ten_times_too_large_and_block_means_are_right():
    """The price of the segment error: where the noise is uncorrelated (no wander), each of 10 segments' slopes
    scatters 10^1.5 times more than the run's, so the error comes out about 10 times too large (a drift
    would be missed, never invented). The water runs are not in this regime (their replicas' scatter equals
    the segment error); this is where the block-means error was right."""
    slopes, segment_error, block_error = _replicas(0.0, walk=0.0, white=2.0)
    scatter = slopes.std(ddof=1)
    assert 0.07 < scatter / segment_error < 0.13
    assert abs(scatter / block_error - 1.0) < 0.15


def test_a_clear_drift_is_many_errors_from_zero_and_the_units_follow_kT_per_dof():
    rng = np.random.default_rng(5)
    total = _series(rng, drift_per_ps=1.0, walk_kj_per_mol_per_sqrt_ps=0.02, white_kj_per_mol=0.1)
    kinetic = 300.0 + rng.normal(0.0, 10.0, N_SAMPLES)
    n_atoms, n_dof = 384, 3 * 384 - 3
    drift = energy_drift(TIME_PS, total, kinetic, n_atoms, n_dof, 300.0)
    expected = 1.0 * 1000.0 / boltzmann_kj_per_mol(300.0) / n_dof  # kJ/mol/ps -> kT/ns/dof
    assert drift.drift_kT_per_ns_per_dof == pytest.approx(expected, rel=0.02)
    assert drift.drift_kT_per_ns_per_dof / drift.drift_stderr_kT_per_ns_per_dof > 20
    assert drift.block_means_stderr_kT_per_ns_per_dof > 0
    assert drift.drift_ratio == pytest.approx(20.0 / np.std(kinetic), rel=0.02)


def test_too_short_a_series_is_refused_with_the_count():
    with pytest.raises(ValueError, match="need at least 20 samples for 10 segments, got 19"):
        energy_drift(TIME_PS[:19], TIME_PS[:19], TIME_PS[:19], 3, 6, 300.0)
