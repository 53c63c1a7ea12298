#!/usr/bin/env python3
"""Cross-process coherence: a preloaded READER process caches a file; another
process (the WRITER) changes it; the reader's next read must return what the
file holds, never bytes the reader cached before the change.

A reader is peer.c under LD_PRELOAD=libupcache.so, holding the file open. It
first reads its regions twice, and `upcache stat --json` of it must show
cache hits (else a stale page could not be caught). Then the writer changes
the file and returns, the reader is told through the case's sync method,
reads again, and every byte must equal what a plain read of the file (this
driver, without the preload) gives at that moment. Then the writer closes,
the reader reads again (twice), and a second round of the change is checked.

usage: coherence_test.py --lib LIB --tool UPCACHE --peer PEER --stress STRESS
                         --dir DIR [--config default|small] [--seconds N]
                         [--keep] [--selftest] CASE
--selftest runs every process plain and checks no statistics: the kernel is
coherent, so every case must pass (a test of the tests).

The change cases (each runs every writer x sync combination):
  overwrite   lseek+write in place          pwrite     pwrite, near the end too
  truncate    ftruncate, truncate(path), open O_TRUNC; shrink then grow
  append      O_APPEND writes; the reader reads the new tail
  mmap        MAP_SHARED stores without msync; the mapping kept past close
  fallocate   PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE
  copy        copy_file_range, sendfile and splice into the file
  writers: python (this driver, plain), plain (peer), preload (peer with its own
  cache); syncs: pipe (a message), fcntl (F_SETLKW), flock, ofd (F_OFD_SETLKW),
  waitpid (the reader forks and execs the writer and waits for it).
SQLite (python's sqlite3, through read/pread):
  sqlite_delete, sqlite_wal   A (preloaded) queries while B commits; A
              read-write and read-only; B plain and preloaded, holding its
              connection or reconnecting for every transaction; every result
              equal to the run with A plain; integrity_check ok
  sqlite_large  a ~70 MB database scanned over and over by A while B commits
stress        writers (plain and preloaded) and preloaded readers exchange
              checksummed 4 KiB records under fcntl locks (stress.c), --seconds;
              phases paced (writers wait for the readers: leases are taken and
              broken), free, held (writers keeping the file open); a hung
              process is a FAIL with its threads' stacks (gdb)
Bad input:
  not_owner     the reader runs as a temporary user on a root-owned file (no
                lease possible); root writes
  other_owner   root reads (CAP_LEASE) a file owned by a temporary user who writes
  signal        the program uses the lease signal (SIGRTMAX-3) itself; also with
                UPCACHE_LEASE_SIGNAL moved
  never_close   a writer holds the file open O_RDWR and writes repeatedly (also
                when the reader itself opened the file O_RDWR)
  tmpfs         the file on /dev/shm
  leases_disabled  sysctl fs.leases-enable=0 (restored after)

Output: "ok ..." lines, "FAIL: ..." for every failure (exit 1), "SKIP: ..." when
the case cannot run here (exit 0).
"""

import argparse
import ctypes
import fcntl
import json
import mmap
import os
import pwd
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import sqlite_peer  # noqa: E402

CONFIGS = {
    "default": {},
    "small": {"UPCACHE_SIZE": "1M", "UPCACHE_PAGE_SIZE": "4K", "UPCACHE_MIN_FILE": "0"},
}
# What the coherence-aware library publishes (man upcache(7)).
PROCESS_COUNTERS = ("coherence_passthrough", "coherence_drops", "leases", "leases_broken")
COHERENCE_STATES = ("lease", "writer", "refused", "read-only", "weak")
ANSWER_TIMEOUT = 180  # a safety net for a hung peer, never a synchronization
SIGRTMAX = signal.SIGRTMAX

failures = []
shown = {}       # group -> failures printed
suppressed = {}  # group -> failures not printed


def fail(msg, group=None):
    """A failure; of a group (one scenario's reads) only the first 3 are
    printed, then a count (flush_failures)."""
    failures.append(msg)
    if group is not None:
        shown[group] = shown.get(group, 0) + 1
        if shown[group] > 3:
            suppressed[group] = suppressed.get(group, 0) + 1
            return
    print("FAIL: " + msg, flush=True)


class Track:
    """The scenario being run: its failure group and the file's versions."""
    group = None
    history = []
    failures = 0


def begin(group, path=None):
    Track.group, Track.history, Track.failures = group, [], len(failures)
    if path:
        remember(path)


def remember(path):
    Track.history.append(plain_read(path, 0, BIG))


def end():
    """Ends the scenario: True if it had no failure."""
    flush_failures(Track.group)
    ok = len(failures) == Track.failures
    Track.group, Track.history = None, []
    return ok


def flush_failures(group):
    n = suppressed.pop(group, 0)
    if n:
        print("FAIL: %s: %d more wrong reads (not shown)" % (group, n), flush=True)


def note(msg):
    print("ok   " + msg, flush=True)


class Skip(Exception):
    pass


class PeerError(Exception):
    pass


def crc(b):
    return "%08x" % zlib.crc32(b)


def fill(off, n, seed):
    """The bytes peer.c's fill() writes at file offset off."""
    return bytes((seed * 101 + ((o >> 12) * 31) + o * 7 + (o >> 9)) & 0xFF
                 for o in range(off, off + n))


def make_file(path, size, seed):
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(size))
    for p in range(0, size, 4096):  # every 4 KiB block says where it is
        stamp = b"@%015d" % p
        data[p:p + len(stamp)] = stamp[:size - p]
    with open(path, "wb") as f:
        f.write(data)
    return path


# ---------------------------------------------------------------- environment

