// What the native kernels share: the BLAS that torch links, vectorized helpers, the row-block
// time loops, the buffer pool, the mask helpers, and the entry points `module.cpp` binds.
// Built at first use by `kernels.native` (torch.utils.cpp_extension).
//
// Conventions: row-major buffers; T steps, B rows (sorted by decreasing length when ragged),
// k input size, n output size; `batch_sizes` holds the rows alive at each step, or is empty
// for all B. The kernel sources include ATen only (pybind11 only in module.cpp), which keeps
// each compile short.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <type_traits>
#include <vector>

extern "C" {  // the BLAS that torch links (Fortran interface)
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*);
void sgemm_batch_(const char*, const char*, const int*, const int*, const int*, const float*, const float**, const int*,
                  const float**, const int*, const float*, float**, const int*, const int*, const int*);
void dgemm_batch_(const char*, const char*, const int*, const int*, const int*, const double*, const double**,
                  const int*, const double**, const int*, const double*, double**, const int*, const int*, const int*);
}

namespace wlnet {

using at::Tensor;
using at::vec::Vectorized;
using c10::optional;

// Which matrix product the kernels call: 0, the BLAS torch links, directly (`sgemm_`: MKL in
// torch's x86 wheels); 1, torch's own matmul (`at::mm_out` / `addmm_` on views of the buffers),
// which routes by its own rules. `kernels.native` measures both at first use and sets the faster.
inline int& gemm_backend() {
  static int backend = 0;
  return backend;
}

// The product through torch's matmul: views of the row-major buffers, conventions as `gemm`.
template <typename T>
void gemm_aten(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
               T beta, T* C, int64_t ldc) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  T* a_ = const_cast<T*>(A);
  T* b_ = const_cast<T*>(B);
  const Tensor a = ta ? at::from_blob(a_, {K, M}, {lda, 1}, opts).t() : at::from_blob(a_, {M, K}, {lda, 1}, opts);
  const Tensor b = tb ? at::from_blob(b_, {N, K}, {ldb, 1}, opts).t() : at::from_blob(b_, {K, N}, {ldb, 1}, opts);
  Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opts);
  if (beta == T(0)) {
    at::mm_out(c, a, b);
  } else {
    c.addmm_(a, b, beta);
  }
}

