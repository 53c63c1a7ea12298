#!/usr/bin/env python3
"""SQLite peers of coherence_test.py (cases sqlite_delete, sqlite_wal,
sqlite_large): processes sharing one database, driven over stdin/stdout with
one command per line and one JSON answer line per command.

usage: sqlite_peer.py reader DB rw|ro        A: "query K", "integrity", "exit"
       sqlite_peer.py writer DB hold|reopen  B: "step K", "integrity", "exit"
       sqlite_peer.py scanner DB PIPEFD      A of sqlite_large: scans the table
              over and over; a line "commit K" on PIPEFD makes it answer
              "scan K RESULT" for the first scan begun after it; "stop" ends
       sqlite_peer.py updater DB             B of sqlite_large: "update K"

rw opens the database with the default connection (read-write), ro with the
URI file:DB?mode=ro. hold keeps one connection; reopen connects for every
step and closes after it (then no one holds the file open for writing
between steps). The module's functions also build the databases and compute
the reference results (the driver runs them plain).
"""

import hashlib
import json
import os
import random
import select
import sqlite3
import sys

TIMEOUT = 120  # busy timeout (seconds): the peers take turns on the locks


def connect(path, mode):
    if mode == "ro":
        return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=TIMEOUT,
                               isolation_level=None)
    c = sqlite3.connect(path, timeout=TIMEOUT, isolation_level=None)
    # No fsync: other processes see the writes through the kernel's page
    # cache either way, and the tests stay fast.
    c.execute("PRAGMA synchronous=OFF")
    return c


def text(rng, n):
    return rng.randbytes(n // 2 + 1).hex()[:n]


# ---------------------------------------------------------------- the shared database

def create_db(path, journal):
    """The initial database (about 2.5 MB): items and orders."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    rng = random.Random(4242)
    c = sqlite3.connect(path, isolation_level=None)
    mode = c.execute("PRAGMA journal_mode=%s" % journal).fetchone()[0]
    assert mode.lower() == journal.lower(), mode
    c.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, category INTEGER, "
              "amount INTEGER, note TEXT)")
    c.execute("CREATE INDEX items_name ON items(name)")
    c.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, item_id INTEGER, qty INTEGER)")
    c.execute("CREATE INDEX orders_item ON orders(item_id)")
    c.execute("BEGIN")
    c.executemany("INSERT INTO items(name, category, amount, note) VALUES (?, ?, ?, ?)",
                  [("n%d" % rng.randrange(100000), rng.randrange(10), rng.randrange(1, 1000),
                    text(rng, rng.randrange(100, 900))) for _ in range(4000)])
    c.executemany("INSERT INTO orders(item_id, qty) VALUES (?, ?)",
                  [(rng.randrange(1, 4001), rng.randrange(1, 50)) for _ in range(6000)])
    c.execute("COMMIT")
    c.close()


def step(c, k):
    """B's scripted transaction number k: inserts, updates, deletes; every
    tenth step is followed by a VACUUM (the whole file rewritten)."""
    rng = random.Random(1000 + k)
    c.execute("BEGIN IMMEDIATE")
    top = c.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0]
    c.executemany("INSERT INTO items(name, category, amount, note) VALUES (?, ?, ?, ?)",
                  [("n%d" % rng.randrange(100000), rng.randrange(10), rng.randrange(1, 1000),
                    text(rng, rng.randrange(50, 1500))) for _ in range(rng.randrange(20, 120))])
    c.executemany("INSERT INTO orders(item_id, qty) VALUES (?, ?)",
                  [(rng.randrange(1, top + 1), rng.randrange(1, 50))
                   for _ in range(rng.randrange(30, 200))])
    m = rng.randrange(2, 9)
    c.execute("UPDATE items SET amount = amount + ?, note = substr(note, 2) || ? "
              "WHERE id % ? = ?", (rng.randrange(1, 50), text(rng, 3), m, rng.randrange(m)))
    c.execute("DELETE FROM items WHERE id % 17 = ? AND id < ?", (k % 17, top // 2 + 40 * k))
    c.execute("DELETE FROM orders WHERE qty = ?", (rng.randrange(1, 50),))
    c.execute("UPDATE orders SET qty = qty + 1 WHERE item_id BETWEEN ? AND ?",
              (rng.randrange(top), rng.randrange(top)))
    c.execute("COMMIT")
    if k % 10 == 9:
        c.execute("VACUUM")


def queries(c, k):
    """A's queries after step k: counts, sums, a range scan, a join."""
    top = c.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0]
    lo = (k * 997) % max(top, 1)
    rows = c.execute("SELECT id, name, amount, note FROM items WHERE id BETWEEN ? AND ? ORDER BY id",
                     (lo, lo + 300)).fetchall()
    return {
        "items": c.execute("SELECT count(*), sum(amount), sum(length(note)) FROM items").fetchone(),
        "orders": c.execute("SELECT count(*), sum(qty) FROM orders").fetchone(),
        "max": top,
        "range": [len(rows), hashlib.sha1(repr(rows).encode()).hexdigest()],
        "join": c.execute("SELECT i.category, count(*), sum(o.qty * i.amount) FROM orders o "
                          "JOIN items i ON i.id = o.item_id GROUP BY i.category "
                          "ORDER BY i.category").fetchall(),
        "index": c.execute("SELECT count(*), sum(amount) FROM items WHERE name BETWEEN 'n2' AND 'n5'")
                  .fetchone(),
    }