class Ctx:
    def __init__(self, a):
        self.lib = os.path.abspath(a.lib)
        self.preload = self.lib
        # Sanitizer builds: the sanitizer runtime must be loaded first.
        runtime = os.environ.get("SANITIZER_PRELOAD", "")
        if runtime:
            self.preload = runtime + ":" + self.lib
        self.tool = os.path.abspath(a.tool)
        self.peer = os.path.abspath(a.peer)
        self.stress = os.path.abspath(a.stress) if a.stress else None
        self.config = a.config
        self.coherence = a.coherence
        self.seconds = a.seconds
        self.selftest = a.selftest
        self.base = os.path.abspath(a.dir)
        os.makedirs(self.base, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="coherence-", dir=self.base)
        self.stats_dir = os.path.join(self.dir, "stats")
        os.makedirs(self.stats_dir)

    def env(self, preload, extra=None):
        preload = preload and not self.selftest
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("UPCACHE_") or k == "LD_PRELOAD":
                del env[k]
        if preload:
            env["LD_PRELOAD"] = self.preload
            env["UPCACHE_STATS_DIR"] = self.stats_dir
            env.update(CONFIGS[self.config])
            if self.coherence:
                env["UPCACHE_COHERENCE"] = self.coherence
        if extra:
            env.update(extra)
        return env

    def path(self, name):
        return os.path.join(self.dir, name)

    def stats(self, pid, stats_dir=None, prefix=()):
        """The process entry of `upcache stat --json PID`, or None."""
        if self.selftest:
            return None
        p = subprocess.run(list(prefix) + [self.tool, "stat", "--json", str(pid)],
                           env=dict(self.env(False), UPCACHE_STATS_DIR=stats_dir or self.stats_dir),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if p.returncode != 0:
            fail("upcache stat --json %d: status %d: %s" % (pid, p.returncode,
                                                            p.stderr.decode()[-300:]))
            return None
        procs = json.loads(p.stdout)["processes"]
        if len(procs) != 1:
            fail("upcache stat --json %d: %d processes" % (pid, len(procs)))
            return None
        return procs[0]


def file_entry(proc, path):
    for f in proc.get("files", []):
        if f["path"] == path or os.path.basename(f["path"]) == os.path.basename(path):
            return f
    return None


def missing_counters(proc, what):
    """The coherence counters upcache stat --json lacks (a FAIL if any)."""
    c = proc["counters"]
    missing = [n for n in PROCESS_COUNTERS if n not in c]
    if missing:
        fail("%s: upcache stat --json has no process counter %s (it has: %s)"
             % (what, ", ".join(missing), ", ".join(sorted(c))))
    return missing


def check_hits(ctx, pid, path, what, **kw):
    """The reader served reads from its cache: a stale page would be seen."""
    proc = ctx.stats(pid, **kw)
    if proc is None:
        return
    hits = proc["counters"].get("hits", 0)
    f = file_entry(proc, path)
    if hits == 0 or f is None or f.get("hits", 0) == 0:
        fail("%s: the reader had no cache hits on %s before the change (process hits %d, file %s):"
             " the test could not catch a stale page" % (what, path, hits, f))


def check_lease_stats(ctx, pid, path, what, broken=True, state=None, passthrough=None, **kw):
    """The lease mechanism was exercised: leases taken and broken, pages
    dropped; the file's coherence state is a known one (or `state`)."""
    proc = ctx.stats(pid, **kw)
    if proc is None:
        return None
    if missing_counters(proc, what):
        return proc
    vals = {n: proc["counters"][n] for n in PROCESS_COUNTERS}
    if broken:
        for n in ("leases", "leases_broken", "coherence_drops"):
            if vals[n] < 1:
                fail("%s: process counter %s is %d after another process opened the file for "
                     "writing (counters %s)" % (what, n, vals[n], vals))
    if passthrough and vals["coherence_passthrough"] < 1:
        fail("%s: coherence_passthrough is 0: the reads were not passed to the kernel (%s)"
             % (what, vals))
    f = file_entry(proc, path)
    if f is None:
        fail("%s: no entry for %s in the reader's files" % (what, path))
        return proc
    if "coherence" not in f or "passthrough" not in f:
        fail("%s: the file entry has no \"coherence\" or \"passthrough\" field: %s" % (what, f))
        return proc
    if f["coherence"] not in COHERENCE_STATES:
        fail("%s: unknown coherence state %r" % (what, f["coherence"]))
    if state and f["coherence"] not in (state if isinstance(state, tuple) else (state,)):
        fail("%s: file coherence %r, expected %r (file entry %s)" % (what, f["coherence"], state, f))
    if passthrough and f["passthrough"] < 1:
        fail("%s: the file's passthrough counter is 0 (file entry %s)" % (what, f))
    return proc


# ---------------------------------------------------------------- peers

class Peer:
    """peer.c driven over a pipe; answers are lists of words after "ok"."""

    def __init__(self, ctx, name, preload, pass_fds=(), extra_env=None, prefix=(), env=None):
        self.name = name
        self.err = tempfile.TemporaryFile(dir=ctx.dir)
        self.p = subprocess.Popen(list(prefix) + [ctx.peer], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err,
                                  env=env or ctx.env(preload, extra_env), pass_fds=pass_fds)
        self.pending = []
        self.pid = int(self.cmd("pid")[0])

    def send(self, line):
        self.pending.append(line)
        try:
            self.p.stdin.write((line + "\n").encode())
            self.p.stdin.flush()
        except BrokenPipeError:
            self.pending = [line]
            self.answer()

    def status(self):
        rc = self.p.wait()
        if rc < 0:
            return "killed by signal %d (%s)" % (-rc, signal.Signals(-rc).name
                                                 if -rc in signal.valid_signals() else "?")
        return "exited with status %d" % rc

    def answer(self):
        line = self.pending.pop(0) if self.pending else "?"
        r, _, _ = select.select([self.p.stdout], [], [], ANSWER_TIMEOUT)
        out = self.p.stdout.readline() if r else b""
        if not out:
            if not r:
                self.kill()
                how = "no answer within %d s" % ANSWER_TIMEOUT
            else:
                how = self.status()
            raise PeerError("%s (pid %d): no answer to \"%s\": %s; stderr: %s"
                            % (self.name, self.pid if hasattr(self, "pid") else self.p.pid, line,
                               how, self.stderr()))
        words = out.decode().split()
        if words[0] != "ok":
            raise PeerError("%s: \"%s\" -> %s" % (self.name, line, out.decode().strip()))
        return words[1:]

    def cmd(self, line):
        self.send(line)
        return self.answer()

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")[-800:]

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()

    def close(self):
        if self.p.poll() is None:
            try:
                self.cmd("exit")
            except PeerError:
                pass
            self.p.stdin.close()
            try:
                self.p.wait(timeout=ANSWER_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self.err.close()


class PeerWriter:
    """A writer process (peer.c), plain or preloaded."""

    def __init__(self, ctx, preload, pass_fds=(), prefix=()):
        self.kind = "preload" if preload else "plain"
        self.peer = Peer(ctx, "writer(%s)" % self.kind, preload, pass_fds=pass_fds, prefix=prefix)

    def op(self, line):
        t = time.monotonic()
        r = self.peer.cmd(line)
        check_open_time(line, time.monotonic() - t)
        return r

    def getlk(self, off, n):
        return self.peer.cmd("getlk wr %d %d" % (off, n))[0]

    def close(self):
        self.peer.close()


def check_open_time(line, seconds):
    # The kernel gives a lease holder lease-break-time (45 s) to let go; a
    # writer that waited that long was not answered by the reader's library.
    if line.split()[0] in ("open", "truncate") and seconds > 30:
        fail("\"%s\" took %.1f s: the reader's lease was not released (the kernel broke it "
             "after lease-break-time)" % (line, seconds))


class PyWriter:
    """This driver as the writer: the same commands, executed with Python's os
    calls (no preload)."""
    kind = "python"
    MODES = {"rdonly": os.O_RDONLY, "rdwr": os.O_RDWR, "wronly": os.O_WRONLY,
             "append": os.O_WRONLY | os.O_APPEND, "trunc": os.O_RDWR | os.O_TRUNC}

    def __init__(self):
        self.fd = -1
        self.map = None
        self.map_off = 0
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]

    def op(self, line):
        w = line.split()
        n = [int(x) for x in w[1:] if x.lstrip("-").isdigit()]
        t = time.monotonic()
        try:
            return getattr(self, "do_" + w[0])(w, n)
        except OSError as e:
            raise PeerError("python writer: \"%s\": %s" % (line, e))
        finally:
            check_open_time(line, time.monotonic() - t)

    def do_open(self, w, n):
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(w[1], self.MODES[w[2] if len(w) > 2 else "rdonly"])
        return [str(self.fd)]

    def do_close(self, w, n):
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1
        return []

    def write_all(self, data, off=None):
        done = 0
        while done < len(data):
            if off is None:
                done += os.write(self.fd, data[done:])
            else:
                done += os.pwrite(self.fd, data[done:], off + done)
        return [str(done)]

    def do_write(self, w, n):
        os.lseek(self.fd, n[0], os.SEEK_SET)
        return self.write_all(fill(n[0], n[1], n[2]))

    def do_pwrite(self, w, n):
        return self.write_all(fill(n[0], n[1], n[2]), n[0])

    def do_append(self, w, n):
        return self.write_all(fill(os.fstat(self.fd).st_size, n[0], n[1]))

    def do_ftruncate(self, w, n):
        os.ftruncate(self.fd, n[0])
        return []

    def do_truncate(self, w, n):
        os.truncate(w[1], n[0])
        return []

    def fallocate(self, mode, off, length):
        if self.libc.fallocate(self.fd, mode, off, length) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return []

    def do_punch(self, w, n):
        return self.fallocate(0x02 | 0x01, n[0], n[1])  # PUNCH_HOLE | KEEP_SIZE

    def do_zero(self, w, n):
        return self.fallocate(0x10, n[0], n[1])  # ZERO_RANGE

    def do_copy(self, w, n):
        src = os.open(w[1], os.O_RDONLY)
        try:
            done = 0
            while done < n[2]:
                r = os.copy_file_range(src, self.fd, n[2] - done, n[0] + done, n[1] + done)
                if r <= 0:
                    raise OSError(5, "copy_file_range returned %d" % r)
                done += r
            return [str(done)]
        finally:
            os.close(src)

    def do_sendfile(self, w, n):
        src = os.open(w[1], os.O_RDONLY)
        try:
            os.lseek(self.fd, n[1], os.SEEK_SET)
            done = 0
            while done < n[2]:
                r = os.sendfile(self.fd, src, n[0] + done, n[2] - done)
                if r <= 0:
                    raise OSError(5, "sendfile returned %d" % r)
                done += r
            return [str(done)]
        finally:
            os.close(src)

    def do_splice(self, w, n):
        src = os.open(w[1], os.O_RDONLY)
        pr, pw = os.pipe()
        try:
            done = 0
            while done < n[2]:
                got = os.splice(src, pw, min(65536, n[2] - done), offset_src=n[0] + done)
                if got <= 0:
                    raise OSError(5, "splice returned %d" % got)
                while got > 0:
                    r = os.splice(pr, self.fd, got, offset_dst=n[1] + done)
                    got -= r
                    done += r
            return [str(done)]
        finally:
            os.close(src)
            os.close(pr)
            os.close(pw)

    def do_mmap(self, w, n):
        off, length, seed = n[0], n[1], n[2]
        self.do_munmap(w, n)
        self.map_off = off // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
        self.map = mmap.mmap(self.fd, off + length - self.map_off, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE, offset=self.map_off)
        self.map[off - self.map_off:off - self.map_off + length] = fill(off, length, seed)
        if w[4] == "unmap":
            self.do_munmap(w, n)
        return []

    def do_mstore(self, w, n):
        off, length, seed = n[0], n[1], n[2]
        self.map[off - self.map_off:off - self.map_off + length] = fill(off, length, seed)
        return []

    def do_munmap(self, w, n):
        if self.map is not None:
            self.map.close()
        self.map = None
        return []

    def do_notify(self, w, n):
        os.write(int(w[1]), (" ".join(w[2:]) + "\n").encode())
        return []

    def do_lock(self, w, n):
        typ = {"rd": fcntl.F_RDLCK, "wr": fcntl.F_WRLCK, "un": fcntl.F_UNLCK}[w[1]]
        fcntl.fcntl(self.fd, fcntl.F_SETLKW, struct.pack("hhqqi", typ, 0, n[0], n[1], 0))
        return []

    def do_ofd(self, w, n):
        typ = {"rd": fcntl.F_RDLCK, "wr": fcntl.F_WRLCK, "un": fcntl.F_UNLCK}[w[1]]
        fcntl.fcntl(self.fd, fcntl.F_OFD_SETLKW, struct.pack("hhqqi", typ, 0, n[0], n[1], 0))
        return []

    def do_flock(self, w, n):
        fcntl.flock(self.fd, {"sh": fcntl.LOCK_SH, "ex": fcntl.LOCK_EX, "un": fcntl.LOCK_UN}[w[1]])
        return []

    def getlk(self, off, length):
        r = fcntl.fcntl(self.fd, fcntl.F_GETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, off, length, 0))
        typ, _, _, _, pid = struct.unpack("hhqqi", r[:struct.calcsize("hhqqi")])
        return "none" if typ == fcntl.F_UNLCK else str(pid)

    def close(self):
        self.do_munmap(None, None)
        self.do_close(None, None)


