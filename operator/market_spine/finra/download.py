"""HTTP downloads with an overall deadline, streamed in blocks: ``--file URL`` and FINRA's API.

Called by ``finra.files`` (a weekly file at an http(s) URL) and ``finra.api`` (each request of a
week's fetch). httpx bounds each operation (connect, every read), not a whole download: a server
that sends one byte every few seconds, in its headers or its body, never trips a read timeout and
would keep an ingest waiting for hours. So a :class:`Watchdog` notes every socket a request opens
(httpx's ``trace`` extension reports each connection) and, when the deadline passes, shuts them
down: that wakes a blocked read wherever it is, and the caller reports the deadline in one line.
Bodies are read as they arrive (never the whole body at once) and handed on in blocks, so memory
stays bounded whatever the server sends.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from market_spine.errors import SourceUnavailable

Clock = Callable[[], float]


class Watchdog:
    """Shuts down the sockets of the requests it traces once ``seconds`` have passed.

    Use as a context manager around the requests, and pass :meth:`trace` as their ``trace``
    extension. :attr:`expired` says whether it fired (a read that failed or ended early then
    failed because of the deadline, not because of the server)."""

    def __init__(self, seconds: float, *, clock: Clock = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._ends = clock() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    @property
    def expired(self) -> bool:
        return self._fired or self._clock() >= self._ends

    def remaining(self) -> float:
        return max(0.0, self._ends - self._clock())

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's ``trace`` extension: remember each new connection's socket."""
        if not event.endswith("connect_tcp.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
            fired = self._fired
        if fired:  # connected after the deadline: stop it at once
            _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)  # unlike close(), wakes a read blocked in another thread


def deadline_message(url: str, seconds: float, received: int) -> str:
    return (
        f"{url}: the download did not finish within its deadline of {seconds:g} s "
        f"(SPINE_DOWNLOAD_DEADLINE_SECONDS); {received:,} bytes received"
    )


@contextmanager
def stream_url(url: str, *, read_timeout: float, deadline: float) -> Iterator[Iterator[bytes]]:
    """GET ``url`` and yield an iterator over its body as it arrives.

    One line (:class:`SourceUnavailable`) for an unreachable server, an HTTP error status, a
    stalled read (no byte for ``read_timeout`` seconds), or a download that has not finished after
    ``deadline`` seconds, however slowly its bytes still come."""
    watchdog = Watchdog(deadline)
    received = 0

    def blocks(response: httpx.Response) -> Iterator[bytes]:
        nonlocal received
        for block in response.iter_bytes():  # each piece as it arrives: no wait for a full block
            received += len(block)
            if watchdog.expired:
                raise SourceUnavailable(deadline_message(url, deadline, received))
            yield block
        if watchdog.expired:  # a shut-down socket can look like the end of a body without a length
            raise SourceUnavailable(deadline_message(url, deadline, received))

    timeout = httpx.Timeout(min(read_timeout, deadline))
    with watchdog, httpx.Client(timeout=timeout, follow_redirects=True) as client:
        try:
            with client.stream("GET", url, extensions={"trace": watchdog.trace}) as response:
                if response.status_code >= 400:
                    raise SourceUnavailable(f"{url}: download failed with HTTP {response.status_code}")
                yield blocks(response)
        except httpx.HTTPError as exc:
            if watchdog.expired:
                raise SourceUnavailable(deadline_message(url, deadline, received)) from None
            detail = str(exc) or type(exc).__name__
            raise SourceUnavailable(f"{url}: could not download: {detail}") from None
