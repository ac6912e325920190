"""Both sides of the python3 asyncio echo workloads (py_unix_echo, py_tcp_asyncio_echo): a
server that answers answer_to(line) to each line, and a conversation with the process's own server that keeps AHEAD lines sent ahead of the answers
read, so that data is in flight both ways whenever the process is stopped. Every answer must
be answer_to(line) for the line of the same number, in order; the status says so.
"""
import asyncio

from workload_status import write_status

AHEAD = 5


def echo_handler(answer_to):
    async def handle(reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                writer.close()
                return
            writer.write(answer_to(line))
            await writer.drain()

    return handle


async def converse(path, reader, writer, answer_to, pause):
    failure = None
    sent = 0
    count = 0
    while True:
        while sent < count + AHEAD:
            writer.write(b"line %d of the conversation\n" % sent)
            sent += 1
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.readline(), 5)
        except asyncio.TimeoutError:
            answer = b"(no answer within 5 s)"
        want = answer_to(b"line %d of the conversation\n" % count)
        if failure is None and answer != want:
            failure = "answer %d is %r, not %r" % (count, answer, want)
        count += 1
        write_status(path, ("FAIL %s\n" % failure) if failure else ("ok %d\n" % count))
        await asyncio.sleep(pause)
