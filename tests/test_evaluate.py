"""`equiforce evaluate`: errors of an exported model on labelled frames, overall and per element."""
import json

import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

import equiforce
from equiforce.calculator import EquiforceCalculator
from equiforce.cli import main as cli_main
from equiforce.evaluate import evaluate_model
from conftest import make_model, random_frames


@pytest.fixture(scope="module")
def model_and_frames(tmp_path_factory):
    """A float64 exported model and 6 frames labelled by that model itself."""
    folder = tmp_path_factory.mktemp("evaluate")
    path = str(folder / "model.pt")
    equiforce.export_model(make_model(seed=3), path, dtype="float64")
    calculator = EquiforceCalculator(path)
    frames = []
    for atoms in random_frames(6, seed=5, max_atoms=7):
        atoms.calc = calculator
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    return path, frames


def _write(frames, path):
    ase.io.write(str(path), frames, format="extxyz")
    return str(path)


def test_frames_labelled_by_the_model_itself_have_no_error(model_and_frames, tmp_path):
    path, frames = model_and_frames
    result = evaluate_model(path, _write(frames, tmp_path / "self.extxyz"))
    assert result["frames"] == 6 and result["atoms"] == sum(len(a) for a in frames)
    assert result["energy_mae"] < 1e-4 and result["force_mae"] < 1e-4  # extxyz keeps 8 decimals (eV, eV/Å)


def test_known_label_offsets_give_the_expected_errors_per_element(model_and_frames, tmp_path):
    path, frames = model_and_frames
    shifted = []
    for atoms in frames:
        atoms = atoms.copy()
        energy, forces = frames[len(shifted)].get_potential_energy(), frames[len(shifted)].get_forces().copy()
        hydrogens = np.array(atoms.get_chemical_symbols()) == "H"
        forces[hydrogens, 0] += 0.006  # eV/Å on the x component of every H
        atoms.calc = SinglePointCalculator(atoms, energy=energy + 0.02 * len(atoms), forces=forces)  # +20 meV/atom
        shifted.append(atoms)
    result = evaluate_model(path, _write(shifted, tmp_path / "shifted.extxyz"), start=1, stop=5)
    assert result["frames"] == 4 and result["first_frame"].endswith(":1") and result["last_frame"].endswith(":4")
    assert result["energy_mae"] == pytest.approx(20.0, abs=1e-4)
    assert result["force_mae_per_element"]["H"] == pytest.approx(6.0 / 3, abs=1e-4)
    assert result["force_rmse_per_element"]["H"] == pytest.approx(6.0 / np.sqrt(3), abs=1e-4)
    assert result["force_mae_per_element"]["O"] < 1e-4


def test_cli_prints_and_writes_the_errors_and_names_unknown_elements(model_and_frames, tmp_path, capsys):
    path, frames = model_and_frames
    data = _write(frames, tmp_path / "frames.extxyz")
    out = tmp_path / "errors.json"
    assert cli_main(["evaluate", path, data, "--json", str(out)]) == 0
    assert "force MAE" in capsys.readouterr().out
    assert json.load(open(out))["frames"] == 6
    carbon = frames[0].copy()
    carbon.symbols[1] = "C"
    carbon.calc = SinglePointCalculator(carbon, energy=0.0, forces=np.zeros((len(carbon), 3)))
    assert cli_main(["evaluate", path, _write([carbon], tmp_path / "carbon.extxyz")]) == 2
    assert "['C']" in capsys.readouterr().err


def test_frames_can_be_chosen_by_index_and_bad_indices_are_named(model_and_frames, tmp_path):
    path, frames = model_and_frames
    data = _write(frames, tmp_path / "frames.extxyz")
    result = evaluate_model(path, data, indices=[4, 0])
    assert result["frames"] == 2 and result["first_frame"].endswith(":4") and result["last_frame"].endswith(":0")
    with pytest.raises(ValueError, match=r"\[6\] are outside the 6 frames"):
        evaluate_model(path, data, indices=[1, 6])
