// The masked basic RNN recurrence of `native_cells.rnn` on CPU: one call for the forward, one for
// the backward. Symbols as in common.h. Per step:
//   s_t = tanh(W_x (x_t ∘ zx) + W_s (s_{t-1} ∘ zs) + b)
// with zx (B, 1, k), zs (B, 1, n). Fast the way lstm.cpp is: the input products of all steps
// before the loop, per step one state product (added in place, beta = 1) and one vectorized
// pass, row blocks per thread over the whole time loop, weight gradients as products after it.

#include "common.h"

namespace wlnet {
namespace {

constexpr int64_t IDENT[1] = {0};

// One step's element-wise work, rows [b0, b1): g = G[t] (B, n), the pre-activation less the
// bias; s_t = tanh(g + b) into sn, and s_t ∘ zs into sz_next for rows alive at the next step.
template <typename T>
void forward_step(const T* g, const T* bias, T* sn, T* sz_next, const T* zs, int64_t b0, int64_t b1, int64_t bt_next,
                  int64_t n) {
  using Vec = Vectorized<T>;
  for (int64_t b = b0; b < b1; ++b) {
    for (int64_t j = 0; j < n; j += Vec::size()) {
      const int64_t cnt = std::min<int64_t>(Vec::size(), n - j);
      const int64_t e = b * n + j;
      const Vec s = tanh_(load(g + e, cnt) + load(bias + j, cnt));
      store(s, sn + e, cnt);
      if (sz_next != nullptr && b < bt_next) store(s * load(zs + e, cnt), sz_next + e, cnt);
    }
  }
}

// One backward step, rows [b0, b1): ds = dS[t] (+ g_sT for rows ending here) (+ acc, ∘ zs);
// ∂pre = ds (1 − s_t²).
template <typename T>
void backward_step(const T* dS, int64_t dS_row, const T* g_sT, int64_t end0, const T* acc, const T* zs, const T* s,
                   T* d, int64_t b0, int64_t b1, int64_t n) {
  using Vec = Vectorized<T>;
  const Vec one(T(1));
  for (int64_t b = b0; b < b1; ++b) {
    for (int64_t j = 0; j < n; j += Vec::size()) {
      const int64_t cnt = std::min<int64_t>(Vec::size(), n - j);
      const int64_t e = b * n + j;
      Vec ds = load(dS + b * dS_row + j, cnt);
      if (b >= end0) ds = ds + load(g_sT + e, cnt);
      if (acc != nullptr) ds = ds + (zs != nullptr ? load(acc + e, cnt) * load(zs + e, cnt) : load(acc + e, cnt));
      const Vec st = load(s + e, cnt);
      store(ds * (one - st * st), d + e, cnt);
    }
  }
}

}  // namespace

// Forward. x (T, B, k) time-major; s0 (B, n) or none (zeros); arrays [W_x, W_s, b]; zw: 2 weight
// masks (an empty tensor: none) or none; zx (B, 1, k), zs (B, 1, n) or none; batch_sizes: rows
// alive at each step (sorted rows), or empty for all B.
// Returns [S (T+1, B, n) with S[0] = s0, s_T, wx (n, k), ws (n, n), XI (T, B, k) x ∘ zx,
// SZ (T, B, n) s ∘ zs].
std::vector<Tensor> rnn_forward(Tensor x, optional<Tensor> s0, std::vector<Tensor> arrays, std::vector<Tensor> zw,
                                optional<Tensor> zx_, optional<Tensor> zs_, std::vector<int64_t> batch_sizes) {
  TORCH_CHECK(arrays.size() == 3 && (zw.empty() || zw.size() == 2), "wlnet native rnn: 3 arrays, 2 or 0 masks");
  x = x.contiguous();
  const int64_t T = x.size(0), B = x.size(1), k = x.size(2), n = arrays[0].size(0);
  const auto opts = x.options();
  Tensor zx = contiguous(zx_), zs = contiguous(zs_);
  check_mask(zx, {B, 1, k}, x, "zx");
  check_mask(zs, {B, 1, n}, x, "zs");
  for (size_t i = 0; i < zw.size(); ++i) {
    if (has_mask(zw, i)) check_mask(zw[i], arrays[i].sizes(), x, "zw");
  }
  Tensor wx = has_mask(zw, 0) ? arrays[0] * zw[0] : arrays[0].contiguous();
  Tensor ws = has_mask(zw, 1) ? arrays[1] * zw[1] : arrays[1].contiguous();
  Tensor bias = arrays[2].contiguous();

  std::vector<std::vector<int64_t>> shapes = {{T, B, n}, {T + 1, B, n}};
  if (zx.defined()) shapes.push_back({T, B, k});
  if (zs.defined()) shapes.push_back({T, B, n});
  auto buf = arena(shapes, opts);
  Tensor G = buf[0], S = buf[1];
  Tensor XI = zx.defined() ? buf[2] : Tensor();
  Tensor SZ = zs.defined() ? buf[zx.defined() ? 3 : 2] : Tensor();
  if (!batch_sizes.empty()) {  // rows past a sequence's end: outputs zero, and finite where products read them
    S.zero_();
    if (SZ.defined()) SZ.zero_();
  }
  set_start(S, s0);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "wlnet_rnn_forward", [&] {
    using T_ = scalar_t;
    T_* g = G.data_ptr<T_>();
    T_* s = S.data_ptr<T_>();
    const T_* wsp = ws.data_ptr<T_>();
    const T_* bp = bias.data_ptr<T_>();
    const T_* zsp = ptr<T_>(zs);
    T_* sz = SZ.defined() ? SZ.data_ptr<T_>() : nullptr;
    const int64_t TB = T * B, sB = B * n;

    const T_* xin = x.data_ptr<T_>();  // the input as the product sees it: x or x ∘ zx
    if (zx.defined()) {
      mask_per_gate<T_>(1, IDENT, xin, zx.data_ptr<T_>(), XI.data_ptr<T_>(), 0, TB, k, B);
      xin = XI.data_ptr<T_>();
    }
    gemm<T_>(false, true, TB, n, k, xin, k, wx.data_ptr<T_>(), k, T_(0), g, n);
    if (sz != nullptr) mask_per_gate<T_>(1, IDENT, s, zsp, sz, 0, B, n, B);  // s0 ∘ zs
    const T_* sin = sz != nullptr ? sz : s;  // the state as the product sees it

    for_row_blocks(B, [&](int64_t r0, int64_t r1) {  // the time loop for rows [r0, r1)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t re = std::min(r1, alive(batch_sizes, t, B, T));
        if (re <= r0) break;  // (rows are sorted by decreasing length)
        gemm<T_>(false, true, re - r0, n, n, sin + t * sB + r0 * n, n, wsp, n, T_(1), g + t * sB + r0 * n, n);
        forward_step<T_>(g + t * sB, bp, s + (t + 1) * sB, sz != nullptr && t + 1 < T ? sz + (t + 1) * sB : nullptr,
                         zsp, r0, re, alive(batch_sizes, t + 1, B, T), n);
      }
    });
  });

  return {S, last_states(S, batch_sizes), wx, ws, XI, SZ};
}

