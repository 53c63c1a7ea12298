#include "tools/find_library.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace upcache {

namespace {

std::string exe_dir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string p(buf, static_cast<size_t>(n));
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

}  // namespace

bool find_library(const std::string& flag, std::string* out, std::string* error) {
  std::vector<std::string> tried;
  auto pick = [&](const std::string& p) {
    if (p.empty()) return false;
    tried.push_back(p);
    if (access(p.c_str(), R_OK) != 0) return false;
    char real[PATH_MAX];
    *out = realpath(p.c_str(), real) ? real : p;
    return true;
  };
  if (!flag.empty()) {
    if (pick(flag)) return true;
    *error = "--lib " + flag + ": " + strerror(errno);
    return false;
  }
  if (const char* env = getenv("UPCACHE_LIB"); env && *env) {
    if (pick(env)) return true;
    *error = std::string("UPCACHE_LIB=") + env + ": " + strerror(errno);
    return false;
  }
  std::string dir = exe_dir();
  if (!dir.empty()) {
    if (pick(dir + "/../shim/libupcache.so")) return true;
    if (pick(dir + "/../lib/libupcache.so")) return true;
    if (*UPCACHE_MULTIARCH && pick(dir + "/../lib/" UPCACHE_MULTIARCH "/libupcache.so")) return true;
  }
  if (pick(UPCACHE_INSTALL_LIBDIR "/libupcache.so")) return true;
  *error = "cannot find libupcache.so; looked at";
  for (const auto& t : tried) *error += "\n  " + t;
  *error += "\nuse --lib PATH or set UPCACHE_LIB";
  return false;
}

}  // namespace upcache
