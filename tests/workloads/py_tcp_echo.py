# py_tcp_echo: Python's own threading TCP server (socketserver), a program none of us wrote
# the socket code of: answers "echo:<line>" to each line of each client.
#   python3 py_tcp_echo.py STATUS PORT [ADDRESS]   (default 127.0.0.1)
# Writes "ok <n>" to STATUS every 20 ms from a thread of its own (the workload protocol).
import os
import socketserver
import sys
import threading
import time

status, port = sys.argv[1], int(sys.argv[2])
address = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(b"echo:" + line)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def report():
    n = 0
    while True:
        n += 1
        with open(status + ".tmp", "w") as f:
            f.write("ok %d\n" % n)
        os.replace(status + ".tmp", status)
        time.sleep(0.02)


server = Server((address, port), Handler)
threading.Thread(target=report, daemon=True).start()
server.serve_forever()