# ---------------------------------------------------------------- checking reads

def plain_read(path, off, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, off)
    finally:
        os.close(fd)


def reader_read(reader, kind, off, length):
    if kind == "read":
        return reader.cmd("read %d %d" % (off, length))
    if kind == "preadv":
        return reader.cmd("preadv %d %d" % (off, length))
    reader.cmd("lseek %d set" % off)
    return reader.cmd("%s %d" % (kind, length))  # readseq | readv


def block_ranges(blocks):
    out, start = [], None
    for i, b in enumerate(blocks + [None]):
        if b is not None and start is None:
            start = i
        if b is None and start is not None:
            out.append("%d..%d" % (start, i - 1) if i - 1 > start else str(start))
            start = None
    return ",".join(out)


def check_regions(reader, path, regions, what, before=None, group=None):
    """Every region as the reader reads it must equal the plain bytes of the
    file now. `before`: the file's earlier contents (bytes, or a list of
    them), to tell a stale block from another wrong one."""
    versions = Track.history if before is None else before if isinstance(before, list) else [before]
    group = group or Track.group
    bad = 0
    for kind, off, length in regions:
        ans = reader_read(reader, kind, off, length)
        want = plain_read(path, off, length)
        n, h, blocks = int(ans[0]), ans[1], ans[2:]
        if n == len(want) and h == crc(want):
            continue
        bad += 1
        wblocks = [crc(want[b:b + 4096]) for b in range(0, len(want), 4096)]
        diff = [i if i >= len(wblocks) or i >= len(blocks) or blocks[i] != wblocks[i] else None
                for i in range(max(len(blocks), len(wblocks)))]
        stale = ""
        olds = [v[off:off + length] for v in versions]
        oblocks = [set() for _ in blocks]
        for old in olds:
            for i in range(min(len(blocks), (len(old) + 4095) // 4096)):
                oblocks[i].add(crc(old[i * 4096:i * 4096 + 4096]))
        st = [i for i in range(len(blocks)) if diff[i] is not None and blocks[i] in oblocks[i]]
        if st:
            stale = "; blocks %s hold bytes of an earlier version of the file (stale)" % \
                    block_ranges([i if i in st else None for i in range(len(blocks))])
        if n != len(want) and any(n == len(old) for old in olds):
            stale += "; the length is that of an earlier version"
        fail("%s: %s(%d, %d): the preloaded reader got %d bytes crc %s, the file has %d bytes "
             "crc %s; 4 KiB blocks differing (from the offset): %s%s"
             % (what, kind, off, length, n, h, len(want), crc(want), block_ranges(diff), stale),
             group)
    return bad == 0


# ---------------------------------------------------------------- the change matrix

FILE_SIZE = (1 << 20) + 5000  # 1 MiB and a bit: a partial last page
BIG = 3 << 20                 # a read past every size a change makes


class Change:
    """One kind of change: `ops(k)` the writer commands of round k; `mode`
    the writer's open mode (None: it does not need the file open);
    `regions(size)` extra regions to check; `after_close(k)` commands run
    after the writer closed (then checked again)."""

    def __init__(self, name, ops, mode="rdwr", regions=None, after_close=None, python=True,
                 needs=None):
        self.name, self.ops, self.mode = name, ops, mode
        self.regions = regions or (lambda size: [])
        self.after_close = after_close
        self.needs = needs  # a probe: can this filesystem do it


def std_regions(size):
    return [("read", 0, BIG), ("read", 4000, 70000), ("readseq", 150000, 100000),
            ("readv", 290000, 60000), ("preadv", size - 20000, 40000)]


def changes_for(case, ctx):
    src = ctx.path("source.bin")
    if not os.path.exists(src):
        make_file(src, 400000, 77)
    p = ctx.path("file.bin")
    if case == "overwrite":
        return [Change("write", lambda k: ["write 150001 70000 %d" % k, "write 5 1 %d" % k,
                                           "write 1040000 13000 %d" % k])]
    if case == "pwrite":
        return [Change("pwrite", lambda k: ["pwrite 300000 40000 %d" % k,
                                            "pwrite %d 4000 %d" % (FILE_SIZE - 4000, k),
                                            "pwrite 16383 2 %d" % k])]
    if case == "truncate":
        shrink_grow = lambda k: 400000 + 1234 if k == 1 else 900000 + 77  # noqa: E731
        ends = lambda size: [("read", 400000 + 1234 - 100, 8192), ("read", 400000 + 1234 + 10, 4096),
                             ("read", 900000 + 77 - 3000, 8192), ("read", FILE_SIZE - 4096, 8192),
                             ("readseq", 399000, 20000)]  # noqa: E731
        return [Change("ftruncate", lambda k: ["ftruncate %d" % shrink_grow(k)], regions=ends),
                Change("truncate(path)", lambda k: ["truncate %s %d" % (p, shrink_grow(k))],
                       mode=None, regions=ends),
                Change("open O_TRUNC", lambda k: ["pwrite 0 %d %d" % (300000 + 200000 * k, k)],
                       mode="trunc", regions=lambda size: [("read", 299000, 8192),
                                                           ("read", 499000, 8192)])]
    if case == "append":
        tail = lambda size: [("read", FILE_SIZE - 100, 200000), ("read", FILE_SIZE + 30000 - 50, 100),
                             ("readseq", FILE_SIZE - 5000, 100000)]  # noqa: E731
        return [Change("append", lambda k: ["append 30000 %d" % k, "append 7 %d" % k], mode="append",
                       regions=tail)]
    if case == "mmap":
        return [Change("mmap store kept past close",
                       lambda k: ["mmap 200000 50000 %d keep" % k],
                       after_close=lambda k: ["mstore 230000 3000 %d" % (k + 50)]),
                Change("mmap store then munmap", lambda k: ["mmap 600001 30000 %d unmap" % k])]
    if case == "fallocate":
        return [Change("punch hole", lambda k: ["punch %d 131072" % (65536 * k), "punch 300001 50000"]),
                Change("zero range", lambda k: ["zero %d 70000" % (500000 + k * 1000)],
                       needs="zero")]
    if case == "copy":
        return [Change("copy_file_range", lambda k: ["copy %s %d 200000 100000" % (src, k),
                                                     "copy %s 0 1045000 20000" % src]),
                Change("sendfile", lambda k: ["sendfile %s %d 600000 70000" % (src, 1000 * k)]),
                Change("splice", lambda k: ["splice %s 5 %d 90000" % (src, 20000 + k)])]
    raise ValueError(case)


def fs_can_zero_range(path):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    probe = path + ".probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 8192)
        return libc.fallocate(fd, 0x10, 0, 4096) == 0
    finally:
        os.close(fd)
        os.unlink(probe)


LOCKS = {"fcntl": ("lock wr 0 0", "lock rd 0 0", "lock un 0 0"),
         "flock": ("flock ex", "flock sh", "flock un"),
         "ofd": ("ofd wr 0 0", "ofd rd 0 0", "ofd un 0 0")}


class Scenario:
    """One reader, one writer, one sync method, one change, two rounds."""

    def __init__(self, ctx, change, writer_kind, sync, reader_env=None, path=None):
        self.ctx, self.change, self.writer_kind, self.sync = ctx, change, writer_kind, sync
        self.path = path or ctx.path("file.bin")
        self.what = "%s, writer %s, sync %s" % (change.name, writer_kind, sync)
        self.reader_env = reader_env

    def run(self):
        ctx = self.ctx
        make_file(self.path, FILE_SIZE, 1)
        begin(self.what, self.path)
        rfd, wfd = os.pipe()
        reader = writer = None
        try:
            reader = Peer(ctx, "reader", True, pass_fds=(rfd,), extra_env=self.reader_env)
            if self.writer_kind == "python":
                writer = PyWriter()
            elif self.sync != "waitpid":
                writer = PeerWriter(ctx, self.writer_kind == "preload", pass_fds=(wfd,))
            reader.cmd("open %s rdonly" % self.path)
            regions = std_regions(FILE_SIZE) + self.change.regions(FILE_SIZE)
            for _ in range(2):  # cached, then served from the cache
                for kind, off, length in regions:
                    reader_read(reader, kind, off, length)
            check_hits(ctx, reader.pid, self.path, self.what)
            for k in (1, 2):
                what = "%s, round %d" % (self.what, k)
                remember(self.path)
                self.change_once(reader, writer, k, rfd, wfd, regions, what)
                check_regions(reader, self.path, regions, what + ", after the writer closed")
                check_regions(reader, self.path, regions, what + ", after the writer closed, again")
                if self.change.after_close and writer is not None:
                    remember(self.path)
                    for op in self.change.after_close(k):
                        writer.op(op)
                    check_regions(reader, self.path, regions,
                                  what + ", a store into the mapping after close")
                    writer.op("munmap")
                    check_regions(reader, self.path, regions, what + ", after munmap")
            check_lease_stats(ctx, reader.pid, self.path, self.what)
        except PeerError as e:
            fail("%s: %s" % (self.what, e))
        finally:
            if end():
                note(self.what)
            if writer is not None:
                writer.close()
            if reader is not None:
                reader.close()
            os.close(rfd)
            os.close(wfd)

    def change_once(self, reader, writer, k, rfd, wfd, regions, what):
        ch, path = self.change, self.path
        ops = ch.ops(k)
        opened = ch.mode is not None or self.sync in LOCKS
        open_cmd = "open %s %s" % (path, ch.mode or "rdwr")
        if self.sync == "waitpid":
            batch = ([open_cmd] if ch.mode else []) + ops + (["close"] if ch.mode else [])
            reader.cmd("spawn %s %s" % (self.writer_kind, ";".join(batch)))
            status = reader.cmd("wait")[0]
            if status != "0":
                raise PeerError("the spawned writer exited with %s" % status)
            check_regions(reader, path, regions, what)
            return
        if self.sync == "pipe":
            reader.send("waitpipe %d" % rfd)
            if opened:
                writer.op(open_cmd)
            for op in ops:
                writer.op(op)
            writer.op("notify %d change %d" % (wfd, k))
            msg = reader.answer()
            if msg != ["change", str(k)]:
                raise PeerError("the reader got %r through the pipe" % msg)
            check_regions(reader, path, regions, what)
        else:
            lock_w, lock_r, unlock = LOCKS[self.sync]
            writer.op(open_cmd)
            writer.op(lock_w)
            reader.send(lock_r)  # blocks until the writer unlocks
            for op in ops:
                writer.op(op)
            writer.op(unlock)
            reader.answer()
            check_regions(reader, path, regions, what + " (reader holding its lock)")
            if self.sync == "fcntl":
                # The reader's reads must not have dropped its POSIX lock (a
                # close of any descriptor of the file by the process would).
                holder = writer.getlk(0, 0)
                if holder != str(reader.pid):
                    fail("%s: after its reads the reader (pid %d) no longer holds its fcntl read "
                         "lock (F_GETLK: %s)" % (what, reader.pid, holder))
            reader.cmd(unlock)
        if opened:
            writer.op("close")


def writer_sync_matrix():
    combos = [(w, s) for w in ("python", "plain", "preload") for s in ("pipe", "fcntl", "flock", "ofd")]
    combos += [("plain", "waitpid"), ("preload", "waitpid")]
    return combos


def case_change(ctx, case):
    for ch in changes_for(case, ctx):
        if ch.needs == "zero" and not fs_can_zero_range(ctx.path("file.bin")):
            note("%s: skipped, the filesystem has no FALLOC_FL_ZERO_RANGE" % ch.name)
            continue
        for writer, sync in writer_sync_matrix():
            Scenario(ctx, ch, writer, sync).run()


# ---------------------------------------------------------------- SQLite

def sqlite_proc(ctx, role, args, preload, pass_fds=(), extra_env=None):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "sqlite_peer.py"), role] + args,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=tempfile.TemporaryFile(dir=ctx.dir),
                            env=ctx.env(preload, extra_env), pass_fds=pass_fds)


