#!/usr/bin/env python3
"""Reliability tests of libupcache.so on real programs (issue 6).

usage: rel_test.py --lib LIB --build BUILD_DIR --dir DIR CASE

Each CASE runs programs plain and under LD_PRELOAD=LIB and prints "FAIL: ..."
on any failure (exit 1), "ok" otherwise. Cases:

  fault_eio        UPCACHE_FAULT=eio=N: reads starting in page N fail with EIO,
                   reads reaching page N after good bytes return those bytes
                   (a short count, as the kernel's filemap_read), other pages
                   are unaffected; with 64 KiB and 4 KiB cache pages
  fault_eio_once   eio_once=N twice: a read of page N fails, the next succeeds
  fault_short      short=N: byte-identical output (cat, random preads)
  fault_einval     einval_at mid-file (O_DIRECT): buffered fallback, identical
                   bytes, buffered_bytes > 0 (needs a filesystem with O_DIRECT)
  fault_nodirect   nodirect: identical bytes, everything buffered
  noarena          the arena cannot be mapped (RLIMIT_AS): the program runs
                   normally and stderr has exactly one upcache: line
  shm_full         the statistics segment cannot be created (/dev/shm full,
                   out of inodes, read-only, in a private mount namespace;
                   UPCACHE_STATS_DIR missing; /dev/shm filling up before a
                   fork): the program runs normally, exactly one upcache line
                   per process concerned, and reads are still served by
                   upcache (fincore: not in the kernel's cache)
  bad_env          every UPCACHE_* variable with a bad value: cat's output
                   identical, exit 0, exactly one stderr line naming upcache
                   and the variable
  segment          statistics segments are 0600, owned by the user, and hold
                   no file contents
  setuid           a setuid-root probe run as nobody (AT_SECURE) ignores
                   UPCACHE_STATS_DIR (and so every environment path)
  inode_recycle    a recycled inode number never returns the old file's bytes
  secret_fork      in an arena shared with a forked child: root reads a 0600
                   file (and a 0622 one) through the cache, forks, the child
                   drops to nobody; its opens fail (EACCES) as without the
                   preload, O_PATH / write-only / inherited descriptors
                   behave as the kernel's, and no descriptor it holds
                   returns the secret, through the read family or a raw
                   system call; files it makes on the recycled inode number
                   of a deleted cached file read its own bytes
  kernel_cache     after reading under the preload the kernel's page cache
                   holds (almost) none of the file (fincore), whole or in
                   part, in every mode: O_DIRECT, buffered (UPCACHE_DIRECT=off,
                   UPCACHE_FAULT=nodirect), and O_DIRECT refused mid-file
                   (einval_at: the buffered fallback drops what it read)
  fork_kill        upcache_fork_kill: three forked workers read a 128 MiB file
                   through a 16 MiB shared cache while the parent SIGKILLs
                   them mid-read (30 rounds, random delays), leaving each
                   victim a zombie while the others read its range; no wrong
                   byte, no read that never returns (fork_kill.c)
  load             upcache_verify_reader: 4 threads, 64 MiB file, 8 MiB cache

Sanitizer builds: SANITIZER_PRELOAD (set by CMake) is put before LIB.
"""

import argparse
import errno
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

PS = 16 << 10  # the default cache page size (UPCACHE_PAGE_SIZE)
FAILS = []


def fail(msg):
    FAILS.append(msg)
    print("FAIL: " + msg, flush=True)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


