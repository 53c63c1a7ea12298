#!/usr/bin/env python3
"""The differential tester's runner: the kernel is the oracle.

Runs upcache_difftest (difftest.c) on the same sequence of calls twice, plain
and with LD_PRELOAD=libupcache.so, each in a fresh directory, and fails on any
difference in what the driver printed (return values, errno, hashes of the
bytes, offsets, sizes).

usage: difftest.py --driver BIN --lib LIB --dir DIR [--config default|small|tiny]
                   (SCRIPT... | --seeds FIRST-LAST --calls N | --soak SECONDS [--calls N])

--soak runs random sequences from a time-based first seed until SECONDS have
passed, and prints the seed of any failure (re-run it with --seeds S-S).
ASan builds: when LIB needs libasan, the runtime is preloaded first and its
link-order check is turned off, so an uninstrumented program (sh, dd) can
carry the instrumented library.
"""

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# The cache configurations, one list for every plain-versus-preload test.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shim"))
from shim_test import CONFIGS  # noqa: E402


def sanitizer_preload(lib):
    """The ASan runtime the library needs, or None."""
    try:
        out = subprocess.run(["ldd", lib], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True).stdout
    except OSError:
        return None
    m = re.search(r"^\s*libasan\.so\S*\s*=>\s*(\S+)", out, re.M)
    return m.group(1) if m else None


class Runner:
    def __init__(self, a):
        self.a = a
        self.driver = os.path.abspath(a.driver)
        self.lib = os.path.abspath(a.lib)
        self.asan = sanitizer_preload(self.lib)
        os.makedirs(a.dir, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="difftest-%s-" % a.config, dir=a.dir)
        self.failures = 0
        self.runs = 0

    def env(self, preload):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("UPCACHE_") and k != "LD_PRELOAD"}
        if self.asan:
            opts = env.get("ASAN_OPTIONS", "")
            env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + \
                "verify_asan_link_order=0:detect_leaks=0"
        if preload:
            env["LD_PRELOAD"] = (self.asan + " " if self.asan else "") + self.lib
            env["UPCACHE_STATS_DIR"] = os.path.join(self.work, "stats")
            env.update(CONFIGS[self.a.config])
        return env

    def run_one(self, name, args, stdin=None):
        os.makedirs(os.path.join(self.work, "stats"), exist_ok=True)
        outs = []
        for preload in (False, True):
            d = os.path.join(self.work, "pre" if preload else "plain")
            shutil.rmtree(d, ignore_errors=True)
            p = subprocess.run([self.driver, "--dir", d] + args, env=self.env(preload),
                               input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=120)
            outs.append(p)
        plain, pre = outs
        self.runs += 1
        bad = []
        if plain.returncode != 0:
            bad.append("plain run exited %d: %s" % (plain.returncode, plain.stderr.decode()[-800:]))
        if pre.returncode != plain.returncode:
            bad.append("exit status %d under the preload, %d plain; stderr: %s"
                       % (pre.returncode, plain.returncode, pre.stderr.decode()[-800:]))
        if pre.stdout != plain.stdout:
            a = plain.stdout.decode(errors="replace").splitlines()
            b = pre.stdout.decode(errors="replace").splitlines()
            diff = list(difflib.unified_diff(a, b, "plain", "preload", n=4, lineterm=""))
            bad.append("output differs:\n" + "\n".join(diff[:80]))
        if b"upcache:" in pre.stderr:
            bad.append("the shim complained: %s" % pre.stderr.decode()[-500:])
        if bad:
            self.failures += 1
            print("FAIL: %s [%s]\n%s" % (name, self.a.config, "\n".join(bad)), flush=True)
            return False
        if not self.a.quiet:
            print("ok   %s [%s] (%d lines)" % (name, self.a.config, plain.stdout.count(b"\n")),
                  flush=True)
        return True

    def differs(self, script):
        """True when the script's output differs plain vs preloaded (quietly)."""
        q, self.a.quiet = self.a.quiet, True
        import io, contextlib
        with contextlib.redirect_stdout(io.StringIO()):
            # Lines of a seed run as --random runs them (no passfd receiver,
            # so the calls get the same descriptor numbers).
            args = (["--no-receiver"] if self.a.seeds else []) + ["-"]
            ok = self.run_one("minimize", args, stdin=script.encode())
        self.a.quiet = q
        self.failures -= 0 if ok else 1
        return not ok

    def minimize(self, lines):
        """Delta debugging: a smallest subsequence of lines that still differs."""
        n = 2
        while len(lines) >= 2:
            chunk = max(1, len(lines) // n)
            reduced = False
            for i in range(0, len(lines), chunk):
                trial = lines[:i] + lines[i + chunk:]
                if trial and self.differs("".join(trial)):
                    lines, n, reduced = trial, max(n - 1, 2), True
                    break
            if not reduced:
                if chunk == 1:
                    break
                n = min(len(lines), n * 2)
        return lines

    def close(self):
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="default")
    ap.add_argument("--seeds", help="FIRST-LAST")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--soak", type=float, help="seconds")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--minimize", action="store_true",
                    help="with --seeds or one SCRIPT: print a smallest failing subsequence")
    ap.add_argument("scripts", nargs="*")
    a = ap.parse_args()
    r = Runner(a)
    if a.minimize:
        if a.seeds:
            seed = int(a.seeds.partition("-")[0])
            text = subprocess.run([r.driver, "--gen", str(seed), str(a.calls)],
                                  stdout=subprocess.PIPE, text=True, check=True).stdout
        else:
            text = open(a.scripts[0]).read()
        lines = [l + "\n" for l in text.splitlines() if l.strip() and not l.startswith("#")]
        if not r.differs("".join(lines)):
            print("no difference to minimize")
            return 0
        print("".join(r.minimize(lines)), end="")
        r.close()
        return 0
    try:
        for s in a.scripts:
            with open(s, "rb") as f:
                text = f.read()
            r.run_one(os.path.basename(s), ["-"], stdin=text)
        if a.seeds:
            first, _, last = a.seeds.partition("-")
            for seed in range(int(first), int(last or first) + 1):
                r.run_one("random seed %d (%d calls)" % (seed, a.calls),
                          ["--random", str(seed), str(a.calls)])
        if a.soak:
            end = time.time() + a.soak
            seed = int(time.time() * 1000) % 1000000000
            a.quiet = True
            while time.time() < end:
                if not r.run_one("random seed %d (%d calls)" % (seed, a.calls),
                                 ["--random", str(seed), str(a.calls)]):
                    print("re-run: difftest.py ... --seeds %d-%d --calls %d" % (seed, seed, a.calls))
                seed += 1
            print("soak: %d sequences, %d failed" % (r.runs, r.failures))
    finally:
        r.close()
    if r.failures:
        print("%d failure(s)" % r.failures)
        return 1
    if r.runs == 0:
        print("FAIL: nothing was run")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
