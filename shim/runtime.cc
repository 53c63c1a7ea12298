// The library constructor and the process-wide state (runtime.h).
//
// This file is the only one of the shim compiled with C++ exceptions: the
// configuration and Cache::create use std::string and may throw bad_alloc;
// the catch here keeps any exception from reaching the host. Every other
// file of the shim is built with -fno-exceptions.
#include "shim/runtime.h"

#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "core/cache.h"
#include "core/config.h"
#include "core/stats_segment.h"
#include "core/stats_sink.h"
#include "core/sys.h"
#include "shim/asym_barrier.h"
#include "shim/fd_table.h"
#include "shim/hazard.h"
#include "shim/kernel_offset.h"
#include "shim/log.h"
#include "shim/mappings.h"
#include "shim/real_calls.h"
#include "shim/signals.h"

namespace upcache::shim {

std::atomic<bool> g_ready{false};
Cache* g_cache = nullptr;
StatsSink* g_stats = nullptr;
__thread int t_depth __attribute__((tls_model("initial-exec"))) = 0;

namespace {

alignas(StatsSink) unsigned char g_sink_storage[sizeof(StatsSink)];

// Config::from_env's warnings arrive before UPCACHE_LOG is known: they are
// kept here and written through the logger once it is set up.
char g_pending[2048];
size_t g_pending_len = 0;

void warn_line(const char* line) {
  size_t n = strlen(line);
  if (g_pending_len + n + 1 > sizeof g_pending) return;
  memcpy(g_pending + g_pending_len, line, n);
  g_pending_len += n;
  g_pending[g_pending_len++] = '\0';
}

void flush_pending() {
  for (size_t i = 0; i < g_pending_len; i += strlen(g_pending + i) + 1) log::line(1, g_pending + i);
  g_pending_len = 0;
}

// The statistics segment (core/stats_segment.h): a named, shared segment
// in /dev/shm when UPCACHE_STATS is on, else (or if that fails) a private one,
// so StatsSink always has somewhere to write. A plain global: constant-
// initialized, trivially destructible, usable from every hook below.
stats::OwnedSegment g_segment;

// The one message of a segment that could not be published (/dev/shm full,
// missing or not writable): the counters go on in private memory.
void log_private_segment(int err) {
  if (!log::enabled(1)) return;
  const char* why = strerrordesc_np(-err);
  log::Line()
      .s("upcache: cannot create the statistics segment in ")
      .s(stats::segment_dir())
      .s(" (")
      .s(why != nullptr ? why : "unknown error")
      .s("); counters kept in private memory")
      .emit();
}

bool new_segment(const Config& config) {
  stats::CreateOptions options;
  options.page_size = config.page_size;
  options.capacity_bytes = config.cache_bytes;
  options.callers_every = config.callers;
  options.keep = config.stats_keep;
  int err = 0;
  if (config.stats && (err = g_segment.create(options)) == 0) return true;
  if (g_segment.create_private(options) != 0) return false;  // the caller says pass-through
  if (err < 0) log_private_segment(err);
  return true;
}

void init() {
  Scope scope;  // calls made while initializing (allocator, libstdc++) pass through
  real::resolve_all();
  try {
    bool secure = getauxval(AT_SECURE) != 0;
    Config config = Config::from_env(warn_line, secure);
    // UPCACHE_DISABLE=1: nothing of upcache stays, not even a log descriptor.
    log::init(config.disabled ? nullptr : config.log_file.c_str(), config.log_level);
    flush_pending();
    if (config.disabled) return;
    if (!new_segment(config)) {
      log::line(1, "upcache: cannot map the statistics segment; passing every call through");
      return;
    }
    g_stats = new (g_sink_storage) StatsSink(g_segment.seg());
    std::string error;
    std::unique_ptr<Cache> cache = Cache::create(config, g_stats, &error);
    if (cache == nullptr) {
      log::line(1, "upcache: cannot create the cache (", error.empty() ? "unknown error" : error.c_str(),
                "); passing every call through");
      return;
    }
    if (!g_fds.init()) {
      log::line(1, "upcache: cannot map the descriptor table; passing every call through");
      return;
    }
    if (config.huge_pages) {
      if (cache->on_huge_pages()) {
        log::line(2, "upcache: the cache lies on reserved huge pages");
      } else {
        log::line(1, "upcache: UPCACHE_HUGEPAGES=1 but too few reserved huge pages are free "
                     "(/proc/sys/vm/nr_hugepages); using ordinary pages");
      }
    }
    g_cache = cache.release();  // lives until the process ends: threads may still read at exit
    // SIGSEGV/SIGBUS: the guarded copy's recovery, chained to the program's handlers.
    signals::install({config.cache_bytes, config.page_size, config.ra_max_bytes}, config.fault.c_str());
  } catch (...) {
    log::line(1, "upcache: initialization failed; passing every call through");
    return;
  }
  asym_init();
  hazard_init();
  install_fork_handlers();
  g_ready.store(true, std::memory_order_release);
}

__attribute__((constructor)) void upcache_shim_init() { init(); }

__attribute__((destructor)) void upcache_shim_fini() {
  if (g_ready.load(std::memory_order_acquire)) {
    Scope scope;
    mappings_at_exit();
  }
  g_segment.finish();
}

}  // namespace

void count_passthrough() {
  if (g_stats != nullptr) g_stats->add_atomic(stats::kPassthroughCalls);
}

// Called from the fork child handler (kernel_offset.cc) with the descriptor
// table already reset: the backend's threads and descriptors did not survive.
void runtime_after_fork_child() {
  Scope scope;
  if (g_cache != nullptr) g_cache->after_fork_child();
  if (g_segment.seg() != nullptr) {
    int err = g_segment.after_fork_child();  // < 0: a private segment instead
    if (err < 0) log_private_segment(err);
  }
}

void runtime_before_exec() { g_segment.before_exec(); }
void runtime_exec_failed() {
  // If the segment cannot be named again (/dev/shm full, or the address
  // space limit reached), it stays mapped, unnamed, and nothing is logged:
  // execvp() walks PATH with one failed execve per directory before the one
  // that succeeds, and the new image creates (or reports) its own segment.
  if (g_segment.seg() != nullptr) g_segment.exec_failed();
}
void runtime_exit() {
  Scope scope;
  mappings_at_exit();
  g_segment.finish();
}

}  // namespace upcache::shim
