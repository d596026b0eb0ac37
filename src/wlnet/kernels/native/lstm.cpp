// The masked LSTM recurrence of `lstm_custom` on CPU, whole: one call for the forward, one for
// the backward. `lstm_custom` holds the pure-torch version of the same recurrence, which runs
// where this cannot (CUDA, no compiler).
//
// Symbols as in common.h. Gates are stacked in the order (Output, Input, Forget, Memory) =
// `lstm_custom.ORDER`; the masks zx (B, 4, k) and zs (B, 4, n) come in Wolfram's order (Input,
// Output, Forget, Memory), read through PERM. Per step:
//   pre_g = W_gx (x_t ∘ zx_g) + W_gs (s_{t-1} ∘ zs_g) + b_g
//   o, i, f = σ(pre);  m = tanh(pre_m);  c_t = f c_{t-1} + i (m ∘ zm_t);  s_t = o tanh(c_t)
// How it is fast:
// - the input contributions of all steps are one product before the loop (one per gate with
//   zx), written into the gate buffer G; each step adds its state product there (BLAS gemm
//   called directly, beta = 1: no dispatcher, no copy) and then does all of its element-wise
//   work in one vectorized pass over the rows (tanh u = 2σ(2u) − 1, one exp per gate);
// - with zs, a step's four per-gate products are one batched BLAS call;
// - rows are independent, so the time loop runs in row blocks, one per thread, each a whole
//   time loop: threads never wait for each other inside the loop (`for_row_blocks`);
// - the backward loop is one product and one pass per step; dW, db, dx, ds0 are products
//   after it; the gradients of the 12 arrays come out split (and masked, with zw) in C++;
// - the buffers of a call are views of one pooled allocation.

#include "common.h"

