"""A server that never finishes answering: it trickles its bytes, so no read ever waits long.

Used by the tests of download deadlines (``--file URL`` and FINRA's API): a server like this never
trips a read timeout, only an overall deadline stops a client reading from it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def trickling_server(header: bytes, body_byte: bytes, delay: float) -> Iterator[str]:
    """A server on 127.0.0.1 that sends ``header`` one byte at a time, then ``body_byte`` forever,
    ``delay`` seconds apart: no read ever waits long, the answer never ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                for byte in header:
                    if stop.wait(delay):
                        return
                    conn.sendall(bytes([byte]))
                while not stop.wait(delay):
                    conn.sendall(body_byte)
            except OSError:
                return  # the client gave up: what the test expects

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/week.csv"
    finally:
        stop.set()
        thread.join()
        listener.close()
