#include "core/config.h"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace upcache {

bool parse_size(const char* text, uint64_t* out) {
  if (text == nullptr || !isdigit(static_cast<unsigned char>(*text))) return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0) return false;
  unsigned shift = 0;
  switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; ++end; break;
    case 'm': case 'M': shift = 20; ++end; break;
    case 'g': case 'G': shift = 30; ++end; break;
    case 't': case 'T': shift = 40; ++end; break;
    default: return false;
  }
  if (shift != 0 && (*end == 'i' || *end == 'I')) ++end;
  if (*end == 'b' || *end == 'B') ++end;
  if (*end != '\0') return false;
  if (shift != 0 && value > (~0ull >> shift)) return false;
  *out = static_cast<uint64_t>(value) << shift;
  return true;
}

namespace {

void default_warn(const char* line) { fprintf(stderr, "%s\n", line); }

struct Reader {
  void (*warn)(const char*);

  void bad(const char* name, const char* value, const char* expected, const char* fallback) {
    char line[512];
    snprintf(line, sizeof line, "upcache: ignoring %s=\"%.64s\": expected %s; using %s", name, value,
             expected, fallback);
    warn(line);
  }

  void size(const char* name, uint64_t lo, uint64_t hi, bool pow2, uint64_t* field) {
    const char* v = getenv(name);
    if (v == nullptr || *v == '\0') return;
    uint64_t parsed = 0;
    bool ok = parse_size(v, &parsed) && parsed >= lo && parsed <= hi &&
              (!pow2 || (parsed & (parsed - 1)) == 0);
    if (ok) {
      *field = parsed;
      return;
    }
    char expected[160], fallback[32];
    snprintf(expected, sizeof expected, "a size%s from %llu to %llu bytes (suffixes K, M, G)",
             pow2 ? " that is a power of two" : "", (unsigned long long)lo,
             (unsigned long long)hi);
    snprintf(fallback, sizeof fallback, "%llu", (unsigned long long)*field);
    bad(name, v, expected, fallback);
  }

  void number(const char* name, unsigned lo, unsigned hi, unsigned* field) {
    const char* v = getenv(name);
    if (v == nullptr || *v == '\0') return;
    char* end = nullptr;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno == 0 && isdigit(static_cast<unsigned char>(*v)) && *end == '\0' && n >= lo && n <= hi) {
      *field = static_cast<unsigned>(n);
      return;
    }
    char expected[64], fallback[32];
    snprintf(expected, sizeof expected, "a whole number from %u to %u", lo, hi);
    snprintf(fallback, sizeof fallback, "%u", *field);
    bad(name, v, expected, fallback);
  }

  void flag(const char* name, bool* field) {
    const char* v = getenv(name);
    if (v == nullptr || *v == '\0') return;
    if (!strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcasecmp(v, "true")) {
      *field = true;
    } else if (!strcmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "off") ||
               !strcasecmp(v, "false")) {
      *field = false;
    } else {
      bad(name, v, "1 or 0 (yes/no, on/off, true/false)", *field ? "1" : "0");
    }
  }

  template <typename E>
  void word(const char* name, const char* const* words, const E* values, int n, E* field,
            const char* expected) {
    const char* v = getenv(name);
    if (v == nullptr || *v == '\0') return;
    for (int i = 0; i < n; ++i) {
      if (!strcasecmp(v, words[i])) {
        *field = values[i];
        return;
      }
    }
    const char* current = "auto";
    for (int i = 0; i < n; ++i)
      if (values[i] == *field) current = words[i];
    bad(name, v, expected, current);
  }

  void text(const char* name, std::string* field) {
    const char* v = getenv(name);
    if (v != nullptr) *field = v;
  }
};

}  // namespace

Config Config::from_env(void (*warn)(const char*), bool secure) {
  Config c;
  Reader r{warn != nullptr ? warn : default_warn};
  r.flag("UPCACHE_DISABLE", &c.disabled);
  r.size("UPCACHE_PAGE_SIZE", kMinPageSize, kMaxPageSize, true, &c.page_size);
  r.size("UPCACHE_SIZE", 1ull << 20, 1ull << 46, false, &c.cache_bytes);
  r.size("UPCACHE_RA_MAX", 0, 1ull << 30, false, &c.ra_max_bytes);
  r.size("UPCACHE_MIN_FILE", 0, 1ull << 46, false, &c.min_file_bytes);
  if (c.cache_bytes < 4 * c.page_size) c.cache_bytes = 4 * c.page_size;
  c.cache_bytes -= c.cache_bytes % c.page_size;
  c.ra_max_bytes -= c.ra_max_bytes % c.page_size;
  static const char* const direct_words[] = {"auto", "on", "off"};
  static const DirectMode direct_values[] = {DirectMode::kAuto, DirectMode::kOn, DirectMode::kOff};
  r.word("UPCACHE_DIRECT", direct_words, direct_values, 3, &c.direct, "auto, on or off");
  static const char* const async_words[] = {"auto", "uring", "threads"};
  static const AsyncEngine async_values[] = {AsyncEngine::kAuto, AsyncEngine::kUring,
                                             AsyncEngine::kThreads};
  r.word("UPCACHE_ASYNC", async_words, async_values, 3, &c.async_engine, "auto, uring or threads");
  r.number("UPCACHE_IO_THREADS", 1, 64, &c.io_threads);
  static const char* const splice_words[] = {"cache", "kernel"};
  static const bool splice_values[] = {true, false};
  r.word("UPCACHE_SPLICE", splice_words, splice_values, 2, &c.splice_from_cache, "cache or kernel");
  static const char* const coherence_words[] = {"lease", "open", "locks"};
  static const Coherence coherence_values[] = {Coherence::kLease, Coherence::kOpen, Coherence::kLocks};
  r.word("UPCACHE_COHERENCE", coherence_words, coherence_values, 3, &c.coherence, "lease, open or locks");
  r.number("UPCACHE_LEASE_SIGNAL", 0, 64, &c.lease_signal);
  r.flag("UPCACHE_STATS", &c.stats);
  r.flag("UPCACHE_STATS_KEEP", &c.stats_keep);
  r.flag("UPCACHE_HUGEPAGES", &c.huge_pages);
  r.flag("UPCACHE_THP", &c.transparent_huge);
  r.number("UPCACHE_CALLERS", 0, 1u << 30, &c.callers);
  unsigned level = static_cast<unsigned>(c.log_level);
  r.number("UPCACHE_LOG_LEVEL", 0, 3, &level);
  c.log_level = static_cast<int>(level);
  if (!secure) r.text("UPCACHE_LOG", &c.log_file);
  r.text("UPCACHE_INCLUDE", &c.include);
  r.text("UPCACHE_EXCLUDE", &c.exclude);
  if (!secure) r.text("UPCACHE_FAULT", &c.fault);
  return c;
}

}  // namespace upcache
