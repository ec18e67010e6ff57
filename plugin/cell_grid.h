// Cell grid shared by the CPU and CUDA neighbour-list kernels.
//
// The grid lives in fractional coordinates s = (r - origin) B^-1, where the rows of B are the lattice
// vectors (row-vector convention: r = s B + origin). Cell k along lattice direction d covers
// s_d in [k / n_d, (k + 1) / n_d). Two points closer than the cutoff differ in s_d by less than
// reach_d = cutoff / height_d, where height_d is the distance between the lattice planes spanned by
// the two other vectors. A search therefore visits, for atom i, the *unwrapped* cells
// u_d in [floor((s_d - reach_d) n_d), floor((s_d + reach_d) n_d)]; cell u maps to the stored cell
// u mod n and to the periodic image shift S = floor(u / n). Distinct u give distinct (cell, S), so every
// periodic image of every atom is visited at most once, also when the box is narrower than twice the
// cutoff (then an atom can meet several images of an atom, including of itself). Nothing here assumes
// OpenMM's reduced form; any non-degenerate box works. Lower-triangular boxes (OpenMM's and LAMMPS'
// convention, and every orthorhombic box) additionally get a spherical stencil: rows of cells that
// cannot hold a neighbour are skipped and runs of cells along a are trimmed to the sphere.
//
// Everything in this header compiles for the host and, under nvcc, for the device, so the CPU and
// CUDA kernels visit candidates in exactly the same order.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define EF_HD __host__ __device__ inline
#else
#define EF_HD inline
#endif

