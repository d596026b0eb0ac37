// The time loops of `lstm_custom._LSTMCustom` in C++: per step the same matrix product as the
// Python loop, then ONE pass over the rows for all of the step's element-wise work, written
// with ATen's vectorized math. Same buffers, same conventions (see lstm_custom.py), so the
// bulk work before and after the loops is shared with the pure-torch path.
// Built at first use by `kernels.native` (torch.utils.cpp_extension).

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <vector>

using at::Tensor;
using at::vec::Vectorized;

namespace {

// exp_u20: ATen's inlined polynomial exp for float (error ≤ 20 ulp, as in its softmax kernels);
// for double it is SLEEF's exp.
template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& x) {
  const Vectorized<T> one(T(1));
  return one / (one + x.neg().exp_u20());
}

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Load `count` elements (count < Vec::size() for a tail) from p with element stride `inc`.
template <typename T>
inline Vectorized<T> load(const T* p, int64_t inc, int64_t count) {
  using Vec = Vectorized<T>;
  if (inc == 1) {
    return count == Vec::size() ? Vec::loadu(p) : Vec::loadu(p, count);
  }
  alignas(64) T tmp[Vec::size()] = {};
  for (int64_t i = 0; i < count; ++i) tmp[i] = p[i * inc];
  return Vec::loadu(tmp);
}

template <typename T>
inline void store(const Vectorized<T>& v, T* p, int64_t count) {
  if (count == Vectorized<T>::size()) {
    v.store(p);
  } else {
    v.store(p, count);
  }
}

int64_t grain_rows(int64_t n) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)); }

// One forward step after the product, rows [0, bt):
//   G[t, j] ← σ(G[t, j] + bias[j]) for the 4 gates (o, i, f, σm);
//   ME = zm4 (σm − 1/2) (with zm);  C[t+1] = f C[t] + i (ME | 4σm − 2);
//   TC = σ(C[t+1]) − 1/2;  S[t+1] = o TC;  and, per gate, the next step input XI[j, t+1, :, k:]
//   = S[t+1] (∘ zs[j]) for the rows alive at the next step.
template <typename T>
void fwd_elem(T* g, int64_t gstride, const T* bias, const T* cp, T* cn, T* tc, T* sn, int64_t s_row, T* me, const T* z,
              T* xin, int64_t xi_gate, int64_t xi_row, const T* zs, int64_t zs_gate, int64_t bt, int64_t bt_next,
              int64_t n) {
  using Vec = Vectorized<T>;
  const Vec half(T(0.5)), two(T(2)), four(T(4));
  at::parallel_for(0, bt, grain_rows(n), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t j = 0; j < n; j += Vec::size()) {
        const int64_t cnt = std::min<int64_t>(Vec::size(), n - j);
        const int64_t e = b * n + j;
        const Vec o = sigmoid(load(g + e, 1, cnt) + load(bias + j, 1, cnt));
        const Vec i = sigmoid(load(g + gstride + e, 1, cnt) + load(bias + n + j, 1, cnt));
        const Vec f = sigmoid(load(g + 2 * gstride + e, 1, cnt) + load(bias + 2 * n + j, 1, cnt));
        const Vec sm = sigmoid(load(g + 3 * gstride + e, 1, cnt) + load(bias + 3 * n + j, 1, cnt));
        store(o, g + e, cnt);
        store(i, g + gstride + e, cnt);
        store(f, g + 2 * gstride + e, cnt);
        store(sm, g + 3 * gstride + e, cnt);
        Vec m;
        if (me != nullptr) {
          m = load(z + e, 1, cnt) * (sm - half);
          store(m, me + e, cnt);
        } else {
          m = four * sm - two;
        }
        const Vec c = f * load(cp + e, 1, cnt) + i * m;
        store(c, cn + e, cnt);
        const Vec h = sigmoid(c) - half;
        store(h, tc + e, cnt);
        const Vec s = o * h;
        store(s, sn + b * s_row + j, cnt);
        if (xin != nullptr && b < bt_next) {
          for (int64_t q = 0; q < 4; ++q) {
            T* dst = xin + q * xi_gate + b * xi_row + j;
            store(zs != nullptr ? s * load(zs + q * zs_gate + e, 1, cnt) : s, dst, cnt);
          }
        }
      }
    }
  });
}

