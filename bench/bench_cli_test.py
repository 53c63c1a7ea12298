#!/usr/bin/env python3
"""CTest bench.cli: upcache-bench --help works and a tiny run prints JSON
with the expected keys. Behaviour only: no timing is ever asserted.
Usage: bench_cli_test.py UPCACHE_BENCH LIBUPCACHE_SO
"""
import json, os, subprocess, sys, tempfile

bench, lib = sys.argv[1], sys.argv[2]

h = subprocess.run([bench, "--help"], capture_output=True, text=True, timeout=30)
assert h.returncode == 0, h.stderr
for word in ("--workload", "--mode", "--reps", "--json", "--csv", "--plot", "--cmd", "--lib"):
    assert word in h.stdout, word

bad = subprocess.run([bench, "--workload", "nope"], capture_output=True, text=True, timeout=30)
assert bad.returncode == 2 and "unknown workload" in bad.stderr, bad.stderr

def direct_works(d):
    """Can files in d be opened with O_DIRECT (the device mode needs it)?"""
    p = os.path.join(d, "probe")
    open(p, "wb").close()
    try:
        os.close(os.open(p, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError:
        return False
    finally:
        os.unlink(p)


with tempfile.TemporaryDirectory() as d:
    direct = direct_works(d)
    r = subprocess.run([bench, "--reps", "1", "--size", "8M", "--dir", d, "--lib", lib, "--json",
                        "-q", "--workload", "seq-read:64K", "--workload", "rand-pread:4K",
                        "--workload", "pipe:64"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    for key in ("file", "file_size", "reps", "lib", "cold_method", "workloads"):
        assert key in doc, key
    assert doc["file_size"] == 8 << 20 and doc["reps"] == 1
    names = [w["workload"] for w in doc["workloads"]]
    assert names == ["seq-read:64K", "rand-pread:4K", "pipe:64"], names
    for w in doc["workloads"]:
        for key in ("modes", "ratio_cold", "ratio_warm", "kernel_of_limit", "upcache_of_limit",
                    "kernel_of_device", "upcache_of_device"):
            assert key in w, key
        modes = set(w["modes"])
        want = {"kernel-warm", "upcache-warm"}
        if w["workload"] != "pipe:64":
            want |= {"kernel-cold", "upcache-cold", "limit"}
        if w["workload"] == "rand-pread:4K" and direct:
            want |= {"device"}  # the cold physical limit: random patterns only
        assert modes == want, (w["workload"], modes)
        for m in w["modes"].values():
            for key in ("median_s", "min_s", "max_s", "q1_s", "q3_s", "bytes", "mib_s",
                        "maxrss_kib", "times_s"):
                assert key in m, key
            assert len(m["times_s"]) == 1 and m["median_s"] >= 0
    seq = doc["workloads"][0]["modes"]
    assert seq["upcache-warm"]["bytes"] == 8 << 20, seq["upcache-warm"]
    rnd = doc["workloads"][1]
    if direct:
        assert rnd["modes"]["device"]["bytes"] == rnd["modes"]["kernel-cold"]["bytes"] > 0, rnd["modes"]
        assert rnd["kernel_of_device"] is not None
    assert doc["workloads"][0]["kernel_of_device"] is None

    c = subprocess.run([bench, "--reps", "1", "--lib", lib, "--csv", "-q", "--cmd", "true",
                        "--mode", "kernel-warm", "--mode", "upcache-warm"],
                       capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stderr
    lines = c.stdout.strip().splitlines()
    assert lines[0].startswith("workload,mode,median_s"), lines
    assert len(lines) == 3, lines
print("ok")
