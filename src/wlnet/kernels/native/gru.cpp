// The masked GRU recurrence of `native_cells.gru` on CPU: one call for the forward, one for the
// backward. Symbols as in common.h; σ the logistic sigmoid, ∗ elementwise. Per step:
//   z = σ(W_ix (x_t ∘ zx_i) + W_is (s_{t-1} ∘ zs_i) + b_i)
//   r = σ(W_rx (x_t ∘ zx_r) + W_rs (s_{t-1} ∘ zs_r) + b_r)
//   m = tanh(W_mx (x_t ∘ zx_m) + b_m + r ∗ a),  a = W_ms (s_{t-1} ∘ zs_m) (+ b_ms, where given)
//   s_t = (1 − z) ∗ (m ∘ zm_t) + z ∗ s_{t-1}
// The masks zx (B, 3, k), zs (B, 3, n) come in Wolfram's order (Input, Reset, Memory).
// Input-side gates are stacked (z, r, m); state-side gates (m, z, r), so that one backward
// buffer D (T, B, 4, n) = [∂a, ∂pre_z, ∂pre_r, ∂pre_m] holds both sides contiguously: the
// state side (∂a, ∂pre_z, ∂pre_r) is its first 3n columns (∂a = ∂pre_m ∗ r), the input side
// (∂pre_z, ∂pre_r, ∂pre_m) its last 3n.
// Fast the way lstm.cpp is: the input products of all steps before the loop (one per gate with
// zx), per step one state product (three in one batched call with zs) and one vectorized pass,
// row blocks per thread over the whole time loop, weight gradients as products after the loop.

#include "common.h"

