// Workloads: the access patterns upcache-bench times.
//
// A Workload names one access pattern (kind, request size, operation count,
// threads). The same Workload is run by a worker process in every mode; the
// Source decides whether the bytes come from system calls on a descriptor
// (kernel or upcache, depending on LD_PRELOAD) or from memcpy out of an
// anonymous in-memory copy of the file (the physical limit).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace upcache::bench {

enum class Kind {
  kSeqRead,    // read() from offset 0, `bs` bytes a call, up to `bytes`
  kRandPread,  // pread() of `bs` at random bs-aligned offsets, `ops` calls
  kReadv,      // sequential readv() of 4 buffers of bs/4
  kSplice,     // splice() file -> pipe (bs a call), drained with read()
  kThreads,    // `threads` threads, each `ops` random pread() of `bs`
  kZipf,       // pread() of `bs` at Zipf(0.99)-distributed offsets
  kHotScan,    // hot-set random reads, a full sequential scan, hot set again
  kPipe,       // read() of `bs` on a pipe (pass-through cost); no file
  kOpenRead,   // open(), pread() of `bs` at a random offset, close(): `ops` times (the cost of an open)
  kCmd,        // an external command run by /bin/sh -c
};

struct Workload {
  Kind kind = Kind::kSeqRead;
  uint64_t bs = 4096;       // request size
  uint64_t ops = 0;         // calls (random kinds, per thread); 0: derived
  uint64_t bytes = 0;       // bytes (sequential kinds); 0: derived
  unsigned threads = 1;
  std::string cmd;          // kCmd
  std::string name() const; // e.g. "seq-read:64K", "threads:4K" (stable, used in reports)
};

// Parses "seq-read", "seq-read:64K", "rand-pread:4K", "readv", "splice",
// "threads", "zipf", "hot-scan", "pipe" (default sizes when no ":SIZE").
bool parse_workload(const std::string& text, unsigned threads, Workload* out, std::string* error);
// The default set: the speed goals of issue 5 plus one of each kind.
std::vector<std::string> default_workloads();
// Kind names for --help.
const char* kind_list();

// Fills in ops/bytes for a file of `file_size` bytes; `cold` runs fewer
// operations (each one waits for the disk).
void size_workload(Workload* w, uint64_t file_size, bool cold);

// Does kind `k` read a file (false for kPipe and kCmd)?
bool reads_file(Kind k);
// Whether the cold physical limit (runner.h: Mode::kDevice) is defined: random patterns.
bool has_device_limit(Kind k);

std::string format_size(uint64_t bytes);  // 64, 4K, 1M ...

}  // namespace upcache::bench
