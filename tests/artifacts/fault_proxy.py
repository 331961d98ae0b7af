"""A fault-injecting TCP proxy between an S3 client and a real S3 server (moto), in threads."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Request:
    """One HTTP request the proxy saw."""

    method: str
    path: str
    headers: dict[str, str]


_SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><Resource>/</Resource>"
    b"<RequestId>proxy</RequestId><HostId>proxy</HostId></Error>"
)


class FaultProxy:
    """A TCP proxy to the S3 server in threads; records requests and injects faults.

    ``cut_gets`` GETs of ``cut_path`` are cut after ``cut_after`` bytes of response (headers
    included); ``on_cut`` runs just before a cut. The first ``slowdowns`` requests get a 503
    SlowDown. With ``drop_puts_every`` = k, every k-th PUT (up to ``max_put_drops``) has its
    connection cut after the request head and part of its body went through: an upload that
    dies mid-transfer, with no response. Every loop stops by itself after ``lifetime`` seconds.
    """

    def __init__(
        self,
        upstream: str,
        *,
        cut_path: str | None = None,
        cut_after: int = 0,
        cut_gets: int = 0,
        on_cut: Callable[[], None] | None = None,
        slowdowns: int = 0,
        drop_puts_every: int = 0,
        max_put_drops: int = 1_000_000,
        lifetime: float = 30.0,
    ) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self.cut_path = cut_path
        self.cut_after = cut_after
        self._cuts_left = cut_gets
        self._on_cut = on_cut
        self._slowdowns_left = slowdowns
        self.requests: list[Request] = []
        self.cuts = 0
        self.slowdowns_sent = 0
        self.drop_puts_every = drop_puts_every  # may be changed while the proxy runs
        self._drops_left = max_put_drops
        self.puts = 0
        self.put_drops = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting, drop open connections, join the threads."""
        self._stop.set()
        self._acceptor.join(timeout=2)
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def gets(self, path: str) -> list[Request]:
        """The GET requests the proxy saw for one path."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and r.path == path]

    def _alive(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _accept_loop(self) -> None:
        while self._alive():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._relay, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _relay(self, client: socket.socket) -> None:
        upstream = None
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
            pending = b""  # request bytes not parsed yet
            body_left = 0  # bytes of the current request's body still to pass through
            budget: int | None = None  # response bytes to pass before a cut, when armed
            while self._alive():
                ready, _, _ = select.select([client, upstream], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream:
                        if budget is not None and len(data) >= budget:
                            client.sendall(data[:budget])
                            self._cut()
                            return
                        if budget is not None:
                            budget -= len(data)
                        client.sendall(data)
                        continue
                    pending += data
                    out = b""
                    while pending:
                        if body_left:
                            n = min(body_left, len(pending))
                            out, pending, body_left = out + pending[:n], pending[n:], body_left - n
                            continue
                        end = pending.find(b"\r\n\r\n")
                        if end < 0:
                            break
                        head, pending = pending[: end + 4], pending[end + 4 :]
                        request = self._record(head)
                        body_left = int(request.headers.get("content-length", "0"))
                        if self._take_slowdown():
                            self._send_slowdown(client, request)
                            return
                        if self._take_cut(request):
                            budget = self.cut_after
                        if self._take_put_drop(request):
                            # Half the body (or the head alone) reaches the server, then nothing.
                            upstream.sendall(out + head + pending[: body_left // 2])
                            return
                        out += head
                    if out:
                        upstream.sendall(out)
        except OSError:
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def _record(self, head: bytes) -> Request:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        request = Request(method, target.split("?", 1)[0], headers)
        with self._lock:
            self.requests.append(request)
        return request

    def _take_slowdown(self) -> bool:
        with self._lock:
            if self._slowdowns_left <= 0:
                return False
            self._slowdowns_left -= 1
            self.slowdowns_sent += 1
            return True

    def _take_cut(self, request: Request) -> bool:
        with self._lock:
            if request.method != "GET" or request.path != self.cut_path or self._cuts_left <= 0:
                return False
            self._cuts_left -= 1
            return True

    def _take_put_drop(self, request: Request) -> bool:
        with self._lock:
            if request.method != "PUT":
                return False
            self.puts += 1
            every = self.drop_puts_every
            if not every or self.puts % every or self._drops_left <= 0:
                return False
            self._drops_left -= 1
            self.put_drops += 1
            return True

    def _cut(self) -> None:
        with self._lock:
            self.cuts += 1
        if self._on_cut:
            self._on_cut()  # before the close, so the client's retry comes after it

    @staticmethod
    def _send_slowdown(client: socket.socket, request: Request) -> None:
        body = b"" if request.method == "HEAD" else _SLOWDOWN_BODY
        head = (
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(_SLOWDOWN_BODY)}\r\nConnection: close\r\n\r\n"
        )
        client.sendall(head.encode() + body)