// One backward step after the product, rows [0, bt). ds = ∂L/∂s_t is
//   mode 0: dS[t] (+ extra);  mode 1: acc + dS[t];  mode 2: Σ_j acc[j] ∘ zs[j] + dS[t];
// then, with the step-independent factors of lstm_custom's backward computed on the fly
// from G[t] = (o, i, f, σm), C[t] = 2c_{t-1}, TC[t] = tanh(c_t)/2 and ME[t], zm4[t]:
//   dc += ds P;  dG[t, :, 0] = ds ∂s/∂pre_o;  dG[t, :, 1:4] = dc ∂c/∂pre_{i,f,m};  dc *= f.
template <typename T>
void bwd_elem(int mode, const T* acc, int64_t acc_gate, const T* zs, int64_t zs_gate, const T* extra, const T* dS,
              int64_t dS_row, int64_t dS_col, T* dc, const T* g, int64_t gstride, const T* cp, const T* tc,
              const T* me, const T* z, T* dg, int64_t bt, int64_t n) {
  using Vec = Vectorized<T>;
  const Vec one(T(1)), two(T(2)), four(T(4)), half(T(0.5)), quarter(T(0.25));
  at::parallel_for(0, bt, grain_rows(n), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* dgb = dg + b * 4 * n;
      for (int64_t j = 0; j < n; j += Vec::size()) {
        const int64_t cnt = std::min<int64_t>(Vec::size(), n - j);
        const int64_t e = b * n + j;
        Vec ds = load(dS + b * dS_row + j * dS_col, dS_col, cnt);
        if (mode == 0) {
          if (extra != nullptr) ds = ds + load(extra + e, 1, cnt);
        } else if (mode == 1) {
          ds = ds + load(acc + e, 1, cnt);
        } else {
          for (int64_t q = 0; q < 4; ++q) {
            ds = ds + load(acc + q * acc_gate + e, 1, cnt) * load(zs + q * zs_gate + e, 1, cnt);
          }
        }
        const Vec o = load(g + e, 1, cnt), i = load(g + gstride + e, 1, cnt);
        const Vec f = load(g + 2 * gstride + e, 1, cnt), sm = load(g + 3 * gstride + e, 1, cnt);
        const Vec h = load(tc + e, 1, cnt);
        const Vec c = load(dc + e, 1, cnt) + ds * (o - four * o * h * h);  // ∂s/∂c = o (1 − tanh² c)
        const Vec m = two * sm - one;
        Vec d_i = i * (one - i), d_m = i * (one - m * m);
        if (me != nullptr) {
          d_i = d_i * load(me + e, 1, cnt) * half;
          d_m = d_m * load(z + e, 1, cnt) * quarter;
        } else {
          d_i = d_i * m;
        }
        const Vec d_f = f * (one - f) * load(cp + e, 1, cnt) * half;
        store(o * (one - o) * h * two * ds, dgb + j, cnt);
        store(d_i * c, dgb + n + j, cnt);
        store(d_f * c, dgb + 2 * n + j, cnt);
        store(d_m * c, dgb + 3 * n + j, cnt);
        store(c * f, dc + e, cnt);
      }
    }
  });
}

int64_t alive(const std::vector<int64_t>& batch_sizes, int64_t t, int64_t B) {
  return batch_sizes.empty() ? B : batch_sizes[t];
}

void check(const Tensor& x, const char* name) {
  TORCH_CHECK(x.is_contiguous(), "wlnet native: ", name, " must be contiguous");
}

}  // namespace

// The forward time loop; the buffers as in lstm_custom._LSTMCustom.forward, with S[0] and C[0]
// set (and, per gate, XI[:, 0] complete: x part and the first step's state part).
void forward_loop(Tensor G, Tensor C, Tensor TC, Tensor S, Tensor XI, Tensor wfT, Tensor bf,
                  c10::optional<Tensor> zs, c10::optional<Tensor> ME, c10::optional<Tensor> zm4,
                  std::vector<int64_t> batch_sizes, bool per_gate, int64_t k) {
  const int64_t T = G.size(0), B = G.size(2), n = G.size(3);
  check(G, "G"), check(C, "C"), check(TC, "TC"), check(XI, "XI"), check(bf, "bf");
  TORCH_CHECK(S.stride(2) == 1, "wlnet native: S rows must be contiguous");
  if (zs) check(*zs, "zs");
  if (ME) check(*ME, "ME"), check(*zm4, "zm4");
  const int64_t sB = B * n;  // a step's stride in G / 4, C, TC, ME, zm4
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "wlnet_forward_loop", [&] {
    using T_ = scalar_t;
    T_* g = G.data_ptr<T_>();
    T_* c = C.data_ptr<T_>();
    T_* tc = TC.data_ptr<T_>();
    T_* s = S.data_ptr<T_>();
    T_* xi = XI.data_ptr<T_>();
    T_* me = ME ? ME->data_ptr<T_>() : nullptr;
    const T_* z = ME ? zm4->data_ptr<T_>() : nullptr;
    const T_* zsp = zs ? zs->data_ptr<T_>() : nullptr;
    const T_* bias = bf.data_ptr<T_>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t bt = alive(batch_sizes, t, B);
      Tensor gt = G[t].narrow(1, 0, bt);
      Tensor xit = per_gate ? XI.select(1, t).narrow(1, 0, bt) : XI[t].narrow(0, 0, bt).expand({4, bt, k + n});
      at::bmm_out(gt, xit, wfT);  // the bias is added in fwd_elem (baddbmm would copy it first)
      const bool next_xi = per_gate && t + 1 < T;
      fwd_elem<T_>(g + t * 4 * sB, sB, bias, c + t * sB, c + (t + 1) * sB, tc + t * sB, s + (t + 1) * S.stride(0),
                   S.stride(1), me ? me + t * sB : nullptr, z ? z + t * sB : nullptr,
                   next_xi ? xi + (t + 1) * XI.stride(1) + k : nullptr, XI.stride(0), XI.stride(2), zsp, sB, bt,
                   next_xi ? alive(batch_sizes, t + 1, B) : 0, n);
    }
  });
}

