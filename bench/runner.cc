// See runner.h.
#include "bench/runner.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench/zipf.h"

extern char** environ;

#ifndef UPCACHE_INSTALL_LIBDIR
#define UPCACHE_INSTALL_LIBDIR "/usr/local/lib"
#endif
#ifndef UPCACHE_MULTIARCH
#define UPCACHE_MULTIARCH ""
#endif

namespace upcache::bench {
namespace {

std::string exe_path() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  return std::string(buf, n);
}

}  // namespace

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kKernelCold: return "kernel-cold";
    case Mode::kKernelWarm: return "kernel-warm";
    case Mode::kUpcacheCold: return "upcache-cold";
    case Mode::kUpcacheWarm: return "upcache-warm";
    case Mode::kLimit: return "limit";
    case Mode::kDevice: return "device";
  }
  return "?";
}

bool parse_mode(const std::string& s, Mode* out) {
  for (Mode m : kAllModes)
    if (s == mode_name(m)) { *out = m; return true; }
  return false;
}

std::string drop_caches(const std::string& path) {
  sync();
  int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    bool ok = write(fd, "3", 1) == 1;
    close(fd);
    if (ok) return "drop_caches";
  }
  if (!path.empty()) {
    int f = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f >= 0) {
      fdatasync(f);
      posix_fadvise(f, 0, 0, POSIX_FADV_DONTNEED);
      close(f);
    }
  }
  return "fadvise";
}

bool make_file(const std::string& path, uint64_t size, std::string* error) {
  struct stat st{};
  if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && uint64_t(st.st_size) == size) return true;
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) { *error = tmp + ": " + strerror(errno); return false; }
  std::vector<uint64_t> buf((4 << 20) / 8);
  Rng rng(42);
  for (uint64_t done = 0; done < size;) {
    for (auto& v : buf) v = rng.next();
    uint64_t n = std::min<uint64_t>(size - done, buf.size() * 8);
    if (write(fd, buf.data(), n) != ssize_t(n)) {
      *error = tmp + ": write: " + strerror(errno);
      close(fd);
      unlink(tmp.c_str());
      return false;
    }
    done += n;
  }
  fsync(fd);
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) { *error = path + ": " + strerror(errno); return false; }
  return true;
}

bool run_worker(const Workload& w, Mode m, const std::string& target, const std::string& lib,
                uint64_t seed, Sample* out, std::string* error) {
  if (is_cold(m) && w.kind != Kind::kPipe) drop_caches(w.kind == Kind::kCmd ? "" : target);
  std::string name = w.kind == Kind::kCmd ? "cmd" : w.name();
  if (w.kind == Kind::kThreads) name = name.substr(0, name.find('x'));
  std::vector<std::string> args = {exe_path(), "--worker", name, std::to_string(w.ops),
                                   std::to_string(w.bytes), std::to_string(w.threads),
                                   is_cold(m) ? "0" : "1",
                                   m == Mode::kLimit ? "mem" : m == Mode::kDevice ? "direct" : "fd",
                                   std::to_string(seed), target};
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (strncmp(*e, "LD_PRELOAD=", 11) != 0) env.emplace_back(*e);
  if (is_upcache(m)) env.push_back("LD_PRELOAD=" + lib);

  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) { *error = "pipe failed"; return false; }
  pid_t pid = fork();
  if (pid < 0) { *error = "fork failed"; return false; }
  if (pid == 0) {
    dup2(pipefd[1], 1);
    std::vector<char*> av, ev;
    for (auto& a : args) av.push_back(a.data());
    av.push_back(nullptr);
    for (auto& e : env) ev.push_back(e.data());
    ev.push_back(nullptr);
    execve(av[0], av.data(), ev.data());
    _exit(127);
  }
  close(pipefd[1]);
  std::string text;
  char buf[256];
  for (ssize_t n; (n = read(pipefd[0], buf, sizeof buf)) != 0;) {
    if (n < 0) { if (errno == EINTR) continue; break; }
    text.append(buf, n);
  }
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = w.name() + " " + mode_name(m) + ": worker failed (status " + std::to_string(status) + ")";
    return false;
  }
  unsigned long long bytes = 0;
  if (sscanf(text.c_str(), "%lf %llu %ld", &out->seconds, &bytes, &out->maxrss_kib) != 3) {
    *error = w.name() + " " + mode_name(m) + ": unexpected worker output: " + text;
    return false;
  }
  out->bytes = bytes;
  return true;
}

}  // namespace upcache::bench