// Row-major C (M×N, ldc) = op(A) op(B) + beta C, op(A) M×K. ta: A is stored K×M (lda);
// tb: B is stored N×K (ldb). Column-major BLAS computes Cᵀ = op(B)ᵀ op(A)ᵀ.
template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
          T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;  // (K ≥ 1 always: sizes and step counts are positive)
  if (gemm_backend() == 1) {
    gemm_aten<T>(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const char opa = ta ? 'T' : 'N', opb = tb ? 'T' : 'N';
  const int m = N, n = M, k = K, la = ldb, lb = lda, lc = ldc;
  const T one = 1;
  if constexpr (std::is_same_v<T, float>) {
    sgemm_(&opb, &opa, &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
  } else {
    dgemm_(&opb, &opa, &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
  }
}

// Q ≤ 4 products of the same shapes in one BLAS call (MKL's grouped batch): C_q = op(A_q)
// op(B_q) + beta C_q, with A_q = A + q sa, B_q = B + q sb, C_q = C + q sc. Conventions as `gemm`.
template <typename T>
void gemm_q(int Q, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, int64_t sa,
            const T* B, int64_t ldb, int64_t sb, T beta, T* C, int64_t ldc, int64_t sc) {
  if (M == 0 || N == 0) return;
  if (gemm_backend() == 1) {
    for (int q = 0; q < Q; ++q) gemm_aten<T>(ta, tb, M, N, K, A + q * sa, lda, B + q * sb, ldb, beta, C + q * sc, ldc);
    return;
  }
  const char opa = ta ? 'T' : 'N', opb = tb ? 'T' : 'N';
  const int m = N, n = M, k = K, la = ldb, lb = lda, lc = ldc, groups = 1, size = Q;
  const T one = 1;
  const T* a[4];
  const T* b[4];
  T* c[4];
  for (int q = 0; q < Q; ++q) {
    a[q] = B + q * sb;
    b[q] = A + q * sa;
    c[q] = C + q * sc;
  }
  if constexpr (std::is_same_v<T, float>) {
    sgemm_batch_(&opb, &opa, &m, &n, &k, &one, a, &la, b, &lb, &beta, c, &lc, &groups, &size);
  } else {
    dgemm_batch_(&opb, &opa, &m, &n, &k, &one, a, &la, b, &lb, &beta, c, &lc, &groups, &size);
  }
}

// Four products in one call (the LSTM's gates).
template <typename T>
void gemm4(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, int64_t sa, const T* B,
           int64_t ldb, int64_t sb, T beta, T* C, int64_t ldc, int64_t sc) {
  gemm_q<T>(4, ta, tb, M, N, K, A, lda, sa, B, ldb, sb, beta, C, ldc, sc);
}

// While alive, this thread's MKL calls run on this thread alone (MKL's thread-local setting,
// looked up in the process: without MKL, nothing to do).
class SerialBlas {
 public:
  SerialBlas() {
    using set_fn = int (*)(int);
    static const set_fn set_local = reinterpret_cast<set_fn>(dlsym(RTLD_DEFAULT, "MKL_Set_Num_Threads_Local"));
    set_ = set_local;
    if (set_ != nullptr) previous_ = set_(1);
  }
  ~SerialBlas() {
    if (set_ != nullptr) set_(previous_);
  }
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;

 private:
  int (*set_)(int) = nullptr;
  int previous_ = 0;
};

template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& x) {
  const Vectorized<T> one(T(1));
  // exp_u20: ATen's inlined exp (≤ 20 ulp; SLEEF for double). It clamps its argument, which
  // turns NaN into a finite number: NaN is put back, so that NaN stays NaN as in torch.
  return Vectorized<T>::blendv(one / (one + x.neg().exp_u20()), x, x.isnan());
}

template <typename T>
inline Vectorized<T> tanh_(const Vectorized<T>& x) {  // tanh u = 2σ(2u) − 1: one exp
  const Vectorized<T> one(T(1)), two(T(2));
  return two * sigmoid(two * x) - one;
}

template <typename T>
inline Vectorized<T> load(const T* p, int64_t count) {
  return count == Vectorized<T>::size() ? Vectorized<T>::loadu(p) : Vectorized<T>::loadu(p, count);
}

template <typename T>
inline void store(const Vectorized<T>& v, T* p, int64_t count) {
  if (count == Vectorized<T>::size()) {
    v.store(p);
  } else {
    v.store(p, count);
  }
}

// Runs f(r0, r1) for blocks of the rows [0, B), in parallel: rows are independent in the
// recurrence, so each thread runs a whole time loop for its block, and no step waits for
// another thread (per-step parallel regions cost about as much as the work at small sizes, and
// stall whenever the machine lends the process fewer cores than threads). Blocks keep at
// least kMinRows rows (a smaller product is inefficient); their BLAS calls run on their thread.
// Widths from which one block of all rows runs, with BLAS threaded inside each product and the
// element-wise passes split over threads (`split_rows`): there a product is big enough to thread
// well, and row blocks would each read all of the state weights at every step
// (bench/kernels.py: at n = 1024 ~10% faster so, at n = 512 ~10% slower).
constexpr int64_t kOneBlockWidth = 768;

template <typename F>
void for_row_blocks(int64_t B, const F& f, int64_t n = 0) {
  constexpr int64_t kMinRows = 16;
  const int64_t blocks =
      n >= kOneBlockWidth ? 1 : std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B / kMinRows));
  if (blocks == 1) {
    f(0, B);
    return;
  }
  at::parallel_for(0, blocks, 1, [&](int64_t c0, int64_t c1) {
    const SerialBlas serial;
    for (int64_t c = c0; c < c1; ++c) f(c * B / blocks, (c + 1) * B / blocks);
  });
}

// Runs f(b0, b1) over the rows [r0, r1) of an element-wise pass of width n: in parallel when the
// pass is big and no parallel region is running already (inside a row block), else at once.
template <typename F>
void split_rows(int64_t r0, int64_t r1, int64_t n, const F& f) {
  constexpr int64_t kMinElements = 32768;
  if (at::in_parallel_region() || (r1 - r0) * n < 2 * kMinElements) {
    f(r0, r1);
    return;
  }
  at::parallel_for(r0, r1, std::max<int64_t>(1, kMinElements / n), f);
}

inline int64_t alive(const std::vector<int64_t>& batch_sizes, int64_t t, int64_t B, int64_t T) {
  if (t >= T) return 0;
  return batch_sizes.empty() ? B : batch_sizes[t];
}

inline Tensor contiguous(const optional<Tensor>& z) { return z ? z->contiguous() : Tensor(); }

// Whether weight mask i is given: zw holds one per weight array (an empty tensor: none), or is empty.
inline bool has_mask(const std::vector<Tensor>& zw, size_t i) { return !zw.empty() && zw[i].numel() > 0; }