namespace wlnet {
namespace {

constexpr int64_t PERM[4] = {1, 0, 2, 3};   // internal gate j ↔ Wolfram mask index PERM[j]
constexpr int64_t FUSED[4] = {3, 0, 1, 2};  // internal gate j ↔ its block in torch's fused layout

// ------------------------------------------------------------------------------------ forward

// One step's element-wise work, rows [b0, b1). G[t] holds the products on entry and
// (σo, σi, σf, m) on exit.
template <typename T>
void forward_step(T* g, const T* bias, const T* cp, T* cn, T* sn, const T* zm, int64_t zm_row, T* sz_next,
                  int64_t sz_gate, const T* zs, int64_t b0, int64_t b1, int64_t bt_next, int64_t n) {
  using Vec = Vectorized<T>;
  for (int64_t b = b0; b < b1; ++b) {
    T* gb = g + b * 4 * n;
    for (int64_t j = 0; j < n; j += Vec::size()) {
      const int64_t cnt = std::min<int64_t>(Vec::size(), n - j);
      const Vec o = sigmoid(load(gb + j, cnt) + load(bias + j, cnt));
      const Vec i = sigmoid(load(gb + n + j, cnt) + load(bias + n + j, cnt));
      const Vec f = sigmoid(load(gb + 2 * n + j, cnt) + load(bias + 2 * n + j, cnt));
      const Vec m = tanh_(load(gb + 3 * n + j, cnt) + load(bias + 3 * n + j, cnt));
      store(o, gb + j, cnt);
      store(i, gb + n + j, cnt);
      store(f, gb + 2 * n + j, cnt);
      store(m, gb + 3 * n + j, cnt);
      const Vec mz = zm != nullptr ? m * load(zm + b * zm_row + j, cnt) : m;
      const Vec c = f * load(cp + b * n + j, cnt) + i * mz;
      store(c, cn + b * n + j, cnt);
      const Vec s = o * tanh_(c);
      store(s, sn + b * n + j, cnt);
      if (sz_next != nullptr && b < bt_next) {
        for (int64_t q = 0; q < 4; ++q) {
          store(s * load(zs + (b * 4 + PERM[q]) * n + j, cnt), sz_next + q * sz_gate + b * n + j, cnt);
        }
      }
    }
  }
}

}  // namespace

// Forward of the recurrence. x (T, B, k) time-major; s0, c0 (B, n) or none (zeros); arrays:
// the 12 arrays [W_gx for g in ORDER, W_gs for g in ORDER, b_g for g in ORDER]; zw: the weight
// masks in torch's fused layout, (4n, k) and (4n, n), gates (Input, Forget, Memory, Output),
// or none; zx (B, 4, k), zs (B, 4, n), zm (B, T, n) or none;
// batch_sizes: rows alive at each step (sorted rows), or empty for all B.
// Returns [S (T+1, B, n) with S[0] = s0, s_T, c_T, G (T, B, 4, n), C (T+1, B, n),
// wx (4n, k), ws (4n, n), XI (4, T, B, k) x ∘ zx, SZ (4, T, B, n) s ∘ zs]. (tanh c_t is not
// kept: the backward recomputes it from C, one exp per element, instead of a (T, B, n) buffer.)
std::vector<Tensor> lstm_forward(Tensor x, optional<Tensor> s0, optional<Tensor> c0, std::vector<Tensor> arrays,
                                 std::vector<Tensor> zw, optional<Tensor> zx_, optional<Tensor> zs_,
                                 optional<Tensor> zm_, std::vector<int64_t> batch_sizes) {
  TORCH_CHECK(arrays.size() == 12 && (zw.empty() || zw.size() == 2), "wlnet native: 12 arrays, 2 or 0 masks");
  x = x.contiguous();
  const int64_t T = x.size(0), B = x.size(1), k = x.size(2), n = arrays[0].size(0);
  const auto opts = x.options();
  const bool ragged = !batch_sizes.empty();
  Tensor zx = contiguous(zx_), zs = contiguous(zs_), zm = contiguous(zm_);

  // The arrays and masks in x's dtype, contiguous: no-ops in the common case, where they already are.
  for (auto& a : arrays) a = a.to(x.scalar_type()).contiguous();
  for (auto& z : zw) z = z.to(x.scalar_type()).contiguous();
  const int64_t sizes[3] = {n * k, n * n, n};  // each gate's input weights, state weights, biases
  for (int64_t i = 0; i < 12; ++i) {
    TORCH_CHECK(arrays[i].numel() == sizes[i / 4], "wlnet native: array ", i, " has ", arrays[i].numel(),
                " elements, expected ", sizes[i / 4]);
  }
  TORCH_CHECK(zw.empty() || (zw[0].numel() == 4 * n * k && zw[1].numel() == 4 * n * n),
              "wlnet native: the weight masks must be (4n, k) and (4n, n)");
  // Each part's four arrays side by side in one storage (NetTrain's flat buffer holds them so):
  // without weight masks the part is the packed matrix itself, read in place.
  const auto side_by_side = [&](int first) {
    const auto* base = static_cast<const char*>(arrays[first].data_ptr());
    const int64_t bytes = sizes[first / 4] * static_cast<int64_t>(arrays[first].element_size());
    for (int g = 1; g < 4; ++g) {
      const Tensor& a = arrays[first + g];
      if (!a.storage().is_alias_of(arrays[first].storage()) ||
          static_cast<const char*>(a.data_ptr()) != base + g * bytes) {
        return false;
      }
    }
    return true;
  };
  const bool in_place = zw.empty() && side_by_side(0) && side_by_side(4);
  Tensor wx = in_place ? arrays[0].as_strided({4 * n, k}, {k, 1}) : at::empty({4 * n, k}, opts);
  Tensor ws = in_place ? arrays[4].as_strided({4 * n, n}, {n, 1}) : at::empty({4 * n, n}, opts);
  Tensor bias = at::empty({4 * n}, opts);
  // The packed layout by plain copies, the weights times their masks (in torch's fused gate
  // order) where given: no tensor operations, each of which costs ~1-3 µs.
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "wlnet_lstm_pack", [&] {
    scalar_t* dst[3] = {wx.data_ptr<scalar_t>(), ws.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>()};
    for (int64_t part = in_place ? 2 : 0; part < 3; ++part) {
      for (int64_t g = 0; g < 4; ++g) {
        const scalar_t* a = arrays[4 * part + g].data_ptr<scalar_t>();
        scalar_t* d = dst[part] + g * sizes[part];
        if (part == 2 || zw.empty()) {
          std::copy_n(a, sizes[part], d);
        } else {
          const scalar_t* z = zw[part].data_ptr<scalar_t>() + FUSED[g] * sizes[part];
          for (int64_t i = 0; i < sizes[part]; ++i) d[i] = a[i] * z[i];
        }
      }
    }
  });

