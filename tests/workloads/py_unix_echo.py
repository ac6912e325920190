#!/usr/bin/env python3
"""py_unix_echo: a python3 asyncio echo server on a unix socket (abstract name) and its client,
in one process, mid-conversation, that must survive a checkpoint.

Usage: py_unix_echo.py STATUS_FILE. The client keeps 5 lines sent ahead of the answers it has
read, so that lines are in flight both ways whenever the process is stopped; every answer
must be the upper-cased line of the same number, in order. asyncio's own self-pipe is a unix
socketpair, and its event loop an epoll. Writes "ok <count>" or "FAIL <reason>" atomically.
"""
import asyncio
import sys

sys.dont_write_bytecode = True  # nothing written into the source tree
from asyncio_conversation import converse, echo_handler  # noqa: E402 (after the line above)
import zlib


async def main(path):
    name = "\0py-unix-echo-%08x" % zlib.crc32(path.encode())
    server = await asyncio.start_unix_server(echo_handler(bytes.upper), path=name)
    reader, writer = await asyncio.open_unix_connection(path=name)
    await converse(path, reader, writer, bytes.upper, 0.02)
    server.close()


if __name__ == "__main__":
    if len(sys.argv) < 2 or not sys.argv[1].startswith("/"):
        sys.stderr.write("usage: py_unix_echo.py STATUS_FILE (absolute path)\n")
        sys.exit(2)
    asyncio.run(main(sys.argv[1]))