namespace wlnet {
namespace {

constexpr int64_t IDENT[3] = {0, 1, 2};  // input-side gate q ↔ Wolfram mask index
constexpr int64_t SPERM[3] = {2, 0, 1};  // state-side gate q ↔ Wolfram mask index
constexpr int64_t SROW[3] = {1, 2, 0};   // Wolfram gate g ↔ its block of the state weights

// One step's element-wise work, rows [b0, b1). g: G[t] (B, 3, n), the input products on entry,
// (z, r, m) on exit; h: the state products (B, 3, n), gates (m, z, r); am: a = h_m is kept.
template <typename T>
void forward_step(T* g, const T* h, const T* bias, const T* bms, T* am, const T* sp, T* sn, const T* zm,
                  int64_t zm_row, T* sz_next, int64_t sz_gate, const T* zs, int64_t b0, int64_t b1, int64_t bt_next,
                  int64_t n) {
  using Vec = Vectorized<T>;
  for (int64_t b = b0; b < b1; ++b) {
    T* gb = g + b * 3 * n;
    const T* hb = h + b * 3 * n;
    for (int64_t j = 0; j < n; j += Vec::size()) {
      const int64_t cnt = std::min<int64_t>(Vec::size(), n - j);
      const Vec a = bms != nullptr ? load(hb + j, cnt) + load(bms + j, cnt) : load(hb + j, cnt);
      const Vec z = sigmoid(load(gb + j, cnt) + load(hb + n + j, cnt) + load(bias + j, cnt));
      const Vec r = sigmoid(load(gb + n + j, cnt) + load(hb + 2 * n + j, cnt) + load(bias + n + j, cnt));
      const Vec m = tanh_(load(gb + 2 * n + j, cnt) + load(bias + 2 * n + j, cnt) + r * a);
      store(z, gb + j, cnt);
      store(r, gb + n + j, cnt);
      store(m, gb + 2 * n + j, cnt);
      store(a, am + b * n + j, cnt);
      const Vec me = zm != nullptr ? m * load(zm + b * zm_row + j, cnt) : m;
      const Vec s0 = load(sp + b * n + j, cnt);
      const Vec s = me + z * (s0 - me);  // (1 − z) me + z s0
      store(s, sn + b * n + j, cnt);
      if (sz_next != nullptr && b < bt_next) {
        for (int64_t q = 0; q < 3; ++q) {
          store(s * load(zs + (b * 3 + SPERM[q]) * n + j, cnt), sz_next + q * sz_gate + b * n + j, cnt);
        }
      }
    }
  }
}

// The state product of D[t] rows [r0, r1): acc (B, n), or (3, B, n) per gate with zs.
template <typename T>
void state_product(const T* dt, const T* ws, T* acc, bool per_gate, int64_t r0, int64_t r1, int64_t B, int64_t n) {
  if (per_gate) {
    gemm_q<T>(3, false, false, r1 - r0, n, n, dt + r0 * 4 * n, 4 * n, n, ws, n, n * n, T(0), acc + r0 * n, n, B * n);
  } else {
    gemm<T>(false, false, r1 - r0, n, 3 * n, dt + r0 * 4 * n, 4 * n, ws, n, T(0), acc + r0 * n, n);
  }
}

// One backward step, rows [b0, b1): ds = ∂L/∂s_t = dS[t] (+ g_sT for rows ending here) + carry
// (+ the state product of step t+1: acc, or Σ_q acc_q ∘ zs_q); then with me = m ∘ zm,
//   ∂pre_z = ds (s_{t-1} − me) z (1 − z);  ∂pre_m = ds (1 − z) zm (1 − m²);  ∂a = ∂pre_m r;
//   ∂pre_r = ∂pre_m a r (1 − r);  carry ← ds z.
template <typename T>
void backward_step(const T* dS, int64_t dS_row, const T* g_sT, int64_t end0, const T* acc, int64_t acc_gate,
                   const T* zs, T* carry, const T* g, const T* am, const T* sp, const T* zm, int64_t zm_row, T* d,
                   int64_t b0, int64_t b1, int64_t n) {
  using Vec = Vectorized<T>;
  const Vec one(T(1));
  for (int64_t b = b0; b < b1; ++b) {
    const T* gb = g + b * 3 * n;
    T* db = d + b * 4 * n;
    for (int64_t j = 0; j < n; j += Vec::size()) {
      const int64_t cnt = std::min<int64_t>(Vec::size(), n - j);
      const int64_t e = b * n + j;
      Vec ds = load(dS + b * dS_row + j, cnt) + load(carry + e, cnt);
      if (b >= end0) ds = ds + load(g_sT + e, cnt);
      if (acc != nullptr) {
        if (zs != nullptr) {
          for (int64_t q = 0; q < 3; ++q) {
            ds = ds + load(acc + q * acc_gate + e, cnt) * load(zs + (b * 3 + SPERM[q]) * n + j, cnt);
          }
        } else {
          ds = ds + load(acc + e, cnt);
        }
      }
      const Vec z = load(gb + j, cnt), r = load(gb + n + j, cnt), m = load(gb + 2 * n + j, cnt);
      const Vec zmv = zm != nullptr ? load(zm + b * zm_row + j, cnt) : one;
      const Vec dz = ds * (load(sp + e, cnt) - m * zmv) * z * (one - z);
      const Vec dm = ds * (one - z) * zmv * (one - m * m);
      const Vec dr = dm * load(am + e, cnt) * r * (one - r);
      store(dm * r, db + j, cnt);
      store(dz, db + n + j, cnt);
      store(dr, db + 2 * n + j, cnt);
      store(dm, db + 3 * n + j, cnt);
      store(ds * z, carry + e, cnt);
    }
  }
}

}  // namespace

// Forward. x (T, B, k) time-major; s0 (B, n) or none (zeros); arrays: the 9 arrays
// [W_gx for g in (Input, Reset, Memory), W_gs for the same, b_g for the same], and a 10th, b_ms
// (MemoryGateStateBiases), where the layer has it; zw: 6 weight masks
// (the weights' order; an empty tensor: none) or none; zx (B, 3, k), zs (B, 3, n), zm (B, T, n)
// or none; batch_sizes: rows alive at each step (sorted rows), or empty for all B.
// Returns [S (T+1, B, n) with S[0] = s0, s_T, G (T, B, 3, n) = (z, r, m), AM (T, B, n) = a,
// wx (3n, k) gates (z, r, m), ws (3n, n) gates (m, z, r), XI (3, T, B, k) x ∘ zx, SZ (3, T, B, n)
// s ∘ zs, state-side gates].
std::vector<Tensor> gru_forward(Tensor x, optional<Tensor> s0, std::vector<Tensor> arrays, std::vector<Tensor> zw,
                                optional<Tensor> zx_, optional<Tensor> zs_, optional<Tensor> zm_,
                                std::vector<int64_t> batch_sizes) {
  TORCH_CHECK((arrays.size() == 9 || arrays.size() == 10) && (zw.empty() || zw.size() == 6),
              "wlnet native gru: 9 or 10 arrays, 6 or 0 masks");
  x = x.contiguous();
  const int64_t T = x.size(0), B = x.size(1), k = x.size(2), n = arrays[0].size(0);
  const auto opts = x.options();
  Tensor zx = contiguous(zx_), zs = contiguous(zs_), zm = contiguous(zm_);
  check_mask(zx, {B, 3, k}, x, "zx");
  check_mask(zs, {B, 3, n}, x, "zs");
  check_mask(zm, {B, T, n}, x, "zm");
  for (size_t i = 0; i < zw.size(); ++i) {
    if (has_mask(zw, i)) check_mask(zw[i], arrays[i].sizes(), x, "zw");
  }

  Tensor wx = at::empty({3 * n, k}, opts), ws = at::empty({3 * n, n}, opts), bias = at::empty({3 * n}, opts);
  Tensor bms = arrays.size() == 10 ? arrays[9].to(opts).contiguous() : Tensor();
  for (int64_t g = 0; g < 3; ++g) {
    Tensor wxg = wx.narrow(0, g * n, n), wsg = ws.narrow(0, SROW[g] * n, n);
    if (has_mask(zw, g)) {
      at::mul_out(wxg, arrays[g], zw[g]);
    } else {
      wxg.copy_(arrays[g]);
    }
    if (has_mask(zw, 3 + g)) {
      at::mul_out(wsg, arrays[3 + g], zw[3 + g]);
    } else {
      wsg.copy_(arrays[3 + g]);
    }
    bias.narrow(0, g * n, n).copy_(arrays[6 + g]);
  }

  std::vector<std::vector<int64_t>> shapes = {{T, B, 3, n}, {T, B, n}, {T + 1, B, n}, {B, 3, n}};
  if (zx.defined()) shapes.push_back({3, T, B, k});
  if (zs.defined()) shapes.push_back({3, T, B, n});
  auto buf = arena(shapes, opts);
  Tensor G = buf[0], AM = buf[1], S = buf[2], H = buf[3];
  Tensor XI = zx.defined() ? buf[4] : Tensor();
  Tensor SZ = zs.defined() ? buf[zx.defined() ? 5 : 4] : Tensor();
  if (!batch_sizes.empty()) {  // rows past a sequence's end: outputs zero, and finite where products read them
    S.zero_();
    if (SZ.defined()) SZ.zero_();
  }
  set_start(S, s0);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "wlnet_gru_forward", [&] {
    using T_ = scalar_t;
    T_* g = G.data_ptr<T_>();
    T_* am = AM.data_ptr<T_>();
    T_* s = S.data_ptr<T_>();
    T_* h = H.data_ptr<T_>();
    const T_* xp = x.data_ptr<T_>();
    const T_* wxp = wx.data_ptr<T_>();
    const T_* wsp = ws.data_ptr<T_>();
    const T_* bp = bias.data_ptr<T_>();
    const T_* bmsp = bms.defined() ? bms.data_ptr<T_>() : nullptr;
    const T_* zsp = ptr<T_>(zs);
    const T_* zmp = ptr<T_>(zm);
    T_* sz = SZ.defined() ? SZ.data_ptr<T_>() : nullptr;
    const int64_t TB = T * B, sB = B * n;

    // Input products of all steps: G[t, b, g] = W_gx (x_t,b ∘ zx_b,g).
    if (zx.defined()) {
      T_* xi = XI.data_ptr<T_>();
      mask_per_gate<T_>(3, IDENT, xp, zx.data_ptr<T_>(), xi, TB * k, TB, k, B);
      gemm_q<T_>(3, false, true, TB, n, k, xi, k, TB * k, wxp, k, n * k, T_(0), g, 3 * n, n);
    } else {
      gemm<T_>(false, true, TB, 3 * n, k, xp, k, wxp, k, T_(0), g, 3 * n);
    }
    if (sz != nullptr) mask_per_gate<T_>(3, SPERM, s, zsp, sz, TB * n, B, n, B);  // s0 ∘ zs_q

    for_row_blocks(B, [&](int64_t r0, int64_t r1) {  // the time loop for rows [r0, r1)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t re = std::min(r1, alive(batch_sizes, t, B, T));
        if (re <= r0) break;  // (rows are sorted by decreasing length)
        T_* hr = h + r0 * 3 * n;
        if (sz != nullptr) {
          gemm_q<T_>(3, false, true, re - r0, n, n, sz + t * sB + r0 * n, n, TB * n, wsp, n, n * n, T_(0), hr, 3 * n, n);
        } else {
          gemm<T_>(false, true, re - r0, 3 * n, n, s + t * sB + r0 * n, n, wsp, n, T_(0), hr, 3 * n);
        }
        forward_step<T_>(g + t * 3 * sB, h, bp, bmsp, am + t * sB, s + t * sB, s + (t + 1) * sB,
                         zmp != nullptr ? zmp + t * n : nullptr, T * n,
                         sz != nullptr && t + 1 < T ? sz + (t + 1) * sB : nullptr, TB * n, zsp, r0, re,
                         alive(batch_sizes, t + 1, B, T), n);
      }
    });
  });

  return {S, last_states(S, batch_sizes), G, AM, wx, ws, XI, SZ};
}