def sql_cmd(p, line, who):
    p.stdin.write((line + "\n").encode())
    p.stdin.flush()
    r, _, _ = select.select([p.stdout], [], [], ANSWER_TIMEOUT)
    out = p.stdout.readline() if r else b""
    if not out:
        p.kill()
        raise PeerError("%s: no answer to \"%s\"" % (who, line))
    return json.loads(out)


SQL_STEPS = 20
# (A's open, B preloaded, B's connection): A read-only under a lease when B
# reconnects for every transaction (no one holds the file open for writing
# between them), passed through while B holds it; A read-write (A itself
# holds it open for writing: passed through).
SQL_RUNS = [("ro", False, "reopen"), ("ro", True, "reopen"), ("ro", False, "hold"),
            ("ro", True, "hold"), ("rw", False, "hold"), ("rw", True, "reopen")]


def sqlite_run(ctx, db, journal, a_mode, a_pre, b_pre, b_conn):
    """The scripted sequence: B's step k, then A's queries. Returns A's
    results, the integrity checks, A's pid and stats."""
    sqlite_peer.create_db(db, journal)
    b = sqlite_proc(ctx, "writer", [db, b_conn], b_pre)
    a = sqlite_proc(ctx, "reader", [db, a_mode], a_pre)
    results, stats = [], None
    try:
        results.append(sql_cmd(a, "query 0", "A"))
        results.append(sql_cmd(a, "query 0", "A"))
        for k in range(1, SQL_STEPS + 1):
            r = sql_cmd(b, "step %d" % k, "B")
            if r != "ok":
                raise PeerError("B step %d: %s" % (k, r))
            results.append(sql_cmd(a, "query %d" % k, "A"))
        ia = sql_cmd(a, "integrity", "A")
        ib = sql_cmd(b, "integrity", "B")
        if a_pre:
            stats = ctx.stats(a.pid)
        sql_cmd(a, "exit", "A")
        sql_cmd(b, "exit", "B")
        a.wait()
        b.wait()
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()
    c = sqlite3_plain(db)
    ip = sqlite_peer.integrity(c)
    c.close()
    return results, (ia, ib, ip), stats


