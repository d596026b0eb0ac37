// Dropout masks drawn from one seed with a counter-based hash (any thread count gives the same
// masks for the same seed).

#include <ATen/CPUGeneratorImpl.h>

#include <cstring>

#include "common.h"

namespace wlnet {
namespace {

inline uint64_t mix(uint64_t z) {  // SplitMix64's finalizer
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

// Dropout masks, one per shape: mask s holds Bernoulli(1 − ps[s]) / (1 − ps[s]) draws, as views
// of one new allocation of `dtype`. One 64-bit seed is taken from `generator` (a CPU
// generator; none: torch's default one); draw e of mask s compares 16 bits of the hash of
// (seed, s, e / 4) with round(p 2^16): the drop probability is p to within 2^-17, and the
// result depends on the seed alone (not on threads).
std::vector<Tensor> bernoulli(std::vector<std::vector<int64_t>> shapes, std::vector<double> ps,
                              optional<at::Generator> generator, at::ScalarType dtype) {
  TORCH_CHECK(shapes.size() == ps.size(), "wlnet native: bernoulli arguments");
  at::Generator gen = generator && generator->defined() ? *generator : at::detail::getDefaultCPUGenerator();
  uint64_t seed;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
  }
  std::vector<Tensor> masks = arena(shapes, at::TensorOptions().dtype(dtype));
  std::vector<int64_t> sizes;
  for (const Tensor& mask : masks) sizes.push_back(mask.numel());
  Tensor out = masks.empty() ? at::empty({0}, dtype) : masks[0];
  struct Chunk {  // words [w0, w1) of segment s, which starts at element off
    size_t s;
    int64_t off, w0, w1;
  };
  std::vector<Chunk> chunks;
  int64_t off = 0;
  for (size_t s = 0; s < sizes.size(); ++s) {
    const int64_t words = (sizes[s] + 3) / 4;
    for (int64_t w = 0; w < words; w += 4096) chunks.push_back({s, off, w, std::min<int64_t>(words, w + 4096)});
    off += sizes[s];
  }
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "wlnet_bernoulli", [&] {
    using T_ = scalar_t;
    T_* base = out.data_ptr<T_>();  // the start of the allocation
    // below ~16K draws one thread does it faster than waking another
    const int64_t n_chunks = static_cast<int64_t>(chunks.size());
    at::parallel_for(0, n_chunks, off >= (1 << 14) ? 1 : n_chunks, [&](int64_t c0, int64_t c1) {
      for (int64_t ci = c0; ci < c1; ++ci) {
        const Chunk& ch = chunks[ci];
        const int64_t size = sizes[ch.s];
        const int64_t threshold = std::min<int64_t>(std::llround(ps[ch.s] * 65536.0), 65535);
        const T_ keep = T_(1.0 / (1.0 - ps[ch.s]));
        const uint64_t key = mix(seed + 0x9E3779B97F4A7C15ULL * (ch.s + 1));
        T_* __restrict__ dst = base + ch.off;
        // In blocks: the hashes first, then the draws, read as the 16-bit lanes of the words in
        // memory order (little-endian: lane l of word w is draw 4w + l), each kept as
        // 1 + the sign bit of (u − threshold). Both loops are branch-free and vectorize.
        constexpr int64_t kBlock = 256;
        alignas(64) uint64_t words[kBlock];
        alignas(64) uint16_t lanes[4 * kBlock];
        for (int64_t w0 = ch.w0; w0 < ch.w1; w0 += kBlock) {
          const int64_t nw = std::min<int64_t>(kBlock, ch.w1 - w0);
          for (int64_t i = 0; i < nw; ++i) words[i] = mix(key + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(w0 + i));
          std::memcpy(lanes, words, sizeof(words));
          const int64_t ne = std::min<int64_t>(4 * nw, size - 4 * w0);
          T_* __restrict__ d = dst + 4 * w0;
          for (int64_t e = 0; e < ne; ++e) {
            d[e] = keep * T_(1 + ((static_cast<int64_t>(lanes[e]) - threshold) >> 63));
          }
        }
      }
    });
  });
  return masks;
}

}  // namespace wlnet
