"""An HTTPS webhook receiver on loopback, signed by a throwaway test CA, that does as it is told.

Each test scripts the answers (status codes, redirects, a stall, a huge body) and reads back every
request exactly as it arrived: headers and the raw body bytes, with arrival times.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    stall: float = 0.0  # seconds to wait before answering (a timeout)
    huge_body: int = 0  # stream this many bytes of body


class Receiver:
    def __init__(self, ca: trustme.CA, default: Answer | None = None) -> None:
        self.requests: list[Received] = []
        self.script: deque[Answer] = deque()
        self.default = default or Answer()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, {k: v for k, v in self.headers.items()}, body))
                    answer = receiver.script.popleft() if receiver.script else receiver.default
                if answer.stall:
                    time.sleep(answer.stall)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    if answer.huge_body:
                        self.send_header("Content-Length", str(answer.huge_body))
                        self.end_headers()
                        chunk = b"x" * 65536
                        sent = 0
                        while sent < answer.huge_body:
                            self.wfile.write(chunk)
                            sent += len(chunk)
                    else:
                        self.send_header("Content-Length", str(len(answer.body)))
                        self.end_headers()
                        self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        # The handshake happens in the handler thread: a client that connects and never speaks TLS
        # must not stall accept() (and with it serve_forever and close()).
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, *answers: Answer) -> None:
        self.script.extend(answers)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self) -> int:
        with self._lock:
            return len(self.requests)