  std::vector<std::vector<int64_t>> shapes = {{T, B, 4, n}, {T + 1, B, n}, {T + 1, B, n}};
  if (zx.defined()) shapes.push_back({4, T, B, k});
  if (zs.defined()) shapes.push_back({4, T, B, n});
  auto buf = arena(shapes, opts);
  Tensor G = buf[0], C = buf[1], S = buf[2];
  Tensor XI = zx.defined() ? buf[3] : Tensor();
  Tensor SZ = zs.defined() ? buf[zx.defined() ? 4 : 3] : Tensor();
  if (ragged) {  // rows past a sequence's end: outputs zero, and finite where products read them
    S.zero_();
    if (SZ.defined()) SZ.zero_();
  }
  set_start(S, s0);
  set_start(C, c0);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "wlnet_lstm_forward", [&] {
    using T_ = scalar_t;
    T_* g = G.data_ptr<T_>();
    T_* c = C.data_ptr<T_>();
    T_* s = S.data_ptr<T_>();
    const T_* xp = x.data_ptr<T_>();
    const T_* wxp = wx.data_ptr<T_>();
    const T_* wsp = ws.data_ptr<T_>();
    const T_* zsp = ptr<T_>(zs);
    const T_* zmp = ptr<T_>(zm);
    T_* sz = SZ.defined() ? SZ.data_ptr<T_>() : nullptr;
    const int64_t TB = T * B, sB = B * n;

    // Input contributions of all steps: G[t, b, g] = W_gx (x_t,b ∘ zx_b,g).
    if (zx.defined()) {
      T_* xi = XI.data_ptr<T_>();
      mask_per_gate<T_>(4, PERM, xp, zx.data_ptr<T_>(), xi, TB * k, TB, k, B);
      gemm4<T_>(false, true, TB, n, k, xi, k, TB * k, wxp, k, n * k, T_(0), g, 4 * n, n);
    } else {
      gemm<T_>(false, true, TB, 4 * n, k, xp, k, wxp, k, T_(0), g, 4 * n);
    }
    if (sz != nullptr) mask_per_gate<T_>(4, PERM, s, zsp, sz, TB * n, B, n, B);  // the first step's input s0 ∘ zs_g

    const T_* bp = bias.data_ptr<T_>();
    for_row_blocks(B, [&](int64_t r0, int64_t r1) {  // the time loop for rows [r0, r1)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t re = std::min(r1, alive(batch_sizes, t, B, T));
        if (re <= r0) break;  // (rows are sorted by decreasing length)
        T_* gt = g + t * 4 * sB + r0 * 4 * n;
        if (sz != nullptr) {
          gemm4<T_>(false, true, re - r0, n, n, sz + t * sB + r0 * n, n, TB * n, wsp, n, n * n, T_(1), gt, 4 * n, n);
        } else {
          gemm<T_>(false, true, re - r0, 4 * n, n, s + t * sB + r0 * n, n, wsp, n, T_(1), gt, 4 * n);
        }
        split_rows(r0, re, n, [&](int64_t b0, int64_t b1) {
          forward_step<T_>(g + t * 4 * sB, bp, c + t * sB, c + (t + 1) * sB, s + (t + 1) * sB,
                           zmp != nullptr ? zmp + t * n : nullptr, T * n,
                           sz != nullptr && t + 1 < T ? sz + (t + 1) * sB : nullptr, TB * n, zsp, b0, b1,
                           alive(batch_sizes, t + 1, B, T), n);
        });
      }
    }, n);
  });

  Tensor s_T = last_states(S, batch_sizes), c_T = last_states(C, batch_sizes);  // at each row's last step
  return {S, s_T, c_T, G, C, wx, ws, XI, SZ};
}