class Env:
    def __init__(self, a):
        self.a = a
        self.lib = os.path.abspath(a.lib)
        san = os.environ.get("SANITIZER_PRELOAD", "")
        self.preload = (san + ":" if san else "") + self.lib
        self.sanitized = bool(san)
        os.makedirs(a.dir, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="rel-", dir=a.dir)
        os.chmod(self.work, 0o755)
        self.stats = os.path.join(self.work, "stats")
        os.makedirs(self.stats)
        self.upcache = os.path.join(a.build, "tools", "upcache")
        self.reader = os.path.join(a.build, "tests", "reliability", "upcache_verify_reader")
        self.probe = os.path.join(a.build, "tests", "reliability", "upcache_secure_probe")
        self.fork_kill = os.path.join(a.build, "tests", "reliability", "upcache_fork_kill")
        self.close_race = os.path.join(a.build, "tests", "reliability", "upcache_close_race")
        self.fork_engine = os.path.join(a.build, "tests", "reliability", "upcache_fork_engine")

    def env(self, preload=True, **kv):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("UPCACHE_") and k not in ("LD_PRELOAD", "SANITIZER_PRELOAD")}
        if preload:
            e["LD_PRELOAD"] = self.preload
            e["UPCACHE_STATS_DIR"] = self.stats
        e.update({k: str(v) for k, v in kv.items()})
        return e

    def run(self, args, preload=True, input=None, timeout=300, **kv):
        return subprocess.run(args, env=self.env(preload, **kv), input=input,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)

    def counters(self, proc_env):
        """Runs nothing: reads the kept segments in the stats dir, returns the total."""
        out = subprocess.run([self.upcache, "stat", "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, UPCACHE_STATS_DIR=self.stats))
        try:
            return json.loads(out.stdout)["total"]
        except (ValueError, KeyError):
            fail("upcache stat --json: %r %r" % (out.stdout[:300], out.stderr[:300]))
            return {}

    def clear_stats(self):
        for n in os.listdir(self.stats):
            os.unlink(os.path.join(self.stats, n))

    def file(self, name, data):
        p = os.path.join(self.work, name)
        with open(p, "wb") as f:
            f.write(data)
        return p


def pattern(size, salt=b""):
    line = 16
    return b"".join(b"%s%0*d\n" % (salt, line - 1 - len(salt), i) for i in range(0, size, line))[:size]


# A python program run under the preload: executes (kind, n, off) operations
# and prints one JSON line of results: [len, hash] or ["E", errno].
OPS = r"""
import hashlib, json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
out = []
for kind, n, off in json.loads(sys.argv[2]):
    try:
        if kind == "pread":
            b = os.pread(fd, n, off)
        elif kind == "seek":
            out.append(["pos", os.lseek(fd, off, os.SEEK_SET)]); continue
        elif kind == "read":
            b = os.read(fd, n)
        elif kind == "readv":
            bufs = [bytearray(n // 2), bytearray(n - n // 2)]
            k = os.preadv(fd, bufs, off)
            b = (bytes(bufs[0]) + bytes(bufs[1]))[:k]
        out.append([len(b), hashlib.md5(b).hexdigest()])
    except OSError as e:
        out.append(["E", e.errno])
    if kind == "read":
        out[-1].append(os.lseek(fd, 0, os.SEEK_CUR))
print(json.dumps(out))
"""


def run_ops(E, path, ops, **kv):
    p = E.run([sys.executable, "-c", OPS, path, json.dumps(ops)], **kv)
    if p.returncode != 0:
        fail("ops program exited %d: %s" % (p.returncode, p.stderr.decode()[-500:]))
        return None
    return json.loads(p.stdout)


def md5(b):
    import hashlib
    return hashlib.md5(b).hexdigest()


def expect_eio(data, bad_first, bad_last, ps, kind, n, off, pos=None):
    """The kernel's answer for a read of [off, off + n) when pages
    bad_first..bad_last fail: EIO if the read starts in a bad page, else the
    bytes before the first bad page it reaches."""
    size = len(data)
    end = min(off + n, size)
    if off >= size or n == 0:
        r = [0, md5(b"")]
    else:
        cut = end
        for p in range(off // ps, (end - 1) // ps + 1):
            if bad_first <= p <= bad_last:
                cut = p * ps
                break
        if cut <= off:
            r = ["E", 5]
        else:
            r = [cut - off, md5(data[off:cut])]
    if kind == "read":
        r.append(pos + (r[0] if r[0] != "E" else 0))
    return r


def case_fault_eio(E):
    for page_size, ps, bad in (("64K", 64 << 10, 5), ("4K", 4096, 37)):
        size = (1 << 20) + 777
        data = pattern(size)
        path = E.file("eio", data)
        lo, hi = bad * ps, (bad + 1) * ps
        # Fresh process per scenario (cold cache), each a list of operations.
        scenarios = [
            [("pread", 100, 0), ("pread", 4096, lo), ("pread", ps, lo - 100),
             ("pread", 1 << 20, 0), ("pread", 4096, hi), ("pread", 10, hi - 1),
             ("pread", 4096, lo)],
            [("pread", 3 * ps, lo - ps)],               # cold: good page then the bad one
            [("pread", 50, lo + 17), ("pread", 50, lo + 17)],   # inside, twice: still EIO
            [("readv", 2 * ps, lo - 10)],
            [("pread", 200000, hi), ("pread", ps, 0)],   # after it, before it
        ]
        # A sequential read() loop as cat does: good bytes up to the bad page,
        # then EIO at the same offset every time, then a seek past it works.
        seq = [("read", 96 << 10, 0)] * ((lo + (96 << 10) - 1) // (96 << 10) + 2)
        seq += [("seek", 0, hi), ("read", 96 << 10, 0), ("read", 1 << 20, 0)]
        scenarios.append(seq)
        for ops in scenarios:
            got = run_ops(E, path, ops, UPCACHE_FAULT="eio=%d" % bad, UPCACHE_PAGE_SIZE=page_size)
            if got is None:
                continue
            pos = 0
            want = []
            for (kind, n, off), g in zip(ops, got):
                if kind == "seek":
                    pos = off
                    want.append(["pos", off])
                    continue
                w = expect_eio(data, bad, bad, ps, kind, n, pos if kind == "read" else off, pos)
                if kind == "read":
                    w = w[:2] + [pos + (w[0] if w[0] != "E" else 0)]
                    pos = w[2]
                want.append(w)
            for i, (op, w, g) in enumerate(zip(ops, want, got)):
                check(w == g, "eio=%d page %s: op %d %s: want %s, got %s"
                      % (bad, page_size, i, op, w, g))
        # Without the fault the same file reads whole (the control).
        got = run_ops(E, path, [("pread", size, 0)], UPCACHE_PAGE_SIZE=page_size)
        check(got == [[size, md5(data)]], "no fault: whole file %s" % got)


def case_fault_eio_once(E):
    size = 1 << 20
    data = pattern(size)
    path = E.file("once", data)
    # Fault entries name a page of whichever file is read first there; the
    # interpreter's own larger modules are cached too, so the page is put
    # past the end of any of them.
    bad = 48
    lo = bad * PS
    # Two entries for one page: the first read and its one-page retry both
    # fail, so the caller sees EIO once; the next read succeeds.
    ops = [("pread", 4096, lo), ("pread", 4096, lo), ("pread", size, 0)]
    got = run_ops(E, path, ops, UPCACHE_FAULT="eio_once=%d,eio_once=%d" % (bad, bad))
    if got is not None:
        check(got[0] == ["E", 5], "eio_once: first read of the page: %s" % got[0])
        check(got[1] == [4096, md5(data[lo:lo + 4096])], "eio_once: retry: %s" % got[1])
        check(got[2] == [size, md5(data)], "eio_once: whole file after: %s" % got[2])
    # One entry: a read reaching the page from before gets the good bytes,
    # and a read of the whole file afterwards is complete.
    got = run_ops(E, path, [("pread", size, 0), ("pread", size, 0)],
                  UPCACHE_FAULT="eio_once=%d" % bad)
    if got is not None:
        check(got[0] in ([size, md5(data)], [lo, md5(data[:lo])]), "eio_once: first %s" % got[0])
        check(got[1] == [size, md5(data)], "eio_once: second %s" % got[1])


def case_fault_short(E):
    size = (3 << 20) + 12345
    data = pattern(size)
    path = E.file("short", data)
    for short in ("1000", "4096", "100000"):
        for extra in ({}, {"UPCACHE_PAGE_SIZE": "4K", "UPCACHE_SIZE": "1M"}):
            p = E.run(["cat", path], UPCACHE_FAULT="short=" + short, **extra)
            check(p.returncode == 0 and p.stdout == data,
                  "short=%s %s: cat output differs (rc %d, %d bytes)"
                  % (short, extra, p.returncode, len(p.stdout)))
            ops = [("pread", n, off) for n, off in
                   ((1, 0), (70000, 65000), (size, 0), (5000, size - 100), (300000, 2 << 20))]
            got = run_ops(E, path, ops, UPCACHE_FAULT="short=" + short, **extra)
            if got is not None:
                want = [[len(data[off:off + n]), md5(data[off:off + n])] for _, n, off in ops]
                check(got == want, "short=%s %s: preads %s != %s" % (short, extra, got, want))


def stat_run(E, args, **kv):
    E.clear_stats()
    p = E.run(args, UPCACHE_STATS_KEEP=1, **kv)
    return p, E.counters(None)


def direct_works(E):
    path = os.path.join(E.work, "probe-direct")
    with open(path, "wb") as f:
        f.write(b"\0" * 8192)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        os.close(fd)
        return True
    except OSError:
        return False


def case_fault_einval(E):
    if not direct_works(E):
        print("SKIP: no O_DIRECT on %s" % E.work)
        return
    size = 4 << 20
    data = pattern(size)
    path = E.file("einval", data)
    p, c = stat_run(E, ["cat", path], UPCACHE_FAULT="einval_at=1M")
    check(p.returncode == 0 and p.stdout == data, "einval_at: cat output differs")
    check(c.get("direct_bytes", 0) > 0, "einval_at=1M: nothing read directly first: %s" % c)
    check(c.get("buffered_bytes", 0) > 0, "einval_at=1M: no buffered fallback: %s" % c)
    check(c.get("io_errors", 1) == 0, "einval_at: an error reached the counters: %s" % c)
    check(b"upcache:" not in p.stderr or p.stderr.count(b"\n") <= 1,
          "einval_at: stderr %r" % p.stderr[:300])
    got = run_ops(E, path, [("pread", 100000, 3 << 20), ("pread", 10, 5), ("pread", size, 0)],
                  UPCACHE_FAULT="einval_at=1M")
    if got is not None:
        want = [[100000, md5(data[3 << 20:(3 << 20) + 100000])], [10, md5(data[5:15])],
                [size, md5(data)]]
        check(got == want, "einval_at: preads %s" % got)


def case_fault_nodirect(E):
    size = 2 << 20
    data = pattern(size)
    path = E.file("nodirect", data)
    p, c = stat_run(E, ["cat", path], UPCACHE_FAULT="nodirect")
    check(p.returncode == 0 and p.stdout == data, "nodirect: cat output differs")
    check(c.get("direct_bytes", 1) == 0, "nodirect: direct reads happened: %s" % c)
    check(c.get("buffered_bytes", 0) >= size, "nodirect: not read buffered: %s" % c)


def one_upcache_line(stderr, *words):
    lines = stderr.decode(errors="replace").splitlines()
    return len(lines) == 1 and "upcache" in lines[0] and all(w in lines[0] for w in words)


def case_noarena(E):
    if E.sanitized:
        print("SKIP: RLIMIT_AS and ASan's shadow memory do not mix")
        return
    data = pattern(1 << 20)
    path = E.file("noarena", data)
    # The cache (4 GiB of address space) cannot be mapped under a 1.5 GiB limit.
    script = 'ulimit -v 1500000 && exec cat "$1"'
    p = E.run(["sh", "-c", script, "sh", path], UPCACHE_SIZE="4G")
    check(p.returncode == 0 and p.stdout == data, "noarena: cat output differs (rc %d)" % p.returncode)
    check(one_upcache_line(p.stderr), "noarena: want one upcache: line, got %r" % p.stderr)
    # The control: the same limit with a small cache runs silently.
    p = E.run(["sh", "-c", script, "sh", path], UPCACHE_SIZE="64M")
    check(p.returncode == 0 and p.stdout == data and p.stderr == b"",
          "noarena control (64M cache): rc %d stderr %r" % (p.returncode, p.stderr))


# Runs ARGS in a private mount namespace whose /dev/shm is a fresh tmpfs
# mounted with OPTS, after the shell commands PREP; only ARGS is preloaded.
NS_SCRIPT = ('mount -t tmpfs -o "$1",mode=1777 upcache-rel-shm /dev/shm || exit 97; '
             'eval "$2"; shift 2; exec env LD_PRELOAD="$REL_PRELOAD" "$@"')


def run_in_shm_ns(E, opts, prep, args, **kv):
    env = E.env(preload=False, **kv)
    env["REL_PRELOAD"] = E.preload
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", NS_SCRIPT,
                           "sh", opts, prep] + args, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)


def private_mounts_work(E):
    if not shutil.which("unshare"):
        return "no unshare(1)"
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        "mount -t tmpfs -o size=4k upcache-rel-probe /dev/shm"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        return "cannot mount a tmpfs in a private mount namespace (%s)" % p.stdout.strip()[:200]
    return None


def segment_lines(stderr):
    """The upcache lines of stderr, and whether each says the segment went private."""
    lines = stderr.decode(errors="replace").splitlines()
    return lines, [("upcache" in l and "statistics segment" in l and "private" in l) for l in lines]


def served_direct(E, path, size, what):
    """The last reader of `path` was served by upcache's O_DIRECT reads (the
    kernel cache holds almost none of it; a pass-through would fill it)."""
    res = fincore_bytes(path)
    check(res <= size // 32, "%s: %d of %d bytes in the kernel cache: not served by upcache"
          % (what, res, size))


# Under the preload, in a namespace whose /dev/shm has room for this
# process's segment only: read and check a file, fill /dev/shm, fork a child
# that reads and checks another file (its own segment cannot be created),
# then read the first file again. Prints the segments in /dev/shm.
FORK_FULL = r"""
import glob, os, sys
a, b, want_a, want_b = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def digest(path):
    import hashlib
    h = hashlib.md5()
    fd = os.open(path, os.O_RDONLY)
    while True:
        c = os.read(fd, 1 << 20)
        if not c: break
        h.update(c)
    os.close(fd)
    return h.hexdigest()
sums = open(sys.argv[5]).read().split()
assert digest(a) == sums[0], "parent: first read of A"
mine = glob.glob("/dev/shm/upcache.%d.*" % os.getpid())
fill = os.open("/dev/shm/fill", os.O_WRONLY | os.O_CREAT, 0o600)
try:
    while True:
        os.write(fill, b"\0" * 4096)
except OSError:
    pass
os.close(fill)
pid = os.fork()
if pid == 0:
    ok = digest(b) == sums[1]
    child = glob.glob("/dev/shm/upcache.%d.*" % os.getpid())
    print("child", ok, len(child), flush=True)
    os._exit(0 if ok else 1)
_, st = os.waitpid(pid, 0)
print("parent", digest(a) == sums[0], len(mine), st, flush=True)
"""


def case_shm_full(E):
    size = 4 << 20
    data = pattern(size)
    path = E.file("shmfull", data)
    os.sync()  # dirty pages cannot be dropped
    direct = direct_works(E)
    if not direct:
        print("note: no O_DIRECT on %s: cannot tell a served read from a pass-through here"
              % E.work)
    # The statistics directory missing (no namespace needed): ENOENT.
    missing = os.path.join(E.work, "no-such-dir")
    drop(path)
    p = E.run(["cat", path], UPCACHE_STATS_DIR=missing)
    check(p.returncode == 0 and p.stdout == data, "stats dir missing: cat output differs")
    lines, ok = segment_lines(p.stderr)
    check(len(lines) == 1 and ok[0] and missing in lines[0],
          "stats dir missing: want one upcache line naming it, got %r" % p.stderr)
    if direct:
        served_direct(E, path, size, "stats dir missing")
    why = private_mounts_work(E)
    if why:
        print("SKIP: /dev/shm full: %s" % why)
        return
    # /dev/shm full at start-up: no room (ENOSPC from fallocate), no inode
    # (ENOSPC from open), read-only (EROFS). The program runs, one line,
    # and upcache still serves its reads (private counters).
    for opts, prep, errtext in (("size=4k", "", "No space left on device"),
                                ("nr_inodes=2", ": > /dev/shm/x", "No space left on device"),
                                ("ro", "", "Read-only file system")):
        drop(path)
        p = run_in_shm_ns(E, opts, prep, ["cat", path])
        what = "/dev/shm %s" % opts
        if p.returncode == 97:
            fail("%s: the tmpfs could not be mounted: %r" % (what, p.stderr))
            continue
        check(p.returncode == 0 and p.stdout == data,
              "%s: cat exit %d, output differs: %s" % (what, p.returncode, p.stdout != data))
        lines, ok = segment_lines(p.stderr)
        check(len(lines) == 1 and ok[0] and "/dev/shm" in lines[0] and errtext in lines[0],
              "%s: want one upcache line (statistics segment, %s), got %r"
              % (what, errtext, p.stderr))
        if direct:
            served_direct(E, path, size, what)
    # The controls: room enough is silent; UPCACHE_STATS=no does not try.
    p = run_in_shm_ns(E, "size=16m", "", ["cat", path])
    check(p.returncode == 0 and p.stdout == data and p.stderr == b"",
          "/dev/shm with room: rc %d stderr %r" % (p.returncode, p.stderr))
    p = run_in_shm_ns(E, "size=4k", "", ["cat", path], UPCACHE_STATS="no")
    check(p.returncode == 0 and p.stdout == data and p.stderr == b"",
          "/dev/shm full, UPCACHE_STATS=no: rc %d stderr %r" % (p.returncode, p.stderr))
    # Full after start-up: the parent's segment exists, the forked child's
    # cannot be created: one line (the child's), both processes read right.
    other = pattern(size, b"B")
    path_b = E.file("shmfull-b", other)
    sums = E.file("sums", ("%s %s" % (md5(data), md5(other))).encode())
    os.sync()
    drop(path)
    drop(path_b)
    p = run_in_shm_ns(E, "size=1m", "", [sys.executable, "-c", FORK_FULL, path, path_b,
                                         str(size), str(size), sums])
    out = p.stdout.decode().split("\n")
    check(p.returncode == 0 and out[:2] == ["child True 0", "parent True 1 0"],
          "/dev/shm full at fork: rc %d out %r stderr %r" % (p.returncode, out, p.stderr[-500:]))
    lines, ok = segment_lines(p.stderr)
    check(len(lines) == 1 and ok[0], "/dev/shm full at fork: want one upcache line, got %r"
          % p.stderr)
    if direct:
        served_direct(E, path_b, size, "/dev/shm full at fork: the child's file")


BAD_ENV = [("UPCACHE_SIZE", "banana"), ("UPCACHE_PAGE_SIZE", "3000"), ("UPCACHE_RA_MAX", "-1"),
           ("UPCACHE_DIRECT", "maybe"), ("UPCACHE_ASYNC", "x"), ("UPCACHE_IO_THREADS", "0"),
           ("UPCACHE_STATS", "2"), ("UPCACHE_CALLERS", "abc"), ("UPCACHE_LOG_LEVEL", "9"),
           ("UPCACHE_SIZE", "1Q"), ("UPCACHE_PAGE_SIZE", "8M"), ("UPCACHE_STATS_KEEP", "perhaps"),
           ("UPCACHE_DISABLE", "sometimes"), ("UPCACHE_SPLICE", "sometimes"), ("UPCACHE_IO_THREADS", "99999999999999999999"),
           ("UPCACHE_HUGEPAGES", "maybe")]


def case_bad_env(E):
    data = pattern((2 << 20) + 5)
    path = E.file("badenv", data)
    plain = E.run(["cat", path], preload=False)
    for var, value in BAD_ENV:
        p = E.run(["cat", path], **{var: value})
        check(p.returncode == 0, "%s=%s: exit %d" % (var, value, p.returncode))
        check(p.stdout == plain.stdout, "%s=%s: output differs" % (var, value))
        check(one_upcache_line(p.stderr, var),
              "%s=%s: want one line naming upcache and %s, got %r" % (var, value, var, p.stderr))
    # Good values are silent.
    p = E.run(["cat", path], UPCACHE_SIZE="64M", UPCACHE_PAGE_SIZE="16K", UPCACHE_DIRECT="off")
    check(p.stdout == plain.stdout and p.stderr == b"", "good values: stderr %r" % p.stderr)


def case_segment(E):
    marker = b"UPCACHE-SECRET-MARKER-7f3a9c"
    data = (marker + b"." * (4096 - len(marker))) * 256  # 1 MiB, marker in every 4 KiB
    path = E.file("secret", data)
    E.clear_stats()
    p = E.run(["cat", path], UPCACHE_STATS_KEEP=1)
    check(p.returncode == 0 and p.stdout == data, "segment: cat output differs")
    segs = [os.path.join(E.stats, n) for n in os.listdir(E.stats)]
    if not check(len(segs) == 1, "segment: want one kept segment, got %s" % segs):
        return
    c = E.counters(None)
    check(c.get("bytes_read", 0) >= len(data), "segment: the file was not read from the cache: %s" % c)
    st = os.stat(segs[0])
    check(stat.S_IMODE(st.st_mode) == 0o600, "segment mode %o" % stat.S_IMODE(st.st_mode))
    check(st.st_uid == os.getuid(), "segment owner %d" % st.st_uid)
    with open(segs[0], "rb") as f:
        blob = f.read()
    check(marker not in blob and marker[:12] not in blob, "segment holds file contents")
    # The default place (/dev/shm) too, while the process lives.
    probe = ("import os,glob,sys,stat\n"
             "d=open(sys.argv[1],'rb').read()\n"
             # A stale segment of an earlier process with our pid, as a killed
             # process leaves behind: it is not ours and must not be counted.
             "decoy='/dev/shm/upcache.%d.%016x' % (os.getpid(), 0xdead)\n"
             "open(decoy,'wb').close()\n"
             # Our own segment is the one we map: a killed process whose pid
             # we reuse may have left its own upcache.<pid>.* behind.
             "s=sorted({l.split(None,5)[5].strip() for l in open('/proc/self/maps')"
             " if len(l.split(None,5))==6 and l.split(None,5)[5].startswith('/dev/shm/upcache.%d.' % os.getpid())})\n"
             "print(len(s), *[oct(stat.S_IMODE(os.stat(x).st_mode)) for x in s],"
             " *[sys.argv[2].encode() in open(x,'rb').read() for x in s])\n"
             "os.unlink(decoy)\n")
    env = E.env()
    del env["UPCACHE_STATS_DIR"]
    out = subprocess.run([sys.executable, "-c", probe, path, marker.decode()], env=env,
                         stdout=subprocess.PIPE, text=True).stdout.split()
    check(out == ["1", "0o600", "False"], "segment in /dev/shm: %s" % out)


def root_and_nobody(why):
    """The passwd entry of user nobody when running as root, else None
    (after printing why the case is skipped)."""
    if os.getuid() != 0:
        print("SKIP: needs root (%s)" % why)
        return None
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        print("SKIP: no user nobody")
        return None


def case_setuid(E):
    nobody = root_and_nobody("to make a setuid-root copy")
    if nobody is None:
        return
    if not shutil.which("setpriv"):
        print("SKIP: no setpriv")
        return
    d = tempfile.mkdtemp(prefix="setuid-", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        probe = os.path.join(d, "probe")
        shutil.copy(E.probe, probe)
        os.chown(probe, 0, 0)
        os.chmod(probe, 0o4755)
        lib = os.path.join(d, "libupcache.so")
        shutil.copy(E.lib, lib)
        os.chmod(lib, 0o755)
        statsdir = os.path.join(d, "stats")
        os.mkdir(statsdir)
        os.chmod(statsdir, 0o777)
        logf = os.path.join(d, "log")
        env = E.env(preload=False, UPCACHE_STATS_DIR=statsdir, UPCACHE_LOG=logf,
                    UPCACHE_LOG_LEVEL=3)
        san = os.environ.get("SANITIZER_PRELOAD", "")
        if san:
            print("SKIP: sanitizer build (a setuid program cannot preload the ASan runtime)")
            return
        p = subprocess.run(["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                            "--clear-groups", probe, lib, statsdir], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The control: a plain (not setuid) copy uses the stats dir from the environment.
        plain = os.path.join(d, "probe-plain")
        shutil.copy(E.probe, plain)
        os.chmod(plain, 0o755)
        ctl = subprocess.run(["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                              "--clear-groups", plain, lib, statsdir], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        check(ctl.stdout.split() == ["secure=0", "segments=1"],
              "setuid control (not setuid): %r %r" % (ctl.stdout, ctl.stderr))
        check(p.stdout.split() == ["secure=1", "segments=0"],
              "setuid probe: want AT_SECURE and no segment in UPCACHE_STATS_DIR, got %r %r"
              % (p.stdout, p.stderr))
        check(not os.path.exists(logf), "setuid: UPCACHE_LOG file was created")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# Under the preload: write A (by a plain child), read it, unlink it, create B
# (plain child) until B gets A's inode number, read B in the same process.
RECYCLE = r"""
import os, subprocess, sys
d, n = sys.argv[1], int(sys.argv[2])
plain = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
def make(path, byte):
    subprocess.run([sys.executable, "-c",
        "import sys; open(sys.argv[1],'wb').write(bytes([int(sys.argv[2])])*int(sys.argv[3]))",
        path, str(byte), str(n)], env=plain, check=True)
def read(path):
    fd = os.open(path, os.O_RDONLY)
    b = b""
    while True:
        c = os.read(fd, 1 << 16)
        if not c: break
        b += c
    ino = os.fstat(fd).st_ino
    os.close(fd)
    return b, ino
a = os.path.join(d, "A")
make(a, 65)
ba, ino = read(a)
assert ba == b"A" * n, "A misread"
os.unlink(a)
same = 0
for i in range(200):
    b = os.path.join(d, "B%d" % i)
    make(b, 66 + i % 50)
    bb, ino_b = read(b)
    if bb != bytes([66 + i % 50]) * n:
        print("WRONG", i, ino_b == ino, bb[:8]); sys.exit(1)
    if ino_b == ino:
        same += 1
        os.unlink(b)
        if same >= 3: break
        continue
    os.unlink(b)
print("recycled", same)
"""


def case_inode_recycle(E):
    d = os.path.join(E.work, "recycle")
    os.mkdir(d)
    p = E.run([sys.executable, "-c", RECYCLE, d, str(1 << 20)])
    out = p.stdout.decode()
    check(p.returncode == 0, "inode_recycle: %s %s" % (out, p.stderr.decode()[-500:]))
    if out.startswith("recycled 0"):
        print("note: the filesystem never reused the inode number (the test proved nothing)")
    print(out.strip())


# Under the preload, as root: reads a 0600 secret, a 0622 file (others may
# write, not read), a public file and "pub/gone" (deleted once read) through
# the cache, keeps the secret open, forks a child that drops to nobody and
# tries every way to the secret through the read family. Prints one JSON
# object (the child's results, and how often an inode number was recycled).
SECRET = r"""
import ctypes, json, mmap, os, platform, sys
d, nobody_uid, nobody_gid, marker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
secret, wo, public = os.path.join(d, "secret"), os.path.join(d, "wo"), os.path.join(d, "public")
pub = os.path.join(d, "pub")
gone = os.path.join(pub, "gone")
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_pread64 = {"x86_64": 17, "aarch64": 67}.get(platform.machine())

def slurp(fd):
    out = b""
    while True:
        c = os.read(fd, 1 << 20)
        if not c:
            return out
        out += c

# The parent (root) reads every file through the cache; it keeps the
# secret open (the child inherits that descriptor), the others are closed;
# "gone" is deleted once read (its pages may stay cached).
keep = os.open(secret, os.O_RDONLY)
sizes = {}
for p in (secret, wo, gone, public):
    fd = os.open(p, os.O_RDONLY)
    sizes[p] = len(slurp(fd))
    os.close(fd)
gone_st = os.stat(gone)
os.unlink(gone)

def res(f):
    try:
        b = f()
    except OSError as e:
        return ["E", e.errno]
    if isinstance(b, int):
        return ["ok"]
    return ["ok", len(b), marker in b]

def reads(fd):
    # Every call of the read family on fd.
    out = {}
    out["read"] = res(lambda: os.read(fd, 65536))
    out["pread"] = res(lambda: os.pread(fd, 65536, 4096))
    def rv():
        bufs = [bytearray(5000), bytearray(70000)]
        n = os.readv(fd, bufs)
        return (bytes(bufs[0]) + bytes(bufs[1]))[:n]
    out["readv"] = res(rv)
    def prv():
        bufs = [bytearray(5000), bytearray(70000)]
        n = os.preadv(fd, bufs, 8192)
        return (bytes(bufs[0]) + bytes(bufs[1]))[:n]
    out["preadv"] = res(prv)
    out["preadv2"] = res(lambda: (lambda b: bytes(b[:os.preadv(fd, [b], 0, 0)]))(bytearray(65536)))
    return out

def opened(path, flags):
    # open(path, flags), then the read family on it.
    try:
        fd = os.open(path, flags)
    except OSError as e:
        return ["E", e.errno]
    r = reads(fd)
    os.close(fd)
    return ["opened", r]

r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    R = {}
    os.setgroups([])
    os.setgid(nobody_gid)
    os.setuid(nobody_uid)
    # An inherited descriptor stays readable after dropping privileges, as
    # without upcache (the kernel checked access when the parent opened it).
    R["inherited"] = reads(keep)
    # The daemon's pattern: close everything inherited, then open.
    os.closerange(3, w)
    os.closerange(w + 1, 1 << 16)
    R["open_rdonly"] = opened(secret, os.O_RDONLY)
    R["open_rdwr"] = opened(secret, os.O_RDWR)
    R["open_accmode3"] = opened(secret, os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    R["openat"] = res(lambda: os.open("secret", os.O_RDONLY, dir_fd=dfd))
    os.close(dfd)
    # O_PATH needs no read permission: reads on it fail (EBADF), and it
    # cannot be reopened for reading through /proc.
    try:
        pfd = os.open(secret, os.O_PATH)
        R["o_path"] = reads(pfd)
        R["o_path_reopen"] = opened("/proc/self/fd/%d" % pfd, os.O_RDONLY)
        os.close(pfd)
    except OSError as e:
        R["o_path"] = ["E", e.errno]
    R["parent_fd_via_proc"] = opened("/proc/%d/fd/%d" % (os.getppid(), keep), os.O_RDONLY)
    # Write-only (mode 0622: others may write, not read): reads fail.
    R["write_only"] = opened(wo, os.O_WRONLY)
    R["wo_rdonly"] = opened(wo, os.O_RDONLY)
    # A file it may read is read right (and served).
    R["public"] = opened(public, os.O_RDONLY)
    # Every descriptor the process has, through the read family and through
    # the raw system call (which no preload sees): none holds the secret.
    leaks = []
    page = mmap.mmap(-1, 1 << 16)  # page aligned: O_DIRECT descriptors read too
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    def raw(fd):
        n = libc.syscall(SYS_pread64, fd, ctypes.c_void_p(addr), 1 << 16, 0)
        return page[:max(0, n)]
    for fd in sorted(int(x) for x in os.listdir("/proc/self/fd")):
        calls = [("pread", lambda: os.pread(fd, 1 << 16, 0))]
        if SYS_pread64 is not None:
            calls.append(("raw", lambda: raw(fd)))
        for name, f in calls:
            try:
                if marker in f():
                    leaks.append([fd, name])
            except OSError:
                pass
    R["descriptor_scan_leaks"] = leaks
    # A recycled inode number: files the child creates (same size, the same
    # modification time as the deleted "gone") until one gets its inode.
    recycled = 0
    wrong = []
    for i in range(300):
        p = os.path.join(pub, "mine%d" % i)
        body = (b"child-%d-" % i).ljust(4096, b".") * (sizes[gone] // 4096)
        with open(p, "wb") as f:
            f.write(body)
        os.utime(p, ns=(gone_st.st_atime_ns, gone_st.st_mtime_ns))
        st = os.stat(p)
        fd = os.open(p, os.O_RDONLY)
        got = slurp(fd)
        os.close(fd)
        if got != body:
            wrong.append([i, st.st_ino == gone_st.st_ino, marker in got])
        os.unlink(p)
        if st.st_ino == gone_st.st_ino:
            recycled += 1
            if recycled >= 3:
                break
    R["recycled_wrong"] = wrong
    os.write(w, json.dumps([R, recycled]).encode())
    os._exit(0)
os.close(w)
out = slurp(r)
_, st = os.waitpid(pid, 0)
print(json.dumps({"status": st, "sizes": sorted(sizes.values()), "child": json.loads(out or b"null")}))
"""


def traversable(path):
    """Whether every directory from / to path lets others search it."""
    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def case_secret_fork(E):
    nobody = root_and_nobody("a child that drops privileges to nobody")
    if nobody is None:
        return
    marker = b"UPCACHE-SECRET-MARKER-5e21d0"
    block = marker + b"." * (4096 - len(marker))
    base = E.work if traversable(E.work) else tempfile.mkdtemp(prefix="rel-secret-", dir="/tmp")
    # Segments on a tmpfs: a segment file made at fork must not take the
    # deleted file's inode number before the child can.
    stats_dir = tempfile.mkdtemp(prefix="upcache-rel-secret-", dir="/dev/shm")
    try:
        results = {}
        for preload in (False, True):
            d = os.path.join(base, "secret-%s" % ("pre" if preload else "plain"))
            os.mkdir(d)
            os.chmod(d, 0o755)
            os.mkdir(os.path.join(d, "pub"))
            os.chmod(os.path.join(d, "pub"), 0o777)
            for name, mode, body in (("secret", 0o600, block * 256), ("wo", 0o622, block * 256),
                                     ("pub/gone", 0o600, block * 256),
                                     ("public", 0o644, b"public..".ljust(4096, b"-") * 256)):
                p = os.path.join(d, name)
                with open(p, "wb") as f:
                    f.write(body)
                os.chmod(p, mode)
            for n in os.listdir(stats_dir):
                os.unlink(os.path.join(stats_dir, n))
            p = E.run([sys.executable, "-c", SECRET, d, str(nobody.pw_uid), str(nobody.pw_gid),
                       marker.decode()], preload=preload, UPCACHE_STATS_DIR=stats_dir,
                      UPCACHE_STATS_KEEP=1)
            what = "preloaded" if preload else "plain"
            try:
                out = json.loads(p.stdout)
            except ValueError:
                fail("secret_fork %s: rc %d %r %r" % (what, p.returncode, p.stdout[-300:],
                                                      p.stderr[-800:]))
                return
            check(p.returncode == 0 and out["status"] == 0 and out["child"],
                  "secret_fork %s: rc %d, child %s %r" % (what, p.returncode, out["status"],
                                                          p.stderr[-800:]))
            results[preload] = out
            if preload:
                # The parent read the whole secret through the cache: its
                # pages were in the arena the child shares.
                stat_out = subprocess.run([E.upcache, "stat", "--json", "--files"],
                                          stdout=subprocess.PIPE, text=True,
                                          env=dict(os.environ, UPCACHE_STATS_DIR=stats_dir))
                secret_paths = (os.path.join(d, "secret"), os.path.realpath(os.path.join(d, "secret")))
                try:
                    served = sum(f["bytes"] for proc in json.loads(stat_out.stdout)["processes"]
                                 for f in proc.get("files", []) if f["path"] in secret_paths)
                except (ValueError, KeyError, TypeError):
                    served = -1
                check(served >= 1 << 20, "secret_fork: the secret was not read through the cache "
                      "(%d bytes): %s" % (served, stat_out.stdout[:500]))
        if len(results) != 2 or not results[True]["child"] or not results[False]["child"]:
            return
        R, recycled = results[True]["child"]
        plain, plain_recycled = results[False]["child"]
        for k in sorted(set(plain) | set(R)):
            if k != "recycled_wrong":
                check(plain.get(k) == R.get(k), "secret_fork %s: plain %s, preloaded %s"
                      % (k, plain.get(k), R.get(k)))
        ok = lambda n: ["ok", n, True]
        EBADF = ["E", errno.EBADF]
        EACCES = ["E", errno.EACCES]
        check(R["inherited"] == {"read": ok(65536), "pread": ok(65536), "readv": ok(75000),
                                 "preadv": ok(75000), "preadv2": ok(65536)},
              "an inherited descriptor: %s" % R["inherited"])
        for k in ("open_rdonly", "open_rdwr", "open_accmode3", "openat", "o_path_reopen",
                  "wo_rdonly"):
            check(R[k] == EACCES, "%s: want EACCES, got %s" % (k, R[k]))
        check(R["parent_fd_via_proc"][0] == "E", "/proc/PPID/fd: %s" % R["parent_fd_via_proc"])
        for k in ("o_path", "write_only"):
            got = R[k] if isinstance(R[k], dict) else R[k][1] if R[k][0] == "opened" else R[k]
            check(isinstance(got, dict) and all(v == EBADF for v in got.values()),
                  "%s: want EBADF from every read call, got %s" % (k, R[k]))
        check(R["public"][0] == "opened" and
              all(v[0] == "ok" and not v[2] for v in R["public"][1].values()),
              "a readable file: %s" % R["public"])
        check(R["descriptor_scan_leaks"] == [],
              "descriptors that return the secret: %s" % R["descriptor_scan_leaks"])
        check(R["recycled_wrong"] == [] and plain["recycled_wrong"] == [],
              "files on a recycled inode read wrong: %s" % R["recycled_wrong"])
        if recycled == 0:
            print("note: no inode number was recycled (plain run: %d)" % plain_recycled)
        print("secret_fork: inode number recycled %d times (plain %d)" % (recycled, plain_recycled))
    finally:
        shutil.rmtree(stats_dir, ignore_errors=True)
        if base != E.work:
            shutil.rmtree(base, ignore_errors=True)


def fincore_bytes(path):
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", path],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return int(out.split()[0])


def drop(path):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


# Reads of a part of the file under the preload: 1 MiB reads of the first
# 20 MiB, then scattered 64 KiB preads in the rest (prints the bytes read).
PARTIAL = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
n = 0
for off in range(0, 20 << 20, 1 << 20):
    n += len(os.pread(fd, 1 << 20, off))
for off in range(21 << 20, 32 << 20, 3 << 20):
    n += len(os.pread(fd, 64 << 10, off + 12345))
print(n)
"""


def case_kernel_cache(E):
    if not shutil.which("fincore"):
        print("SKIP: no fincore")
        return
    size = 32 << 20
    data = pattern(size)
    path = E.file("kcache", data)
    os.sync()
    drop(path)
    before = fincore_bytes(path)
    # Control: a plain cat leaves the file in the kernel's cache.
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
    check(fincore_bytes(path) > size // 2, "control: plain cat did not fill the kernel cache")
    direct = direct_works(E)
    # (name, environment, the counter that must show the mode was taken)
    modes = [("auto", {}, "direct_bytes")] if direct else []
    modes.append(("off", {"UPCACHE_DIRECT": "off"}, "buffered_bytes"))
    modes.append(("nodirect", {"UPCACHE_FAULT": "nodirect"}, "buffered_bytes"))
    if direct:
        # O_DIRECT refused mid-file (EINVAL at 8 MiB): the buffered fallback
        # must drop what it pulled in, as the buffered mode does.
        modes.append(("einval_at=8M", {"UPCACHE_FAULT": "einval_at=8M"}, "buffered_bytes"))
    for name, extra, counter in modes:
        drop(path)
        check(fincore_bytes(path) <= before, "the file's pages were not dropped")
        p, c = stat_run(E, ["cat", path], **extra)
        check(p.returncode == 0 and p.stdout == data, "kernel_cache %s: output differs" % name)
        check(c.get(counter, 0) > 0, "kernel_cache %s: no %s (mode not taken): %s" % (name, counter, c))
        if name == "einval_at=8M":
            check(c.get("direct_bytes", 0) > 0, "einval_at=8M: nothing read directly first: %s" % c)
        res = fincore_bytes(path)
        check(res <= size // 32, "%s: %d of %d bytes in the kernel cache after the read"
              % (name, res, size))
        print("%s: %d bytes of %d in the kernel cache after cat" % (name, res, size))
        # A partial read (no end of file to stop the kernel's own readahead).
        drop(path)
        p, c = stat_run(E, [sys.executable, "-c", PARTIAL, path], **extra)
        want = 20 * (1 << 20) + 4 * (64 << 10)
        check(p.returncode == 0 and p.stdout.split() == [b"%d" % want],
              "kernel_cache %s partial: %r %r" % (name, p.stdout, p.stderr[-300:]))
        check(c.get(counter, 0) > 0, "kernel_cache %s partial: no %s: %s" % (name, counter, c))
        res = fincore_bytes(path)
        check(res <= size // 32, "%s partial: %d of %d bytes in the kernel cache after the reads"
              % (name, res, size))
        print("%s partial: %d bytes of %d in the kernel cache" % (name, res, size))


def case_load(E):
    path = os.path.join(E.work, "load")
    subprocess.run([E.reader, "--make", path, str(64 << 20)], check=True)
    ops = 600 if E.sanitized else 2000
    for extra in ({"UPCACHE_SIZE": "8M"},
                  {"UPCACHE_SIZE": "8M", "UPCACHE_PAGE_SIZE": "4K"},
                  {"UPCACHE_SIZE": "8M", "UPCACHE_DIRECT": "off", "UPCACHE_ASYNC": "threads"}):
        for seed in (1, 2):
            E.clear_stats()
            p = E.run([E.reader, path, "4", str(ops), str(seed)], timeout=900,
                      UPCACHE_STATS_KEEP=1, **extra)
            sys.stdout.write(p.stdout.decode())
            check(p.returncode == 0, "load %s seed %d: exit %d %s" % (extra, seed, p.returncode,
                                                                     p.stderr.decode()[-500:]))
            c = E.counters(None)
            check(c.get("evictions", 0) > 0 and c.get("bytes_read", 0) > 0,
                  "load %s: no eviction pressure / not cached: %s" % (extra, c))


HUGE_DIR = "/sys/kernel/mm/hugepages/hugepages-2048kB"


def huge_free():
    try:
        with open(os.path.join(HUGE_DIR, "free_hugepages")) as f:
            return int(f.read())
    except OSError:
        return None


def case_hugepages(E):
    """UPCACHE_HUGEPAGES=1: the cache on reserved 2 MiB pages when enough are
    free (every byte right, four threads, a cache an eighth of the file),
    else one upcache line and ordinary pages."""
    data = pattern((3 << 20) + 77)
    path = E.file("huge", data)
    plain = E.run(["cat", path], preload=False)
    free = huge_free()
    # Too few free: a cache larger than every free huge page (ordinary
    # memory is committed lazily, so the size costs nothing).
    want = ((free or 0) + 16) * (2 << 20)
    p = E.run(["cat", path], UPCACHE_HUGEPAGES=1, UPCACHE_SIZE=str(want))
    check(p.returncode == 0 and p.stdout == plain.stdout, "too few huge pages: exit %d, output %s"
          % (p.returncode, "same" if p.stdout == plain.stdout else "differs"))
    check(one_upcache_line(p.stderr, "UPCACHE_HUGEPAGES", "huge pages"),
          "too few huge pages: want one upcache line, got %r" % p.stderr)
    if free is None or os.geteuid() != 0:
        print("SKIP the granted case: needs root and %s" % HUGE_DIR)
        return
    nr = os.path.join(HUGE_DIR, "nr_hugepages")
    with open(nr) as f:
        before = int(f.read())
    try:
        with open(nr, "w") as f:
            f.write(str(before + 16))  # 32 MiB: the 8 MiB cache and its metadata
        if huge_free() < free + 8:
            print("SKIP the granted case: the kernel could not reserve huge pages")
            return
        big = os.path.join(E.work, "huge-load")
        subprocess.run([E.reader, "--make", big, str(64 << 20)], check=True)
        E.clear_stats()
        p = E.run([E.reader, big, "4", "600" if E.sanitized else "2000", "3"], timeout=900,
                  UPCACHE_HUGEPAGES=1, UPCACHE_SIZE="8M", UPCACHE_LOG_LEVEL=2,
                  UPCACHE_STATS_KEEP=1)
        sys.stdout.write(p.stdout.decode())
        check(p.returncode == 0, "on huge pages: exit %d %s" % (p.returncode, p.stderr.decode()[-500:]))
        check(b"lies on reserved huge pages" in p.stderr,
              "on huge pages: the cache did not say it lies on them: %r" % p.stderr[-500:])
        c = E.counters(None)
        check(c.get("evictions", 0) > 0 and c.get("hits", 0) > 0,
              "on huge pages: no eviction pressure / no hits: %s" % c)
        q = E.run(["cat", path], UPCACHE_HUGEPAGES=1, UPCACHE_SIZE="8M")
        check(q.stdout == plain.stdout and q.stderr == b"", "on huge pages: cat: stderr %r" % q.stderr)
    finally:
        with open(nr, "w") as f:
            f.write(str(before))


def case_fork_kill(E):
    path = os.path.join(E.work, "forkkill")
    subprocess.run([E.reader, "--make", path, str(128 << 20)], check=True)
    kills = 30
    # O_DIRECT with UPCACHE_ASYNC=uring (the parent starts on io_uring and
    # moves to threads at its first fork: Backend::before_fork), then the
    # thread engine, where the directory takes O_DIRECT (tmpfs does since
    # Linux 6.6); the buffered path always. The cache is an eighth of the file.
    engines = [{"UPCACHE_ASYNC": "uring"}, {"UPCACHE_ASYNC": "threads"}] if direct_works(E) else []
    engines.append({"UPCACHE_DIRECT": "off"})
    for seed, extra in enumerate(engines, 1):
        p = E.run([E.fork_kill, path, "3", str(kills), str(seed)], timeout=600,
                  UPCACHE_SIZE="16M", **extra)
        out = p.stdout.decode()
        sys.stdout.write(out)
        m = dict(kv.split("=") for kv in out.split()[1:]) if out.startswith("ok ") else {}
        check(p.returncode == 0 and m, "fork_kill %s: exit %d %s %s" % (
            extra, p.returncode, out[-500:], p.stderr.decode()[-500:]))
        if m:
            check(int(m["kills"]) >= kills and int(m["forced_reads"]) >= 2 * kills
                  and int(m["zombie_rounds"]) > 0 and int(m["in_read"]) > 0,
                  "fork_kill %s: the rounds did not happen as planned: %s" % (extra, out))
        check(b"upcache" not in p.stderr, "fork_kill %s: upcache messages %r" % (extra, p.stderr[-500:]))


def case_close_race(E):
    # Threads read a descriptor (hits, mostly: the read() fast path and
    # pread) while another thread dup2s new descriptions onto it, releasing
    # the ones the readers may be using (shim/hazard.h). Plain first, the
    # program's own check; then preloaded, where the reads must be served
    # from the cache.
    p = E.run([E.close_race, E.work, "1"], preload=False, timeout=120)
    check(p.returncode == 0 and p.stdout.startswith(b"ok "), "close_race plain: %r %r" % (
        p.stdout[-300:], p.stderr[-300:]))
    p, c = stat_run(E, [E.close_race, E.work, "3"], timeout=300)
    sys.stdout.write(p.stdout.decode())
    check(p.returncode == 0 and p.stdout.startswith(b"ok "), "close_race: %r %r" % (
        p.stdout[-300:], p.stderr[-300:]))
    check(c.get("hits", 0) > 10000, "close_race: the reads were not served from the cache: %s" % c)
    check(b"upcache" not in p.stderr, "close_race: upcache messages %r" % p.stderr[-500:])


def case_fork_engine(E):
    # A child asks for data it has not read (WILLNEED: the shim starts its
    # I/O threads) and forks at once; the grandchild does the same and reads
    # its bytes back (fork_engine.c). Plain first, the program's own check;
    # then preloaded with the thread engine, where the grandchildren must have
    # read through upcache.
    p = E.run([E.fork_engine, E.work, "4"], preload=False, timeout=120)
    check(p.returncode == 0 and p.stdout.startswith(b"ok "), "fork_engine plain: %r %r" % (
        p.stdout[-300:], p.stderr[-300:]))
    p, c = stat_run(E, [E.fork_engine, E.work, "40"], timeout=600, UPCACHE_ASYNC="threads")
    sys.stdout.write(p.stdout.decode())
    check(p.returncode == 0 and p.stdout.startswith(b"ok "), "fork_engine: %r %r" % (
        p.stdout[-300:], p.stderr[-300:]))
    check(c.get("readahead_pages", 0) > 0 and c.get("hits", 0) > 0,
          "fork_engine: nothing was read ahead or served from the cache: %s" % c)
    check(b"upcache" not in p.stderr, "fork_engine: upcache messages %r" % p.stderr[-500:])


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("case", choices=sorted(CASES))
    a = ap.parse_args()
    E = Env(a)
    try:
        CASES[a.case](E)
    finally:
        shutil.rmtree(E.work, ignore_errors=True)
    if FAILS:
        print("%d failure(s)" % len(FAILS))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
