"""Unit conventions and the conversions at the OpenMM boundary.

Inside equiforce models lengths are in Å and energies in eV (forces in eV/Å). OpenMM works in nm and kJ/mol.
Every conversion factor in the package comes from this module, and every factor here is derived from
``openmm.unit`` rather than typed in as a literal.
"""
from openmm import unit as _u

#: Å per nm (multiply a length in nm by this to get Å).
ANGSTROM_PER_NM: float = _u.nanometer.conversion_factor_to(_u.angstrom)

#: kJ/mol per eV per particle (multiply an energy in eV by this to get kJ/mol).
KJ_PER_MOL_PER_EV: float = (1.0 * _u.elementary_charge * _u.volt * _u.AVOGADRO_CONSTANT_NA).value_in_unit(
    _u.kilojoule_per_mole
)

#: Units the model works in, as recorded in exported files.
MODEL_UNITS = {"length": "angstrom", "energy": "eV", "forces": "eV/angstrom"}

#: Units at the OpenMM boundary.
OPENMM_UNITS = {"length": "nm", "energy": "kJ/mol", "forces": "kJ/mol/nm"}


def nm_to_angstrom(x):
    """Convert a length (float, array or tensor) from nm to Å."""
    return x * ANGSTROM_PER_NM


def angstrom_to_nm(x):
    """Convert a length (float, array or tensor) from Å to nm."""
    return x / ANGSTROM_PER_NM


def ev_to_kj_per_mol(x):
    """Convert an energy from eV to kJ/mol."""
    return x * KJ_PER_MOL_PER_EV


def kj_per_mol_to_ev(x):
    """Convert an energy from kJ/mol to eV."""
    return x / KJ_PER_MOL_PER_EV


def boltzmann_kj_per_mol(temperature_kelvin: float) -> float:
    """k_B T in kJ/mol for a temperature in K."""
    return (_u.MOLAR_GAS_CONSTANT_R * temperature_kelvin * _u.kelvin).value_in_unit(_u.kilojoule_per_mole)


def ns_per_day(ms_per_step: float, timestep_fs: float) -> float:
    """Simulated nanoseconds per day at ``timestep_fs`` (fs) for a cost of ``ms_per_step`` (ms)."""
    steps_per_day = _u.day.conversion_factor_to(_u.millisecond) / ms_per_step
    return steps_per_day * (timestep_fs * _u.femtosecond).value_in_unit(_u.nanosecond)
