#!/usr/bin/env python3
"""py_tcp_asyncio_echo: a python3 asyncio TCP echo server, with a client of its own in the same
process mid-conversation, that must survive a checkpoint with its connections.

Usage: py_tcp_asyncio_echo.py STATUS_FILE PORT [ADDRESS] (default 127.0.0.1). Every client
gets "echo:<line>" for each line it sends. The process's own client keeps 5 lines sent ahead
of the answers it has read, so that data is in flight both ways on a TCP connection whose two
ends are both in the job whenever it is stopped; every answer must be the echo of the line of
the same number, in order. Writes "ok <count>" or "FAIL <reason>" atomically.
"""
import asyncio
import sys

sys.dont_write_bytecode = True  # nothing written into the source tree
from asyncio_conversation import converse, echo_handler  # noqa: E402 (after the line above)


async def main(path, port, address):
    answer_to = lambda line: b"echo:" + line  # noqa: E731
    server = await asyncio.start_server(echo_handler(answer_to), address, port, reuse_address=True)
    reader, writer = await asyncio.open_connection(address, port)
    await converse(path, reader, writer, answer_to, 0.01)
    server.close()


if __name__ == "__main__":
    if len(sys.argv) < 3 or not sys.argv[1].startswith("/"):
        sys.stderr.write("usage: py_tcp_asyncio_echo.py STATUS_FILE PORT [ADDRESS]\n")
        sys.exit(2)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"))
