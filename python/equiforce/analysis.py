"""Energy-conservation analysis of NVE trajectories."""
from dataclasses import asdict, dataclass
from typing import Dict

import numpy as np

from .units import KJ_PER_MOL_PER_EV, boltzmann_kj_per_mol

#: Segments `energy_drift` fits by default for the slope's standard error (see `Drift`).
DRIFT_SEGMENTS = 10
#: How `energy_drift` estimates the slope's standard error by default (recorded with NVE results, so that results
#: analysed with another estimator are recognised and re-analysed from their series:
#: `equiforce.bench.reanalyse_record`).
DRIFT_STDERR_METHOD = f"segment-slopes-{DRIFT_SEGMENTS}"
#: A drift is "detected" when |slope| exceeds this many standard errors (the benchmark specification's rule).
DETECTION_Z = 2.0


def drift_verdict(z: float) -> str:
    """"drift" when ``z`` = |slope| / its standard error exceeds `DETECTION_Z`, else "none"."""
    return "drift" if z > DETECTION_Z else "none"


@dataclass
class Drift:
    """Linear drift of the total energy, with a standard error from the slopes of consecutive segments.

    The slope is a least-squares line through every sample. Its standard error is the standard deviation of the
    slopes fitted to ``n_segments`` consecutive segments of the run, over sqrt(n_segments). The total energy of
    an NVE run oscillates (O-H stretch) and wanders slowly, like a random walk; a segment's slope depends only on
    the steps inside it, so the segments' slopes are close to independent, and for a random walk the mean of
    their slopes has the same variance as the slope of the whole run. Checked against independent replicas
    (benchmarks/results/nve_replicas.json: 5 cases x 4-5 seeds of 20 ps): their scatter over this error is 0.96
    (pooled, 17 degrees of freedom), where the older error from the scatter of 10 block *means* about a line
    (``block_means_stderr_*``, kept for comparison) was 4.6 times too small. A real linear drift moves every
    segment's slope alike and does not inflate the error; a drift that accelerates does (conservatively).
    The price: where the noise is uncorrelated rather than wandering, the error comes out up to
    ``n_segments`` times too large (drift is missed, never invented; tests/test_analysis.py). The water runs'
    replicas agree with this error for 4 to 10 segments alike, which is what a random walk does and
    uncorrelated noise does not.
    """

    slope_kj_per_mol_per_ns: float
    stderr_kj_per_mol_per_ns: float
    drift_kT_per_ns_per_dof: float
    drift_stderr_kT_per_ns_per_dof: float
    drift_meV_per_atom_per_ps: float
    fluctuation_kj_per_mol: float
    drift_ratio: float
    block_means_stderr_kT_per_ns_per_dof: float

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def _fit_slope(x: np.ndarray, y: np.ndarray):
    design = np.vstack([x, np.ones_like(x)]).T
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coefficients[0], coefficients[1]


def segment_slopes_stderr(time_ps: np.ndarray, total: np.ndarray, n_segments: int = DRIFT_SEGMENTS) -> float:
    """Standard error of the slope of ``total`` against ``time_ps`` (its units per ps) from the scatter of the
    slopes of ``n_segments`` consecutive segments: std(segment slopes) / sqrt(n_segments)."""
    slopes = [_fit_slope(t, e)[0] for t, e in zip(np.array_split(time_ps, n_segments),
                                                   np.array_split(total, n_segments))]  # [n_segments]
    return float(np.std(slopes, ddof=1) / np.sqrt(n_segments))


def block_means_stderr(time_ps: np.ndarray, total: np.ndarray, n_blocks: int = 10) -> float:
    """The older standard error of the slope (units of ``total`` per ps): a line through ``n_blocks`` block means
    and the scatter of those means about it. It trusts the block means to be independent about the line, which
    a slowly wandering total energy breaks (see `Drift`); kept to compare with earlier results."""
    blocks_t = np.array([b.mean() for b in np.array_split(time_ps, n_blocks)])  # [n_blocks] ps
    blocks_e = np.array([b.mean() for b in np.array_split(total, n_blocks)])  # [n_blocks]
    block_slope, block_intercept = _fit_slope(blocks_t, blocks_e)
    residuals = blocks_e - (block_slope * blocks_t + block_intercept)
    spread = np.sum((blocks_t - blocks_t.mean()) ** 2)
    return float(np.sqrt(np.sum(residuals**2) / (n_blocks - 2) / spread))


def energy_drift(
    time_ps: np.ndarray,
    total_kj_per_mol: np.ndarray,
    kinetic_kj_per_mol: np.ndarray,
    n_atoms: int,
    n_dof: int,
    temperature_kelvin: float,
    n_segments: int = DRIFT_SEGMENTS,
) -> Drift:
    """Fit the drift of a total-energy series (kJ/mol) sampled at ``time_ps``; needs ``2 * n_segments`` samples.

    ``drift_ratio`` is the change over the run of the fitted line divided by the standard deviation of the
    kinetic energy; ``drift_kT_per_ns_per_dof`` is the slope in units of k_B T (at ``temperature_kelvin``) per
    ns per degree of freedom. The standard error is described in `Drift`.
    """
    time_ps = np.asarray(time_ps, float)
    total = np.asarray(total_kj_per_mol, float)
    if len(time_ps) < 2 * n_segments:
        raise ValueError(f"need at least {2 * n_segments} samples for {n_segments} segments, got {len(time_ps)}")
    slope_per_ps, _ = _fit_slope(time_ps, total)
    stderr_per_ps = segment_slopes_stderr(time_ps, total, n_segments)
    kT = boltzmann_kj_per_mol(temperature_kelvin)
    duration = time_ps[-1] - time_ps[0]
    kinetic_std = float(np.std(kinetic_kj_per_mol))
    per_ns = 1000.0
    return Drift(
        slope_kj_per_mol_per_ns=slope_per_ps * per_ns,
        stderr_kj_per_mol_per_ns=stderr_per_ps * per_ns,
        drift_kT_per_ns_per_dof=slope_per_ps * per_ns / kT / n_dof,
        drift_stderr_kT_per_ns_per_dof=stderr_per_ps * per_ns / kT / n_dof,
        drift_meV_per_atom_per_ps=slope_per_ps / KJ_PER_MOL_PER_EV * 1000.0 / n_atoms,
        fluctuation_kj_per_mol=float(np.std(total)),
        drift_ratio=abs(slope_per_ps * duration) / kinetic_std if kinetic_std > 0 else float("inf"),
        block_means_stderr_kT_per_ns_per_dof=block_means_stderr(time_ps, total) * per_ns / kT / n_dof,
    )


def block_standard_error(samples: np.ndarray, n_blocks: int = 5) -> float:
    """Standard error of the mean of a correlated time series by block averaging (``n_blocks`` equal blocks).

    Same units as ``samples``; needs at least ``2 * n_blocks`` samples.
    """
    samples = np.asarray(samples, float)
    if len(samples) < 2 * n_blocks:
        raise ValueError(f"need at least {2 * n_blocks} samples for {n_blocks} blocks, got {len(samples)}")
    means = np.array([block.mean() for block in np.array_split(samples, n_blocks)])
    return float(means.std(ddof=1) / np.sqrt(n_blocks))