def sqlite3_plain(db):
    import sqlite3
    return sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=60)


def case_sqlite(ctx, journal):
    db = ctx.path("shared.db")
    ref, ref_integrity, _ = sqlite_run(ctx, db, journal, "rw", False, False, "hold")
    if any(r != ["ok"] for r in ref_integrity):
        fail("sqlite %s: the plain reference run: integrity_check %s" % (journal, ref_integrity))
    for a_mode, b_pre, b_conn in SQL_RUNS:
        what = "sqlite %s: A %s preloaded, B %s %s" % (
            journal, a_mode, "preloaded" if b_pre else "plain", b_conn)
        try:
            res, integ, stats = sqlite_run(ctx, db, journal, a_mode, True, b_pre, b_conn)
        except PeerError as e:
            fail("%s: %s" % (what, e))
            continue
        bad = [i for i, (x, y) in enumerate(zip(ref, res)) if x != y]
        if len(res) != len(ref) or bad:
            i = bad[0] if bad else min(len(res), len(ref))
            got = res[i] if i < len(res) else None
            want = ref[i] if i < len(ref) else None
            if isinstance(got, dict) and isinstance(want, dict) and "error" not in got:
                keys = [q for q in want if want[q] != got.get(q)]
                got, want = {q: got.get(q) for q in keys}, {q: want[q] for q in keys}
            fail("%s: %d of %d query rounds differ from the run with A plain; the first, "
                 "after B's step %d: preloaded %s, plain %s"
                 % (what, len(bad), len(ref), max(i - 1, 0), json.dumps(got)[:600],
                    json.dumps(want)[:600]))
        if any(r != ["ok"] for r in integ):
            fail("%s: integrity_check (A, B, plain): %s" % (what, integ))
        if stats is not None:
            f = file_entry(stats, db)
            if a_mode == "ro" and b_conn == "reopen":
                hits = stats["counters"].get("hits", 0)
                if hits == 0 or f is None or f.get("hits", 0) == 0:
                    fail("%s: A had no cache hits on the database (process hits %d, file %s):"
                         " the read-only reader must be cached under a lease"
                         % (what, hits, f))
            if a_mode == "rw" and ctx.coherence == "locks":
                # Served, checked at each of SQLite's locks (upcache(7)).
                if f is None or f.get("coherence") != "locks" or f.get("hits", 0) == 0:
                    fail("%s: with UPCACHE_COHERENCE=locks the read-write reader must be served "
                         "(state \"locks\", hits), file entry %s" % (what, f))
            elif a_mode == "rw" and f is not None:
                if f.get("coherence") != "writer":
                    fail("%s: A opened the database read-write: its coherence must be "
                         "\"writer\" (passed through), file entry %s" % (what, f))
        if not [m for m in failures if m.startswith(what)]:
            note("%s: %d query rounds equal to the plain run, integrity ok"
                 % (what, len(res)))


