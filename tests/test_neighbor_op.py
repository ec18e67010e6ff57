"""The native neighbour-list op (torch.ops.equiforce.*, wrapped by equiforce.ops) against independent references.

References: a pure-torch brute force over lattice translations (below), ase.neighborlist and scipy's periodic
k-d tree. Pairs are compared as sets of (i, j, lattice shift); vectors to 1e-12 (float64) or 1e-5 (float32).
"""
import math
import os
import subprocess
import sys
import textwrap
from typing import Optional

import numpy as np
import pytest
import torch
from torch import Tensor

import equiforce.ops as ops

DTYPES = [torch.float32, torch.float64]
VECTOR_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


# ----------------------------------------------------------------------------------------------- references
def brute_force(positions: Tensor, cutoff: float, box: Optional[Tensor] = None):
    """Every (i, j, shift) with |r_j + shift @ box - r_i| < cutoff, trying every lattice translation, in float64.

    Returns (i [E], j [E], shifts [E, 3] integer-valued float64, vectors [E, 3]).
    """
    pos = positions.detach().to(torch.float64)
    if box is None:
        d = pos.unsqueeze(0) - pos.unsqueeze(1)  # [i, j, 3] = r_j - r_i
        mask = (d * d).sum(-1) < cutoff**2
        mask.fill_diagonal_(False)
        i, j = mask.nonzero(as_tuple=True)
        return i, j, torch.zeros(len(i), 3, dtype=torch.float64), d[i, j]
    box = box.detach().to(torch.float64)
    frac = pos @ torch.linalg.inv(box)
    wrap = torch.floor(frac)
    wrapped = pos - wrap @ box
    heights = 1.0 / torch.linalg.inv(box).norm(dim=0)
    reach = [int(math.ceil(cutoff / float(h))) for h in heights]  # wrapped: |s_j + t - s_i| < cutoff / h
    found = []
    for ta in range(-reach[0], reach[0] + 1):
        for tb in range(-reach[1], reach[1] + 1):
            for tc in range(-reach[2], reach[2] + 1):
                t = torch.tensor([ta, tb, tc], dtype=torch.float64)
                d = wrapped.unsqueeze(0) + t @ box - wrapped.unsqueeze(1)
                mask = (d * d).sum(-1) < cutoff**2
                if ta == tb == tc == 0:
                    mask.fill_diagonal_(False)
                i, j = mask.nonzero(as_tuple=True)
                if len(i):
                    shifts = t.expand(len(i), 3) - wrap[j] + wrap[i]
                    found.append((i, j, shifts, pos[j] - pos[i] + shifts @ box))
    if not found:
        return (torch.zeros(0, dtype=torch.long),) * 2 + (torch.zeros(0, 3, dtype=torch.float64),) * 2
    return tuple(torch.cat(parts) for parts in zip(*found))


def canonical(i, j, shifts, vectors=None):
    """Sort a pair list by (i, j, shift) so that two lists can be compared element by element."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    s = np.rint(np.asarray(shifts, dtype=np.float64)).astype(np.int64).reshape(-1, 3)
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
    key = np.stack([i, j, s[:, 0], s[:, 1], s[:, 2]], axis=1)[order]
    if vectors is None:
        return key, None
    return key, np.asarray(vectors, dtype=np.float64).reshape(-1, 3)[order]


def assert_same_list(got, expected, dtype):
    """got/expected: (i, j, shifts, vectors)."""
    key_got, vec_got = canonical(*got)
    key_exp, vec_exp = canonical(*expected)
    assert key_got.shape == key_exp.shape, f"{len(key_got)} pairs, expected {len(key_exp)}"
    assert np.array_equal(key_got, key_exp)
    scale = max(1.0, float(np.abs(vec_exp).max(initial=0.0)))
    np.testing.assert_allclose(vec_got, vec_exp, rtol=0, atol=VECTOR_TOL[dtype] * scale)


def op_list(positions, cutoff, box=None):
    pairs, vectors, shifts = ops.neighbor_list_with_shifts(positions, cutoff, box)
    return pairs[0], pairs[1], shifts, vectors.detach()


# ----------------------------------------------------------------------------------------------- systems
def reduced_box(rng: np.random.Generator, volume: float, dtype=torch.float64) -> Tensor:
    """Random triclinic box in OpenMM's reduced form with the given volume."""
    aspect = rng.uniform(0.8, 1.25, size=3)
    lengths = aspect * (volume / aspect.prod()) ** (1 / 3)
    ax, by, cz = lengths
    box = np.array(
        [
            [ax, 0.0, 0.0],
            [rng.uniform(-0.5, 0.5) * ax, by, 0.0],
            [rng.uniform(-0.5, 0.5) * ax, rng.uniform(-0.5, 0.5) * by, cz],
        ]
    )
    return torch.tensor(box, dtype=dtype)


