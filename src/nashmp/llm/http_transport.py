"""HTTP transport of :class:`~nashmp.llm.http_judge.HTTPJudge`: a total deadline per request, no redirects.

Standard library only (``urllib``, so proxies from the environment still apply).
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import ipaddress
import math
import socket
import threading
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__: list[str] = []


class _Deadline:
    """Shuts the request's socket down when the total deadline passes, which wakes a read blocked on it.

    A socket timeout bounds each read, not the request: a server that sends one byte per second would hold
    a ``timeout=1`` request forever. ``shutdown`` (unlike ``close``) interrupts a ``recv`` in another thread.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shutdown(sock)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        # OSError: already closed, or detached by the TLS wrapper (whose own socket is watched too). The
        # base-class method, because SSLSocket.shutdown would also drop its SSL object under the reader.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched(base: type[http.client.HTTPConnection], deadline: _Deadline) -> Callable[..., http.client.HTTPConnection]:
    """A connection class whose raw socket and (for HTTPS) TLS socket are both watched by ``deadline``."""

    class Watched(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            create: Callable[..., socket.socket] = socket.create_connection
            self._create_connection = lambda *a, **k: deadline.watch(create(*a, **k))

        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    return Watched


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib would re-send the ``Authorization`` header to the new host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx then surfaces as an HTTPError


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(_watched(http.client.HTTPConnection, deadline), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            context = getattr(self, "_context", None)  # the handler's SSL context (None: the default one)
            return self.do_open(_watched(http.client.HTTPSConnection, deadline), req, context=context)

    return urllib.request.build_opener(_NoRedirect, HTTP, HTTPS)  # proxies from the environment still apply


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or an HTTP date); ``None`` if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
