// The access patterns. Each is a template over a Source so that the system
// call version and the memcpy version (the physical limit) run the same code.
#include "bench/pattern.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "bench/zipf.h"

namespace upcache::bench {
namespace {

constexpr uint64_t kHotBytes = 64ull << 20;  // hot set of kHotScan
constexpr uint64_t kScanBs = 1ull << 20;     // request size of its scan

// Keeps the compiler from dropping copies whose result is never read.
inline void consume(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

struct FdSource {
  int fd;
  int64_t pread(char* buf, uint64_t n, uint64_t off) { return ::pread(fd, buf, n, off); }
  int64_t read(char* buf, uint64_t n) { return ::read(fd, buf, n); }
  int64_t readv(const iovec* iov, int cnt) { return ::readv(fd, iov, cnt); }
  bool rewind() { return ::lseek(fd, 0, SEEK_SET) == 0; }
  int64_t splice_read(int pipe_r, int pipe_w, char* buf, uint64_t n) {
    ssize_t got = ::splice(fd, nullptr, pipe_w, nullptr, n, SPLICE_F_MOVE);
    if (got <= 0) return got;
    for (ssize_t left = got; left > 0;) {
      ssize_t r = ::read(pipe_r, buf, std::min<ssize_t>(left, n));
      if (r <= 0) return -1;
      left -= r;
    }
    return got;
  }
};

struct MemSource {
  const char* mem;
  uint64_t size;
  uint64_t pos = 0;
  int64_t pread(char* buf, uint64_t n, uint64_t off) {
    if (off >= size) return 0;
    n = std::min(n, size - off);
    memcpy(buf, mem + off, n);
    consume(buf);
    return n;
  }
  int64_t read(char* buf, uint64_t n) {
    int64_t r = pread(buf, n, pos);
    pos += r;
    return r;
  }
  int64_t readv(const iovec* iov, int cnt) {
    int64_t total = 0;
    for (int i = 0; i < cnt; ++i) {
      int64_t r = read(static_cast<char*>(iov[i].iov_base), iov[i].iov_len);
      total += r;
      if (r < int64_t(iov[i].iov_len)) break;
    }
    return total;
  }
  bool rewind() { pos = 0; return true; }
  int64_t splice_read(int, int, char* buf, uint64_t n) { return read(buf, n); }
};

// The device limit: what a cache reading whole 4 KiB blocks with O_DIRECT
// into memory it already has would cost. Random patterns only (the others
// never reach read/readv/splice here: run_direct refuses them).
constexpr uint64_t kBlock = 4096;
struct DirectSource {
  int fd;
  std::shared_ptr<char> bounce;  // kScanBs + 2 blocks, aligned, faulted in
  int64_t pread(char* buf, uint64_t n, uint64_t off) {
    uint64_t lo = off & ~(kBlock - 1);
    uint64_t hi = (off + n + kBlock - 1) & ~(kBlock - 1);
    ssize_t r = ::pread(fd, bounce.get(), hi - lo, lo);
    if (r < 0) return r;
    uint64_t skip = off - lo;
    uint64_t got = uint64_t(r) > skip ? std::min(n, uint64_t(r) - skip) : 0;
    memcpy(buf, bounce.get() + skip, got);
    consume(buf);
    return got;
  }
  int64_t read(char*, uint64_t) { errno = EINVAL; return -1; }
  int64_t readv(const iovec*, int) { errno = EINVAL; return -1; }
  bool rewind() { return false; }
  int64_t splice_read(int, int, char*, uint64_t) { errno = EINVAL; return -1; }
};

template <class Src>
int64_t sequential(const Plan& p, Src& src, char* buf, std::string* error) {
  const Workload& w = p.w;
  if (!src.rewind()) { *error = "lseek failed"; return -1; }
  uint64_t done = 0;
  int pipefd[2] = {-1, -1};
  if (w.kind == Kind::kSplice) {
    if (pipe2(pipefd, O_CLOEXEC) != 0) { *error = "pipe failed"; return -1; }
    fcntl(pipefd[1], F_SETPIPE_SZ, std::max<int>(w.bs, 65536));
  }
  iovec iov[4];
  uint64_t part = w.bs / 4;
  while (done < w.bytes) {
    uint64_t n = std::min(w.bs, w.bytes - done);
    int64_t r;
    if (w.kind == Kind::kReadv) {
      for (int i = 0; i < 4; ++i) iov[i] = {buf + i * part, i == 3 ? n - 3 * part : part};
      if (n < 4) { iov[0].iov_len = n; r = src.readv(iov, 1); }
      else r = src.readv(iov, 4);
    } else if (w.kind == Kind::kSplice) {
      r = src.splice_read(pipefd[0], pipefd[1], buf, n);
    } else {
      r = src.read(buf, n);
    }
    if (r <= 0) {
      *error = r == 0 ? "unexpected end of file" : std::string("read: ") + strerror(errno);
      done = ~0ull;
      break;
    }
    done += r;
  }
  if (pipefd[0] >= 0) { close(pipefd[0]); close(pipefd[1]); }
  return done == ~0ull ? -1 : int64_t(done);
}

template <class Src>
int64_t random_reads(const Plan& p, const std::vector<uint64_t>& offs, Src& src, char* buf,
                     std::string* error) {
  int64_t total = 0;
  for (uint64_t off : offs) {
    int64_t r = src.pread(buf, p.w.bs, off);
    if (r <= 0) { *error = r == 0 ? "unexpected end of file" : std::string("pread: ") + strerror(errno); return -1; }
    total += r;
  }
  return total;
}

char* alloc_buf(uint64_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, std::max<uint64_t>(n, 4096)) != 0) return nullptr;
  memset(p, 1, std::max<uint64_t>(n, 4096));  // fault it in before timing
  return static_cast<char*>(p);
}

template <class MakeSrc>
int64_t run(const Plan& p, MakeSrc make, std::string* error) {
  const Workload& w = p.w;
  std::unique_ptr<char, decltype(&free)> buf(alloc_buf(std::max(w.bs, kScanBs)), free);
  if (!buf) { *error = "out of memory"; return -1; }
  auto src = make();
  switch (w.kind) {
    case Kind::kSeqRead:
    case Kind::kReadv:
    case Kind::kSplice:
      return sequential(p, src, buf.get(), error);
    case Kind::kRandPread:
    case Kind::kZipf:
      return random_reads(p, p.offsets[0], src, buf.get(), error);
    case Kind::kHotScan: {
      int64_t a = random_reads(p, p.offsets[0], src, buf.get(), error);
      if (a < 0) return -1;
      Plan scan = p;
      scan.w.kind = Kind::kSeqRead;
      scan.w.bs = kScanBs;
      scan.w.bytes = p.file_size;
      int64_t b = sequential(scan, src, buf.get(), error);
      if (b < 0) return -1;
      int64_t c = random_reads(p, p.offsets[0], src, buf.get(), error);
      return c < 0 ? -1 : a + b + c;
    }
    case Kind::kThreads: {
      std::atomic<int64_t> total{0};
      std::atomic<bool> failed{false};
      std::vector<std::thread> ts;
      std::vector<std::string> errs(w.threads);
      for (unsigned t = 0; t < w.threads; ++t)
        ts.emplace_back([&, t] {
          std::unique_ptr<char, decltype(&free)> b(alloc_buf(w.bs), free);
          auto s = make();
          int64_t r = random_reads(p, p.offsets[t], s, b.get(), &errs[t]);
          if (r < 0) failed = true; else total += r;
        });
      for (auto& t : ts) t.join();
      if (failed) { for (auto& e : errs) if (!e.empty()) *error = e; return -1; }
      return total;
    }
    case Kind::kPipe:
    case Kind::kOpenRead:
    case Kind::kCmd:
      break;
  }
  *error = "not a file workload";
  return -1;
}

}  // namespace

