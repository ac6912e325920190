#!/usr/bin/env python3
"""py_counter: a Python interpreter with a 200k-entry dict that must survive a checkpoint.

Usage: py_counter.py STATUS_FILE. Every iteration (20 ms) it changes one entry, keeping an
expected checksum up to date, and every 10 iterations re-sums the whole dict. Writes
"ok <count>" or "FAIL <reason>" atomically to STATUS_FILE, following the workload protocol.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # nothing written into the source tree
from workload_status import write_status  # noqa: E402 (after the line above)

MASK = (1 << 64) - 1


def entry_sum(key, value):
    return ((key * 0x9E3779B1) ^ value) & MASK


def main():
    if len(sys.argv) < 2 or not sys.argv[1].startswith("/"):
        sys.stderr.write("usage: py_counter.py STATUS_FILE (absolute path)\n")
        sys.exit(2)
    path = sys.argv[1]
    table = {i: (i * 2654435761) % (1 << 32) for i in range(200000)}
    expected = sum(entry_sum(k, v) for k, v in table.items()) & MASK
    pid = os.getpid()
    failure = None
    count = 0
    while True:
        count += 1
        key = (count * 7919) % len(table)
        new = (table[key] * 6364136223846793005 + count) % (1 << 32)
        expected = (expected - entry_sum(key, table[key]) + entry_sum(key, new)) & MASK
        table[key] = new
        if failure is None and count % 10 == 0:
            got = sum(entry_sum(k, v) for k, v in table.items()) & MASK
            if len(table) != 200000:
                failure = "dict has %d entries, expected 200000" % len(table)
            elif got != expected:
                failure = "dict checksum %x, expected %x at count %d" % (got, expected, count)
        if failure is None and os.getpid() != pid:
            failure = "pid changed from %d to %d" % (pid, os.getpid())
        write_status(path, ("FAIL %s\n" % failure) if failure else ("ok %d\n" % count))
        time.sleep(0.02)


if __name__ == "__main__":
    main()
