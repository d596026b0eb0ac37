// The LSTM recurrence on batch-major rows in any order: the sort by decreasing length, the
// time-major copies in and out, and the final states at each row's own last step, done here
// with plain copies around `lstm_forward` / `lstm_backward`. In Python the same glue is a dozen
// tensor operations and their autograd nodes, which at small sizes cost more than the
// recurrence itself.
//
// x (B, T, k) batch-major; lengths: B ints in 1..T, or empty (all T). Rows are run sorted by
// decreasing length (stable), so the kernels' per-step row counts (`batch_sizes`) apply.
//
// Rows already in order and all of the full length (the common case in training) need no
// moving: a batch-major tensor is then the transpose of a time-major one. In training
// (`views`) the output is returned as a view of the state buffer S, and an input or output
// gradient that is such a view is read in place: in a stack of layers, a layer's input is the
// layer below's state buffer and its output gradient the layer above's dx, without copies.

#include "common.h"

namespace wlnet {
namespace {

struct Rows {
  std::vector<int64_t> order;        // sorted position j ↔ row order[j]
  std::vector<int64_t> len;          // length of sorted row j
  std::vector<int64_t> batch_sizes;  // rows alive at each step, empty when none is shorter
  int64_t Tm = 0;                    // the longest length
  bool identity = true;              // order[j] == j: rows need no moving
};

Rows sort_rows(const std::vector<int64_t>& lengths, int64_t B, int64_t T) {
  Rows r;
  r.order.resize(B);
  for (int64_t b = 0; b < B; ++b) r.order[b] = b;
  if (lengths.empty()) {
    r.len.assign(B, T);
    r.Tm = T;
    return r;
  }
  TORCH_CHECK(static_cast<int64_t>(lengths.size()) == B, "wlnet native: ", B, " lengths expected, got ",
              lengths.size());
  for (int64_t v : lengths) TORCH_CHECK(v >= 1 && v <= T, "wlnet native: a length ", v, " outside 1..", T);
  std::stable_sort(r.order.begin(), r.order.end(), [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  for (int64_t j = 0; j < B && r.identity; ++j) r.identity = r.order[j] == j;
  r.len.resize(B);
  for (int64_t j = 0; j < B; ++j) r.len[j] = lengths[r.order[j]];
  r.Tm = B > 0 ? r.len[0] : 0;
  if (B > 0 && r.len[B - 1] < r.Tm) {
    r.batch_sizes.assign(r.Tm, 0);
    for (int64_t j = 0; j < B; ++j)
      for (int64_t t = 0; t < r.len[j]; ++t) ++r.batch_sizes[t];
  }
  return r;
}

// Whether the rows need no moving between batch-major (B, T, ·) and time-major (T, B, ·).
bool in_order(const Rows& r, int64_t T) { return r.identity && r.Tm == T; }

// src (B, T, w) batch-major → (Tm, B, w) time-major contiguous, rows sorted (rows in order: the
// transpose, a view where src is a time-major tensor's transpose).
Tensor to_time_major(const Tensor& src_, const Rows& r) {
  if (in_order(r, src_.size(1))) return src_.transpose(0, 1).contiguous();
  const Tensor src = src_.contiguous();
  const int64_t B = src.size(0), T = src.size(1), w = src.size(2);
  Tensor dst = at::empty({r.Tm, B, w}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "wlnet_rows_in", [&] {
    const scalar_t* s = src.data_ptr<scalar_t>();
    scalar_t* d = dst.data_ptr<scalar_t>();
    for (int64_t t = 0; t < r.Tm; ++t)
      for (int64_t j = 0; j < B; ++j) std::copy_n(s + (r.order[j] * T + t) * w, w, d + (t * B + j) * w);
  });
  return dst;
}

// src (≥ Tm, B, w) time-major sorted, from row offset `first` → (B, T, w) batch-major in the rows'
// order, zero past each row's length (with `view` and rows in order: a view of src).
Tensor to_batch_major(const Tensor& src, int64_t first, const Rows& r, int64_t T, bool view) {
  if (view && in_order(r, T)) return src.narrow(0, first, T).transpose(0, 1);
  const int64_t B = src.size(1), w = src.size(2);
  Tensor dst = at::empty({B, T, w}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "wlnet_rows_out", [&] {
    const scalar_t* s = src.data_ptr<scalar_t>() + first * B * w;
    scalar_t* d = dst.data_ptr<scalar_t>();
    for (int64_t j = 0; j < B; ++j) {
      scalar_t* row = d + r.order[j] * T * w;
      for (int64_t t = 0; t < r.len[j]; ++t) std::copy_n(s + (t * B + j) * w, w, row + t * w);
      std::fill_n(row + r.len[j] * w, (T - r.len[j]) * w, scalar_t(0));
    }
  });
  return dst;
}

// (B, w) rows: sorted (dst[j] = v[order[j]]) or back in the rows' order (dst[order[j]] = v[j]).
Tensor permute_rows(const Tensor& v_, const Rows& r, bool to_sorted) {
  if (r.identity) return v_;
  const Tensor v = v_.contiguous();
  const int64_t B = v.size(0), w = v.numel() / std::max<int64_t>(B, 1);
  Tensor dst = at::empty_like(v);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "wlnet_rows_permute", [&] {
    const scalar_t* s = v.data_ptr<scalar_t>();
    scalar_t* d = dst.data_ptr<scalar_t>();
    for (int64_t j = 0; j < B; ++j) {
      if (to_sorted) {
        std::copy_n(s + r.order[j] * w, w, d + j * w);
      } else {
        std::copy_n(s + j * w, w, d + r.order[j] * w);
      }
    }
  });
  return dst;
}

optional<Tensor> sorted_state(const optional<Tensor>& v, const Rows& r) {
  if (!v) return c10::nullopt;
  return permute_rows(*v, r, true);
}

// A mask's rows sorted (per-step masks (B, T, w) cut to the longest length), or undefined.
optional<Tensor> sorted_mask(const optional<Tensor>& z, const Rows& r, bool per_step) {
  if (!z) return c10::nullopt;
  Tensor m = per_step && r.Tm < z->size(1) ? z->narrow(1, 0, r.Tm) : *z;
  return r.identity ? m.contiguous() : m.index_select(0, at::tensor(r.order, at::kLong)).contiguous();
}

}  // namespace

// Returns [out (B, T, n) zero past each end, s_T, c_T (B, n) in the rows' order, then what
// `lstm_backward_rows` takes: x_tm, wx, ws, zx, zs, zm (rows sorted), G, C, S, XI, SZ].
// views: out may be a view of S (training, where S is kept for the backward anyway; in
// evaluation a copy, so that the output does not hold the kernel's buffers).
std::vector<Tensor> lstm_forward_rows(Tensor x, std::vector<int64_t> lengths, optional<Tensor> s0,
                                      optional<Tensor> c0, std::vector<Tensor> arrays, std::vector<Tensor> zw,
                                      optional<Tensor> zx, optional<Tensor> zs, optional<Tensor> zm, bool views) {
  TORCH_CHECK(x.dim() == 3, "wlnet native: x must be (B, T, k)");
  const int64_t T = x.size(1);
  const Rows r = sort_rows(lengths, x.size(0), T);
  const Tensor x_tm = to_time_major(x, r);
  const optional<Tensor> zxs = sorted_mask(zx, r, false), zss = sorted_mask(zs, r, false),
                         zms = sorted_mask(zm, r, true);
  std::vector<Tensor> f = lstm_forward(x_tm, sorted_state(s0, r), sorted_state(c0, r), arrays, zw, zxs, zss, zms,
                                       r.batch_sizes);
  // f: S, s_T, c_T, G, C, wx, ws, XI, SZ (rows sorted)
  const Tensor undefined;
  return {to_batch_major(f[0], 1, r, T, views), permute_rows(f[1], r, false), permute_rows(f[2], r, false),
          x_tm, f[5], f[6], zxs ? *zxs : undefined, zss ? *zss : undefined, zms ? *zms : undefined,
          f[3], f[4], f[0], f[7], f[8]};
}

// Backward of `lstm_forward_rows`: g_out (B, T, n), g_sT, g_cT (B, n) in the rows' order; the saved
// tensors as it returned them; lengths and T as it took them; need: [x, s0, c0, arrays].
// Returns [dx (B, T, k), ds0, dc0 in the rows' order, the 12 array gradients] (undefined where not needed).
std::vector<Tensor> lstm_backward_rows(Tensor g_out, Tensor g_sT, Tensor g_cT, Tensor x_tm, Tensor wx, Tensor ws,
                                       std::vector<Tensor> zw, optional<Tensor> zx, optional<Tensor> zs,
                                       optional<Tensor> zm, Tensor G, Tensor C, Tensor S,
                                       optional<Tensor> XI, optional<Tensor> SZ, std::vector<int64_t> lengths,
                                       int64_t T, std::vector<bool> need) {
  const int64_t B = g_out.size(0);
  const Rows r = sort_rows(lengths, B, T);
  // rows in order: g_out's transpose as it is (the backward reads any strides with unit last stride)
  const Tensor g_tm = in_order(r, T) && g_out.stride(2) == 1 ? g_out.transpose(0, 1) : to_time_major(g_out, r);
  std::vector<Tensor> g = lstm_backward(g_tm, permute_rows(g_sT, r, true), permute_rows(g_cT, r, true), x_tm, wx, ws,
                                        zw, zx, zs, zm, G, C, S, XI, SZ, r.batch_sizes, need);
  if (g[0].defined()) g[0] = to_batch_major(g[0], 0, r, T, true);
  for (int i = 1; i < 3; ++i)
    if (g[i].defined()) g[i] = permute_rows(g[i], r, false);
  return g;
}

}  // namespace wlnet