// A mask, if given, must have `shape` and x's dtype (else its data would be misread).
inline void check_mask(const Tensor& z, at::IntArrayRef shape, const Tensor& x, const char* name) {
  if (!z.defined()) return;
  TORCH_CHECK(z.sizes() == shape, "wlnet native: mask ", name, " must have shape ", shape, ", got ", z.sizes());
  TORCH_CHECK(z.scalar_type() == x.scalar_type(), "wlnet native: mask ", name, " must be ", x.scalar_type(),
              ", got ", z.scalar_type());
}

template <typename T>
const T* ptr(const Tensor& z) {
  return z.defined() ? z.data_ptr<T>() : nullptr;
}

// Per-gate masked copies: dst[q, r, :] = src[r, :] ∘ z[r mod B, perm[q], :] for rows r < rows,
// q < Q, width w; z is (B, Q, w); dst's gates are gate_stride apart (row r of a time-major
// buffer is sequence r mod B).
template <typename T>
void mask_per_gate(int64_t Q, const int64_t* perm, const T* src, const T* z, T* dst, int64_t gate_stride,
                   int64_t rows, int64_t w, int64_t B) {
  at::parallel_for(0, rows, std::max<int64_t>(1, 2048 / std::max<int64_t>(w, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r % B;
      for (int64_t q = 0; q < Q; ++q) {
        const T* zq = z + (b * Q + perm[q]) * w;
        T* d = dst + q * gate_stride + r * w;
        for (int64_t j = 0; j < w; ++j) d[j] = src[r * w + j] * zq[j];
      }
    }
  });
}

// The reverse: dst[r, :] = Σ_q src[q, r, :] ∘ z[r mod B, perm[q], :].
template <typename T>
void sum_masked_gates(int64_t Q, const int64_t* perm, const T* src, int64_t gate_stride, const T* z, T* dst,
                      int64_t rows, int64_t w, int64_t B) {
  at::parallel_for(0, rows, std::max<int64_t>(1, 2048 / std::max<int64_t>(w, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r % B;
      for (int64_t j = 0; j < w; ++j) {
        T v = 0;
        for (int64_t q = 0; q < Q; ++q) v += src[q * gate_stride + r * w + j] * z[(b * Q + perm[q]) * w + j];
        dst[r * w + j] = v;
      }
    }
  });
}

// A flat buffer of `numel` elements (a view) from a small pool of allocations that this module
// keeps and reuses once nothing else refers to them (a pooled block is only ever handed out as
// a view, so the reference count of its storage tells). A fresh multi-megabyte block is mapped
// in from the OS page by page at every call, which costs ~5% of a forward at n = 32 and more
// when the host is busy. Blocks over kMaxBytes are not kept. (inline: one pool for the module.)
inline Tensor pooled(int64_t numel, const at::TensorOptions& opts) {
  static std::mutex mutex;
  static std::vector<Tensor> pool;
  constexpr size_t kPool = 16;
  constexpr int64_t kMaxBytes = int64_t(256) << 20;
  if (numel * static_cast<int64_t>(opts.dtype().itemsize()) > kMaxBytes) return at::empty({numel}, opts);
  std::lock_guard<std::mutex> lock(mutex);
  const auto is_free = [](const Tensor& t) { return t.storage().use_count() == 1; };
  for (const Tensor& t : pool) {
    if (t.scalar_type() == opts.dtype().toScalarType() && t.numel() >= numel && t.numel() <= 2 * numel + 4096 &&
        is_free(t)) {
      return t.narrow(0, 0, numel);
    }
  }
  Tensor t = at::empty({numel}, opts);
  if (pool.size() >= kPool) {  // make room: forget a free block, else do not keep this one
    auto it = std::find_if(pool.begin(), pool.end(), is_free);
    if (it == pool.end()) return t.narrow(0, 0, numel);
    pool.erase(it);
  }
  pool.push_back(t);
  return t.narrow(0, 0, numel);
}

// Buffers of the given shapes as views of one allocation.
inline std::vector<Tensor> arena(const std::vector<std::vector<int64_t>>& shapes, const at::TensorOptions& opts) {
  int64_t total = 0;
  for (const auto& s : shapes) total += c10::multiply_integers(s);
  Tensor flat = pooled(std::max<int64_t>(total, 1), opts);
  std::vector<Tensor> out;
  int64_t off = 0;
  for (const auto& s : shapes) {
    const int64_t size = c10::multiply_integers(s);
    out.push_back(flat.narrow(0, off, size).view(s));
    off += size;
  }
  return out;
}

