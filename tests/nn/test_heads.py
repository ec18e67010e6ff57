"""Property heads: dipole -> R μ, polarizability -> R α Rᵀ, pseudoscalar -> det(R) s; enantiomers; TorchScript."""
import math

import pytest
import torch
from e3nn import o3
from e3nn.util.jit import script

import equiforce
from equiforce.nn import PropertyModel, set_radial_table
from equiforce.nn._heads import symmetric_change_of_basis
from conftest import DTYPES, TOLERANCE, energy_and_forces, make_model, random_o3, small_config

ALL_HEADS = ["dipole", "polarizability", "pseudoscalar"]
#: Equivariance tolerance of the tensorial outputs, relative to their size: looser in float64 than TOLERANCE, as
#: e3nn's tensor-product constants are rounded to float32 (an energy hides most of that, a vector or tensor less).
HEAD_TOLERANCE = {torch.float32: TOLERANCE[torch.float32], torch.float64: 1e-8}


def make_property_model(dtype=torch.float64, seed=0, heads=ALL_HEADS, **overrides):
    settings = dict(hidden_parity="both", num_layers=3, heads=list(heads))
    settings.update(overrides)
    torch.manual_seed(seed)
    return PropertyModel(small_config(**settings)).to(dtype)


def _cluster(n, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    positions = torch.rand(n, 3, generator=generator, dtype=dtype) * 4.0  # [n, 3] Å
    species = torch.randint(0, 2, (n,), generator=generator)
    return positions, species


def hydrogen_peroxide(dihedral, dtype=torch.float64):
    """H2O2 (H, O, O, H; Å) with the H-O-O-H dihedral ``dihedral`` (rad): chiral unless it is 0 or π."""
    r_oo, r_oh, angle = 1.45, 0.97, math.radians(100.0)
    positions = torch.tensor(
        [
            [r_oh * math.cos(angle), r_oh * math.sin(angle), 0.0],
            [0.0, 0.0, 0.0],
            [r_oo, 0.0, 0.0],
            [r_oo - r_oh * math.cos(angle), r_oh * math.sin(angle) * math.cos(dihedral),
             r_oh * math.sin(angle) * math.sin(dihedral)],
        ],
        dtype=dtype,
    )
    return positions, torch.tensor([0, 1, 1, 0])


def _close(a, b, dtype, scale=1.0):
    error = float((a - b).abs().max())
    assert error <= HEAD_TOLERANCE[dtype] * max(1.0, float(scale)), error


def _outputs(model, positions, species):
    return {name: value.detach() for name, value in model.properties(positions, species).items()}


# ------------------------------------------------------------------------------------------------ symmetry
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lmax", [1, 2])
def test_heads_transform_as_their_irreps_under_random_proper_and_improper_o3(dtype, lmax):
    model = make_property_model(dtype, lmax=lmax)
    positions, species = _cluster(9, dtype, seed=lmax)
    reference = _outputs(model, positions, species)
    alpha = reference["polarizability"]
    traceless = alpha - torch.eye(3, dtype=dtype) * alpha.trace() / 3
    # the outputs are not trivially zero, so the checks below can fail
    assert float(reference["dipole"].norm()) > 1e-3 and abs(float(reference["pseudoscalar"])) > 1e-6
    assert float(traceless.abs().max()) > 1e-6  # an anisotropic polarizability, also with lmax = 1
    generator = torch.Generator().manual_seed(10 + lmax)
    for draw in range(6):
        improper = draw % 2 == 1
        rotation = random_o3(generator, improper=improper, dtype=dtype)  # [3, 3]
        assert float(torch.det(rotation)) == pytest.approx(-1.0 if improper else 1.0)
        moved = _outputs(model, positions @ rotation.T, species)
        _close(moved["energy"], reference["energy"], dtype, reference["energy"].abs())
        _close(moved["dipole"], rotation @ reference["dipole"], dtype, reference["dipole"].abs().max())
        _close(moved["polarizability"], rotation @ alpha @ rotation.T, dtype, alpha.abs().max())
        _close(moved["pseudoscalar"], torch.det(rotation) * reference["pseudoscalar"], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_polarizability_is_symmetric(dtype):
    model = make_property_model(dtype, heads=["polarizability"])
    for seed in range(3):
        alpha = _outputs(model, *_cluster(7, dtype, seed))["polarizability"]
        assert torch.equal(alpha, alpha.T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dipole_and_polarizability_do_not_depend_on_the_origin(dtype):
    model = make_property_model(dtype)
    positions, species = _cluster(9, dtype, seed=4)
    reference = _outputs(model, positions, species)
    generator = torch.Generator().manual_seed(3)
    for _ in range(3):
        shift = torch.randn(3, generator=generator, dtype=dtype) * 20.0  # [3] Å
        moved = _outputs(model, positions + shift, species)
        # the charges sum to zero per structure (a neutral molecule), so Σ q_i (r_i + t) = Σ q_i r_i
        _close(moved["dipole"], reference["dipole"], dtype, 20.0 * reference["dipole"].abs().max())
        _close(moved["polarizability"], reference["polarizability"], dtype, reference["polarizability"].abs().max())


def test_atomic_charges_alone_would_make_the_dipole_origin_dependent():
    """The neutrality constraint is what the translation test checks: without it the dipole moves by (Σq) t."""
    model = make_property_model(torch.float64, heads=["dipole"])
    positions, species = _cluster(9, torch.float64, seed=4)
    head = model.heads["dipole"]
    features = model.network.features(positions, species, *_edges(model, positions))
    raw_charges = head.linear(features)[:, 0].detach()  # [N] before the shift to a zero sum
    assert abs(float(raw_charges.sum())) > 1e-3


def _edges(model, positions):
    edge_index, vectors, _ = torch.ops.equiforce.neighbor_list(positions, model.cutoff, None, False)
    return edge_index, vectors


@pytest.mark.parametrize("dtype", DTYPES)
def test_heads_are_invariant_under_permutations(dtype):
    model = make_property_model(dtype)
    positions, species = _cluster(9, dtype, seed=5)
    reference = _outputs(model, positions, species)
    for seed in range(3):
        order = torch.randperm(9, generator=torch.Generator().manual_seed(seed))
        moved = _outputs(model, positions[order], species[order])
        for name, value in reference.items():
            _close(moved[name], value, dtype, value.abs().max())


def test_a_planar_structure_has_zero_pseudoscalar():
    """A plane of symmetry maps the structure onto itself, so s = -s."""
    model = make_property_model(torch.float64, heads=["pseudoscalar"])
    positions, species = _cluster(8, torch.float64, seed=6)
    positions[:, 2] = 0.0
    assert abs(float(_outputs(model, positions, species)["pseudoscalar"])) < 1e-12
    positions[0, 2] = 0.4  # out of the plane: chiral in general
    assert abs(float(_outputs(model, positions, species)["pseudoscalar"])) > 1e-6


# ------------------------------------------------------------------------------------------------ enantiomers
@pytest.mark.parametrize("hidden_parity", ["natural", "both"])
def test_o3_model_gives_hydrogen_peroxide_enantiomers_equal_energies_and_mirrored_forces(hidden_parity):
    dtype = torch.float64
    model = make_model(dtype, hidden_parity=hidden_parity, num_layers=3)
    right, species = hydrogen_peroxide(math.radians(112.0))
    left, _ = hydrogen_peroxide(math.radians(-112.0))
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=dtype))  # the reflection z -> -z maps one onto the other
    torch.testing.assert_close(left, right @ mirror, rtol=0, atol=1e-15)
    generator = torch.Generator().manual_seed(1)
    rotation = random_o3(generator, improper=False)  # and the mirror image turned around, too
    energy_r, forces_r = energy_and_forces(model, right, species)
    energy_l, forces_l = energy_and_forces(model, left @ rotation.T, species)
    assert float(forces_r.abs().max()) > 1e-4
    _close(energy_l, energy_r, dtype, energy_r.abs())
    _close(forces_l, forces_r @ mirror @ rotation.T, dtype, forces_r.abs().max())


def test_pseudoscalar_head_tells_hydrogen_peroxide_enantiomers_apart():
    model = make_property_model(torch.float64)
    right, species = hydrogen_peroxide(math.radians(112.0))
    left, _ = hydrogen_peroxide(math.radians(-112.0))
    s_right = float(_outputs(model, right, species)["pseudoscalar"])
    s_left = float(_outputs(model, left, species)["pseudoscalar"])
    assert abs(s_right) > 1e-6
    assert s_left == pytest.approx(-s_right, rel=1e-10)
    trans = float(_outputs(model, *hydrogen_peroxide(math.pi))["pseudoscalar"])  # planar: achiral
    assert abs(trans) < 1e-12


# ------------------------------------------------------------------------------------------------ the model
def test_scripted_property_model_equals_eager():
    model = make_property_model(torch.float64)
    compiled = script(model)
    positions, species = _cluster(9, torch.float64, seed=8)
    eager, scripted = _outputs(model, positions, species), _outputs(compiled, positions, species)
    assert eager.keys() == scripted.keys() == {"energy", *ALL_HEADS}
    for name in eager:
        torch.testing.assert_close(scripted[name], eager[name], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(compiled(positions, species), model(positions, species), rtol=1e-12, atol=1e-12)


def test_batch_properties_equal_the_properties_of_each_structure():
    model = make_property_model(torch.float64)
    from equiforce.data import Structure, collate, structure_to_graph

    structures = [Structure(["H", "O", "O", "H", "H"][: n], _cluster(n, torch.float64, n)[0], None, None, None)
                  for n in (3, 5, 4)]
    batch = collate([structure_to_graph(s, ["H", "O"], model.cutoff) for s in structures])
    outputs = model.batch_properties(batch.positions, batch.species, batch.edge_index, batch.edge_offsets,
                                     batch.batch, batch.num_graphs)
    start = 0
    for k, structure in enumerate(structures):
        n = structure.num_atoms
        single = _outputs(model, batch.positions[start:start + n], batch.species[start:start + n])
        for name, value in single.items():
            torch.testing.assert_close(outputs[name][k].detach(), value, rtol=1e-10, atol=1e-12)
        start += n


def test_heads_leave_the_energy_path_and_its_parameter_names_unchanged():
    energy_model = make_model(torch.float64, seed=2, hidden_parity="both", num_layers=3)
    property_model = make_property_model(torch.float64, seed=5)
    energy_keys = set(energy_model.state_dict())
    assert all(key.startswith("network.") or key == "atomic_numbers" for key in energy_keys)
    extra = set(property_model.state_dict()) - energy_keys
    assert energy_keys <= set(property_model.state_dict()) and extra
    assert all(key.startswith("heads.") for key in extra)
    # an energy-only checkpoint loads into the property model, and then both give the same energy and forces
    missing, unexpected = property_model.load_state_dict(energy_model.state_dict(), strict=False)
    assert not unexpected and set(missing) == extra
    positions, species = _cluster(9, torch.float64, seed=9)
    e1, f1 = energy_and_forces(energy_model, positions, species)
    e2, f2 = energy_and_forces(property_model, positions, species)
    assert torch.equal(e1, e2) and torch.equal(f1, f2)
    # (summed per structure with index_add rather than .sum(): equal up to rounding)
    torch.testing.assert_close(_outputs(property_model, positions, species)["energy"], e1, rtol=1e-13, atol=0)


def test_export_writes_the_energy_model_or_on_request_the_property_model(tmp_path):
    model = make_property_model(torch.float64).eval()
    set_radial_table(model)  # the files interpolate radial tables: compare with the same code path
    positions, species = _cluster(9, torch.float64, seed=10)
    energy_path, property_path = str(tmp_path / "energy.pt"), str(tmp_path / "properties.pt")
    metadata = equiforce.export_model(model, energy_path, dtype="float64")
    assert "outputs" not in metadata and metadata["config"]["heads"] == ALL_HEADS
    module, _ = equiforce.load_model(energy_path)
    assert not hasattr(module, "heads")
    torch.testing.assert_close(module(positions, species), model(positions, species).detach(), rtol=1e-12, atol=0)
    metadata = equiforce.export_model(model, property_path, dtype="float64", properties=True)
    assert metadata["outputs"] == ["energy"] + ALL_HEADS
    module, _ = equiforce.load_model(property_path)
    for name, value in _outputs(model, positions, species).items():
        torch.testing.assert_close(module.properties(positions, species)[name], value, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------ configuration
def test_config_without_heads_round_trips_as_before():
    config = small_config()
    assert config.heads == [] and "heads" not in config.to_dict()
    assert equiforce.ModelConfig.from_dict(config.to_dict()) == config
    with_heads = small_config(heads=["dipole"])
    assert equiforce.ModelConfig.from_dict(with_heads.to_dict()).heads == ["dipole"]
    with pytest.raises(ValueError, match="unknown heads"):
        small_config(heads=["quadrupole"])


def test_pseudoscalar_head_without_odd_scalar_features_is_a_clear_error():
    for settings in (dict(hidden_parity="natural"), dict(parity=False), dict(hidden_parity="both", num_layers=2)):
        with pytest.raises(ValueError, match="0o"):
            make_property_model(heads=["pseudoscalar"], **{"num_layers": 3, **settings})


def test_dipole_of_a_periodic_cell_is_refused():
    model = make_property_model(torch.float64, heads=["dipole"])
    positions, species = _cluster(6, torch.float64, seed=0)
    with pytest.raises(ValueError, match="non-periodic"):
        model.properties(positions, species, torch.eye(3, dtype=torch.float64) * 8.0)
    compiled = script(model)
    with pytest.raises(Exception, match="non-periodic"):
        compiled.properties(positions, species, torch.eye(3, dtype=torch.float64) * 8.0)
    polarizability = make_property_model(torch.float64, heads=["polarizability"])  # fine in a cell
    assert polarizability.properties(positions, species, torch.eye(3, dtype=torch.float64) * 8.0)[
        "polarizability"].shape == (3, 3)


def test_change_of_basis_is_that_of_e3nn_reduced_tensor_products():
    reference = o3.ReducedTensorProducts("ij=ji", i="1o")
    assert str(reference.irreps_out) == "1x0e+1x2e"
    torch.testing.assert_close(symmetric_change_of_basis(), reference.change_of_basis.double(), rtol=0, atol=1e-6)