def random_positions(rng, n, box: Tensor, spill: float = 0.0):
    """Uniform positions in the box; with spill > 0 some lie up to `spill` box lengths outside it."""
    frac = rng.uniform(-spill, 1.0 + spill, size=(n, 3))
    return torch.tensor(frac, dtype=box.dtype) @ box


def min_height(box: Tensor) -> float:
    return float((1.0 / torch.linalg.inv(box.double()).norm(dim=0)).min())


# ----------------------------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", [0.001, 0.03, 0.1])  # atoms / Å^3: gas to liquid water
@pytest.mark.parametrize("n", [1, 2, 17, 200])
def test_matches_brute_force_in_random_reduced_triclinic_boxes(n, density, dtype):
    rng = np.random.default_rng(1000 * n + int(1000 * density))
    cutoff = 5.0
    box = reduced_box(rng, n / density, dtype)
    positions = random_positions(rng, n, box, spill=0.3)
    assert_same_list(op_list(positions, cutoff, box), brute_force(positions, cutoff, box), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width_over_cutoff", [2.0 + 1e-6, 2.0 - 1e-6, 1.5, 1.0, 0.7, 0.3])
def test_boxes_around_and_below_twice_the_cutoff_list_every_image(width_over_cutoff, dtype):
    rng = np.random.default_rng(int(width_over_cutoff * 1e6))
    cutoff = 4.0
    box = reduced_box(rng, 1.0, torch.float64)
    box = box * (width_over_cutoff * cutoff / min_height(box))  # narrowest height = width_over_cutoff * cutoff
    box = box.to(dtype)
    n = 12 if width_over_cutoff >= 1.0 else 4
    positions = random_positions(rng, n, box)
    got = op_list(positions, cutoff, box)
    expected = brute_force(positions, cutoff, box)
    assert_same_list(got, expected, dtype)
    if width_over_cutoff <= 1.5:
        # several images of one j around one i
        key, _ = canonical(*got)
        assert len(np.unique(key[:, :2], axis=0)) < len(key)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_atoms_half_a_box_apart_meet_both_images_only_below_twice_the_cutoff(dtype):
    cutoff = 4.0
    for width, expected_pairs in [(2 * cutoff * (1 - 1e-5), 4), (2 * cutoff * (1 + 1e-5), 0)]:
        box = torch.tensor([[20.0, 0, 0], [3.0, 20.0, 0], [0.0, 0.0, width]], dtype=dtype)
        positions = torch.tensor([[1.0, 2.0, 0.0], [1.0, 2.0, 0.5 * width]], dtype=dtype)
        pairs, vectors, shifts = ops.neighbor_list_with_shifts(positions, cutoff, box)
        assert pairs.shape[1] == expected_pairs
        if expected_pairs:
            assert sorted(shifts[:, 2].tolist()) == [-1.0, 0.0, 0.0, 1.0]  # j seen from i, i seen from j


def test_a_lone_atom_neighbours_its_own_images():
    box = torch.diag(torch.tensor([3.0, 3.0, 3.0], dtype=torch.float64))
    pairs, vectors, shifts = ops.neighbor_list_with_shifts(torch.zeros(1, 3, dtype=torch.float64), 4.5, box)
    assert pairs.tolist() == [[0] * 18, [0] * 18]  # 6 face and 12 edge images; corners are 5.2 away
    assert sorted(vectors.norm(dim=1).round(decimals=6).tolist()) == [3.0] * 6 + [round(18**0.5, 6)] * 12
    assert torch.equal(shifts @ box, vectors)


def test_general_non_reduced_boxes():
    """Any non-degenerate box works: rotated (not lower triangular), strongly skewed, left-handed."""
    rng = np.random.default_rng(7)
    rotation = torch.linalg.qr(torch.tensor(rng.normal(size=(3, 3))))[0]
    skewed = torch.tensor([[9.0, 0.0, 0.0], [7.0, 8.0, 0.0], [-6.0, 5.0, 10.0]], dtype=torch.float64)
    left_handed = torch.tensor([[-9.0, 0.0, 0.0], [2.0, 8.5, 0.0], [1.0, -3.0, -10.0]], dtype=torch.float64)
    for box in (skewed @ rotation, skewed, left_handed):
        positions = random_positions(rng, 100, box, spill=1.0)
        assert_same_list(op_list(positions, 4.5, box), brute_force(positions, 4.5, box), torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 2, 60, 400])
