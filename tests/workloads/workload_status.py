"""The workload protocol for the python3 workloads, as workload_status.h is for the C ones.

write_status(path, text) replaces the status file atomically: "<path>.tmp" is made anew, given
a second name that is renamed over path, and keeps its own name until the next write, so that
a checkpoint taken while it is open can always reopen it by name.
"""
import os


def write_status(path, text):
    tmp, renamed = path + ".tmp", path + ".new"
    for name in (tmp, renamed):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
    with open(tmp, "x") as f:
        f.write(text)
    os.link(tmp, renamed)
    os.replace(renamed, path)