def integrity(c):
    return [r[0] for r in c.execute("PRAGMA integrity_check").fetchall()]


# ---------------------------------------------------------------- the large database

LARGE_ROWS = 200000


def create_large_db(path):
    """About 70 MB: one table, rows of ~330 bytes."""
    if os.path.exists(path):
        return
    tmp = path + ".tmp%d" % os.getpid()
    rng = random.Random(99)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    c = sqlite3.connect(tmp, isolation_level=None)
    c.execute("PRAGMA journal_mode=DELETE")
    c.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, val INTEGER, payload TEXT)")
    c.execute("BEGIN")
    base = "".join(rng.choice(alphabet) for _ in range(4096))
    c.executemany("INSERT INTO big(id, val, payload) VALUES (?, ?, ?)",
                  ((i, rng.randrange(1 << 20), base[i % 3000:i % 3000 + 300] + "%08d" % i)
                   for i in range(1, LARGE_ROWS + 1)))
    c.execute("COMMIT")
    c.close()
    os.rename(tmp, path)


SCAN = ("SELECT count(*), sum(val), sum(id * (val % 1009)), sum(length(payload)), "
        "sum(unicode(substr(payload, 1 + id % 300, 1))) FROM big")


def scan(c):
    return list(c.execute(SCAN).fetchone())


def update(c, k):
    """Commit k of sqlite_large: rows all over the file change."""
    rng = random.Random(5000 + k)
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE big SET val = val + ? WHERE id % 41 = ?", (rng.randrange(1, 1000), k % 41))
    c.execute("UPDATE big SET payload = ? || substr(payload, 4) WHERE id % 997 = ?",
              (text(rng, 3), rng.randrange(997)))
    c.execute("DELETE FROM big WHERE id % 4999 = ?", (k,))
    c.execute("INSERT INTO big(val, payload) VALUES (?, ?)", (k, text(rng, 400)))
    c.execute("COMMIT")


# ---------------------------------------------------------------- the roles

def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def guarded(fn):
    try:
        return fn()
    except sqlite3.Error as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}


def role_reader(path, mode):
    c = connect(path, mode)
    for line in sys.stdin:
        w = line.split()
        if w[0] == "query":
            answer(guarded(lambda: queries(c, int(w[1]))))
        elif w[0] == "integrity":
            answer(guarded(lambda: integrity(c)))
        elif w[0] == "exit":
            answer("ok")
            break


def role_writer(path, hold):
    c = connect(path, "rw") if hold == "hold" else None
    for line in sys.stdin:
        w = line.split()
        if w[0] == "step":
            conn = c or connect(path, "rw")
            r = guarded(lambda: step(conn, int(w[1])) or "ok")
            if c is None:
                conn.close()
            answer(r)
        elif w[0] == "integrity":
            conn = c or connect(path, "rw")
            answer(guarded(lambda: integrity(conn)))
            if c is None:
                conn.close()
        elif w[0] == "exit":
            answer("ok")
            break


def role_scanner(path, pipefd):
    c = connect(path, "ro")
    pending = []
    buf = b""
    scans = 0
    while True:
        # The commits announced before this scan begins.
        while select.select([pipefd], [], [], 0)[0]:
            data = os.read(pipefd, 4096)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                msg, buf = buf.split(b"\n", 1)
                if msg == b"stop":
                    answer({"scans": scans})
                    return
                pending.append(int(msg.split()[1]))
        r = guarded(lambda: scan(c))
        scans += 1
        for k in pending:
            answer({"commit": k, "scan": r})
        pending = []


def role_updater(path):
    for line in sys.stdin:
        w = line.split()
        if w[0] == "update":
            c = connect(path, "rw")
            answer(guarded(lambda: update(c, int(w[1])) or "ok"))
            c.close()
        elif w[0] == "exit":
            answer("ok")
            break


def main():
    role = sys.argv[1]
    if role == "reader":
        role_reader(sys.argv[2], sys.argv[3])
    elif role == "writer":
        role_writer(sys.argv[2], sys.argv[3])
    elif role == "scanner":
        role_scanner(sys.argv[2], int(sys.argv[3]))
    elif role == "updater":
        role_updater(sys.argv[2])
    else:
        sys.exit("unknown role " + role)


if __name__ == "__main__":
    main()
