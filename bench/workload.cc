// Workload names, defaults and sizing. The patterns themselves are executed
// by bench/pattern.cc.
#include "bench/workload.h"

#include <algorithm>

#include "core/config.h"

namespace upcache::bench {
namespace {

struct KindName {
  Kind kind;
  const char* name;
  uint64_t default_bs;
};
constexpr KindName kKinds[] = {
    {Kind::kSeqRead, "seq-read", 128 << 10}, {Kind::kRandPread, "rand-pread", 4096},
    {Kind::kReadv, "readv", 64 << 10},       {Kind::kSplice, "splice", 64 << 10},
    {Kind::kThreads, "threads", 4096},       {Kind::kZipf, "zipf", 4096},
    {Kind::kHotScan, "hot-scan", 4096},      {Kind::kPipe, "pipe", 64},
    {Kind::kOpenRead, "open-read", 4096},    {Kind::kCmd, "cmd", 0},
};

}  // namespace

std::string format_size(uint64_t b) {
  if (b && b % (1ull << 30) == 0) return std::to_string(b >> 30) + "G";
  if (b && b % (1ull << 20) == 0) return std::to_string(b >> 20) + "M";
  if (b && b % (1ull << 10) == 0) return std::to_string(b >> 10) + "K";
  return std::to_string(b);
}

std::string Workload::name() const {
  if (kind == Kind::kCmd) return "cmd";
  for (const auto& k : kKinds)
    if (k.kind == kind) {
      std::string n = std::string(k.name) + ":" + format_size(bs);
      if (kind == Kind::kThreads) n += "x" + std::to_string(threads);
      return n;
    }
  return "?";
}

const char* kind_list() {
  return "seq-read[:SIZE] rand-pread[:SIZE] readv[:SIZE] splice[:SIZE] threads[:SIZE]\n"
         "                       zipf[:SIZE] hot-scan[:SIZE] pipe[:SIZE] open-read[:SIZE]";
}

bool parse_workload(const std::string& text, unsigned threads, Workload* out, std::string* error) {
  std::string kind = text, size;
  if (auto colon = text.find(':'); colon != std::string::npos) {
    kind = text.substr(0, colon);
    size = text.substr(colon + 1);
  }
  for (const auto& k : kKinds) {
    if (kind != k.name || k.kind == Kind::kCmd) continue;
    Workload w;
    w.kind = k.kind;
    w.bs = k.default_bs;
    w.threads = k.kind == Kind::kThreads ? threads : 1;
    if (!size.empty() && (!parse_size(size.c_str(), &w.bs) || w.bs == 0 || w.bs > (64ull << 20))) {
      *error = "bad request size in workload '" + text + "' (1 byte to 64M)";
      return false;
    }
    if (k.kind == Kind::kReadv && w.bs < 4) w.bs = 4;
    *out = w;
    return true;
  }
  *error = "unknown workload '" + text + "'";
  return false;
}

std::vector<std::string> default_workloads() {
  return {"seq-read:64",    "seq-read:4K",    "seq-read:128K", "seq-read:1M",
          "rand-pread:4K",  "rand-pread:64K", "rand-pread:1M", "readv:64K",
          "splice:64K",     "threads:4K",     "zipf:4K",       "hot-scan:4K",
          "pipe:64"};
}

bool reads_file(Kind k) { return k != Kind::kPipe && k != Kind::kCmd; }
bool has_device_limit(Kind k) { return k == Kind::kRandPread || k == Kind::kThreads || k == Kind::kZipf; }

void size_workload(Workload* w, uint64_t file_size, bool cold) {
  uint64_t bs = std::max<uint64_t>(w->bs, 1);
  switch (w->kind) {
    case Kind::kSeqRead:
    case Kind::kReadv:
    case Kind::kSplice:
      // The whole file, but at most 2 Mi calls (64-byte reads would take long).
      if (w->bytes == 0) w->bytes = std::min<uint64_t>(file_size, bs * (2ull << 20));
      break;
    case Kind::kRandPread:
    case Kind::kThreads:
    case Kind::kZipf:
      if (w->ops == 0)
        w->ops = cold ? std::clamp<uint64_t>((64ull << 20) / bs, 256, 1000)
                      : std::clamp<uint64_t>((256ull << 20) / bs, 256, 65536);
      break;
    case Kind::kHotScan:
      if (w->ops == 0) w->ops = cold ? 2000 : 16384;  // hot reads before and after the scan
      w->bytes = file_size;
      break;
    case Kind::kPipe:
      if (w->ops == 0) w->ops = 1u << 20;
      break;
    case Kind::kOpenRead:
      if (w->ops == 0) w->ops = cold ? 1000 : 20000;
      break;
    case Kind::kCmd:
      break;
  }
}

}  // namespace upcache::bench