Plan prepare(const Workload& w, uint64_t file_size, uint64_t seed) {
  Plan p;
  p.w = w;
  p.file_size = file_size;
  uint64_t bs = std::max<uint64_t>(w.bs, 1);
  uint64_t slots = std::max<uint64_t>(file_size / bs, 1);
  switch (w.kind) {
    case Kind::kRandPread:
    case Kind::kThreads:
    case Kind::kOpenRead:
      for (unsigned t = 0; t < w.threads; ++t) {
        Rng rng(seed + 1000003ull * t);
        std::vector<uint64_t> v(w.ops);
        for (auto& o : v) o = rng.below(slots) * bs;
        p.offsets.push_back(std::move(v));
      }
      break;
    case Kind::kZipf: {
      // Ranks are scattered over the file (a fixed permutation by a
      // multiplicative hash), so hot items are not all adjacent.
      Rng rng(seed);
      Zipf z(slots, 0.99);
      std::vector<uint64_t> v(w.ops);
      for (auto& o : v) o = ((z.draw(rng) * 0x9e3779b97f4a7c15ull) % slots) * bs;
      p.offsets.push_back(std::move(v));
      break;
    }
    case Kind::kHotScan: {
      Rng rng(seed);
      uint64_t hot = std::max<uint64_t>(std::min(kHotBytes, file_size) / bs, 1);
      uint64_t base = (slots - std::min(hot, slots)) / 2;  // the middle of the file
      std::vector<uint64_t> v(w.ops);
      for (auto& o : v) o = (base + rng.below(hot)) * bs;
      p.offsets.push_back(std::move(v));
      break;
    }
    default:
      break;
  }
  return p;
}