// S[0] of a contiguous state buffer S (T+1, B, n) = the start state v, or zeros without one.
inline void set_start(const Tensor& S, const optional<Tensor>& v) {
  const int64_t count = S.size(1) * S.size(2);
  if (v && (v->scalar_type() != S.scalar_type() || v->numel() != count)) {
    S[0].copy_(*v);  // (casts, or the shape error)
    return;
  }
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "wlnet_set_start", [&] {
    scalar_t* d = S.data_ptr<scalar_t>();
    if (v) {
      const Tensor c = v->contiguous();
      std::copy_n(c.data_ptr<scalar_t>(), count, d);
    } else {
      std::fill_n(d, count, scalar_t(0));
    }
  });
}

// Each row's state at its own last step: rows of a contiguous S (T+1, B, n) (S[t] the state
// after t steps), copied row by row.
inline Tensor last_states(const Tensor& S, const std::vector<int64_t>& batch_sizes) {
  const int64_t T = S.size(0) - 1, B = S.size(1), n = S.size(2);
  std::vector<int64_t> len(B, batch_sizes.empty() ? T : 0);
  for (int64_t bt : batch_sizes)
    for (int64_t b = 0; b < bt; ++b) ++len[b];
  Tensor out = at::empty({B, n}, S.options());
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "wlnet_last_states", [&] {
    const scalar_t* s = S.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) std::copy_n(s + (len[b] * B + b) * n, n, o + b * n);
  });
  return out;
}

// ------------------------------------------------------------------------------ entry points

// lstm.cpp
std::vector<Tensor> lstm_forward(Tensor x, optional<Tensor> s0, optional<Tensor> c0, std::vector<Tensor> arrays,
                                 std::vector<Tensor> zw, optional<Tensor> zx, optional<Tensor> zs,
                                 optional<Tensor> zm, std::vector<int64_t> batch_sizes);
std::vector<Tensor> lstm_backward(Tensor g_out, Tensor g_sT, Tensor g_cT, Tensor x, Tensor wx, Tensor ws,
                                  std::vector<Tensor> zw, optional<Tensor> zx, optional<Tensor> zs,
                                  optional<Tensor> zm, Tensor G, Tensor C, Tensor S, optional<Tensor> XI,
                                  optional<Tensor> SZ, std::vector<int64_t> batch_sizes, std::vector<bool> need);
// rows.cpp
std::vector<Tensor> lstm_forward_rows(Tensor x, std::vector<int64_t> lengths, optional<Tensor> s0,
                                      optional<Tensor> c0, std::vector<Tensor> arrays, std::vector<Tensor> zw,
                                      optional<Tensor> zx, optional<Tensor> zs, optional<Tensor> zm, bool views);
std::vector<Tensor> lstm_backward_rows(Tensor g_out, Tensor g_sT, Tensor g_cT, Tensor x_tm, Tensor wx, Tensor ws,
                                       std::vector<Tensor> zw, optional<Tensor> zx, optional<Tensor> zs,
                                       optional<Tensor> zm, Tensor G, Tensor C, Tensor S,
                                       optional<Tensor> XI, optional<Tensor> SZ, std::vector<int64_t> lengths,
                                       int64_t T, std::vector<bool> need);
// gru.cpp
std::vector<Tensor> gru_forward(Tensor x, optional<Tensor> s0, std::vector<Tensor> arrays, std::vector<Tensor> zw,
                                optional<Tensor> zx, optional<Tensor> zs, optional<Tensor> zm,
                                std::vector<int64_t> batch_sizes);
std::vector<Tensor> gru_backward(Tensor g_out, Tensor g_sT, Tensor x, Tensor wx, Tensor ws, std::vector<Tensor> zw,
                                 optional<Tensor> zx, optional<Tensor> zs, optional<Tensor> zm, Tensor G, Tensor AM,
                                 Tensor S, optional<Tensor> XI, optional<Tensor> SZ, std::vector<int64_t> batch_sizes,
                                 std::vector<bool> need);
// rnn.cpp
std::vector<Tensor> rnn_forward(Tensor x, optional<Tensor> s0, std::vector<Tensor> arrays, std::vector<Tensor> zw,
                                optional<Tensor> zx, optional<Tensor> zs, std::vector<int64_t> batch_sizes);
std::vector<Tensor> rnn_backward(Tensor g_out, Tensor g_sT, Tensor x, Tensor wx, Tensor ws, std::vector<Tensor> zw,
                                 optional<Tensor> zx, optional<Tensor> zs, Tensor S, optional<Tensor> XI,
                                 optional<Tensor> SZ, std::vector<int64_t> batch_sizes, std::vector<bool> need);
// draw.cpp
std::vector<Tensor> bernoulli(std::vector<std::vector<int64_t>> shapes, std::vector<double> ps,
                              optional<at::Generator> generator, at::ScalarType dtype);

}  // namespace wlnet
