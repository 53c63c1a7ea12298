#!/usr/bin/env python3
"""A third-party file-I/O test suite under the preload: CPython's own tests
of files, os calls, io, mmap and friends (the `test` package), run plain and
under libupcache.so. Every test case must end the same way in both runs
(passed, failed, error or skipped: a test that fails plain on this machine
must fail the same way preloaded, and no other may); the preloaded run must
have been served by the cache (upcache stat).

usage: python_suite_test.py --lib LIB --tool UPCACHE --dir DIR [--config default|small|tiny] [--modules M ...]

Needs an interpreter with the `test` package (Debian: libpython3.11-testsuite,
which the README's commands install). Without one it exits 77 (skipped).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import shim_test
from programs_test import upcache_totals
from shim_test import fail

# Modules whose subject is file I/O through the read and write families,
# offsets, descriptors, mmap, temporary files and copies.
MODULES = ["test_fileio", "test_file", "test_io", "test_os", "test_posix", "test_mmap",
           "test_tempfile", "test_shutil", "test_fileinput", "test_largefile",
           # Readers of file formats and databases, which seek and read in
           # every pattern (zip central directories, tar headers, sqlite pages).
           "test_zipfile", "test_tarfile", "test_gzip", "test_bz2", "test_lzma", "test_zipimport",
           "test_pathlib", "test_filecmp", "test_mailbox", "test_sqlite3", "test_csv", "test_zipapp",
           "test_py_compile", "test_linecache", "test_codecs", "test_pickle", "test_shelve",
           "test_dbm", "test_wave", "test_netrc", "test_configparser", "test_plistlib", "test_json",
           "test_fcntl"]


def interpreter():
    for exe in (sys.executable, "/usr/bin/python3"):
        if exe and os.path.exists(exe) and subprocess.run(
                [exe, "-c", "import test.libregrtest, test.support"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return exe
    return None


def outcomes(junit_path):
    """{test case name: 'ok' | 'failure' | 'error' | 'skipped'} from regrtest's JUnit XML."""
    result = {}
    for case in ET.parse(junit_path).getroot().iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        result[case.get("name")] = kinds[0] if kinds else "ok"
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--config", choices=sorted(shim_test.CONFIGS), default="default")
    ap.add_argument("--modules", nargs="+", default=MODULES, help="test modules to run")
    a = ap.parse_args()
    exe = interpreter()
    if exe is None:
        print("SKIP: no Python with the test package (install libpython3.11-testsuite)")
        return 77
    os.makedirs(a.dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="pysuite-%s-" % a.config, dir=a.dir)
    try:
        r = shim_test.Runner(os.path.abspath(a.lib), a.config, workdir)
        runs = {}
        for preload in (False, True):
            env = r.env(preload)
            # The tests' own scratch files go to the filesystem under test.
            tmp = os.path.join(workdir, "tmp-%d" % preload)
            os.makedirs(tmp)
            env["TMPDIR"] = tmp
            if preload:
                env["UPCACHE_STATS_KEEP"] = "1"  # read by upcache stat afterwards
            junit = os.path.join(workdir, "junit-%d.xml" % preload)
            p = subprocess.run([exe, "-m", "test", "-q", "--junit-xml", junit] + a.modules, env=env,
                               cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace", timeout=1200)
            if not os.path.exists(junit):
                fail("python test suite %s: no results (exit status %d):\n%s"
                     % ("preloaded" if preload else "plain", p.returncode, p.stdout[-3000:]))
                return 1
            runs[preload] = (p, outcomes(junit))
        plain, pre = runs[False][1], runs[True][1]
        if len(plain) < 500:
            fail("python test suite: only %d test cases ran plain" % len(plain))
        differ = sorted(n for n in set(plain) | set(pre) if plain.get(n) != pre.get(n))
        for n in differ[:20]:
            fail("python test suite: %s: %s plain, %s preloaded" % (n, plain.get(n, "absent"), pre.get(n, "absent")))
        if differ:
            print(runs[True][0].stdout[-4000:])
        counts = {}
        for v in pre.values():
            counts[v] = counts.get(v, 0) + 1
        totals = upcache_totals(a.tool, r.stats_dir) or {}
        if totals.get("reads", 0) == 0 or totals.get("bytes_read", 0) == 0:
            fail("python test suite: the preloaded run served no reads from the cache: %s" % totals)
        if not shim_test.failures:
            print("ok   python test suite [%s]: %d test cases end alike (%s); served %d reads, "
                  "%d bytes (%d misses)" % (a.config, len(pre), ", ".join(
                      "%s %d" % kv for kv in sorted(counts.items())), totals["reads"],
                      totals["bytes_read"], totals.get("misses", 0)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if shim_test.failures else 0


if __name__ == "__main__":
    sys.exit(main())