int64_t run_fd(const Plan& plan, int fd, std::string* error) {
  return run(plan, [fd] { return FdSource{fd}; }, error);
}

int64_t run_mem(const Plan& plan, const char* mem, std::string* error) {
  uint64_t size = plan.file_size;
  return run(plan, [mem, size] { return MemSource{mem, size}; }, error);
}

int64_t run_direct(const Plan& plan, int direct_fd, std::string* error) {
  if (!has_device_limit(plan.w.kind)) {
    *error = "the device limit is defined for random patterns only";
    return -1;
  }
  if (plan.w.bs > kScanBs) {
    *error = "the device limit is defined for requests up to 1 MiB";
    return -1;
  }
  return run(plan, [direct_fd] {
    return DirectSource{direct_fd, std::shared_ptr<char>(alloc_buf(kScanBs + 2 * kBlock), free)};
  }, error);
}

int64_t run_open_read(const Plan& plan, const char* path, std::string* error) {
  const uint64_t bs = std::max<uint64_t>(plan.w.bs, 1);
  std::unique_ptr<char, decltype(&free)> buf(alloc_buf(bs), free);
  timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (uint64_t off : plan.offsets[0]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { *error = std::string(path) + ": " + strerror(errno); return -1; }
    ssize_t r = pread(fd, buf.get(), bs, static_cast<off_t>(off));
    close(fd);
    if (r < 0) { *error = "pread failed"; return -1; }
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  return (b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec);
}

int64_t run_pipe(const Plan& plan, std::string* error) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) { *error = "pipe failed"; return -1; }
  const uint64_t bs = std::max<uint64_t>(plan.w.bs, 1);
  const uint64_t batch = std::max<uint64_t>(65536 / bs, 1);  // reads per pipe fill
  std::unique_ptr<char, decltype(&free)> buf(alloc_buf(batch * bs), free);
  int64_t ns = 0;
  for (uint64_t done = 0; done < plan.w.ops;) {
    uint64_t n = std::min(batch, plan.w.ops - done);
    if (write(fds[1], buf.get(), n * bs) != int64_t(n * bs)) { *error = "pipe write failed"; ns = -1; break; }
    timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (uint64_t i = 0; i < n; ++i)
      if (read(fds[0], buf.get(), bs) != int64_t(bs)) { *error = "pipe read failed"; ns = -1; break; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (ns < 0) break;
    ns += (b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec);
    done += n;
  }
  close(fds[0]);
  close(fds[1]);
  return ns;
}

}  // namespace upcache::bench