// Backward of `gru_forward`. g_out (T, B, n) (unit last stride), g_sT (B, n); the rest as
// `gru_forward` took and returned. need: [x, s0, arrays, b_ms] (the last where the forward had it).
// Returns [dx, ds0, the 9 array gradients in `gru_forward`'s order, and b_ms's where the forward had
// it] (undefined where not needed).
std::vector<Tensor> gru_backward(Tensor g_out, Tensor g_sT, Tensor x, Tensor wx, Tensor ws, std::vector<Tensor> zw,
                                 optional<Tensor> zx_, optional<Tensor> zs_, optional<Tensor> zm_, Tensor G, Tensor AM,
                                 Tensor S, optional<Tensor> XI_, optional<Tensor> SZ_, std::vector<int64_t> batch_sizes,
                                 std::vector<bool> need) {
  const int64_t T = G.size(0), B = G.size(1), n = G.size(3), k = wx.size(1);
  const auto opts = G.options();
  Tensor zx = contiguous(zx_), zs = contiguous(zs_), zm = contiguous(zm_), XI = contiguous(XI_),
         SZ = contiguous(SZ_);
  if (g_out.stride(2) != 1) g_out = g_out.contiguous();
  g_sT = g_sT.contiguous();
  auto buf = arena({{T, B, 4, n}, {zs.defined() ? 3 : 1, B, n}, {B, n}}, opts);
  Tensor D = buf[0], acc = buf[1], carry = buf[2];
  carry.zero_();
  if (!batch_sizes.empty()) D.zero_();  // rows past a sequence's end get no gradient
  Tensor dx, ds0, dwx, dws, db;

  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "wlnet_gru_backward", [&] {
    using T_ = scalar_t;
    T_* d = D.data_ptr<T_>();
    T_* accp = acc.data_ptr<T_>();
    T_* cp = carry.data_ptr<T_>();
    const T_* wsp = ws.data_ptr<T_>();
    const T_* zsp = ptr<T_>(zs);
    const T_* zmp = ptr<T_>(zm);
    const int64_t sB = B * n, TB = T * B;
    for_row_blocks(B, [&](int64_t r0, int64_t r1) {  // the time loop for rows [r0, r1)
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t re = std::min(r1, alive(batch_sizes, t, B, T));
        if (re <= r0) continue;  // no row of the block alive yet
        if (t < T - 1) state_product<T_>(d + (t + 1) * 4 * sB, wsp, accp, zs.defined(), r0, re, B, n);
        backward_step<T_>(g_out.data_ptr<T_>() + t * g_out.stride(0), g_out.stride(1), g_sT.data_ptr<T_>(),
                          alive(batch_sizes, t + 1, B, T), t < T - 1 ? accp : nullptr, sB, zsp, cp,
                          G.data_ptr<T_>() + t * 3 * sB, AM.data_ptr<T_>() + t * sB, S.data_ptr<T_>() + t * sB,
                          zmp != nullptr ? zmp + t * n : nullptr, T * n, d + t * 4 * sB, r0, re, n);
      }
    });
    if (need[1]) {  // ds0 = carry + the state product at step 0, through zs
      state_product<T_>(d, wsp, accp, zs.defined(), 0, B, B, n);
      if (zs.defined()) {
        ds0 = at::empty({B, n}, opts);
        sum_masked_gates<T_>(3, SPERM, accp, sB, zsp, ds0.data_ptr<T_>(), B, n, B);
        ds0.add_(carry);
      } else {
        ds0 = acc[0] + carry;
      }
    }
    const T_* din = d + n;  // the input side (∂pre_z, ∂pre_r, ∂pre_m), row stride 4n
    if (need[0]) {
      const T_* wxp = wx.data_ptr<T_>();
      dx = pooled(T * B * k, opts).view({T, B, k});
      T_* dxp = dx.data_ptr<T_>();
      if (zx.defined()) {  // dx = Σ_g (∂pre_g W_gx) ∘ zx_g
        Tensor tmp = pooled(3 * TB * k, opts);
        T_* tp = tmp.data_ptr<T_>();
        gemm_q<T_>(3, false, false, TB, k, n, din, 4 * n, n, wxp, k, n * k, T_(0), tp, k, TB * k);
        sum_masked_gates<T_>(3, IDENT, tp, TB * k, zx.data_ptr<T_>(), dxp, TB, k, B);
      } else {
        gemm<T_>(false, false, TB, k, 3 * n, din, 4 * n, wxp, k, T_(0), dxp, k);
      }
    }
    if (need[2]) {
      dwx = at::empty({3 * n, k}, opts);
      dws = at::empty({3 * n, n}, opts);
      T_* dwxp = dwx.data_ptr<T_>();
      T_* dwsp = dws.data_ptr<T_>();
      if (zx.defined()) {
        gemm_q<T_>(3, true, false, n, k, TB, din, 4 * n, n, XI.data_ptr<T_>(), k, TB * k, T_(0), dwxp, k, n * k);
      } else {
        gemm<T_>(true, false, 3 * n, k, TB, din, 4 * n, x.contiguous().data_ptr<T_>(), k, T_(0), dwxp, k);
      }
      if (zs.defined()) {
        gemm_q<T_>(3, true, false, n, n, TB, d, 4 * n, n, SZ.data_ptr<T_>(), n, TB * n, T_(0), dwsp, n, n * n);
      } else {  // S[0:T] holds s_{t-1} for every step
        gemm<T_>(true, false, 3 * n, n, TB, d, 4 * n, S.data_ptr<T_>(), n, T_(0), dwsp, n);
      }
      db = D.view({TB, 4 * n}).narrow(1, n, 3 * n).sum(0);
    }
  });

  std::vector<Tensor> out = {dx, ds0};
  for (int64_t part = 0; part < 3; ++part) {
    for (int64_t g = 0; g < 3; ++g) {
      if (!need[2]) {
        out.push_back(Tensor());
        continue;
      }
      Tensor grad = part == 0 ? dwx.narrow(0, g * n, n) : part == 1 ? dws.narrow(0, SROW[g] * n, n)
                                                                     : db.narrow(0, g * n, n);
      if (part < 2 && has_mask(zw, part * 3 + g)) grad = grad * zw[part * 3 + g];
      out.push_back(grad);
    }
  }
  if (need.size() > 3) {  // b_ms: ∂a summed over steps and rows
    out.push_back(need[3] ? D.view({T * B, 4 * n}).narrow(1, 0, n).sum(0) : Tensor());
  }
  return out;
}

}  // namespace wlnet