def case_sqlite_large(ctx):
    base = os.path.join(ctx.base, "large-%d.db" % sqlite_peer.LARGE_ROWS)
    sqlite_peer.create_large_db(base)
    db = ctx.path("large.db")
    shutil.copyfile(base, db)
    rfd, wfd = os.pipe()
    a = sqlite_proc(ctx, "scanner", [db, str(rfd)], True, pass_fds=(rfd,))
    os.close(rfd)
    b = sqlite_proc(ctx, "updater", [db], False)
    commits = 8
    try:
        c = sqlite3_plain(db)
        first = sqlite_peer.scan(c)
        c.close()
        for k in range(0, commits + 1):
            if k > 0:
                r = sql_cmd(b, "update %d" % k, "B")
                if r != "ok":
                    raise PeerError("B update %d: %s" % (k, r))
            c = sqlite3_plain(db)
            ref = sqlite_peer.scan(c)
            c.close()
            os.write(wfd, b"commit %d\n" % k)
            r, _, _ = select.select([a.stdout], [], [], ANSWER_TIMEOUT)
            line = a.stdout.readline() if r else b""
            if not line:
                raise PeerError("the scanner did not answer after commit %d" % k)
            got = json.loads(line)
            if got.get("commit") != k or got.get("scan") != ref:
                fail("sqlite_large: A's first scan after B's commit %d: %s; plain right after the "
                     "commit: %s (before any commit: %s)" % (k, got, ref, first))
        stats = ctx.stats(a.pid)
        os.write(wfd, b"stop\n")
        r, _, _ = select.select([a.stdout], [], [], ANSWER_TIMEOUT)
        end = json.loads(a.stdout.readline() or b"{}") if r else {}
        sql_cmd(b, "exit", "B")
        c = sqlite3_plain(db)
        integ = sqlite_peer.integrity(c)
        c.close()
        if integ != ["ok"]:
            fail("sqlite_large: integrity_check: %s" % integ)
        if stats is not None:
            f = file_entry(stats, db)
            hits = stats["counters"].get("hits", 0)
            if hits == 0 or f is None or f.get("hits", 0) == 0:
                fail("sqlite_large: A had no cache hits on the database (process hits %d, file %s)"
                     % (hits, f))
        if not [m for m in failures if m.startswith("sqlite_large")]:
            note("sqlite_large: %d commits, every first scan after one equal to the plain scan "
                 "(%s scans in all, %d MB)" % (commits, end.get("scans"), os.path.getsize(db) >> 20))
    except PeerError as e:
        fail("sqlite_large: %s" % e)
    finally:
        os.close(wfd)
        for p in (a, b):
            if p.poll() is None:
                p.kill()
            p.wait()


# ---------------------------------------------------------------- stress

STRESS_SLOTS = 256  # 1 MiB


def case_stress(ctx):
    """Writers (plain and preloaded) and preloaded readers exchanging
    checksummed records (stress.c) for --seconds, in three phases:
    paced: two writers open, write and close for every record and wait until
    every reader acknowledged it after reading on (the readers take leases
    and cache between records, the next open breaks them); free: four
    writers open for every record (or every 7th) as fast as they can;
    held: two of the four keep the file open O_RDWR all along."""
    live = []
    try:
        stress_phases(ctx, live)
    except subprocess.TimeoutExpired as e:
        fail("stress: \"%s\" did not finish within %d s: a process is hung (a reader that never "
             "acknowledges, a writer that never gets its open or lock); their threads follow"
             % (" ".join(os.path.basename(a) for a in e.cmd[1:4]), e.timeout))
        diagnose_hang(live)
    finally:
        for p in live:
            if p.poll() is None:
                p.kill()
            p.wait()


