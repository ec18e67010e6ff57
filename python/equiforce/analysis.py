"""Energy-conservation analysis of NVE trajectories."""
from dataclasses import asdict, dataclass
from typing import Dict

import numpy as np

from .units import KJ_PER_MOL_PER_EV, boltzmann_kj_per_mol


@dataclass
class Drift:
    """Linear drift of the total energy, with a standard error from block averages.

    The energy oscillates, so consecutive samples are correlated: the slope is fitted to the means of
    ``n_blocks`` consecutive blocks and its standard error comes from the scatter of those means.
    """

    slope_kj_per_mol_per_ns: float
    stderr_kj_per_mol_per_ns: float
    drift_kT_per_ns_per_dof: float
    drift_stderr_kT_per_ns_per_dof: float
    drift_meV_per_atom_per_ps: float
    fluctuation_kj_per_mol: float
    drift_ratio: float

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def _fit_slope(x: np.ndarray, y: np.ndarray):
    design = np.vstack([x, np.ones_like(x)]).T
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coefficients[0], coefficients[1]


def energy_drift(
    time_ps: np.ndarray,
    total_kj_per_mol: np.ndarray,
    kinetic_kj_per_mol: np.ndarray,
    n_atoms: int,
    n_dof: int,
    temperature_kelvin: float,
    n_blocks: int = 10,
) -> Drift:
    """Fit the drift of a total-energy series (kJ/mol) sampled at ``time_ps``.

    ``drift_ratio`` is the change over the run of the fitted line divided by the standard deviation of the
    kinetic energy; ``drift_kT_per_ns_per_dof`` is the slope in units of k_B T (at ``temperature_kelvin``) per
    ns per degree of freedom.
    """
    time_ps = np.asarray(time_ps, float)
    total = np.asarray(total_kj_per_mol, float)
    if len(time_ps) < 2 * n_blocks:
        raise ValueError(f"need at least {2 * n_blocks} samples for {n_blocks} blocks, got {len(time_ps)}")
    slope_per_ps, _ = _fit_slope(time_ps, total)
    blocks_t = np.array([b.mean() for b in np.array_split(time_ps, n_blocks)])
    blocks_e = np.array([b.mean() for b in np.array_split(total, n_blocks)])
    block_slope, block_intercept = _fit_slope(blocks_t, blocks_e)
    residuals = blocks_e - (block_slope * blocks_t + block_intercept)
    spread = np.sum((blocks_t - blocks_t.mean()) ** 2)
    stderr_per_ps = np.sqrt(np.sum(residuals**2) / (n_blocks - 2) / spread)
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