def test_non_periodic_matches_brute_force(n, dtype):
    rng = np.random.default_rng(n)
    positions = torch.tensor(rng.normal(scale=6.0, size=(n, 3)), dtype=dtype)
    assert_same_list(op_list(positions, 3.0), brute_force(positions, 3.0), dtype)


def test_non_periodic_degenerate_geometries():
    line = torch.tensor([[float(k), 0.0, 0.0] for k in range(10)], dtype=torch.float64)
    plane = torch.tensor([[float(a), float(b), 0.0] for a in range(6) for b in range(6)], dtype=torch.float64) * 0.9
    duplicate = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.5, 2.0, 3.0]], dtype=torch.float64)
    far = torch.tensor([[0.0, 0.0, 0.0], [1e6, 0.0, 0.0], [1e6, 1.0, 0.0]], dtype=torch.float64)
    for positions in (line, plane, duplicate, far):
        assert_same_list(op_list(positions, 1.95), brute_force(positions, 1.95), torch.float64)


def test_vectors_equal_positions_and_shifts():
    rng = np.random.default_rng(3)
    box = reduced_box(rng, 2000.0)
    positions = random_positions(rng, 200, box, spill=5.0)  # far outside the box
    pairs, vectors, shifts = ops.neighbor_list_with_shifts(positions, 5.0, box)
    assert torch.all(shifts == torch.round(shifts))
    expected = positions[pairs[1]] - positions[pairs[0]] + shifts @ box
    torch.testing.assert_close(vectors, expected, rtol=0, atol=1e-11)
    assert bool((vectors.norm(dim=1) < 5.0).all())


# ----------------------------------------------------------------------------------------------- ASE, scipy
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("periodic", [True, False])
def test_matches_ase(seed, periodic):
    primitive_neighbor_list = pytest.importorskip("ase.neighborlist").primitive_neighbor_list

    rng = np.random.default_rng(seed)
    cutoff = 4.0 + seed
    box = reduced_box(rng, 600 / 0.05)
    positions = random_positions(rng, 600, box)
    i, j, S, D = primitive_neighbor_list(
        "ijSD", [periodic] * 3, box.numpy(), positions.numpy(), cutoff, self_interaction=False
    )
    got = op_list(positions, cutoff, box if periodic else None)
    assert_same_list(got, (i, j, S, D), torch.float64)


def test_20000_atoms_of_water_density_match_a_periodic_kd_tree():
    cKDTree = pytest.importorskip("scipy.spatial").cKDTree

    n, cutoff = 20000, 5.0
    length = (n / 0.1) ** (1 / 3)
    rng = np.random.default_rng(20000)
    frac = rng.random((n, 3))
    positions = torch.tensor(frac * length)
    box = torch.eye(3, dtype=torch.float64) * length
    pairs, vectors, shifts = ops.neighbor_list_with_shifts(positions, cutoff, box)
    tree_pairs = cKDTree(frac * length, boxsize=length).query_pairs(cutoff, output_type="ndarray")
    assert pairs.shape[1] == 2 * len(tree_pairs)  # box > 2 cutoff: one image per pair, both directions
    i, j = pairs.numpy()
    upper = i < j
    assert np.array_equal(np.sort(i[upper] * n + j[upper]), np.sort(tree_pairs[:, 0] * n + tree_pairs[:, 1]))
    assert bool((vectors.norm(dim=1) < cutoff).all())
    torch.testing.assert_close(vectors, positions[pairs[1]] - positions[pairs[0]] + shifts @ box, rtol=0, atol=1e-11)
    assert bool((torch.diff(pairs[0]) >= 0).all()), "pairs are grouped by i in increasing order"