// The backward time loop. dG (T, B, 4, n) is written (rows alive at each step only: zero the
// others beforehand); dc (B, n) holds ∂L/∂c_T and ends as ∂L/∂c_0. G, C, TC, ME, zm4 as saved
// by the forward; ws (4, n, n), ws_cat (4n, n).
void backward_loop(Tensor dG, Tensor G, Tensor C, Tensor TC, c10::optional<Tensor> ME, c10::optional<Tensor> zm4,
                   Tensor dS, c10::optional<Tensor> g_sT, Tensor dc, Tensor ws, Tensor ws_cat,
                   c10::optional<Tensor> zs, std::vector<int64_t> batch_sizes) {
  const int64_t T = dG.size(0), B = dG.size(1), n = dG.size(3);
  check(dG, "dG"), check(G, "G"), check(C, "C"), check(TC, "TC"), check(dc, "dc");
  if (g_sT) check(*g_sT, "g_sT");
  if (zs) check(*zs, "zs");
  if (ME) check(*ME, "ME"), check(*zm4, "zm4");
  TORCH_CHECK(dS.size(0) == T && dS.size(1) == B && dS.size(2) == n, "wlnet native: dS shape");
  Tensor acc_flat = at::empty({(zs ? 4 : 1) * B * n}, dG.options());
  const int64_t sB = B * n;
  AT_DISPATCH_FLOATING_TYPES(dG.scalar_type(), "wlnet_backward_loop", [&] {
    using T_ = scalar_t;
    T_* dg = dG.data_ptr<T_>();
    T_* acc = acc_flat.data_ptr<T_>();
    T_* dcp = dc.data_ptr<T_>();
    const T_* g = G.data_ptr<T_>();
    const T_* c = C.data_ptr<T_>();
    const T_* tc = TC.data_ptr<T_>();
    const T_* ds = dS.data_ptr<T_>();
    const T_* me = ME ? ME->data_ptr<T_>() : nullptr;
    const T_* z = ME ? zm4->data_ptr<T_>() : nullptr;
    const T_* zsp = zs ? zs->data_ptr<T_>() : nullptr;
    const T_* extra = g_sT ? g_sT->data_ptr<T_>() : nullptr;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t bt = alive(batch_sizes, t, B);
      int mode = 0;
      if (t < T - 1) {
        Tensor dgn = dG[t + 1].narrow(0, 0, bt);  // (bt, 4, n)
        if (zs) {
          Tensor a = acc_flat.narrow(0, 0, 4 * bt * n).view({4, bt, n});
          at::bmm_out(a, dgn.transpose(0, 1), ws);
          mode = 2;
        } else {
          Tensor a = acc_flat.narrow(0, 0, bt * n).view({bt, n});
          at::mm_out(a, dgn.view({bt, 4 * n}), ws_cat);
          mode = 1;
        }
      }
      bwd_elem<T_>(mode, acc, bt * n, zsp, sB, extra, ds + t * dS.stride(0), dS.stride(1), dS.stride(2), dcp,
                   g + t * 4 * sB, sB, c + t * sB, tc + t * sB, me ? me + t * sB : nullptr, z ? z + t * sB : nullptr,
                   dg + t * 4 * sB, bt, n);
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward_loop", &forward_loop, "wlnet LSTM forward time loop");
  m.def("backward_loop", &backward_loop, "wlnet LSTM backward time loop");
}
