#!/usr/bin/env python3
"""Shim tests: real programs run plain and under libupcache.so.

Each case runs the same commands twice, once plain and once with
LD_PRELOAD=libupcache.so (and the UPCACHE_* variables of the chosen
configuration), and compares stdout byte for byte and the exit status.

usage: shim_test.py --lib LIB --dir DIR [--config default|small] CASE

CASE:  cat | dd | python_read | offsets | coherence | fd_numbers |
       big_file | exports | c_reader | crash (need --helper: tests/shim/reader.c)
--dir  a directory for the test files; the filesystem it is on is the one
       tested (the build directory: ext4; /dev/shm: tmpfs).
--config small sets UPCACHE_SIZE=1M UPCACHE_PAGE_SIZE=4K UPCACHE_MIN_FILE=0 (eviction
         pressure), tiny only UPCACHE_SIZE=1M.
"""

import argparse
import hashlib
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

# The cache configurations of every plain-versus-preload test (difftest.py
# imports them too).
CONFIGS = {
    "default": {},
    "small": {"UPCACHE_SIZE": "1M", "UPCACHE_PAGE_SIZE": "4K", "UPCACHE_MIN_FILE": "0"},
    "tiny": {"UPCACHE_SIZE": "1M"},
}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def make_file(path, size, seed):
    """A file of `size` bytes: random blocks, each 4 KiB stamped with its offset."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return path
    rng = random.Random(seed)
    block = 1 << 20
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        off = 0
        while off < size:
            n = min(block, size - off)
            data = bytearray(rng.randbytes(n))
            for p in range(0, n, 4096):
                stamp = b"@%015d" % (off + p)
                data[p:p + len(stamp)] = stamp[: n - p]
            f.write(data)
            off += n
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    return path


def drop_from_page_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class Runner:
    def __init__(self, lib, config, workdir):
        self.lib = lib
        self.lib_file = lib  # the library itself (self.lib may gain a prefix)
        # Sanitizer builds: the sanitizer runtime must be loaded first.
        runtime = os.environ.get("SANITIZER_PRELOAD", "")
        if runtime:
            self.lib = runtime + ":" + self.lib
        self.config = config
        self.workdir = workdir
        self.stats_dir = os.path.join(workdir, "stats")
        os.makedirs(self.stats_dir, exist_ok=True)

    def env(self, preload):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("UPCACHE_") or k == "LD_PRELOAD":
                del env[k]
        if preload:
            env["LD_PRELOAD"] = self.lib
            env["UPCACHE_STATS_DIR"] = self.stats_dir
            env.update(CONFIGS[self.config])
        return env

    def preload_vars(self):
        env = {"LD_PRELOAD": self.lib, "UPCACHE_STATS_DIR": self.stats_dir}
        env.update(CONFIGS[self.config])
        return env

    def run(self, argv, preload, stdin=None, shell=False, cwd=None):
        return subprocess.run(argv, env=self.env(preload), stdin=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, shell=shell, cwd=cwd, timeout=600)

    def compare(self, name, argv, shell=False, stdin_path=None, cwd=None):
        """Runs argv plain and preloaded; stdout and exit status must match."""
        results = []
        for preload in (False, True):
            stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
            try:
                results.append(self.run(argv, preload, stdin=stdin, shell=shell, cwd=cwd))
            finally:
                if stdin_path:
                    stdin.close()
        plain, pre = results
        if plain.returncode != 0:
            fail("%s: plain run failed (%d): %s" % (name, plain.returncode, plain.stderr[-500:]))
            return
        if pre.returncode != plain.returncode:
            fail("%s: exit status %d under the preload, %d plain; stderr: %s" %
                 (name, pre.returncode, plain.returncode, pre.stderr[-500:]))
        if pre.stdout != plain.stdout:
            where = next((i for i, (a, b) in enumerate(zip(plain.stdout, pre.stdout)) if a != b),
                         min(len(plain.stdout), len(pre.stdout)))
            fail("%s: output differs (plain %d bytes, preload %d bytes, first difference at byte %d)"
                 % (name, len(plain.stdout), len(pre.stdout), where))
        else:
            print("ok   %s (%d bytes)" % (name, len(plain.stdout)), flush=True)
        if b"upcache:" in pre.stderr:
            fail("%s: the shim complained: %s" % (name, pre.stderr[-500:]))


def python_cmd(code, *args):
    return [sys.executable, "-S", "-c", code] + list(args)


# ---------------------------------------------------------------- cases

def served_check(r, name, argv, stdin_path=None):
    """With the default cache, the preloaded run must make fewer read-family
    system calls than the plain one: the cache served the reads (the file is
    argv's last argument, or stdin_path when the program reads its stdin)."""
    if r.config != "default" or shutil.which("strace") is None:
        return
    drop_from_page_cache(stdin_path or argv[-1])
    _, plain = strace_calls(r, argv, False, stdin_path)
    _, pre = strace_calls(r, argv, True, stdin_path)
    if plain is None or pre is None:
        return
    if pre >= plain:
        fail("%s: %d read-family calls under the preload, %d plain: the cache served nothing"
             % (name, pre, plain))
    else:
        print("ok   %s: served by the cache (%d read-family calls, %d plain)" % (name, pre, plain),
              flush=True)


def case_cat(r, d):
    f = make_file(os.path.join(d, "cat.bin"), 24 * 1024 * 1024 + 12345, 1)
    r.compare("cat", ["cat", f])
    served_check(r, "cat", ["cat", f])
    r.compare("cat twice", ["cat", f, f])
    r.compare("cat stdin redirected", ["cat"], stdin_path=f)
    # A descriptor inherited at start-up (cat < file) is adopted and served.
    served_check(r, "cat stdin redirected", ["cat"], stdin_path=f)


def case_dd(r, d):
    f = make_file(os.path.join(d, "dd.bin"), 8 * 1024 * 1024 + 777, 2)
    for bs in ("1", "512", "3000", "4096", "65536", "1M", "3M"):
        count = ["count=20000"] if bs == "1" else []
        r.compare("dd bs=%s" % bs, ["dd", "if=" + f, "bs=" + bs, "status=none"] + count)
    for bs, skip, count in (("4096", 3, 100), ("1000", 7, 999), ("65536", 100, 10),
                            ("1M", 7, 5), ("512", 16000, 1000), ("4096", 5000, 10)):
        r.compare("dd bs=%s skip=%d count=%d" % (bs, skip, count),
                  ["dd", "if=" + f, "bs=" + bs, "skip=%d" % skip, "count=%d" % count,
                   "status=none"])
    r.compare("dd skip_bytes,count_bytes",
              ["dd", "if=" + f, "bs=65536", "skip=123457", "count=3333333",
               "iflag=skip_bytes,count_bytes", "status=none"])


PY_READ = r"""
import hashlib, os, sys
path = sys.argv[1]
size = os.path.getsize(path)
out = []
for bs in (1, 100, 4096, 65536, 1 << 20):
    limit = 300000 if bs == 1 else None
    # file object without buffering: FileIO.read -> read(2)
    h = hashlib.sha256(); n = 0; calls = []
    with open(path, "rb", buffering=0) as f:
        while limit is None or n < limit:
            b = f.read(bs)
            if not b:
                break
            h.update(b); n += len(b)
            if len(b) != bs: calls.append(len(b))
        out.append("fileio bs=%d n=%d tell=%d short=%s %s" % (bs, n, f.tell(), calls[:5], h.hexdigest()))
    # os.read on a raw descriptor
    fd = os.open(path, os.O_RDONLY)
    h = hashlib.sha256(); n = 0
    while limit is None or n < limit:
        b = os.read(fd, bs)
        if not b:
            break
        h.update(b); n += len(b)
    out.append("os.read bs=%d n=%d pos=%d %s" % (bs, n, os.lseek(fd, 0, os.SEEK_CUR), h.hexdigest()))
    # os.pread at scattered offsets, some past the end
    h = hashlib.sha256()
    for i in range(200):
        off = (i * 7919 * 4099) % (size + 3 * bs)
        b = os.pread(fd, bs, off)
        h.update(b); h.update(b"|%d" % len(b))
    out.append("os.pread bs=%d %s pos=%d" % (bs, h.hexdigest(), os.lseek(fd, 0, os.SEEK_CUR)))
    os.close(fd)
# whole-file read (FileIO.readall: fstat + lseek + read)
with open(path, "rb", buffering=0) as f:
    out.append("readall %s" % hashlib.sha256(f.readall()).hexdigest())
# buffered file object with seeks
with open(path, "rb") as f:
    h = hashlib.sha256()
    for off in (0, 5, 4095, 4096, 100000, max(0, size - 10), size + 10, 12345):
        f.seek(off); h.update(f.read(70000)); h.update(b"%d" % f.tell())
    out.append("buffered seeks %s" % h.hexdigest())
print("\n".join(out))
"""


def case_python_read(r, d):
    f = make_file(os.path.join(d, "py.bin"), 5 * 1024 * 1024 + 4321, 3)
    r.compare("python reads (FileIO, os.read, os.pread; 1..1M)", python_cmd(PY_READ, f))
    served_check(r, "python reads", python_cmd(PY_READ, f))
    small = make_file(os.path.join(d, "py-small.bin"), 5000, 4)
    r.compare("python reads (small file)", python_cmd(PY_READ, small))
    empty = os.path.join(d, "py-empty.bin")
    open(empty, "wb").close()
    r.compare("python reads (empty file)", python_cmd(PY_READ, empty))


PY_OFFSETS = r"""
import os, subprocess, sys
path = sys.argv[1]
out = []
def show(tag, b):
    out.append("%s %d %s" % (tag, len(b), b[:20]))
fd = os.open(path, os.O_RDONLY)
show("read", os.read(fd, 100))
out.append("tell %d" % os.lseek(fd, 0, os.SEEK_CUR))
fd2 = os.dup(fd)                       # dup shares the offset
show("read dup", os.read(fd2, 50))
out.append("tell fd %d fd2 %d" % (os.lseek(fd, 0, os.SEEK_CUR), os.lseek(fd2, 0, os.SEEK_CUR)))
out.append("seek end %d" % os.lseek(fd, -10, os.SEEK_END))
show("read at end", os.read(fd, 100))
show("read past end", os.read(fd, 100))
out.append("seek set %d" % os.lseek(fd, 4000, os.SEEK_SET))
out.append("seek cur %d" % os.lseek(fd, 96, os.SEEK_CUR))
try:
    os.lseek(fd, -1, os.SEEK_SET)
except OSError as e:
    out.append("seek -1: errno %d" % e.errno)
out.append("seek big %d" % os.lseek(fd, 1 << 40, os.SEEK_SET))
show("read big", os.read(fd, 10))
out.append("seek back %d" % os.lseek(fd, 4096, os.SEEK_SET))
show("read", os.read(fd, 10))
try:
    os.pread(fd, 10, -1)
except OSError as e:
    out.append("pread -1: errno %d" % e.errno)
fd3 = os.dup2(fd, 50)
show("read dup2", os.read(fd3, 10))
os.close(fd3)
fd4 = os.open(path, os.O_RDONLY)          # a separate description: own offset
show("read fd4", os.read(fd4, 7))
show("read fd", os.read(fd, 7))
# fork: the child reads from the shared description, then the parent goes on
pid = os.fork()
if pid == 0:
    b = os.read(fd, 33)
    os.write(1, b"child read %d %r\n" % (len(b), b[:20]))
    os._exit(0)
os.waitpid(pid, 0)
sys.stdout.flush()
show("parent after child", os.read(fd, 10))
out.append("tell after fork %d" % os.lseek(fd, 0, os.SEEK_CUR))
# a child program reads from the inherited descriptor
os.set_inheritable(fd4, True)
sys.stdout.write("\n".join(out) + "\n"); sys.stdout.flush(); out = []
subprocess.run(["dd", "bs=13", "count=2", "status=none"], stdin=fd4, check=True)
sys.stdout.flush()
show("after dd", os.read(fd4, 10))
subprocess.run("head -c 21 <&%d" % fd4, shell=True, pass_fds=(fd4,), check=True)
show("after head", os.read(fd4, 10))
# readv/preadv
bufs = [bytearray(3), bytearray(5000), bytearray(0), bytearray(7)]
out.append("readv %d" % os.readv(fd4, bufs))
out.append("preadv %d" % os.preadv(fd4, bufs, 4090))
out.append("bufs %r" % [bytes(b[:8]) for b in bufs])
out.append("tell %d" % os.lseek(fd4, 0, os.SEEK_CUR))
os.close(fd); os.close(fd2); os.close(fd4)
try:
    os.read(fd, 1)
except OSError as e:
    out.append("read closed: errno %d" % e.errno)
print("\n".join(out))
"""


# Small read()s of one file, closed, then of another: the second file's
# descriptions are the first's, recycled (shim/description.cc), and must not
# serve a byte of the first (a description's hit cursor names a frame of the
# file it had).
PY_RECYCLED = r"""
import hashlib, os, sys
out = []
for rnd in range(3):
    for p in sys.argv[1:]:
        fd = os.open(p, os.O_RDONLY)
        h = hashlib.sha256()
        for i in range(50):  # inside the first page, whatever the page size
            h.update(os.read(fd, 64))
        os.close(fd)
        out.append(h.hexdigest()[:16])
print(" ".join(out))
"""


def case_offsets(r, d):
    f = make_file(os.path.join(d, "off.bin"), 1024 * 1024 + 1, 5)
    r.compare("offsets: dup, lseek, fork, inherited descriptors, readv", python_cmd(PY_OFFSETS, f))
    g = make_file(os.path.join(d, "off2.bin"), 1024 * 1024 + 1, 6)
    r.compare("offsets: small reads of two files through recycled descriptions",
              python_cmd(PY_RECYCLED, f, g))
    lines = os.path.join(r.workdir, "lines.txt")
    with open(lines, "w") as fh:
        for i in range(20000):
            fh.write("line %d %s\n" % (i, "x" * (i % 97)))
    r.compare("shell: (head -n 1; cat) < file", "(head -n 1; cat) < '%s'" % lines, shell=True)
    r.compare("shell: while read", "while read a b c; do echo \"$b\"; done < '%s' | tail -n 3" % lines,
              shell=True)
    r.compare("offsets: descriptor passed over a Unix socket (SCM_RIGHTS)",
              python_cmd(PY_SCM_RIGHTS, f))
    daemon_check(r, f)


# daemon(3) puts /dev/null on 0-2 with glibc's internal dup2: a stdin that
# was a file (adopted and served from the cache) must read as /dev/null
# afterwards. The daemon's child writes what it saw to a file.
PY_DAEMON = r"""
import ctypes, os, sys
out = sys.argv[1]
first = os.read(0, 10)
libc = ctypes.CDLL(None, use_errno=True)
if libc.daemon(1, 0) != 0:
    sys.exit(1)
after = os.read(0, 10)
pos = os.lseek(0, 0, os.SEEK_CUR)
with open(out + ".tmp", "w") as f:
    f.write("%d %r %d\n" % (len(first), after, pos))
os.rename(out + ".tmp", out)
"""


def daemon_check(r, f):
    import time
    results = []
    for preload in (False, True):
        out = os.path.join(r.workdir, "daemon-%d.txt" % preload)
        with open(f, "rb") as stdin:
            subprocess.run(python_cmd(PY_DAEMON, out), env=r.env(preload), stdin=stdin,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        for _ in range(200):
            if os.path.exists(out):
                break
            time.sleep(0.05)
        results.append(open(out).read() if os.path.exists(out) else None)
    if results[0] is None or results[0] != results[1]:
        fail("daemon(): stdin afterwards: plain %r, preload %r" % tuple(results))
    else:
        print("ok   daemon(): stdin is /dev/null afterwards (%s)" % results[0].strip(), flush=True)


# A receiver started before the file is opened (so it inherits nothing) gets
# the descriptor over a socket after the sender has read from it: both share
# one offset, as without the preload.
PY_SCM_RIGHTS = r"""
import os, socket, sys
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
pid = os.fork()
if pid == 0:
    a.close()
    msg, fds, flags, addr = socket.recv_fds(b, 16, 4)
    got = os.read(fds[0], 10)
    b.sendall(got)
    os._exit(0)
b.close()
fd = os.open(sys.argv[1], os.O_RDONLY)
first = os.read(fd, 100)
socket.send_fds(a, [b"fd"], [fd])
child_got = a.recv(16)
os.waitpid(pid, 0)
after = os.read(fd, 10)
print(len(first), child_got.hex(), after.hex(), os.lseek(fd, 0, os.SEEK_CUR))
"""


PY_COHERENCE = r"""
import os, sys
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(bytes(range(256)) * 4096)
out = []
fd = os.open(path, os.O_RDWR)
out.append("read %r" % os.read(fd, 16)[:8])
out.append("pread %r" % os.pread(fd, 8, 5000))
os.pwrite(fd, b"HELLO", 5000)
out.append("after pwrite %r" % os.pread(fd, 8, 4998))
os.lseek(fd, 8192, os.SEEK_SET)
os.write(fd, b"WORLD")
out.append("tell after write %d" % os.lseek(fd, 0, os.SEEK_CUR))
out.append("after write %r" % os.pread(fd, 8, 8190))
os.ftruncate(fd, 10000)
out.append("after ftruncate %r size %d" % (os.pread(fd, 100, 9990), os.fstat(fd).st_size))
os.truncate(path, 9000)
out.append("after truncate %r" % os.pread(fd, 100, 8990))
fa = os.open(path, os.O_RDWR | os.O_APPEND)
out.append("append read %r" % os.read(fa, 4))
os.write(fa, b"APPENDED")
out.append("append tell %d" % os.lseek(fa, 0, os.SEEK_CUR))
out.append("after append %r" % os.pread(fd, 20, 8995))
# another descriptor rewrites the file with O_TRUNC
with open(path, "wb") as f:
    f.write(b"new contents")
out.append("after O_TRUNC rewrite %r" % os.pread(fd, 40, 0))
os.close(fd); os.close(fa)
fd = os.open(path, os.O_RDONLY)
out.append("reopen %r" % os.read(fd, 40))
os.close(fd)
print("\n".join(out))
"""


def case_coherence(r, d):
    f = os.path.join(r.workdir, "coherence.bin")
    r.compare("coherence: pwrite, write, ftruncate, truncate, O_APPEND, O_TRUNC",
              python_cmd(PY_COHERENCE, f))


PY_FDS = r"""
import os, sys
d = sys.argv[1]
paths = [os.path.join(d, "fd%d.bin" % i) for i in range(4)]
for p in paths:
    with open(p, "wb") as f:
        f.write(os.urandom(100000))
out = []
fds = [os.open(p, os.O_RDONLY) for p in paths]
for fd in fds:
    os.read(fd, 70000)
out.append("opened %s" % fds)
out.append("devnull %d" % os.open("/dev/null", os.O_WRONLY))
r, w = os.pipe()
out.append("pipe %d %d" % (r, w))
os.close(fds[1])
out.append("reopen %d" % os.open(paths[1], os.O_RDONLY))
out.append("dup %d" % os.dup(fds[0]))
with open(paths[2], "rb") as f:
    out.append("file object %d" % f.fileno())
    f.read()
# close every descriptor from 3 on (close_range), then go on reading
os.closerange(3, 1 << 20)
fd = os.open(paths[3], os.O_RDONLY)
data = os.read(fd, 200000)
out.append("after closerange fd %d read %d" % (fd, len(data)))
for i in range(3, 200):
    try:
        os.close(i)
    except OSError:
        pass
fd = os.open(paths[0], os.O_RDONLY)
out.append("after close loop fd %d read %d" % (fd, len(os.read(fd, 200000))))
print("\n".join(out))
"""


# dup2 onto the highest numbers below the descriptor limit, where upcache
# keeps its UPCACHE_LOG descriptor: the program's dup2 succeeds and what it
# writes through those numbers lands in its own file, never in the log.
PY_DUP2_TOP = r"""
import os, resource, sys
soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
out = []
for n in range(soft - 1, soft - 9, -1):
    out.append("dup2 onto limit-%d: %d" % (soft - n, os.dup2(fd, n) - n))
    os.write(n, b"through limit-%d\n" % (soft - n))
    os.close(n)
big = os.open(sys.argv[2], os.O_RDONLY)
out.append("read after %d" % len(os.read(big, 1 << 20)))
os.close(fd)
print("\n".join(out))
print(open(path).read(), end="")
"""


def case_fd_numbers(r, d):
    r.compare("descriptor numbers as without the shim; closerange and close loops",
              python_cmd(PY_FDS, r.workdir))
    big = make_file(os.path.join(d, "dup2top.bin"), 2 * 1024 * 1024 + 3, 12)
    log = os.path.join(r.workdir, "upcache-dup2.log")
    outs = []
    for preload in (False, True):
        env = r.env(preload)
        if preload:
            env.update({"UPCACHE_LOG": log, "UPCACHE_LOG_LEVEL": "3"})
        target = os.path.join(r.workdir, "dup2top-%d.txt" % preload)
        p = subprocess.run(python_cmd(PY_DUP2_TOP, target, big), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        outs.append(p)
    plain, pre = outs
    logged = open(log, "rb").read() if os.path.exists(log) else b""
    if plain.returncode != 0 or pre.returncode != 0 or plain.stdout != pre.stdout:
        fail("dup2 onto the log's descriptor: plain %d %r, preload %d %r %r"
             % (plain.returncode, plain.stdout[-300:], pre.returncode, pre.stdout[-300:], pre.stderr[-300:]))
    elif b"through limit" in logged:
        fail("dup2 onto the log's descriptor: the program's bytes went to the log")
    else:
        print("ok   dup2 onto the log's descriptor (UPCACHE_LOG): the program's call succeeds", flush=True)


PY_BIG = r"""
import hashlib, os, sys
path = sys.argv[1]
for rnd in range(2):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        h.update(b)
    os.close(fd)
    print("pass %d %s" % (rnd, h.hexdigest()), flush=True)
"""

STRACE_SET = "read,pread64,readv,preadv,preadv2"


def strace_calls(r, argv, preload, stdin_path=None):
    """Runs argv under strace -f -c; returns (stdout, total read-family calls)."""
    with tempfile.NamedTemporaryFile(dir=r.workdir, suffix=".strace") as log:
        cmd = ["strace", "-f", "-c", "-o", log.name, "-e", "trace=" + STRACE_SET]
        if preload:
            for k, v in r.preload_vars().items():
                cmd += ["-E", "%s=%s" % (k, v)]
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            p = subprocess.run(cmd + argv, env=r.env(False), stdin=stdin, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=600)
        finally:
            if stdin_path:
                stdin.close()
        text = open(log.name).read()
    m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d*\s+(\d+)\s+(?:\d+\s+)?total\s*$", text, re.M)
    if p.returncode != 0 or m is None:
        fail("strace run failed (%d): %s %s" % (p.returncode, p.stderr[-300:], text[-500:]))
        return p.stdout, None
    return p.stdout, int(m.group(1))


def resident_bytes(path):
    p = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return int(p.stdout.strip())


def case_big_file(r, d):
    size = 256 * 1024 * 1024
    f = make_file(os.path.join(d, "big.bin"), size, 6)
    argv = python_cmd(PY_BIG, f)
    plain_out, plain_calls = strace_calls(r, argv, False)
    drop_from_page_cache(f)
    before = resident_bytes(f)
    pre_out, pre_calls = strace_calls(r, argv, True)
    after = resident_bytes(f)
    drop_from_page_cache(f)
    print("read-family calls: plain %s, preload %s; kernel page cache: %d bytes before, %d after"
          % (plain_calls, pre_calls, before, after), flush=True)
    if pre_out != plain_out or len(plain_out) == 0:
        fail("big file: bytes differ: plain %r preload %r" % (plain_out, pre_out))
    else:
        print("ok   big file: same bytes (%s)" % plain_out.decode().split()[-1][:16], flush=True)
    if plain_calls is not None and pre_calls is not None:
        if not pre_calls * 2 < plain_calls:
            fail("big file: %d read-family calls under the preload, plain %d: not fewer than half"
                 % (pre_calls, plain_calls))
        else:
            print("ok   big file: %d calls < half of %d" % (pre_calls, plain_calls), flush=True)
    if after - before >= size * 5 // 100:
        fail("big file: kernel page cache holds %d bytes (%.1f%%) after the preloaded run"
             % (after, 100.0 * after / size))
    else:
        print("ok   big file: kernel page cache holds %.2f%% of the file" % (100.0 * after / size),
              flush=True)


EXPORTS = set("""
read __read __read_chk pread pread64 __pread_chk __pread64_chk readv preadv preadv64 preadv2
preadv64v2 lseek lseek64 open open64 openat openat64 __open_2 __open64_2 __openat_2 __openat64_2
creat creat64 close close_range closefrom dup dup2 dup3 fcntl fcntl64 flock fclose freopen freopen64
write __write pwrite pwrite64 writev pwritev pwritev64 pwritev2 pwritev64v2 ftruncate ftruncate64
truncate truncate64 fallocate fallocate64 posix_fadvise posix_fadvise64 readahead
sendfile sendfile64 copy_file_range splice fork vfork execve execv execvp execvpe execl execlp execle fexecve execveat
posix_spawn posix_spawnp system popen _exit _Exit sendmsg sendmmsg mmap mmap64 munmap mremap mprotect daemon login_tty forkpty
sigaction __sigaction signal bsd_signal ssignal sysv_signal __sysv_signal sigset
""".split())


def case_exports(r, d):
    p = subprocess.run(["nm", "-D", "--defined-only", r.lib_file], stdout=subprocess.PIPE, text=True,
                       check=True)
    names = {line.split()[-1] for line in p.stdout.splitlines() if line.strip()}
    extra, missing = names - EXPORTS, EXPORTS - names
    if extra or missing:
        fail("exports: unexpected %s, missing %s" % (sorted(extra), sorted(missing)))
    else:
        print("ok   exports: exactly the %d interposed names" % len(names))


def case_c_reader(r, d):
    if not r.helper:
        fail("c_reader needs --helper")
        return
    f = make_file(os.path.join(d, "reader.bin"), 3 * 1024 * 1024 + 999, 7)
    r.compare("C reader (fortified read/pread, errors, errno, signals, threads)", [r.helper, f])


def case_crash(r, d):
    """Crash diagnostics (issue 4 item 5) and UPCACHE_LOG: UPCACHE_FAULT=crash_on_read
    (test-only) makes the shim fault inside itself on a cached read(); the
    program must die of SIGSEGV as it would, after upcache printed the signal,
    its state and a backtrace with symbol names, to stderr or, appended, to
    the UPCACHE_LOG file (bad configuration values too)."""
    if not r.helper:
        fail("crash needs --helper")
        return
    f = make_file(os.path.join(d, "reader.bin"), 3 * 1024 * 1024 + 999, 7)
    frame = re.compile(rb"upcache:\s+#\d+ 0x[0-9a-f]+ \S+\+0x[0-9a-f]+")

    def run(extra):
        env = r.env(True)
        env.update(extra)
        no_core = lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        return subprocess.run([r.helper, "--read-once", f], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=120, preexec_fn=no_core)

    p = run({"UPCACHE_FAULT": "crash_on_read"})
    if p.returncode != -signal.SIGSEGV:
        fail("crash: exit status %d, expected death by SIGSEGV; stderr: %s" % (p.returncode, p.stderr[-800:]))
    elif b"upcache: fatal signal 11 (SIGSEGV)" not in p.stderr or not frame.search(p.stderr):
        fail("crash: no diagnostics with a symbolized frame on stderr: %s" % p.stderr[-800:])
    else:
        print("ok   crash: SIGSEGV, diagnostics and backtrace on stderr", flush=True)

    log = os.path.join(r.workdir, "upcache.log")
    with open(log, "wb") as out:
        out.write(b"earlier line\n")
    p = run({"UPCACHE_FAULT": "crash_on_read", "UPCACHE_LOG": log, "UPCACHE_SIZE": "bogus"})
    text = open(log, "rb").read()
    if p.returncode != -signal.SIGSEGV:
        fail("crash with UPCACHE_LOG: exit status %d" % p.returncode)
    elif b"upcache:" in p.stderr:
        fail("crash with UPCACHE_LOG: messages on stderr: %s" % p.stderr[-500:])
    elif not (text.startswith(b"earlier line\n") and b"UPCACHE_SIZE" in text
              and b"upcache: fatal signal 11" in text and frame.search(text)):
        fail("crash with UPCACHE_LOG: log file is not the old content plus the messages: %r" % text[-800:])
    else:
        print("ok   crash: UPCACHE_LOG appended the bad value and the diagnostics", flush=True)

    p = run({"UPCACHE_LOG_LEVEL": "0", "UPCACHE_SIZE": "bogus"})
    if p.returncode != 0 or p.stderr:
        fail("UPCACHE_LOG_LEVEL=0: status %d, stderr %r" % (p.returncode, p.stderr[-300:]))
    else:
        print("ok   UPCACHE_LOG_LEVEL=0 is silent", flush=True)


CASES = {
    "cat": case_cat, "dd": case_dd, "python_read": case_python_read, "offsets": case_offsets,
    "coherence": case_coherence, "fd_numbers": case_fd_numbers, "big_file": case_big_file,
    "exports": case_exports, "c_reader": case_c_reader, "crash": case_crash,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="default")
    ap.add_argument("--helper", help="the reader program (c_reader)")
    ap.add_argument("case", choices=sorted(CASES))
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="%s-%s-" % (a.case, a.config), dir=a.dir)
    try:
        runner = Runner(os.path.abspath(a.lib), a.config, workdir)
        runner.helper = a.helper
        CASES[a.case](runner, a.dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print("%d failure(s)" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
