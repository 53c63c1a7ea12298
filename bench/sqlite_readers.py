#!/usr/bin/env python3
"""Two processes query one SQLite database read-only, plain and under upcache.

Coherence (upcache(7)): each preloaded reader opens the database with the
URI mode=ro, so it can take a read lease and serve its pages from its cache;
a writer would break the leases. This measures that such readers stay served
from the cache: both run QUERIES full-table scans at once; the run is timed
whole (both processes), plain and preloaded alternating, REPS times each, and
the preloaded run's statistics show the hits and that no read went to the
kernel for coherence.

  bench/sqlite_readers.py --lib build/shim/libupcache.so --tool build/tools/upcache \\
      --db /var/tmp/ub/readers.db [--rows 400000] [--queries 10] [--reps 5]
"""
import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

READER = r"""
import sqlite3, sys
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect("file:" + db + "?mode=ro", uri=True)
c.execute("PRAGMA cache_size=-256")  # SQLite's own cache small: the reads reach the file
s = None
for _ in range(n):
    s = c.execute("select count(*), sum(length(b)), sum(a) from t").fetchone()
print(s)
"""


def make_db(path, rows):
    if os.path.exists(path):
        return
    c = sqlite3.connect(path)
    c.execute("create table t(a integer primary key, b blob)")
    c.executemany("insert into t values(?, randomblob(200))", ((i,) for i in range(rows)))
    c.commit()
    c.close()


def run_pair(db, queries, env):
    t0 = time.monotonic()
    ps = [subprocess.Popen([sys.executable, "-c", READER, db, str(queries)], env=env,
                           stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate()[0] for p in ps]
    dt = time.monotonic() - t0
    if any(p.returncode for p in ps) or outs[0] != outs[1]:
        sys.exit("FAIL: readers disagree or failed: %r" % outs)
    return dt, outs[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--rows", type=int, default=400000)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    make_db(a.db, a.rows)
    stats_dir = tempfile.mkdtemp(prefix="upcache-sqlite-readers-")
    plain_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    pre_env = dict(plain_env, LD_PRELOAD=os.path.abspath(a.lib), UPCACHE_STATS_DIR=stats_dir,
                   UPCACHE_STATS_KEEP="1")
    times = {"plain": [], "upcache": []}
    answer = None
    for _ in range(a.reps):
        for mode, env in (("plain", plain_env), ("upcache", pre_env)):
            dt, out = run_pair(a.db, a.queries, env)
            if answer is None:
                answer = out
            elif out != answer:
                sys.exit("FAIL: %s run answered %r, not %r" % (mode, out, answer))
            times[mode].append(dt)
    doc = json.loads(subprocess.run([a.tool, "stat", "--json"], env=pre_env, check=True,
                                    stdout=subprocess.PIPE, text=True).stdout)
    subprocess.run([a.tool, "clean"], env=pre_env, stdout=subprocess.DEVNULL)
    total = doc["total"]
    db_files = [f for p in doc["processes"] for f in p["files"] if f["path"].endswith(os.path.basename(a.db))]
    states = sorted({f["coherence"] for f in db_files})
    med = {m: statistics.median(v) for m, v in times.items()}
    print("two readers x %d scans of %s (%d MiB), %d alternating runs each" %
          (a.queries, a.db, os.path.getsize(a.db) >> 20, a.reps))
    for m in ("plain", "upcache"):
        print("  %-8s median %.3f s  slowest %.3f s" % (m, med[m], max(times[m])))
    print("  ratio plain/upcache (median): %.2f" % (med["plain"] / med["upcache"]))
    print("  upcache: hits %d misses %d coherence_passthrough %d leases %d leases_broken %d;"
          " database file states %s" % (total["hits"], total["misses"], total["coherence_passthrough"],
                                         total["leases"], total["leases_broken"], ",".join(states)))


if __name__ == "__main__":
    main()
