// Executing a workload's access pattern once, on a descriptor or in memory.
//
// prepare() computes everything random up front (offsets), so that the timed
// pass does only the reads. run() performs one pass and returns the bytes
// read; it fails (returns -1 and sets *error) on a short or failed call.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/workload.h"

namespace upcache::bench {

struct Plan {
  Workload w;
  uint64_t file_size = 0;
  std::vector<std::vector<uint64_t>> offsets;  // per thread (random kinds)
};

Plan prepare(const Workload& w, uint64_t file_size, uint64_t seed);

// One pass reading the file through system calls on `fd` (whatever libc
// resolves read/pread/readv/splice to: the kernel, or upcache when preloaded).
int64_t run_fd(const Plan& plan, int fd, std::string* error);
// The same pass done with memcpy from `mem` (an anonymous copy of the file).
int64_t run_mem(const Plan& plan, const char* mem, std::string* error);
// Random patterns only (has_device_limit): each request widened to whole
// 4 KiB blocks and read with pread on `direct_fd` (opened O_DIRECT) into a
// buffer faulted in beforehand, then copied to the caller's buffer.
int64_t run_direct(const Plan& plan, int direct_fd, std::string* error);
// kPipe: `ops` read()s of `bs` from a pipe; returns the nanoseconds spent in
// read() only (the writes that refill the pipe are not timed).
int64_t run_pipe(const Plan& plan, std::string* error);
// kOpenRead: opens `path` for every read (ns of the whole loop, or -1).
int64_t run_open_read(const Plan& plan, const char* path, std::string* error);

}  // namespace upcache::bench
