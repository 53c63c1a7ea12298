#!/usr/bin/env python3
"""Tests of the `upcache` command against segments of known content.

usage: tool_test.py TEST UPCACHE WRITER PRELOAD

UPCACHE is the tool, WRITER tests/tools/stats_writer.cc (a process owning a
segment with known counters, written through core's API), PRELOAD a stand-in
for libupcache.so that does nothing. Every test works in its own statistics
directory (UPCACHE_STATS_DIR), so it neither sees nor touches real segments.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TEST, UPCACHE, WRITER, PRELOAD = sys.argv[1:5]

COUNTERS = ["reads", "bytes_read", "hits", "misses", "readahead_pages", "readahead_hits",
            "readahead_wasted", "evictions", "direct_bytes", "buffered_bytes",
            "passthrough_calls", "io_errors", "coherence_passthrough", "coherence_drops",
            "leases", "leases_broken"]


def expected_counters(threads):
    c = {name: threads * (1000 * (k + 1) + 7) for k, name in enumerate(COUNTERS)}
    return c


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="upcache-tool-test.")
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("UPCACHE_") or k == "LD_PRELOAD":
                del self.env[k]
        self.env["UPCACHE_STATS_DIR"] = self.dir
        # Sanitizer builds: upcache itself runs with an LD_PRELOAD in some tests.
        asan = self.env.get("ASAN_OPTIONS", "")
        self.env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
        self.env["UPCACHE_PAGE_SIZE"] = "16K"
        self.env["UPCACHE_SIZE"] = "256M"
        self.writers = []

    def segments(self):
        return sorted(n for n in os.listdir(self.dir) if n.startswith("upcache."))

    def writer(self, *args, extra_env=None):
        env = dict(self.env)
        env.update(extra_env or {})
        p = subprocess.Popen([WRITER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env=env, text=True)
        line = p.stdout.readline().split()
        assert line and line[0] == "READY", f"writer did not start: {line}"
        self.writers.append(p)
        return p, int(line[1]), line[2]

    def tool(self, *args, rc=0, env=None, timeout=60):
        e = dict(self.env)
        e.update(env or {})
        r = subprocess.run([UPCACHE, *args], capture_output=True, text=True, env=e, timeout=timeout)
        if rc is not None:
            assert r.returncode == rc, (
                f"upcache {' '.join(args)}: exit {r.returncode}, wanted {rc}\n"
                f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def close(self):
        for p in self.writers:
            if p.poll() is None:
                p.stdin.close()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop(p):
    p.stdin.close()
    assert p.wait(timeout=30) == 0


def check_process_json(proc, pid, threads=4):
    assert set(proc) == {"pid", "command", "page_size", "counters", "latency", "files"}, proc.keys()
    assert proc["pid"] == pid
    assert "upcache_stats_writer" in proc["command"], proc["command"]
    assert proc["page_size"] == 16384
    want = expected_counters(threads)
    want["cached_bytes"] = 2 << 20
    want["capacity_bytes"] = 256 << 20
    assert proc["counters"] == want, (proc["counters"], want)
    lat = proc["latency"]
    assert set(lat) == {"hit", "miss", "io"}
    for name in lat:
        assert len(lat[name]) == 40
    assert lat["hit"][10] == 5 * threads and sum(lat["hit"]) == 5 * threads
    assert lat["miss"][20] == 3 * threads and sum(lat["miss"]) == 3 * threads
    assert lat["io"][22] == 2 * threads and sum(lat["io"]) == 2 * threads
    assert proc["files"] == [
        {"path": "/data/a.bin", "coherence": "lease", "bytes": 3 << 20, "hits": 40, "misses": 8,
         "readahead_pages": 16, "passthrough": 0},
        {"path": "/data/b.bin", "coherence": "writer", "bytes": 1 << 20, "hits": 10, "misses": 2,
         "readahead_pages": 4, "passthrough": 6},
    ], proc["files"]


# ---------------------------------------------------------------------------

def test_json(t):
    p, pid, path = t.writer("--threads", "4")
    assert os.path.basename(path).startswith(f"upcache.{pid}.")
    assert (os.stat(path).st_mode & 0o777) == 0o600
    doc = json.loads(t.tool("stat", "--json", str(pid)).stdout)
    assert set(doc) == {"processes", "total"}
    assert len(doc["processes"]) == 1
    check_process_json(doc["processes"][0], pid)
    assert doc["total"] == doc["processes"][0]["counters"]
    # Two processes: the total is the sum; no PID means all of them.
    q, qid, _ = t.writer("--threads", "3")
    doc = json.loads(t.tool("stat", "--json").stdout)
    assert sorted(x["pid"] for x in doc["processes"]) == sorted([pid, qid])
    for name in COUNTERS:
        assert doc["total"][name] == expected_counters(4)[name] + expected_counters(3)[name]
    assert doc["total"]["cached_bytes"] == 4 << 20
    # Explicit pids, in that order.
    doc = json.loads(t.tool("stat", "--json", str(qid), str(pid)).stdout)
    assert [x["pid"] for x in doc["processes"]] == [qid, pid]
    stop(p)
    stop(q)
    assert t.segments() == [], t.segments()  # not kept: removed at exit


def test_prom(t):
    p, pid, _ = t.writer("--threads", "2")
    out = t.tool("stat", "--prom", str(pid)).stdout
    want = expected_counters(2)
    assert f'upcache_hits_total{{pid="{pid}"}} {want["hits"]}\n' in out, out
    assert "# TYPE upcache_hits_total counter\n" in out
    assert "# HELP upcache_hits_total " in out
    for name in COUNTERS:
        assert f'upcache_{name}_total{{pid="{pid}"}} {want[name]}\n' in out, name
    assert f'upcache_cached_bytes{{pid="{pid}"}} {2 << 20}\n' in out
    assert "# TYPE upcache_cached_bytes gauge\n" in out
    assert f'upcache_capacity_bytes{{pid="{pid}"}} {256 << 20}\n' in out
    # Every line is a comment or `name{labels} value` (text exposition format).
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*\{pid="\d+"\} \d+$')
    for line in out.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    stop(p)


def test_table(t):
    p, pid, _ = t.writer("--threads", "1")
    out = t.tool("stat", str(pid)).stdout
    lines = out.splitlines()
    header = lines[0].split()
    for col in ("PID", "STATE", "READS", "HIT%", "RA-EFF", "DIRECT", "COMMAND"):
        assert col in header, header
    row = lines[1].split()
    assert row[0] == str(pid) and row[1] == "alive", lines[1]
    assert row[header.index("READS")] == "1007"
    # hit ratio = hits / (hits + misses) = 3007 / (3007 + 4007)
    assert row[header.index("HIT%")] == "42.9%", lines[1]
    # readahead effectiveness = readahead_hits / readahead_pages = 6007 / 5007
    assert row[header.index("RA-EFF")] == "120.0%", lines[1]
    assert lines[-1].startswith("TOTAL"), lines[-1]
    # Coherence: reads sent to the kernel, pages dropped, leases broken.
    assert row[header.index("COH-PASS")] == str(1 * (1000 * 13 + 7)), lines[1]
    assert row[header.index("COH-DROP")] == str(1 * (1000 * 14 + 7)), lines[1]
    assert row[header.index("BROKEN")] == str(1 * (1000 * 16 + 7)), lines[1]
    out = t.tool("stat", "--files", str(pid)).stdout
    assert out.index("/data/a.bin") < out.index("/data/b.bin"), out
    rows = {l.split()[-1]: l.split() for l in out.splitlines() if "/data/" in l}
    assert rows["/data/a.bin"][-2] == "lease" and rows["/data/b.bin"][-2] == "writer", out
    assert rows["/data/b.bin"][-3] == "6", out
    out = t.tool("stat", "--files", "--top", "1", str(pid)).stdout
    assert "/data/a.bin" in out and "/data/b.bin" not in out and "1 more" in out, out
    # All processes, no PID: the table too.
    out = t.tool("stat").stdout
    assert str(pid) in out and "TOTAL" in out
    stop(p)
    out = t.tool("stat").stdout
    assert "no upcache statistics" in out, out


def test_ls(t):
    p, pid, path = t.writer()
    out = t.tool("ls").stdout
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["PID", "STATE", "AGE", "SIZE"], lines[0]
    row = [l for l in lines if l.split()[0] == str(pid)]
    assert len(row) == 1 and row[0].split()[1] == "alive", out
    assert os.path.basename(path) in row[0] and "upcache_stats_writer" in row[0]
    stop(p)
    assert "no upcache statistics segments" in t.tool("ls").stdout


def test_keep(t):
    # UPCACHE_STATS_KEEP=1: the segment of an exited process stays readable...
    p, pid, path = t.writer("--mode", "exit", extra_env={"UPCACHE_STATS_KEEP": "1"})
    assert p.wait(timeout=30) == 0
    assert os.path.exists(path)
    doc = json.loads(t.tool("stat", "--json", str(pid)).stdout)
    check_process_json(doc["processes"][0], pid)
    ls = t.tool("ls").stdout
    assert re.search(rf"^\s*{pid}\s+kept\s", ls, re.M), ls
    # ...until `upcache clean` removes it.
    out = t.tool("clean").stdout
    assert out.strip() == "removed 1 segment", out
    assert not os.path.exists(path)
    r = t.tool("stat", "--json", str(pid), rc=1)
    assert f"no process {pid}" in r.stderr, r.stderr
    # Without it, nothing stays after a clean exit.
    p, pid, path = t.writer("--mode", "exit")
    assert p.wait(timeout=30) == 0
    assert t.segments() == []
    t.tool("stat", str(pid), rc=1)


def test_dead(t):
    # Killed (no exit hook): readable, shown dead, removed by clean; a running
    # one is left alone.
    live, live_pid, live_path = t.writer()
    p, pid, path = t.writer("--mode", "die")
    assert p.wait(timeout=30) == 0
    assert os.path.exists(path)
    ls = t.tool("ls").stdout
    assert re.search(rf"^\s*{pid}\s+dead\s", ls, re.M), ls
    assert re.search(rf"^\s*{live_pid}\s+alive\s", ls, re.M), ls
    doc = json.loads(t.tool("stat", "--json", str(pid)).stdout)
    assert doc["processes"][0]["counters"]["reads"] == 4 * 1007
    out = t.tool("clean").stdout
    assert out.startswith("removed 1 segment ") and "1 in use" in out, out
    assert not os.path.exists(path) and os.path.exists(live_path)
    # A leftover of someone else's pid that no longer exists, never initialized.
    junk = os.path.join(t.dir, "upcache.%d.%016x" % (dead_pid(), 0xabc))
    open(junk, "w").close()
    assert t.tool("clean").stdout.startswith("removed 1 segment")
    assert not os.path.exists(junk)
    stop(live)


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_callers(t):
    p, pid, _ = t.writer()
    out = t.tool("stat", "--callers", str(pid)).stdout
    assert "writer_site_alpha+0x" in out, out
    assert "(upcache_stats_writer)" in out, out
    assert re.search(r"writer_site_alpha\+0x[0-9a-f]+ \(upcache_stats_writer\) < main\+0x", out), out
    assert "by misses" in out and "by bytes" in out
    doc = json.loads(t.tool("stat", "--json", "--callers", str(pid)).stdout)
    callers = doc["processes"][0]["callers"]
    assert len(callers) == 1 and callers[0]["misses"] == 2 and callers[0]["bytes"] == 196608
    assert callers[0]["frames"][0].startswith("writer_site_alpha+0x"), callers
    # Without callers recorded, a hint.
    q, qid, _ = t.writer("--no-callers")
    out = t.tool("stat", "--callers", str(qid)).stdout
    assert "UPCACHE_CALLERS" in out, out
    stop(p)
    stop(q)


def test_interval(t):
    p, pid, _ = t.writer()
    r = t.tool("stat", "-i", "0.2", "-c", "3", str(pid))
    lines = r.stdout.splitlines()
    assert len(lines) == 4, r.stdout  # header + 3 reports
    assert lines[0].split()[:3] == ["TIME", "PID", "READS/s"], lines[0]
    for l in lines[1:]:
        assert l.split()[1] == str(pid), l
    # The later reports are deltas: nothing happened, so no reads per second.
    assert lines[2].split()[2] == "0" and lines[3].split()[2] == "0", r.stdout
    r = t.tool("stat", "-i", "0.1", "-c", "2", "--json", str(pid))
    docs = [json.loads(l) for l in r.stdout.splitlines()]
    assert len(docs) == 2 and docs[1]["processes"][0]["pid"] == pid
    # A watched process that goes away ends the watch.
    q = subprocess.Popen([UPCACHE, "stat", "-i", "0.1", str(pid)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=t.env)
    time.sleep(0.5)
    stop(p)
    out, err = q.communicate(timeout=30)
    assert q.returncode == 0 and "no process left" in err, (q.returncode, err)
    # So does one that has exited already (kept): one report, then the end.
    k, kid, _ = t.writer("--mode", "exit", extra_env={"UPCACHE_STATS_KEEP": "1"})
    assert k.wait(timeout=30) == 0
    r = t.tool("stat", "-i", "0.1", str(kid), timeout=30)
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[1].split()[1] == f"{kid}(kept)", r.stdout
    assert "no process left" in r.stderr


def run_writers(t, *upcache_args, script=None):
    if script is None:
        script = f'"{WRITER}" --mode exit --no-callers && "{WRITER}" --mode exit --threads 2'
    return t.tool("run", "--lib", PRELOAD, *upcache_args, "--", "sh", "-c", script + " >/dev/null")


def test_run_summary(t):
    r = run_writers(t)
    err = r.stderr
    reads = 4 * 1007 + 2 * 1007
    assert "upcache: 2 processes," in err, err
    assert "{:,} reads".format(reads) in err, err
    hits, misses = 6 * 3007, 6 * 4007
    assert "hit ratio 42.9%: {:,} hits, {:,} misses (pages of 16.0K)".format(hits, misses) in err, err
    assert "readahead {:,} pages, {:,} used".format(6 * 5007, 6 * 6007) in err, err
    assert t.segments() == [], t.segments()  # the run's segments are removed after the summary
    # --keep: they stay, and the summary says how to read them.
    r = run_writers(t, "--keep")
    assert "statistics kept: upcache stat" in r.stderr, r.stderr
    assert len(t.segments()) == 2
    doc = json.loads(t.tool("stat", "--json").stdout)
    assert doc["total"]["reads"] == reads
    # Each segment carries the run id.
    assert t.tool("clean").stdout.startswith("removed 2 segments")
    # -q: no summary.
    r = run_writers(t, "-q")
    assert r.stderr == "", r.stderr
    assert t.segments() == []
    # Segments of other runs are not counted.
    other, _, _ = t.writer()
    r = run_writers(t, script=f'"{WRITER}" --mode exit')
    assert "upcache: 1 process," in r.stderr, r.stderr
    assert len(t.segments()) == 1  # the other one is untouched
    stop(other)


def test_run_env(t):
    logdir = tempfile.mkdtemp()
    try:
        r = t.tool("run", "--lib", PRELOAD, "--size", "2G", "--page-size", "16K", "--ra-max", "1M",
                   "--direct", "off", "--async", "threads", "--io-threads", "3", "--callers", "10",
                   "--log", "rel.log", "--log-level", "2", "--include", "/a", "--include", "/b",
                   "--exclude", "/c", "--hugepages", "--no-thp", "--coherence", "open", "--disable", "-q",
                   "--", "env")
    finally:
        shutil.rmtree(logdir)
    env = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
    lib = os.path.realpath(PRELOAD)
    assert env["LD_PRELOAD"] == lib, env.get("LD_PRELOAD")
    assert env["UPCACHE_SIZE"] == "2G" and env["UPCACHE_PAGE_SIZE"] == "16K"
    assert env["UPCACHE_RA_MAX"] == "1M" and env["UPCACHE_DIRECT"] == "off"
    assert env["UPCACHE_ASYNC"] == "threads" and env["UPCACHE_IO_THREADS"] == "3"
    assert env["UPCACHE_CALLERS"] == "10" and env["UPCACHE_LOG_LEVEL"] == "2"
    assert env["UPCACHE_LOG"] == os.path.join(os.getcwd(), "rel.log"), env["UPCACHE_LOG"]
    assert env["UPCACHE_INCLUDE"] == "/a:/b" and env["UPCACHE_EXCLUDE"] == "/c"
    assert env["UPCACHE_DISABLE"] == "1" and env["UPCACHE_STATS_KEEP"] == "1"
    assert env["UPCACHE_HUGEPAGES"] == "1" and env["UPCACHE_THP"] == "0"
    assert env["UPCACHE_COHERENCE"] == "open"
    assert re.fullmatch(r"[0-9a-f]{16}", env["UPCACHE_RUN_ID"]), env["UPCACHE_RUN_ID"]
    # LD_PRELOAD: prepended to an existing one, never twice.
    other = os.path.join(t.dir, "other.so")
    shutil.copy(PRELOAD, other)
    r = t.tool("run", "--lib", PRELOAD, "-q", "--", "env", env={"LD_PRELOAD": other})
    assert f"LD_PRELOAD={lib}:{other}\n" in r.stdout, r.stdout
    r = t.tool("run", "--lib", PRELOAD, "-q", "--", "env", env={"LD_PRELOAD": f"{other} {lib}"})
    assert f"LD_PRELOAD={other} {lib}\n" in r.stdout, r.stdout
    # UPCACHE_LIB when there is no --lib.
    r = t.tool("run", "-q", "--", "env", env={"UPCACHE_LIB": PRELOAD})
    assert f"LD_PRELOAD={lib}\n" in r.stdout, r.stdout
    r = t.tool("run", "-q", "--", "true", env={"UPCACHE_LIB": "/nonexistent/libupcache.so"}, rc=125)
    assert "UPCACHE_LIB=/nonexistent/libupcache.so" in r.stderr, r.stderr
    # Bad values are refused before anything runs.
    for args in (["--size", "12Q"], ["--page-size", "3K"], ["--direct", "maybe"],
                 ["--async", "fast"], ["--callers", "-1"], ["--log-level", "9"]):
        r = t.tool("run", "--lib", PRELOAD, *args, "--", "true", rc=125)
        assert args[0] in r.stderr and "expected" in r.stderr, r.stderr
    r = t.tool("run", "--lib", PRELOAD, "--bogus", "--", "true", rc=125)
    assert "unknown option '--bogus'" in r.stderr, r.stderr
    r = t.tool("run", "--lib", PRELOAD, rc=125)
    assert "no command" in r.stderr


def test_run_status(t):
    t.tool("run", "--lib", PRELOAD, "-q", "--", "sh", "-c", "exit 3", rc=3)
    t.tool("run", "--lib", PRELOAD, "-q", "--", "sh", "-c", "kill -KILL $$", rc=128 + 9)
    r = t.tool("run", "--lib", PRELOAD, "-q", "--", "/nonexistent/command", rc=127)
    assert "/nonexistent/command: No such file or directory" in r.stderr, r.stderr
    r = t.tool("run", "--lib", PRELOAD, "-q", "--", t.dir, rc=126)  # a directory
    # Options of the command are the command's (no `--` needed).
    r = t.tool("run", "--lib", PRELOAD, "-q", "sh", "-c", "echo $0 $1", "-q", "x")
    assert r.stdout == "-q x\n", r.stdout
    # SIGTERM sent to upcache reaches the command; upcache exits 128+15.
    p = subprocess.Popen([UPCACHE, "run", "--lib", PRELOAD, "-q", "--", "sleep", "30"],
                         env=t.env, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    start = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=20)
    assert p.returncode == 128 + signal.SIGTERM, p.returncode
    assert time.monotonic() - start < 10


def test_errors(t):
    r = t.tool("bogus", rc=2)
    assert "unknown command 'bogus'" in r.stderr
    t.tool(rc=2)
    r = t.tool("stat", "12abc", rc=2)
    assert "not a process id" in r.stderr
    r = t.tool("stat", "--frobnicate", rc=2)
    assert "unknown option" in r.stderr
    r = t.tool("stat", "-i", rc=2)
    assert "needs a value" in r.stderr
    t.tool("stat", "-i", "-1", rc=2)
    t.tool("stat", "--json", "--prom", rc=2)
    r = t.tool("stat", str(dead_pid()), rc=1)
    assert "no process" in r.stderr
    r = t.tool("stat", str(os.getpid()), rc=1)
    assert "has no upcache statistics" in r.stderr, r.stderr
    t.tool("ls", "extra", rc=2)
    t.tool("clean", "extra", rc=2)
    # A segment of another layout version is named as such.
    bad = os.path.join(t.dir, "upcache.%d.%016x" % (os.getpid(), 1))
    with open(bad, "wb") as f:
        f.write(b"UPCS" + (99).to_bytes(4, "little") + bytes(4096))
    r = t.tool("stat", str(os.getpid()), rc=1)
    assert "layout version 99" in r.stderr, r.stderr
    assert "layout version 99" in t.tool("ls").stdout
    os.unlink(bad)


def test_help(t):
    out = t.tool("--help").stdout
    for word in ("run", "stat", "ls", "clean"):
        assert word in out
    assert re.match(r"upcache \d+\.\d+\.\d+ ", t.tool("--version").stdout)
    assert "--interval" in t.tool("stat", "--help").stdout
    assert "--page-size" in t.tool("run", "--help").stdout
    assert "Usage: upcache ls" in t.tool("ls", "--help").stdout
    assert "Usage: upcache clean" in t.tool("clean", "--help").stdout


def main():
    fn = globals().get("test_" + TEST)
    if fn is None:
        sys.exit(f"unknown test {TEST}")
    t = Env()
    try:
        fn(t)
    finally:
        t.close()
    print(f"tools.{TEST}: ok")


if __name__ == "__main__":
    main()