namespace {

// ------------------------------------------------------------------------------------ backward

// One backward step, rows [b0, b1): ds = ∂L/∂s_t = dS[t] (+ g_sT for rows ending here)
// (+ the product from step t+1: acc, or Σ_g acc_g ∘ zs_g); then, with tanh c recomputed from c_t,
//   dc += ds o (1 − tanh² c);  dG_o = ds tanh c σo';  dG_i = dc (m ∘ zm) σi';
//   dG_f = dc c_{t-1} σf';  dG_m = dc i zm (1 − m²);  dc ← dc f.
template <typename T>
void backward_step(const T* dS, int64_t dS_row, const T* g_sT, int64_t end0, const T* acc, int64_t acc_gate,
                   const T* zs, T* dc, const T* g, const T* cp, const T* cn, const T* zm, int64_t zm_row, T* dg,
                   int64_t b0, int64_t b1, int64_t n) {
  using Vec = Vectorized<T>;
  const Vec one(T(1));
  for (int64_t b = b0; b < b1; ++b) {
    const T* gb = g + b * 4 * n;
    T* dgb = dg + b * 4 * n;
    for (int64_t j = 0; j < n; j += Vec::size()) {
      const int64_t cnt = std::min<int64_t>(Vec::size(), n - j);
      const int64_t e = b * n + j;
      Vec ds = load(dS + b * dS_row + j, cnt);
      if (b >= end0) ds = ds + load(g_sT + e, cnt);
      if (acc != nullptr) {
        if (zs != nullptr) {
          for (int64_t q = 0; q < 4; ++q) {
            ds = ds + load(acc + q * acc_gate + e, cnt) * load(zs + (b * 4 + PERM[q]) * n + j, cnt);
          }
        } else {
          ds = ds + load(acc + e, cnt);
        }
      }
      const Vec o = load(gb + j, cnt), i = load(gb + n + j, cnt);
      const Vec f = load(gb + 2 * n + j, cnt), m = load(gb + 3 * n + j, cnt);
      const Vec h = tanh_(load(cn + e, cnt));
      const Vec c = load(dc + e, cnt) + ds * o * (one - h * h);
      const Vec z = zm != nullptr ? load(zm + b * zm_row + j, cnt) : one;
      store(ds * h * o * (one - o), dgb + j, cnt);
      store(c * m * z * i * (one - i), dgb + n + j, cnt);
      store(c * load(cp + e, cnt) * f * (one - f), dgb + 2 * n + j, cnt);
      store(c * i * z * (one - m * m), dgb + 3 * n + j, cnt);
      store(c * f, dc + e, cnt);
    }
  }
}

// acc (4, B, n) or (B, n) rows [r0, r1) = dG[t] times the state weights, per gate with zs.
template <typename T>
void state_product(const T* dgt, const T* ws, T* acc, bool per_gate, int64_t r0, int64_t r1, int64_t B, int64_t n) {
  if (per_gate) {
    gemm4<T>(false, false, r1 - r0, n, n, dgt + r0 * 4 * n, 4 * n, n, ws, n, n * n, T(0), acc + r0 * n, n, B * n);
  } else {
    gemm<T>(false, false, r1 - r0, n, 4 * n, dgt + r0 * 4 * n, 4 * n, ws, n, T(0), acc + r0 * n, n);
  }
}

}  // namespace