// Backward of `rnn_forward`. g_out (T, B, n) (unit last stride), g_sT (B, n); the rest as
// `rnn_forward` took and returned. need: [x, s0, arrays].
// Returns [dx, ds0, dW_x, dW_s, db] (undefined where not needed).
std::vector<Tensor> rnn_backward(Tensor g_out, Tensor g_sT, Tensor x, Tensor wx, Tensor ws, std::vector<Tensor> zw,
                                 optional<Tensor> zx_, optional<Tensor> zs_, Tensor S, optional<Tensor> XI_,
                                 optional<Tensor> SZ_, std::vector<int64_t> batch_sizes, std::vector<bool> need) {
  const int64_t T = S.size(0) - 1, B = S.size(1), n = S.size(2), k = wx.size(1);
  const auto opts = S.options();
  Tensor zx = contiguous(zx_), zs = contiguous(zs_), XI = contiguous(XI_), SZ = contiguous(SZ_);
  if (g_out.stride(2) != 1) g_out = g_out.contiguous();
  g_sT = g_sT.contiguous();
  auto buf = arena({{T, B, n}, {B, n}}, opts);
  Tensor D = buf[0], acc = buf[1];
  if (!batch_sizes.empty()) D.zero_();  // rows past a sequence's end get no gradient
  Tensor dx, ds0, dwx, dws, db;

  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "wlnet_rnn_backward", [&] {
    using T_ = scalar_t;
    T_* d = D.data_ptr<T_>();
    T_* accp = acc.data_ptr<T_>();
    const T_* wsp = ws.data_ptr<T_>();
    const T_* zsp = ptr<T_>(zs);
    const int64_t sB = B * n, TB = T * B;
    for_row_blocks(B, [&](int64_t r0, int64_t r1) {  // the time loop for rows [r0, r1)
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t re = std::min(r1, alive(batch_sizes, t, B, T));
        if (re <= r0) continue;  // no row of the block alive yet
        if (t < T - 1) {
          gemm<T_>(false, false, re - r0, n, n, d + (t + 1) * sB + r0 * n, n, wsp, n, T_(0), accp + r0 * n, n);
        }
        backward_step<T_>(g_out.data_ptr<T_>() + t * g_out.stride(0), g_out.stride(1), g_sT.data_ptr<T_>(),
                          alive(batch_sizes, t + 1, B, T), t < T - 1 ? accp : nullptr, zsp,
                          S.data_ptr<T_>() + (t + 1) * sB, d + t * sB, r0, re, n);
      }
    });
    if (need[1]) {  // ds0 = (∂pre_0 W_s) ∘ zs
      ds0 = at::empty({B, n}, opts);
      gemm<T_>(false, false, B, n, n, d, n, wsp, n, T_(0), ds0.data_ptr<T_>(), n);
      if (zs.defined()) ds0.mul_(zs.view({B, n}));
    }
    if (need[0]) {  // dx = (∂pre W_x) ∘ zx
      dx = pooled(TB * k, opts).view({T, B, k});
      gemm<T_>(false, false, TB, k, n, d, n, wx.data_ptr<T_>(), k, T_(0), dx.data_ptr<T_>(), k);
      if (zx.defined()) dx.mul_(zx.view({1, B, k}));
    }
    if (need[2]) {
      dwx = at::empty({n, k}, opts);
      dws = at::empty({n, n}, opts);
      const Tensor xc = zx.defined() ? XI : x.contiguous();
      const T_* xin = xc.data_ptr<T_>();
      gemm<T_>(true, false, n, k, TB, d, n, xin, k, T_(0), dwx.data_ptr<T_>(), k);
      const T_* sin = zs.defined() ? SZ.data_ptr<T_>() : S.data_ptr<T_>();  // S[0:T]: s_{t-1} for every step
      gemm<T_>(true, false, n, n, TB, d, n, sin, n, T_(0), dws.data_ptr<T_>(), n);
      db = D.view({TB, n}).sum(0);
      if (has_mask(zw, 0)) dwx.mul_(zw[0]);
      if (has_mask(zw, 1)) dws.mul_(zw[1]);
    }
  });
  return {dx, ds0, dwx, dws, db};
}

}  // namespace wlnet