def diagnose_hang(procs):
    """Where the live processes wait: each thread's kernel wait channel, and
    the stacks when gdb is there."""
    for p in procs:
        if p.poll() is not None:
            continue
        print("     pid %d: %s" % (p.pid, " ".join(p.args[1:4])))
        for t in sorted(os.listdir("/proc/%d/task" % p.pid)):
            try:
                comm = open("/proc/%d/task/%s/comm" % (p.pid, t)).read().strip()
                wchan = open("/proc/%d/task/%s/wchan" % (p.pid, t)).read().strip()
            except OSError:
                continue
            print("       thread %s %s: %s" % (t, comm, wchan or "running"))
        if shutil.which("gdb"):
            g = subprocess.run(["gdb", "-p", str(p.pid), "-batch", "-ex", "thread apply all bt 16"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            for line in g.stdout.decode(errors="replace").splitlines():
                if line.startswith("#") or line.startswith("Thread "):
                    print("       " + line[:220])
        sys.stdout.flush()


def stress_phases(ctx, live):
    path = ctx.path("stress.bin")
    subprocess.run([ctx.stress, "init", path, str(STRESS_SLOTS)], check=True)
    nreaders = 3
    # (preloaded, REOPEN: 1 every record, N every N records, 0 never, paced)
    phases = [("paced", [(False, 1, True), (True, 1, True)]),
              ("free", [(False, 1, False), (True, 1, False), (False, 7, False), (True, 1, False)]),
              ("held", [(False, 0, False), (True, 1, False), (False, 1, False), (True, 0, False)])]
    pipes = [os.pipe() for _ in range(nreaders)]
    wfds = [w for _, w in pipes]
    acks = [os.pipe() for _ in phases[0][1]]  # one per paced writer
    ack_w = [w for _, w in acks]
    readers = []
    keep = {"UPCACHE_STATS_KEEP": "1"}
    for i, (r, _) in enumerate(pipes):
        readers.append(subprocess.Popen(
            [ctx.stress, "reader", path, str(i), str(STRESS_SLOTS), str(r), "0" if i else "500",
             ",".join(map(str, ack_w))],
            stdout=subprocess.PIPE, env=ctx.env(True, keep), pass_fds=[r] + ack_w))
        live.append(readers[-1])
        os.close(r)
    for w in ack_w:
        os.close(w)
    ok_ready = True
    for i, p in enumerate(readers):
        if not select.select([p.stdout], [], [], ANSWER_TIMEOUT)[0]:
            raise subprocess.TimeoutExpired(p.args, ANSWER_TIMEOUT)
        line = p.stdout.readline()
        if line.strip() != b"ready":
            fail("stress: reader %d did not start: %r" % (i, line))
            ok_ready = False
    for i, p in enumerate(readers):
        check_hits(ctx, p.pid, path, "stress reader %d (warm-up)" % i)
    seconds = ctx.seconds / len(phases)
    records = 0
    for ph, (name, writers) in enumerate(phases):
        if not ok_ready:
            break
        procs = []
        for wid, (pre, reopen, paced) in enumerate(writers):
            ackfd = acks[wid][0] if paced else -1
            procs.append(subprocess.Popen(
                [ctx.stress, "writer", path, str(wid), str(len(writers)), str(STRESS_SLOTS),
                 str(reopen), str(ph << 32), "%.3f" % seconds, ",".join(map(str, wfds)), str(ackfd),
                 str(nreaders)],
                stdout=subprocess.PIPE, env=ctx.env(pre), pass_fds=wfds + ([ackfd] if paced else [])))
            live.append(procs[-1])
        if ph == 0:
            for r, _ in acks:
                os.close(r)
        n = 0
        for wid, p in enumerate(procs):
            out, _ = p.communicate(timeout=seconds + ANSWER_TIMEOUT)
            if p.returncode != 0:
                sys.stdout.write(out.decode())
                fail("stress: writer %d of phase %s exited with %d" % (wid, name, p.returncode))
            n += sum(int(l.split()[3]) for l in out.decode().splitlines() if l.startswith("writer "))
        print("     phase %s: %d records by %d writers" % (name, n, len(writers)), flush=True)
        records += n
    for w in wfds:
        os.close(w)  # the readers see the end of their pipes
    for i, p in enumerate(readers):
        out, _ = p.communicate(timeout=ANSWER_TIMEOUT)
        sys.stdout.write(out.decode().replace("ready\n", "", 1))
        if p.returncode != 0:
            fail("stress: reader %d exited with %d (see its FAIL lines)" % (i, p.returncode))
    leases = 0
    for i, p in enumerate(readers):
        proc = ctx.stats(p.pid)
        if proc is None:
            continue
        c = proc["counters"]
        missing = [n for n in PROCESS_COUNTERS if n not in c]
        if missing:
            fail("stress reader %d: upcache stat --json has no counter %s" % (i, ", ".join(missing)))
            continue
        leases += c["leases"]
        print("     reader %d: hits %d misses %d %s" % (
            i, c["hits"], c["misses"], " ".join("%s %d" % (n, c[n]) for n in PROCESS_COUNTERS)))
    if leases == 0 and not ctx.selftest and not [m for m in failures if "counter" in m]:
        fail("stress: no reader took a lease")
    if not [m for m in failures if m.startswith("stress")]:
        note("stress: %d records in %.0f s, %d readers" % (records, ctx.seconds, nreaders))


# ---------------------------------------------------------------- bad input

class TempUser:
    """A temporary system user, removed on exit (even on failure)."""

    def __init__(self):
        if os.geteuid() != 0:
            raise Skip("not root (needs useradd and setpriv)")
        for tool in ("useradd", "userdel", "setpriv"):
            if shutil.which(tool) is None:
                raise Skip("no %s" % tool)
        self.name = "upcoh%d" % os.getpid()
        subprocess.run(["userdel", self.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--user-group", self.name], check=True)
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.prefix = ("setpriv", "--reuid=%d" % self.uid, "--regid=%d" % self.gid,
                       "--clear-groups", "--")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # Its processes (the peers this case started) were closed before.
        r = subprocess.run(["userdel", self.name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            fail("could not remove the temporary user %s: %s" % (self.name, r.stdout.decode()))


def simple_rounds(ctx, reader, writer, path, what, rounds=3, regions=None, stats_kw=None,
                  expect_hits=True):
    """The reader opens and caches `path`; the writer overwrites, pipe sync."""
    regions = regions or std_regions(FILE_SIZE)
    reader.cmd("open %s rdonly" % path)
    for _ in range(2):
        for kind, off, length in regions:
            reader_read(reader, kind, off, length)
    if expect_hits:
        check_hits(ctx, reader.pid, path, what, **(stats_kw or {}))
    for k in range(1, rounds + 1):
        remember(path)
        writer.op("open %s rdwr" % path)
        writer.op("pwrite %d 50000 %d" % (20000 * k, k))
        writer.op("write %d 3 %d" % (FILE_SIZE - 2, k))
        check_regions(reader, path, regions, "%s, round %d, writer open" % (what, k))
        writer.op("close")
        check_regions(reader, path, regions, "%s, round %d, writer closed" % (what, k))
        check_regions(reader, path, regions, "%s, round %d, writer closed, again" % (what, k))


def user_dir(ctx, user):
    d = ctx.path("user")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    stats = os.path.join(d, "stats")
    os.makedirs(stats, exist_ok=True)
    os.chown(stats, user.uid, user.gid)
    # Everything the user's processes need must be reachable.
    for p in (ctx.dir, ctx.base):
        os.chmod(p, os.stat(p).st_mode | 0o055)
    return d, stats


def user_env_prefix(ctx, user, stats, extra=None):
    """setpriv, then env sets the preload: setpriv itself runs plain."""
    env = ctx.env(True, extra)
    vars_ = ["%s=%s" % (k, env[k]) for k in env
             if k.startswith("UPCACHE_") or k in ("LD_PRELOAD", "ASAN_OPTIONS")]
    vars_ = [v for v in vars_ if not v.startswith("UPCACHE_STATS_DIR=")]
    return list(user.prefix) + ["env", "UPCACHE_STATS_DIR=" + stats] + vars_


def case_not_owner(ctx):
    """No lease possible (not the owner, no CAP_LEASE): passed through."""
    with TempUser() as user:
        d, stats = user_dir(ctx, user)
        path = os.path.join(d, "rootfile.bin")
        make_file(path, FILE_SIZE, 3)
        os.chmod(path, 0o644)
        what = "not_owner (reader uid %d, file root 0644)" % user.uid
        for wk in ("python", "plain", "preload"):
            w = what + ", writer " + wk
            reader = writer = None
            ok_msg = None
            begin(w, path)
            try:
                reader = Peer(ctx, "reader(user)", False, env=ctx.env(False),
                              prefix=user_env_prefix(ctx, user, stats))
                writer = PyWriter() if wk == "python" else PeerWriter(ctx, wk == "preload")
                simple_rounds(ctx, reader, writer, path, w, expect_hits=False)
                check_lease_stats(ctx, reader.pid, path, w, broken=False, state="refused",
                                  passthrough=True, stats_dir=stats, prefix=user.prefix)
                ok_msg = w
            except PeerError as e:
                fail("%s: %s" % (w, e))
            finally:
                if end() and ok_msg:
                    note(ok_msg)
                for p in (writer, reader):
                    if p is not None:
                        p.close()


def case_other_owner(ctx):
    """Root reads a file owned by someone else: CAP_LEASE, so leased and
    cached; the owner (and root) write."""
    with TempUser() as user:
        d, _ = user_dir(ctx, user)
        path = os.path.join(d, "userfile.bin")
        for wk in ("owner", "python", "preload"):
            what = "other_owner (file uid %d, reader root), writer %s" % (user.uid, wk)
            make_file(path, FILE_SIZE, 4)
            os.chown(path, user.uid, user.gid)
            os.chmod(path, 0o644)
            reader = writer = None
            ok_msg = None
            begin(what, path)
            try:
                reader = Peer(ctx, "reader", True)
                if wk == "owner":
                    writer = PeerWriter(ctx, False, prefix=user.prefix)
                else:
                    writer = PyWriter() if wk == "python" else PeerWriter(ctx, True)
                simple_rounds(ctx, reader, writer, path, what)
                check_lease_stats(ctx, reader.pid, path, what)
                ok_msg = what
            except PeerError as e:
                fail("%s: %s" % (what, e))
            finally:
                if end() and ok_msg:
                    note(ok_msg)
                for p in (writer, reader):
                    if p is not None:
                        p.close()


def case_signal(ctx):
    """The program owns the lease signal (or another real-time one): its
    handler gets every signal it raises, none of upcache's, and the cache
    stays coherent."""
    path = ctx.path("file.bin")
    variants = [
        # (UPCACHE_LEASE_SIGNAL, the program's signal, handler installed before the open)
        (None, SIGRTMAX - 3, True),
        (None, SIGRTMAX - 3, False),
        (str(SIGRTMAX - 5), SIGRTMAX - 5, False),
        (str(SIGRTMAX - 5), SIGRTMAX - 3, True),
        (str(signal.SIGRTMIN + 2), signal.SIGRTMIN + 2, True),
    ]
    for lease_sig, sig, early in variants:
        what = "signal: UPCACHE_LEASE_SIGNAL=%s, the program handles %d (%s the first read)" % (
            lease_sig or "(default)", sig, "before" if early else "after")
        make_file(path, FILE_SIZE, 5)
        extra = {"UPCACHE_LEASE_SIGNAL": lease_sig} if lease_sig else None
        reader = writer = None
        raised = 0
        ok_msg = None
        begin(what, path)
        try:
            reader = Peer(ctx, "reader", True, extra_env=extra)
            writer = PeerWriter(ctx, False)

            def raise_some(n):
                nonlocal raised
                for how in ("raise", "kill"):
                    got = int(reader.cmd("raise %d %d %s" % (sig, n, how))[0])
                    raised += n
                    if got != raised:
                        fail("%s: the program's handler got %d signals, it raised %d (%s)"
                             % (what, got, raised, how))
                        raised = got

            if early:
                reader.cmd("sighandler %d" % sig)
                raise_some(50)
            simple_rounds(ctx, reader, writer, path, what, rounds=1)
            if not early:
                reader.cmd("sighandler %d" % sig)
            raise_some(50)
            # Lease breaks now, with the program's handler installed.
            for k in range(2, 5):
                remember(path)
                for _ in range(2):
                    reader_read(reader, "read", 0, BIG)
                writer.op("open %s rdwr" % path)
                writer.op("pwrite %d 40000 %d" % (10000 * k, k + 10))
                writer.op("close")
                check_regions(reader, path, std_regions(FILE_SIZE), "%s, round %d" % (what, k))
                raise_some(20)
            got = int(reader.cmd("sigcount %d" % sig)[0])
            if got != raised:
                fail("%s: the program's handler got %d signals, it raised %d: upcache's lease "
                     "signals reached it (or took its own)" % (what, got, raised))
            check_lease_stats(ctx, reader.pid, path, what)
            ok_msg = what + ": %d signals, every one to the program's handler" % raised
        except PeerError as e:
            fail("%s: %s" % (what, e))
        finally:
            if end() and ok_msg:
                note(ok_msg)
            for p in (writer, reader):
                if p is not None:
                    p.close()


def case_never_close(ctx):
    """A writer that holds the file open O_RDWR and writes again and again:
    opened before the reader opened the file (no lease can be had), after
    the reader cached it (the lease broken), or the reader itself opened the
    file O_RDWR (it is open for writing: passed through)."""
    path = ctx.path("file.bin")
    regions = std_regions(FILE_SIZE)
    for order in ("writer opens first", "reader caches first", "reader opened it O_RDWR"):
        for wk in ("plain", "preload", "python"):
            what = "never_close: %s, writer %s" % (order, wk)
            make_file(path, FILE_SIZE, 6)
            reader = writer = None
            ok_msg = None
            begin(what, path)
            try:
                writer = PyWriter() if wk == "python" else PeerWriter(ctx, wk == "preload")
                if order == "writer opens first":
                    writer.op("open %s rdwr" % path)
                reader = Peer(ctx, "reader", True)
                reader.cmd("open %s %s" % (path, "rdwr" if "O_RDWR" in order else "rdonly"))
                for _ in range(2):
                    for kind, off, length in regions:
                        reader_read(reader, kind, off, length)
                if order == "reader caches first":
                    check_hits(ctx, reader.pid, path, what)
                if order != "writer opens first":
                    writer.op("open %s rdwr" % path)
                for k in range(1, 21):
                    remember(path)
                    writer.op("pwrite %d 30000 %d" % ((k * 37000) % FILE_SIZE, k))
                    writer.op("write %d 100 %d" % (FILE_SIZE - 50 - k, k))
                    check_regions(reader, path, regions, "%s, write %d" % (what, k))
                check_lease_stats(ctx, reader.pid, path, what,
                                  broken=order == "reader caches first",
                                  passthrough=True,
                                  state="writer" if order != "reader caches first" else None)
                writer.op("close")
                ok_msg = what + ": 20 writes, every read fresh"
            except PeerError as e:
                fail("%s: %s" % (what, e))
            finally:
                if end() and ok_msg:
                    note(ok_msg)
                for p in (writer, reader):
                    if p is not None:
                        p.close()


def case_tmpfs(ctx):
    """The file on /dev/shm (tmpfs), whatever --dir is."""
    d = tempfile.mkdtemp(prefix="upcache-coherence-", dir="/dev/shm")
    try:
        path = os.path.join(d, "file.bin")
        for ch in (changes_for("overwrite", ctx)[0], changes_for("truncate", ctx)[0],
                   changes_for("mmap", ctx)[0]):
            for writer, sync in (("plain", "pipe"), ("preload", "fcntl"), ("python", "flock"),
                                 ("plain", "waitpid")):
                s = Scenario(ctx, ch, writer, sync, path=path)
                s.what = "tmpfs: " + s.what
                s.run()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_leases_disabled(ctx):
    """fs.leases-enable=0 (the whole machine, restored after): no lease can be
    had, every read is passed through."""
    knob = "/proc/sys/fs/leases-enable"
    if os.geteuid() != 0:
        raise Skip("not root (sysctl fs.leases-enable)")
    with open(knob) as f:
        old = f.read().strip()
    path = ctx.path("file.bin")
    try:
        with open(knob, "w") as f:
            f.write("0\n")
        for wk in ("python", "plain", "preload"):
            what = "leases_disabled, writer %s" % wk
            make_file(path, FILE_SIZE, 7)
            reader = writer = None
            ok_msg = None
            begin(what, path)
            try:
                reader = Peer(ctx, "reader", True)
                writer = PyWriter() if wk == "python" else PeerWriter(ctx, wk == "preload")
                simple_rounds(ctx, reader, writer, path, what, expect_hits=False)
                check_lease_stats(ctx, reader.pid, path, what, broken=False, state="refused",
                                  passthrough=True)
                ok_msg = what
            except PeerError as e:
                fail("%s: %s" % (what, e))
            finally:
                if end() and ok_msg:
                    note(ok_msg)
                for p in (writer, reader):
                    if p is not None:
                        p.close()
    finally:
        with open(knob, "w") as f:
            f.write(old + "\n")


# ---------------------------------------------------------------- main

CASES = {
    "overwrite": lambda c: case_change(c, "overwrite"),
    "pwrite": lambda c: case_change(c, "pwrite"),
    "truncate": lambda c: case_change(c, "truncate"),
    "append": lambda c: case_change(c, "append"),
    "mmap": lambda c: case_change(c, "mmap"),
    "fallocate": lambda c: case_change(c, "fallocate"),
    "copy": lambda c: case_change(c, "copy"),
    "sqlite_delete": lambda c: case_sqlite(c, "DELETE"),
    "sqlite_wal": lambda c: case_sqlite(c, "WAL"),
    "sqlite_large": case_sqlite_large,
    "stress": case_stress,
    "not_owner": case_not_owner,
    "other_owner": case_other_owner,
    "signal": case_signal,
    "never_close": case_never_close,
    "tmpfs": case_tmpfs,
    "leases_disabled": case_leases_disabled,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--stress")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="default")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--coherence", choices=["lease", "open", "locks"],
                    help="UPCACHE_COHERENCE of the preloaded processes (default: the library's)")
    ap.add_argument("--keep", action="store_true", help="keep the case's files")
    ap.add_argument("--selftest", action="store_true",
                    help="run every process plain and check no statistics: the kernel is "
                         "coherent, so every case must pass (tests the test)")
    ap.add_argument("case", choices=sorted(CASES))
    a = ap.parse_args()
    ctx = Ctx(a)
    t = time.monotonic()
    try:
        CASES[a.case](ctx)
    except Skip as e:
        print("SKIP: %s: %s" % (a.case, e), flush=True)
    except Exception:
        import traceback
        fail("%s: unexpected error:\n%s" % (a.case, traceback.format_exc()))
    finally:
        if not a.keep:
            shutil.rmtree(ctx.dir, ignore_errors=True)
    print("%s: %d failure(s), %.1f s" % (a.case, len(failures), time.monotonic() - t), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