// Backward of `lstm_forward`. g_out (T, B, n) (any strides with unit last stride), g_sT, g_cT
// (B, n); the rest as `lstm_forward` took and returned. need: [x, s0, c0, arrays].
// Returns [dx, ds0, dc0, the 12 array gradients in `lstm_forward`'s order] (undefined where not needed).
std::vector<Tensor> lstm_backward(Tensor g_out, Tensor g_sT, Tensor g_cT, Tensor x, Tensor wx, Tensor ws,
                                  std::vector<Tensor> zw, optional<Tensor> zx_, optional<Tensor> zs_,
                                  optional<Tensor> zm_, Tensor G, Tensor C, Tensor S, optional<Tensor> XI_,
                                  optional<Tensor> SZ_, std::vector<int64_t> batch_sizes, std::vector<bool> need) {
  const int64_t T = G.size(0), B = G.size(1), n = G.size(3), k = wx.size(1);
  const auto opts = G.options();
  const bool ragged = !batch_sizes.empty();
  Tensor zx = contiguous(zx_), zs = contiguous(zs_), zm = contiguous(zm_), XI = contiguous(XI_),
         SZ = contiguous(SZ_);
  if (g_out.stride(2) != 1) g_out = g_out.contiguous();
  g_sT = g_sT.contiguous();
  Tensor dc = g_cT.contiguous().clone();
  auto buf = arena({{T, B, 4, n}, {zs.defined() ? 4 : 1, B, n}}, opts);
  Tensor dG = buf[0], acc = buf[1];
  if (ragged) dG.zero_();  // rows past a sequence's end get no gradient
  Tensor dx, ds0, dwx, dws, db;

  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "wlnet_lstm_backward", [&] {
    using T_ = scalar_t;
    T_* dg = dG.data_ptr<T_>();
    T_* accp = acc.data_ptr<T_>();
    const T_* wsp = ws.data_ptr<T_>();
    const T_* zsp = ptr<T_>(zs);
    const T_* zmp = ptr<T_>(zm);
    const int64_t sB = B * n, TB = T * B;
    for_row_blocks(B, [&](int64_t r0, int64_t r1) {  // the time loop for rows [r0, r1)
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t re = std::min(r1, alive(batch_sizes, t, B, T));
        if (re <= r0) continue;  // no row of the block alive yet
        if (t < T - 1) state_product<T_>(dg + (t + 1) * 4 * sB, wsp, accp, zs.defined(), r0, re, B, n);
        split_rows(r0, re, n, [&](int64_t b0, int64_t b1) {
          backward_step<T_>(g_out.data_ptr<T_>() + t * g_out.stride(0), g_out.stride(1), g_sT.data_ptr<T_>(),
                            alive(batch_sizes, t + 1, B, T), t < T - 1 ? accp : nullptr, sB, zsp,
                            dc.data_ptr<T_>(), G.data_ptr<T_>() + t * 4 * sB, C.data_ptr<T_>() + t * sB,
                            C.data_ptr<T_>() + (t + 1) * sB, zmp != nullptr ? zmp + t * n : nullptr, T * n,
                            dg + t * 4 * sB, b0, b1, n);
        });
      }
    }, n);
    if (need[1]) {  // ds0: the state product at step 0, through zs
      state_product<T_>(dg, wsp, accp, zs.defined(), 0, B, B, n);
      if (zs.defined()) {
        ds0 = at::empty({B, n}, opts);
        sum_masked_gates<T_>(4, PERM, accp, sB, zsp, ds0.data_ptr<T_>(), B, n, B);
      } else {
        ds0 = acc[0].clone();
      }
    }
    if (need[0]) {
      const T_* wxp = wx.data_ptr<T_>();
      dx = pooled(T * B * k, opts).view({T, B, k});
      T_* d = dx.data_ptr<T_>();
      if (zx.defined()) {  // dx = Σ_g (dG_g W_gx) ∘ zx_g
        Tensor tmp = pooled(4 * TB * k, opts);
        T_* tp = tmp.data_ptr<T_>();
        gemm4<T_>(false, false, TB, k, n, dg, 4 * n, n, wxp, k, n * k, T_(0), tp, k, TB * k);
        sum_masked_gates<T_>(4, PERM, tp, TB * k, zx.data_ptr<T_>(), d, TB, k, B);
      } else {
        gemm<T_>(false, false, TB, k, 4 * n, dg, 4 * n, wxp, k, T_(0), d, k);
      }
    }
    if (need[3]) {
      dwx = at::empty({4 * n, k}, opts);
      dws = at::empty({4 * n, n}, opts);
      T_* dwxp = dwx.data_ptr<T_>();
      T_* dwsp = dws.data_ptr<T_>();
      if (zx.defined()) {
        const T_* xi = XI.data_ptr<T_>();
        gemm4<T_>(true, false, n, k, TB, dg, 4 * n, n, xi, k, TB * k, T_(0), dwxp, k, n * k);
      } else {
        gemm<T_>(true, false, 4 * n, k, TB, dg, 4 * n, x.contiguous().data_ptr<T_>(), k, T_(0), dwxp, k);
      }
      if (zs.defined()) {
        const T_* sz = SZ.data_ptr<T_>();
        gemm4<T_>(true, false, n, n, TB, dg, 4 * n, n, sz, n, TB * n, T_(0), dwsp, n, n * n);
      } else {  // S[0:T] holds s_{t-1} for every step
        gemm<T_>(true, false, 4 * n, n, TB, dg, 4 * n, S.data_ptr<T_>(), n, T_(0), dwsp, n);
      }
      db = dG.view({TB, 4 * n}).sum(0);
    }
  });

  std::vector<Tensor> out = {dx, ds0, need[2] ? dc : Tensor()};
  for (int64_t part = 0; part < 3; ++part) {
    for (int64_t g = 0; g < 4; ++g) {
      if (!need[3]) {
        out.push_back(Tensor());
        continue;
      }
      Tensor grad = (part == 0 ? dwx : part == 1 ? dws : db).narrow(0, g * n, n);
      if (part < 2 && !zw.empty()) grad = grad * zw[part].narrow(0, FUSED[g] * n, n);
      out.push_back(grad);
    }
  }
  return out;
}

}  // namespace wlnet