def test_agrees_with_the_pure_torch_reference_module():
    neighbors = pytest.importorskip("equiforce.neighbors")
    rng = np.random.default_rng(11)
    for n, volume, cutoff in [(200, 2000.0, 5.0), (30, 300.0, 4.0), (5, 60.0, 5.0)]:
        box = reduced_box(rng, volume)
        positions = random_positions(rng, n, box, spill=0.5)
        edge_index, shifts = neighbors.neighbor_list(positions, cutoff, box)
        vectors = positions[edge_index[1]] - positions[edge_index[0]] + shifts @ box
        assert_same_list(op_list(positions, cutoff, box), (*edge_index, shifts, vectors), torch.float64)


# ----------------------------------------------------------------------------------------------- determinism
def test_output_is_identical_for_any_thread_count():
    rng = np.random.default_rng(5)
    box = reduced_box(rng, 3000 / 0.1)
    positions = random_positions(rng, 3000, box, spill=0.2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.neighbor_list_with_shifts(positions, 5.0, box)
        torch.set_num_threads(max(2, threads))
        many = ops.neighbor_list_with_shifts(positions, 5.0, box)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------- gradients
def _small_periodic_system(dtype=torch.float64):
    rng = np.random.default_rng(2)
    box = reduced_box(rng, 40.0, dtype)  # heights ~3.4 < cutoff: several images
    positions = random_positions(rng, 5, box, spill=0.5)
    return positions, box


def test_gradcheck_vectors_wrt_positions_and_box():
    positions, box = _small_periodic_system()
    positions.requires_grad_(True)
    box.requires_grad_(True)

    def vectors(p, b):
        return ops.neighbor_list(p, 4.0, b)[1]

    assert vectors(positions, box).shape[0] > 20
    assert torch.autograd.gradcheck(vectors, (positions, box))
    assert torch.autograd.gradgradcheck(vectors, (positions, box))


def test_force_training_double_backward_matches_the_formula():
    """Loss on forces (-dE/dr) differentiated again, as in training on forces."""
    positions, box = _small_periodic_system()
    weight = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def force_loss(vectors_of):
        p = positions.detach().clone().requires_grad_(True)
        energy = torch.exp(-weight * vectors_of(p).norm(dim=1)).sum()
        (forces,) = torch.autograd.grad(-energy, p, create_graph=True)
        return torch.autograd.grad(forces.pow(2).sum(), weight)[0]

    pairs, _, shifts = ops.neighbor_list_with_shifts(positions, 4.0, box)
    got = force_loss(lambda p: ops.neighbor_list(p, 4.0, box)[1])
    expected = force_loss(lambda p: p[pairs[1]] - p[pairs[0]] + shifts @ box)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_gradients_match_the_differentiable_formula():
    positions, box = _small_periodic_system()
    positions.requires_grad_(True)
    box.requires_grad_(True)
    pairs, vectors, shifts = ops.neighbor_list_with_shifts(positions, 4.0, box)
    energy = torch.exp(-vectors.norm(dim=1)).sum()
    formula = positions[pairs[1]] - positions[pairs[0]] + shifts @ box
    reference = torch.exp(-formula.norm(dim=1)).sum()
    got = torch.autograd.grad(energy, (positions, box))
    expected = torch.autograd.grad(reference, (positions, box))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_non_periodic_gradcheck_and_float32_backward():
    positions = torch.tensor(np.random.default_rng(4).normal(size=(6, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: ops.neighbor_list(p, 2.5)[1], (positions,))
    assert torch.autograd.gradgradcheck(lambda p: ops.neighbor_list(p, 2.5)[1], (positions,))
    p32 = positions.detach().float().requires_grad_(True)
    (grad,) = torch.autograd.grad(ops.neighbor_list(p32, 2.5)[1].pow(2).sum(), p32)
    assert grad.dtype == torch.float32


# ----------------------------------------------------------------------------------------------- fixed capacity
def test_fixed_capacity_pads_and_matches_the_dynamic_list():
    rng = np.random.default_rng(9)
    box = reduced_box(rng, 500 / 0.1)
    positions = random_positions(rng, 500, box)
    pairs, vectors = ops.neighbor_list(positions, 5.0, box)
    total = pairs.shape[1]
    fixed_pairs, fixed_vectors, num_pairs, overflow = ops.neighbor_list_fixed(positions, 5.0, total + 100, box)
    assert fixed_pairs.shape == (2, total + 100) and fixed_vectors.shape == (total + 100, 3)
    assert int(num_pairs) == total and not bool(overflow)
    assert torch.equal(fixed_pairs[:, :total], pairs) and torch.equal(fixed_vectors[:total], vectors)
    assert bool((fixed_pairs[:, total:] == -1).all()) and bool((fixed_vectors[total:] == 0).all())
    ops.check_overflow(num_pairs, overflow, total + 100)  # does not raise
    _, _, shifts = ops.neighbor_list_with_shifts(positions, 5.0, box)
    raw = torch.ops.equiforce.neighbor_list_fixed(positions, 5.0, total + 100, box, True)
    assert torch.equal(raw[2][:total], shifts) and bool((raw[2][total:] == 0).all())


def test_fixed_capacity_overflow_is_flagged_and_raised():
    rng = np.random.default_rng(10)
    box = reduced_box(rng, 300 / 0.1)
    positions = random_positions(rng, 300, box)
    pairs, _ = ops.neighbor_list(positions, 5.0, box)
    total = pairs.shape[1]
    for capacity in (0, total // 2, total - 1):
        fixed_pairs, _, num_pairs, overflow = ops.neighbor_list_fixed(positions, 5.0, capacity, box)
        assert bool(overflow) and int(num_pairs) == total
        assert torch.equal(fixed_pairs, pairs[:, :capacity])  # the prefix, never a silently different list
        with pytest.raises(RuntimeError, match=f"found {total} pairs but max_pairs is {capacity}"):
            ops.check_overflow(num_pairs, overflow, capacity)
    _, _, num_pairs, overflow = ops.neighbor_list_fixed(positions, 5.0, total, box)
    assert not bool(overflow) and int(num_pairs) == total


def test_fixed_capacity_gradients_ignore_padding():
    positions, box = _small_periodic_system()
    positions.requires_grad_(True)
    box.requires_grad_(True)
    total = ops.neighbor_list(positions, 4.0, box)[0].shape[1]
    assert torch.autograd.gradcheck(lambda p, b: ops.neighbor_list_fixed(p, 4.0, total + 7, b)[1], (positions, box))
    assert torch.autograd.gradgradcheck(lambda p: ops.neighbor_list_fixed(p, 4.0, total + 7, box.detach())[1], (positions,))
    dynamic = torch.autograd.grad(ops.neighbor_list(positions, 4.0, box)[1].pow(3).sum(), (positions, box))
    fixed = torch.autograd.grad(ops.neighbor_list_fixed(positions, 4.0, total + 7, box)[1].pow(3).sum(), (positions, box))
    for a, b in zip(dynamic, fixed):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------- TorchScript
class PairEnergy(torch.nn.Module):
    """A smooth pair energy over the op's neighbour list (cosine cutoff)."""

    def __init__(self, cutoff: float, max_pairs: int = -1):
        super().__init__()
        self.cutoff = cutoff
        self.max_pairs = max_pairs

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        if self.max_pairs >= 0:
            pairs, vectors, num_pairs, overflow = ops.neighbor_list_fixed(positions, self.cutoff, self.max_pairs, box)
            mask = (pairs[0] >= 0).to(positions.dtype)
        else:
            pairs, vectors = ops.neighbor_list(positions, self.cutoff, box)
            mask = torch.ones(vectors.shape[0], dtype=positions.dtype, device=positions.device)
        r = torch.sqrt((vectors * vectors).sum(1) + 1e-12)
        return (mask * (torch.cos(r * math.pi / self.cutoff) + 1.0)).sum() * 0.25


@pytest.fixture(scope="module")
def fresh_process(tmp_path_factory):
    """One fresh Python process, started with EQUIFORCE_NO_AVX2=1 (the portable distance test), that first tries
    to load a saved TorchScript module without the op library, then imports equiforce.ops, loads and evaluates
    the saved modules, and computes a neighbour list. Returns what it produced and what this process expects."""
    folder = tmp_path_factory.mktemp("fresh_process")
    rng = np.random.default_rng(12)
    box = reduced_box(rng, 200 / 0.1)
    positions = random_positions(rng, 200, box)
    big_box = reduced_box(rng, 5000 / 0.1)
    big_positions = random_positions(rng, 5000, big_box, spill=0.2)
    energies = {}
    for max_pairs in (-1, 4000):
        eager = PairEnergy(5.0, max_pairs)
        scripted = torch.jit.script(eager)
        torch.testing.assert_close(scripted(positions, box), eager(positions, box))
        scripted.save(str(folder / f"pair_energy_{max_pairs}.pt"))
        energies[max_pairs] = float(eager(positions, box))
    torch.save({"positions": positions, "box": box, "big_positions": big_positions, "big_box": big_box},
               folder / "inputs.pt")
    script = textwrap.dedent(
        f"""
        import torch
        folder = {str(folder)!r}
        try:
            torch.jit.load(folder + "/pair_energy_-1.pt")
            load_error = None
        except RuntimeError as error:
            load_error = str(error)
        import equiforce.ops as ops
        inputs = torch.load(folder + "/inputs.pt")
        energies = {{m: float(torch.jit.load(folder + f"/pair_energy_{{m}}.pt")(inputs["positions"], inputs["box"]))
                     for m in (-1, 4000)}}
        portable = ops.neighbor_list_with_shifts(inputs["big_positions"], 5.0, inputs["big_box"])
        torch.save({{"load_error": load_error, "energies": energies, "portable": portable}}, folder + "/out.pt")
        """
    )
    env = dict(os.environ, EQUIFORCE_NO_AVX2="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    produced = torch.load(folder / "out.pt")
    expected = {"energies": energies, "list": ops.neighbor_list_with_shifts(big_positions, 5.0, big_box)}
    return produced, expected


def test_torchscript_modules_script_save_and_load_in_a_fresh_process(fresh_process):
    produced, expected = fresh_process
    assert produced["load_error"] is not None and "equiforce" in produced["load_error"], "needs `import equiforce.ops`"
    for max_pairs in (-1, 4000):
        assert produced["energies"][max_pairs] == pytest.approx(expected["energies"][max_pairs], rel=1e-12)


def test_vector_and_portable_distance_tests_give_identical_lists(fresh_process):
    """The AVX2 path (chosen at run time where the CPU has it) and the portable path agree bit for bit."""
    produced, expected = fresh_process
    for a, b in zip(expected["list"], produced["portable"]):
        assert torch.equal(a, b)


def test_torchscript_module_runs_inside_openmm():
    openmm = pytest.importorskip("openmm")
    openmmtorch = pytest.importorskip("openmmtorch")
    rng = np.random.default_rng(13)
    box_nm = reduced_box(rng, 60 / 0.1) * 0.1  # nm
    positions_nm = random_positions(rng, 60, box_nm)
    module = torch.jit.script(PairEnergy(0.5))  # cutoff in nm at the OpenMM boundary
    system = openmm.System()
    for _ in range(60):
        system.addParticle(1.0)
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in box_nm.tolist()])
    force = openmmtorch.TorchForce(module)
    force.setUsesPeriodicBoundaryConditions(True)
    system.addForce(force)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(positions_nm.numpy())
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = np.array(state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer))
    p = positions_nm.clone().requires_grad_(True)
    expected = module(p, box_nm)
    (grad,) = torch.autograd.grad(expected, p)
    assert energy == pytest.approx(expected.item(), rel=1e-10)
    np.testing.assert_allclose(forces, -grad.numpy(), rtol=1e-8, atol=1e-8)


# ----------------------------------------------------------------------------------------------- input checks
@pytest.mark.parametrize(
    "box_rows, message",
    [
        ([[5.0, 0, 0], [0, 0, 0], [0, 0, 5.0]], r"box vector b \(row 1\) has zero length"),
        ([[5.0, 0, 0], [0, 5.0, 0], [0, float("nan"), 5.0]], r"box vector c \(row 2\) is not finite"),
        ([[5.0, 0, 0], [0, 5.0, 0], [5.0, 5.0, 0]], "linearly dependent"),
        ([[0.05, 0, 0], [0, 5.0, 0], [0, 0, 5.0]], r"box too small for the cutoff.*a \(row 0\)"),
    ],
)
def test_invalid_boxes_are_named(box_rows, message):
    box = torch.tensor(box_rows, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=message):
        ops.neighbor_list(torch.zeros(3, 3, dtype=torch.float64), 4.0, box)


def test_invalid_inputs_are_rejected_with_clear_messages():
    good = torch.zeros(4, 3, dtype=torch.float64)
    box = torch.eye(3, dtype=torch.float64) * 10
    bad = good.clone()
    bad[2, 1] = float("inf")
    cases = [
        (lambda: ops.neighbor_list(torch.zeros(4, 2), 1.0), r"positions must have shape \[N, 3\]"),
        (lambda: ops.neighbor_list(torch.zeros(4, 3, dtype=torch.int64), 1.0), "float32 or float64"),
        (lambda: ops.neighbor_list(good, -1.0), "cutoff must be a positive finite number"),
        (lambda: ops.neighbor_list(good, float("nan")), "cutoff must be a positive finite number"),
        (lambda: ops.neighbor_list(good, 1.0, torch.eye(3)), "box dtype"),
        (lambda: ops.neighbor_list(good, 1.0, torch.eye(4, dtype=torch.float64)), r"box must have shape \[3, 3\]"),
        (lambda: ops.neighbor_list(bad, 1.0, box), "position of atom 2 is not finite"),
        (lambda: ops.neighbor_list(bad, 1.0), "position of atom 2 is not finite"),
        (lambda: ops.neighbor_list_fixed(good, 1.0, -1, box), "max_pairs must be >= 0"),
    ]
    for call, message in cases:
        with pytest.raises(RuntimeError, match=message):
            call()


# ----------------------------------------------------------------------------------------------- CUDA
@CUDA
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("periodic", [True, False])
def test_cuda_matches_cpu(dtype, periodic):
    rng = np.random.default_rng(21)
    for n, volume, cutoff in [(1, 50.0, 5.0), (40, 150.0, 5.0), (3000, 3000 / 0.1, 5.0)]:
        box = reduced_box(rng, volume, dtype)
        positions = random_positions(rng, n, box, spill=0.3)
        b = box if periodic else None
        cpu = ops.neighbor_list_with_shifts(positions, cutoff, b)
        gpu = ops.neighbor_list_with_shifts(positions.cuda(), cutoff, None if b is None else b.cuda())
        assert_same_list(
            (cpu[0][0], cpu[0][1], cpu[2], cpu[1]),
            (gpu[0][0].cpu(), gpu[0][1].cpu(), gpu[2].cpu(), gpu[1].cpu()),
            dtype,
        )
        assert bool((torch.diff(gpu[0][0]) >= 0).all())


@CUDA
def test_cuda_fixed_capacity_replays_in_a_cuda_graph():
    rng = np.random.default_rng(22)
    box = reduced_box(rng, 2000 / 0.1).cuda()
    positions = random_positions(rng, 2000, box.cpu()).cuda()
    capacity = 2000 * 80
    static_pos, static_box = positions.clone(), box.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            ops.neighbor_list_fixed(static_pos, 5.0, capacity, static_box)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = ops.neighbor_list_fixed(static_pos, 5.0, capacity, static_box)
    for step in range(3):
        static_pos.copy_(positions + 0.3 * step)
        static_box.copy_(box * (1.0 + 0.01 * step))
        graph.replay()
        torch.cuda.synchronize()
        ops.check_overflow(out[2], out[3], capacity)
        pairs, vectors = ops.neighbor_list(static_pos, 5.0, static_box)
        total = pairs.shape[1]
        assert int(out[2]) == total
        assert torch.equal(out[0][:, :total], pairs)
        torch.testing.assert_close(out[1][:total], vectors)
    _, _, num_pairs, overflow = ops.neighbor_list_fixed(static_pos, 5.0, 10, static_box)
    with pytest.raises(RuntimeError, match="overflow"):
        ops.check_overflow(num_pairs, overflow, 10)


@CUDA
def test_cuda_gradients_match_cpu():
    positions, box = _small_periodic_system()
    grads = []
    for device in ("cpu", "cuda"):
        p = positions.to(device).requires_grad_(True)
        b = box.to(device).requires_grad_(True)
        energy = torch.exp(-ops.neighbor_list(p, 4.0, b)[1].norm(dim=1)).sum()
        grads.append([g.cpu() for g in torch.autograd.grad(energy, (p, b))])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
