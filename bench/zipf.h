// Zipf-distributed item numbers (skew s, n items) and a small fast PRNG.
// The CDF is computed once (n doubles); draws are a binary search.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace upcache::bench {

// splitmix64: fast, seedable, good enough for offsets.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  double unit() { return (next() >> 11) * 0x1.0p-53; }
};

class Zipf {
 public:
  Zipf(uint64_t n, double s) : cdf_(n) {
    double sum = 0;
    for (uint64_t i = 0; i < n; ++i) cdf_[i] = (sum += 1.0 / std::pow(double(i + 1), s));
    for (auto& c : cdf_) c /= sum;
  }
  // Rank 0 is the hottest item.
  uint64_t draw(Rng& rng) const {
    auto it = std::lower_bound(cdf_.begin(), cdf_.end(), rng.unit());
    return std::min<uint64_t>(it - cdf_.begin(), cdf_.size() - 1);
  }

 private:
  std::vector<double> cdf_;
};

}  // namespace upcache::bench