namespace equiforce {

// Bits of CellGrid::status. The CPU path turns them into TORCH_CHECK errors before searching; the
// CUDA path carries them on the device (no host synchronisation) and reports them afterwards.
enum StatusBits : int32_t {
  kStatusOk = 0,
  kBoxNotFinite = 1,
  kBoxDegenerate = 2,
  kBoxTooSmall = 4,
  kPositionsNotFinite = 8,
};

// A periodic search visits at most this many images of the box along each lattice vector on either
// side; it keeps image shifts within int8 in the packed CPU buffers. Reaching it needs a cutoff more
// than 60 box heights long (millions of images per atom), which is refused.
constexpr double kMaxReach = 60.0;
// Relative and absolute (fractional) slack that keeps rounding from dropping a pair near a cell face.
constexpr double kRelSlack = 1e-9;
constexpr double kFracSlack = 1e-9;

struct CellGrid {
  double B[9];       // lattice rows a, b, c (periodic) or diag(extent) (non-periodic)
  double Binv[9];    // inverse of B: s_k = sum_l (r_l - origin_l) Binv[3 l + k]
  double origin[3];  // zero for periodic systems, lower corner of the bounding box otherwise
  double reach[3];   // cutoff / height along each lattice direction, slightly inflated
  double cutoff;
  double cutoff2;
  int32_t n[3];      // cells along a, b, c; cell id = (c * n_b + b) * n_a + a
  int32_t periodic;
  int32_t lower_triangular;  // B[0][1] == B[0][2] == B[1][2] == 0: spherical stencil pruning
  int32_t status;            // StatusBits
};

EF_HD int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

EF_HD double ef_min(double a, double b) { return a < b ? a : b; }
EF_HD double ef_max(double a, double b) { return a > b ? a : b; }
EF_HD int64_t ef_min64(int64_t a, int64_t b) { return a < b ? a : b; }
EF_HD int64_t ef_max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Exact IEEE products and sums on both sides: the count and fill passes must agree bit for bit, so no
// fused multiply-add may be introduced on the device (the host build uses -ffp-contract=off).
EF_HD double exact_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
EF_HD double exact_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// Cartesian image shift S B for integer lattice shift S.
EF_HD void image_shift(const CellGrid& g, int64_t sa, int64_t sb, int64_t sc, double out[3]) {
  for (int l = 0; l < 3; ++l) {
    out[l] = exact_add(exact_add(exact_mul(double(sa), g.B[l]), exact_mul(double(sb), g.B[3 + l])), exact_mul(double(sc), g.B[6 + l]));
  }
}

// Squared distance test used by every pass: d = q_j + base with base = S B - r_i.
EF_HD double dist2(const double q[3], const double base[3], double d[3]) {
  d[0] = exact_add(q[0], base[0]);
  d[1] = exact_add(q[1], base[1]);
  d[2] = exact_add(q[2], base[2]);
  return exact_add(exact_add(exact_mul(d[0], d[0]), exact_mul(d[1], d[1])), exact_mul(d[2], d[2]));
}

EF_HD bool all_finite(const double* v, int n) {
  for (int k = 0; k < n; ++k) {
    if (!(v[k] - v[k] == 0.0)) return false;  // NaN and +-Inf give NaN
  }
  return true;
}

// Fill the grid. `box` holds 9 doubles (rows a, b, c) for a periodic system, or is null; then `lo` and
// `hi` are the bounding box of the positions. `sub` is the number of cells per cutoff length and
// `max_cells` caps the table (a sparse gas in a huge box gets cells larger than the cutoff).
EF_HD void make_grid(CellGrid& g, const double* box, const double* lo, const double* hi, double cutoff, int sub,
                     int64_t max_cells) {
  g.status = kStatusOk;
  g.cutoff = cutoff;
  g.cutoff2 = cutoff * cutoff;
  g.periodic = box != nullptr;
  if (box != nullptr) {
    for (int k = 0; k < 9; ++k) g.B[k] = box[k];
    for (int k = 0; k < 3; ++k) g.origin[k] = 0.0;
    if (!all_finite(g.B, 9)) g.status |= kBoxNotFinite;
  } else {
    for (int k = 0; k < 9; ++k) g.B[k] = 0.0;
    for (int k = 0; k < 3; ++k) {
      double ext = hi[k] - lo[k];
      if (!(ext - ext == 0.0)) g.status |= kPositionsNotFinite;
      ext = ef_max(ext, cutoff);
      g.B[4 * k] = ext * (1.0 + 1e-6);  // every atom strictly inside [0, 1)
      g.origin[k] = lo[k];
    }
    if (!all_finite(g.origin, 3)) g.status |= kPositionsNotFinite;
  }
  const double* B = g.B;
  // adjugate / determinant
  double adj[9];
  adj[0] = B[4] * B[8] - B[5] * B[7];
  adj[1] = B[2] * B[7] - B[1] * B[8];
  adj[2] = B[1] * B[5] - B[2] * B[4];
  adj[3] = B[5] * B[6] - B[3] * B[8];
  adj[4] = B[0] * B[8] - B[2] * B[6];
  adj[5] = B[2] * B[3] - B[0] * B[5];
  adj[6] = B[3] * B[7] - B[4] * B[6];
  adj[7] = B[1] * B[6] - B[0] * B[7];
  adj[8] = B[0] * B[4] - B[1] * B[3];
  const double det = B[0] * adj[0] + B[1] * adj[3] + B[2] * adj[6];
  double len[3];
  for (int k = 0; k < 3; ++k) len[k] = sqrt(B[3 * k] * B[3 * k] + B[3 * k + 1] * B[3 * k + 1] + B[3 * k + 2] * B[3 * k + 2]);
  const double scale = len[0] * len[1] * len[2];
  if (!(fabs(det) > 1e-10 * scale) || !(scale > 0.0)) g.status |= kBoxDegenerate;
  g.lower_triangular = (B[1] == 0.0 && B[2] == 0.0 && B[5] == 0.0) ? 1 : 0;
  if (g.status != kStatusOk) {
    // A harmless grid so that kernels launched regardless (CUDA, fixed capacity) find nothing.
    for (int k = 0; k < 9; ++k) g.Binv[k] = 0.0;
    for (int k = 0; k < 3; ++k) {
      g.n[k] = 1;
      g.reach[k] = 0.0;
    }
    return;
  }
  for (int k = 0; k < 9; ++k) g.Binv[k] = adj[k] / det;
  double nd[3];
  for (int k = 0; k < 3; ++k) {
    // |column k of B^-1| = 1 / height_k
    const double inv_h = sqrt(g.Binv[k] * g.Binv[k] + g.Binv[3 + k] * g.Binv[3 + k] + g.Binv[6 + k] * g.Binv[6 + k]);
    g.reach[k] = cutoff * inv_h * (1.0 + kRelSlack) + kFracSlack;
    if (g.periodic && g.reach[k] > kMaxReach) g.status |= kBoxTooSmall;
    nd[k] = floor(double(sub) / g.reach[k]);
    nd[k] = ef_min(ef_max(nd[k], 1.0), 1048576.0);
  }
  // Cap the table: shrink the grid uniformly (cells get larger, the stencil stays correct).
  const double cap = double(max_cells < 1 ? 1 : max_cells);
  while (nd[0] * nd[1] * nd[2] > cap) {
    const double f = cbrt(cap / (nd[0] * nd[1] * nd[2]));
    double shrunk[3];
    bool changed = false;
    for (int k = 0; k < 3; ++k) {
      shrunk[k] = ef_max(1.0, floor(nd[k] * f));
      changed = changed || shrunk[k] != nd[k];
    }
    if (!changed) {  // reduce the largest dimension by one
      int kmax = 0;
      for (int k = 1; k < 3; ++k)
        if (nd[k] > nd[kmax]) kmax = k;
      shrunk[kmax] = nd[kmax] - 1.0;
    }
    for (int k = 0; k < 3; ++k) nd[k] = shrunk[k];
  }
  for (int k = 0; k < 3; ++k) g.n[k] = int32_t(nd[k]);
  if (g.status != kStatusOk) {
    for (int k = 0; k < 3; ++k) {
      g.n[k] = 1;
      g.reach[k] = 0.0;
    }
  }
}

EF_HD int64_t num_cells(const CellGrid& g) { return int64_t(g.n[0]) * g.n[1] * g.n[2]; }

// Wrap one position into the primary cell. Returns false for a non-finite position. `s` receives the
// wrapped fractional coordinates, `r` the wrapped Cartesian position r - w B, `w` the integer wrap and
// the return value of `cell` the cell id.
EF_HD bool assign_cell(const CellGrid& g, const double p[3], double s[3], double r[3], int64_t w[3], int64_t* cell) {
  if (!all_finite(p, 3)) {
    for (int k = 0; k < 3; ++k) {
      s[k] = 0.0;
      r[k] = 0.0;
      w[k] = 0;
    }
    *cell = 0;
    return false;
  }
  double rel[3] = {p[0] - g.origin[0], p[1] - g.origin[1], p[2] - g.origin[2]};
  int64_t c[3];
  for (int k = 0; k < 3; ++k) {
    double sk = rel[0] * g.Binv[k] + rel[1] * g.Binv[3 + k] + rel[2] * g.Binv[6 + k];
    if (g.periodic) {
      const double fw = floor(sk);
      w[k] = int64_t(fw);
      sk -= fw;
    } else {
      w[k] = 0;
    }
    s[k] = sk;
    int64_t ck = int64_t(floor(sk * g.n[k]));
    c[k] = ef_min64(ef_max64(ck, 0), g.n[k] - 1);
  }
  if (g.periodic) {
    double sh[3];
    image_shift(g, w[0], w[1], w[2], sh);
    for (int k = 0; k < 3; ++k) r[k] = p[k] - sh[k];
  } else {
    for (int k = 0; k < 3; ++k) r[k] = p[k];
  }
  *cell = (c[2] * g.n[1] + c[1]) * g.n[0] + c[0];
  return true;
}

// Product of a coefficient and an interval [lo, hi].
EF_HD void scale_interval(double coef, double lo, double hi, double* out_lo, double* out_hi) {
  const double x = coef * lo, y = coef * hi;
  *out_lo = ef_min(x, y);
  *out_hi = ef_max(x, y);
}

EF_HD double gap(double x, double lo, double hi) { return ef_max(0.0, ef_max(lo - x, x - hi)); }

// floor(x) as an integer without a libm call (|x| < 2^62).
EF_HD int64_t floor_to_int(double x) {
  const int64_t i = int64_t(x);
  return i - (double(i) > x ? 1 : 0);
}

// floor_div for the common case |u| < n without an integer division.
EF_HD int64_t floor_div_near(int64_t u, int64_t n) {
  if (u >= 0 && u < n) return 0;
  if (u < 0 && u >= -n) return -1;
  return floor_div(u, n);
}

// Visit every run of sorted atoms that may hold a neighbour of an atom at wrapped Cartesian position
// r and wrapped fractional position s. `cell_start` has num_cells + 1 entries (prefix sums over the
// cell-sorted atoms). For each run the callback gets (begin, end, Sa, Sb, Sc): sorted atoms
// [begin, end) seen through the lattice image shift (Sa, Sb, Sc).
template <class F>
EF_HD void for_each_run(const CellGrid& g, const double r[3], const double s[3], const int64_t* cell_start, F&& visit) {
  const int64_t na = g.n[0], nb = g.n[1], nc = g.n[2];
  const double inv_nb = 1.0 / double(nb), inv_nc = 1.0 / double(nc);
  const double* B = g.B;
  const bool prune = g.lower_triangular != 0;
  const double rc2 = g.cutoff2 * (1.0 + 4 * kRelSlack);
  const double px = r[0] - g.origin[0], py = r[1] - g.origin[1], pz = r[2] - g.origin[2];
  const double inv_a0 = 1.0 / B[0];
  int64_t lo_c = floor_to_int((s[2] - g.reach[2]) * nc), hi_c = floor_to_int((s[2] + g.reach[2]) * nc);
  int64_t lo_b = floor_to_int((s[1] - g.reach[1]) * nb), hi_b = floor_to_int((s[1] + g.reach[1]) * nb);
  int64_t lo_a0 = floor_to_int((s[0] - g.reach[0]) * na), hi_a0 = floor_to_int((s[0] + g.reach[0]) * na);
  if (!g.periodic) {
    lo_c = ef_max64(lo_c, 0);
    hi_c = ef_min64(hi_c, nc - 1);
    lo_b = ef_max64(lo_b, 0);
    hi_b = ef_min64(hi_b, nb - 1);
    lo_a0 = ef_max64(lo_a0, 0);
    hi_a0 = ef_min64(hi_a0, na - 1);
  }
  const double eps = kFracSlack;
  const int64_t sb0 = floor_div_near(lo_b, nb), cb0 = lo_b - sb0 * nb;
  int64_t sc = floor_div_near(lo_c, nc), cc = lo_c - sc * nc;
  for (int64_t uc = lo_c; uc <= hi_c; ++uc, ++cc) {
    if (cc == nc) {
      cc = 0;
      ++sc;
    }
    const double sc_lo = double(uc) * inv_nc - eps, sc_hi = double(uc + 1) * inv_nc + eps;
    double gz2 = 0.0;
    if (prune) {
      double zlo, zhi;
      scale_interval(B[8], sc_lo, sc_hi, &zlo, &zhi);
      const double gz = gap(pz, zlo, zhi);
      gz2 = gz * gz;
      if (gz2 >= rc2) continue;
    }
    int64_t sb = sb0, cb = cb0;
    for (int64_t ub = lo_b; ub <= hi_b; ++ub, ++cb) {
      if (cb == nb) {
        cb = 0;
        ++sb;
      }
      int64_t lo_a = lo_a0, hi_a = hi_a0;
      if (prune) {
        const double sb_lo = double(ub) * inv_nb - eps, sb_hi = double(ub + 1) * inv_nb + eps;
        double y1, y2, y3, y4;
        scale_interval(B[4], sb_lo, sb_hi, &y1, &y2);
        scale_interval(B[7], sc_lo, sc_hi, &y3, &y4);
        const double gy = gap(py, y1 + y3, y2 + y4);
        const double rest = rc2 - gz2 - gy * gy;
        if (rest <= 0.0) continue;
        const double R = sqrt(rest);
        double x1, x2, x3, x4;
        scale_interval(B[3], sb_lo, sb_hi, &x1, &x2);
        scale_interval(B[6], sc_lo, sc_hi, &x3, &x4);
        // a0 * s_a + o in [px - R, px + R] for some o in [x1 + x3, x2 + x4]
        double sa_lo = (px - R - (x2 + x4)) * inv_a0, sa_hi = (px + R - (x1 + x3)) * inv_a0;
        if (sa_lo > sa_hi) {
          const double t = sa_lo;
          sa_lo = sa_hi;
          sa_hi = t;
        }
        lo_a = ef_max64(lo_a, floor_to_int((sa_lo - eps) * na));
        hi_a = ef_min64(hi_a, floor_to_int((sa_hi + eps) * na));
      }
      if (lo_a > hi_a) continue;
      const int64_t row = (cc * nb + cb) * na;
      int64_t sa = floor_div_near(lo_a, na);
      int64_t ca = lo_a - sa * na;
      int64_t ua = lo_a;
      while (ua <= hi_a) {
        const int64_t len = ef_min64(hi_a - ua, na - 1 - ca) + 1;  // cells in this run
        const int64_t begin = cell_start[row + ca];
        const int64_t end = cell_start[row + ca + len];
        if (begin < end) visit(begin, end, sa, sb, sc);
        ua += len;
        ca = 0;
        ++sa;
      }
    }
  }
}

}  // namespace equiforce
