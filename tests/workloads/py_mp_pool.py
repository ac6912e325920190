#!/usr/bin/env python3
"""py_mp_pool: a multiprocessing.Pool(2) whose work must go on right across a checkpoint.

Usage: py_mp_pool.py STATUS_FILE. Every iteration it maps a function over 16 numbers on the
pool's two workers and checks the results. The pool's semaphores are POSIX semaphores: files
of /dev/shm created, mapped shared and unlinked at once, shared by the three processes. Writes
"ok <count>" or "FAIL <reason>" atomically to STATUS_FILE, following the workload protocol.
"""
import multiprocessing
import sys
import time

sys.dont_write_bytecode = True  # nothing written into the source tree
from workload_status import write_status  # noqa: E402 (after the line above)


def work(x):
    return (x * x * 2654435761 + 12345) % (1 << 32)


def main():
    if len(sys.argv) < 2 or not sys.argv[1].startswith("/"):
        sys.stderr.write("usage: py_mp_pool.py STATUS_FILE (absolute path)\n")
        sys.exit(2)
    path = sys.argv[1]
    failure = None
    count = 0
    with multiprocessing.get_context("fork").Pool(2) as pool:
        while True:
            count += 1
            if failure is None:
                xs = list(range(count, count + 16))
                try:
                    got = pool.map_async(work, xs).get(timeout=10)
                except Exception as e:  # a lost wakeup or a dead worker
                    failure = "pool.map at count %d: %r" % (count, e)
                else:
                    if got != [work(x) for x in xs]:
                        failure = "wrong results at count %d: %r" % (count, got)
            write_status(path, ("FAIL %s\n" % failure) if failure else ("ok %d\n" % count))
            time.sleep(0.02)


if __name__ == "__main__":
    main()
