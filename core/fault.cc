#include "core/fault.h"

#include <cerrno>
#include <cstring>

#include "core/config.h"

namespace upcache {
namespace {

// Parses a decimal page number; the whole of [s, end) must be digits.
bool parse_u64(const char* s, const char* end, uint64_t* out) {
  if (s == end) return false;
  uint64_t v = 0;
  for (; s < end; ++s) {
    if (*s < '0' || *s > '9') return false;
    uint64_t d = static_cast<uint64_t>(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool parse_size_range(const char* s, const char* end, uint64_t* out) {
  char buf[64];
  size_t n = static_cast<size_t>(end - s);
  if (n == 0 || n >= sizeof(buf)) return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return parse_size(buf, out);
}

bool key_is(const char* s, const char* eq, const char* key) {
  size_t n = strlen(key);
  return static_cast<size_t>(eq - s) == n && memcmp(s, key, n) == 0;
}

}  // namespace

void FaultSpec::parse(const char* text, uint64_t page_size) {
  page_size_ = page_size ? page_size : 1;
  if (text == nullptr) return;
  const char* p = text;
  while (*p) {
    const char* end = strchr(p, ',');
    if (end == nullptr) end = p + strlen(p);
    const char* eq = static_cast<const char*>(memchr(p, '=', static_cast<size_t>(end - p)));
    if (eq == nullptr) {
      if (end - p == 8 && memcmp(p, "nodirect", 8) == 0) nodirect_ = active_ = true;
    } else if (key_is(p, eq, "eio") && eio_count_ < kMaxEntries) {
      const char* dash = static_cast<const char*>(memchr(eq + 1, '-', static_cast<size_t>(end - eq - 1)));
      uint64_t first = 0, last = 0;
      bool ok = dash ? parse_u64(eq + 1, dash, &first) && parse_u64(dash + 1, end, &last)
                     : parse_u64(eq + 1, end, &first);
      if (!dash) last = first;
      if (ok && first <= last) {
        eio_first_[eio_count_] = first;
        eio_last_[eio_count_] = last;
        ++eio_count_;
        active_ = true;
      }
    } else if (key_is(p, eq, "eio_once") && once_count_ < kMaxEntries) {
      uint64_t page = 0;
      if (parse_u64(eq + 1, end, &page)) {
        once_page_[once_count_] = page;
        once_fired_[once_count_].store(false, std::memory_order_relaxed);
        ++once_count_;
        active_ = true;
      }
    } else if (key_is(p, eq, "short")) {
      uint64_t v = 0;
      if (parse_size_range(eq + 1, end, &v) && v > 0) {
        short_max_ = v;
        active_ = true;
      }
    } else if (key_is(p, eq, "eio_at") && at_count_ < kMaxEntries) {
      uint64_t v = 0;
      if (parse_size_range(eq + 1, end, &v)) {
        eio_at_[at_count_++] = v;
        active_ = true;
      }
    } else if (key_is(p, eq, "einval_at")) {
      uint64_t v = 0;
      if (parse_size_range(eq + 1, end, &v)) {
        einval_ = true;
        einval_at_ = v;
        active_ = true;
      }
    }
    p = *end ? end + 1 : end;
  }
}

bool FaultSpec::touches(uint64_t first_page, uint64_t last_page, uint64_t offset,
                        uint64_t len) const {
  if (len == 0) return false;
  uint64_t lo = offset / page_size_;
  uint64_t hi = (offset + len - 1) / page_size_;
  return lo <= last_page && first_page <= hi;
}

int64_t FaultSpec::filter(uint64_t offset, uint64_t len, bool direct, uint64_t align, int64_t res) {
  if (!active_ || res < 0) return res;  // a real error stays what it is
  if (einval_ && direct && offset + len > einval_at_) return -EINVAL;
  for (int i = 0; i < eio_count_; ++i)
    if (touches(eio_first_[i], eio_last_[i], offset, len)) return -EIO;
  for (int i = 0; i < at_count_; ++i)
    if (len != 0 && offset <= eio_at_[i] && eio_at_[i] < offset + len) return -EIO;
  for (int i = 0; i < once_count_; ++i) {
    if (touches(once_page_[i], once_page_[i], offset, len) &&
        !once_fired_[i].load(std::memory_order_relaxed) &&
        !once_fired_[i].exchange(true, std::memory_order_acq_rel))
      return -EIO;
  }
  if (short_max_ != 0) {
    uint64_t cap = short_max_;
    if (direct && align > 1) {
      cap -= cap % align;
      if (cap == 0) cap = align;
    }
    if (static_cast<uint64_t>(res) > cap) res = static_cast<int64_t>(cap);
  }
  return res;
}

namespace {
std::atomic<bool> g_kill_in_claim{false};
std::atomic<bool> g_lose_async{false};
std::atomic<bool> g_starve_claims{false};
std::atomic<bool> g_kill_after_pin{false};
std::atomic<bool> g_kill_in_completion{false};
std::atomic<bool> g_kill_in_finish{false};
}  // namespace

void fault_arm_kill_in_claim() { g_kill_in_claim.store(true, std::memory_order_relaxed); }
bool fault_kill_in_claim_armed() { return g_kill_in_claim.load(std::memory_order_relaxed); }
void fault_arm_lose_async() { g_lose_async.store(true, std::memory_order_relaxed); }
bool fault_lose_async_armed() { return g_lose_async.load(std::memory_order_relaxed); }
void fault_arm_starve_claims(bool on) { g_starve_claims.store(on, std::memory_order_relaxed); }
bool fault_starve_claims_armed() { return g_starve_claims.load(std::memory_order_relaxed); }
void fault_arm_kill_after_pin() { g_kill_after_pin.store(true, std::memory_order_relaxed); }
bool fault_kill_after_pin_armed() { return g_kill_after_pin.load(std::memory_order_relaxed); }
void fault_arm_kill_in_completion() { g_kill_in_completion.store(true, std::memory_order_relaxed); }
bool fault_kill_in_completion_armed() { return g_kill_in_completion.load(std::memory_order_relaxed); }
void fault_arm_kill_in_finish() { g_kill_in_finish.store(true, std::memory_order_relaxed); }
bool fault_kill_in_finish_armed() { return g_kill_in_finish.load(std::memory_order_relaxed); }

}  // namespace upcache
