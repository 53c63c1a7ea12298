#!/usr/bin/env python3
"""Prints the speed-goal table of issue 5 (markdown) from upcache-bench JSON.
Usage: bench/goals.py [--rss RSS.json] RUN.json [RUN.json ...]
  RUN.json: `upcache-bench --json` outputs holding the goal workloads (a warm
            run and a cold run, say); a workload found in several files has
            its modes and ratios merged.
  RSS.json: `UPCACHE_SIZE=256M upcache-bench -w seq-read:1M -m upcache-cold --json`
(The old form `bench/goals.py FULL.json RSS.json` still works.)
"""
import json, sys

args = sys.argv[1:]
rss_file = None
if args[:1] == ["--rss"]:
    rss_file, args = args[1], args[2:]
elif len(args) == 2 and "rss" in args[1]:
    args, rss_file = args[:1], args[1]
full = {}
for path in args:
    for w in json.load(open(path))["workloads"]:
        have = full.setdefault(w["workload"], {"modes": {}})
        for k, v in w.items():
            if k == "modes":
                have["modes"].update(v)
            elif k != "workload" and (v is not None or k not in have):
                have[k] = v

def med(name, mode):
    return full[name]["modes"][mode]["median_s"]

def mibs(name, mode):
    return full[name]["modes"][mode]["mib_s"]

rows = []
def ratio(label, name, kind, goal):
    r = full[name]["ratio_" + kind]
    lim = full[name].get("upcache_of_limit") if kind == "warm" else None
    note = f"upcache at {lim:.2f} of the memcpy limit, kernel at {full[name]['kernel_of_limit']:.2f}" if lim else ""
    dev = full[name].get("upcache_of_device") if kind == "cold" else None
    if dev:
        note = f"upcache at {dev:.2f} of the O_DIRECT device limit, kernel at {full[name]['kernel_of_device']:.2f}"
    rows.append((label, f"≥ {goal}", f"{r:.2f}", "met" if r >= goal else f"not met ({r / goal:.1%} of goal)", note))

ratio("warm random 4 KiB `pread`, 1 GiB file", "rand-pread:4K", "warm", 1.5)
ratio("warm sequential 64 B `read()`", "seq-read:64", "warm", 10)
ratio("warm random 64 KiB `pread`", "rand-pread:64K", "warm", 1.3)
ratio("warm sequential 1 MiB `read()`", "seq-read:1M", "warm", 1.05)
ratio("cold sequential 128 KiB `read()`", "seq-read:128K", "cold", 1.0)
ratio("cold random 4 KiB `pread`, one thread", "rand-pread:4K", "cold", 1.1)
t = [k for k in full if k.startswith("threads:4K")][0]
scale = mibs(t, "upcache-warm") / mibs("rand-pread:4K", "upcache-warm")
kscale = mibs(t, "kernel-warm") / mibs("rand-pread:4K", "kernel-warm")
rows.append(("2 threads, warm random 4 KiB (throughput vs one thread)", "≥ 1.8 ×", f"{scale:.2f} ×",
             "met" if scale >= 1.8 else f"not met ({scale / 1.8:.0%} of goal)",
             f"kernel scales {kscale:.2f} ×"))
if rss_file:
    rss = json.load(open(rss_file))["workloads"][0]["modes"]["upcache-cold"]["maxrss_kib"] / 1024
    rows.append(("peak RSS, `UPCACHE_SIZE=256M`, reading a 1 GiB file", "≤ 320 MiB", f"{rss:.0f} MiB",
                 "met" if rss <= 320 else "not met", ""))
p = full.get("pipe:64", {}).get("ratio_warm")
if p: rows.append(("`read()` on a pipe, pass-through", "≤ 5% slower", f"{(1 / p - 1) * 100:+.1f}% (ratio {p:.2f})",
             "met" if p >= 1 / 1.05 else "not met", ""))

print("| workload | goal | measured (kernel/upcache) | verdict | notes |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
