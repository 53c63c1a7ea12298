#!/usr/bin/env python3
"""Measures the choice of UPCACHE_PAGE_SIZE and UPCACHE_RA_MAX defaults.

For each (page size, maximum readahead) pair, runs fresh processes under
`upcache run`, alternating with the same workload on the kernel's cache, and
prints medians:
  seq   cold sequential read() of the whole file with 128 KiB buffers
  rand  cold random 4 KiB pread() (2000 reads)
  warm  warm random 4 KiB pread() after one full pass (20000 reads)
Usage: bench/sweep_defaults.py BUILD_DIR FILE [REPS]
Needs root for /proc/sys/vm/drop_caches (else falls back to fadvise).
"""
import os, statistics, subprocess, sys

build, path = sys.argv[1], sys.argv[2]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
upcache = os.path.join(build, "tools", "upcache")
py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

WORK = r'''
import os, random, sys, time
path, kind = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
rng = random.Random(7)
if kind == "seq":
    t = time.perf_counter()
    while os.read(fd, 131072): pass
elif kind == "rand":
    offs = [rng.randrange(0, size // 4096) * 4096 for _ in range(2000)]
    t = time.perf_counter()
    for o in offs: os.pread(fd, 4096, o)
else:
    while os.read(fd, 1 << 20): pass
    offs = [rng.randrange(0, size // 4096) * 4096 for _ in range(20000)]
    t = time.perf_counter()
    for o in offs: os.pread(fd, 4096, o)
print(time.perf_counter() - t)
'''

def drop():
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f: f.write("3")
    except OSError:
        fd = os.open(path, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)

def run(kind, env=None):
    drop()
    cmd = [py, "-c", WORK, path, kind]
    if env is not None:
        cmd = [upcache, "run", "-q"] + [f"--{k}={v}" for k, v in env.items()] + ["--"] + cmd
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

pages = os.environ.get("PAGES", "16K 64K 256K").split()
ras = os.environ.get("RAS", "1M 4M 16M").split()
kinds = os.environ.get("KINDS", "seq rand warm").split()
print(f"{'page':>6} {'ra_max':>7} " + " ".join(f"{k+' k/u':>14}" for k in kinds))
for page in pages:
    for ra in ras:
        cells = []
        for kind in kinds:
            kt, ut = [], []
            for _ in range(reps):
                kt.append(run(kind)); ut.append(run(kind, {"page-size": page, "ra-max": ra}))
            k, u = statistics.median(kt), statistics.median(ut)
            cells.append(f"{k/u:6.2f} ({u*1000:5.0f}ms)")
        print(f"{page:>6} {ra:>7} " + " ".join(f"{c:>14}" for c in cells), flush=True)
