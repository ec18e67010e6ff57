"""Harmonic vibrational frequencies from a finite-difference Hessian (ase.vibrations), for any ASE calculator."""
import tempfile

import numpy as np


def harmonic_frequencies(atoms, calculator, delta: float = 0.01, fmax: float = 1e-4, linear: bool = False):
    """Relax ``atoms`` with ``calculator`` (BFGS to ``fmax`` eV/Å) and return its 3N - 6 (3N - 5 if ``linear``)
    harmonic wavenumbers in cm⁻¹, ascending, and the relaxed structure.

    The Hessian comes from central differences of the forces (displacements ± ``delta`` Å, ``ase.vibrations``);
    the 6 (5) smallest modes, translations and rotations, are dropped. An imaginary frequency among the kept modes
    (a structure that is not a minimum) is an error.
    """
    from ase.optimize import BFGS
    from ase.vibrations import Vibrations

    relaxed = atoms.copy()
    relaxed.calc = calculator
    BFGS(relaxed, logfile=None).run(fmax=fmax, steps=1000)
    with tempfile.TemporaryDirectory() as cache:
        vibrations = Vibrations(relaxed, delta=delta, name=f"{cache}/vib")
        vibrations.run()
        energies = vibrations.get_energies()  # [3N] eV, complex for imaginary modes
    wavenumbers = np.array(energies, dtype=complex)
    order = np.argsort(np.abs(wavenumbers))
    kept = order[(5 if linear else 6):]
    if np.any(np.abs(wavenumbers[kept].imag) > 1e-6):
        raise ValueError(f"imaginary vibrational mode at the relaxed structure: {wavenumbers[kept]} eV")
    from ase.units import invcm

    frequencies = np.sort(wavenumbers[kept].real) / invcm  # [3N - 6] cm⁻¹
    relaxed.calc = None
    return frequencies, relaxed
