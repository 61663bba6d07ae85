"""A TEST DOUBLE of InfluxDB v2's write endpoint (``POST /api/v2/write``) -- not InfluxDB.

It checks the token, parses line protocol, records every point with its arrival time, and can be told to
answer 204 (``mode="ok"``), 503 (``"unavailable"``), 401 (``"unauthorized"``), or to go away entirely
(``go_away()``: the listening socket is closed, so connections are refused) and come back on the same port.
Used by the writer-contract tests and by bench/analytics_throughput.py.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, str], ...]
    time_ns: int
    arrived: float

    @property
    def series_key(self) -> tuple[str, tuple[tuple[str, str], ...], int]:
        return (self.measurement, self.tags, self.time_ns)

    def tag(self, name: str) -> str:
        return dict(self.tags)[name]

    def field(self, name: str) -> str:
        return dict(self.fields)[name]


def _split_unescaped(text: str, separator: str, quotes: bool = False) -> list[str]:
    parts, current, i, in_quotes = [], [], 0, False
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if quotes and char == '"':
            in_quotes = not in_quotes
        if char == separator and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ',= \\"':
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_line(line: str, arrived: float = 0.0) -> Point:
    """Parse one line of line protocol; raises ValueError on anything malformed."""
    sections = _split_unescaped(line, " ", quotes=True)
    if len(sections) != 3:
        raise ValueError(f"expected 'measurement[,tags] fields timestamp', got {line!r}")
    head, field_text, stamp = sections
    head_parts = _split_unescaped(head, ",")
    measurement = _unescape(head_parts[0])
    tags = []
    for item in head_parts[1:]:
        key, _, value = item.partition("=")
        if not key or not value:
            raise ValueError(f"bad tag {item!r}")
        tags.append((_unescape(key), _unescape(value)))
    fields = []
    for item in _split_unescaped(field_text, ",", quotes=True):
        key, _, value = item.partition("=")
        if not key or not value:
            raise ValueError(f"bad field {item!r}")
        if value.startswith('"'):
            if not value.endswith('"') or len(value) < 2:
                raise ValueError(f"bad string field {item!r}")
        elif value.endswith("i"):
            int(value[:-1])
        elif value not in ("true", "false", "t", "f", "T", "F", "True", "False", "TRUE", "FALSE"):
            float(value)
        fields.append((_unescape(key), value))
    if not measurement or not fields:
        raise ValueError(f"no measurement or no fields in {line!r}")
    return Point(measurement, tuple(sorted(tags)), tuple(fields), int(stamp), arrived)


class InfluxWriteDouble:
    def __init__(
        self,
        token: str = "test-token",
        org: str = "mov_industria",
        bucket: str = "mov_dados",
        host: str = "127.0.0.1",
        port: int = 0,
        parse: bool = True,
    ) -> None:
        self.token, self.org, self.bucket, self.host = token, org, bucket, host
        self.parse = parse
        self.mode = "ok"
        self.fail_next = 0  # answer 503 to this many requests, then back to mode
        self.points: list[Point] = []
        self.raw_batches: list[tuple[float, list[str]]] = []
        self.batch_sizes: list[int] = []
        self.statuses: Counter[int] = Counter()
        self.requests = 0
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._connections: set[socket.socket] = set()
        self._away = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        double = self
        self._away = False

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with double._lock:
                    double._connections.add(self.connection)

            def finish(self) -> None:
                with double._lock:
                    double._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                # Answer while holding the lock: go_away() cannot cut a connection between recording a
                # batch and acknowledging it, so "recorded" always means "acknowledged". Once gone, a request
                # that still arrives on an open connection is neither recorded nor answered.
                with double._lock:
                    if double._away:
                        self.close_connection = True
                        return
                    status = double._handle(
                        self.path, self.headers.get("Authorization", ""), self.headers.get("Content-Encoding", ""), body
                    )
                    self.send_response(status)
                    payload = b"" if status == 204 else b'{"code":"error","message":"double says no"}'
                    self.send_header("Content-Length", str(len(payload)))
                    if payload:
                        self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def go_away(self) -> None:
        """Close the listening socket and every open (keep-alive) connection: refused until come_back().

        Open connections get a FIN after what was already sent (SHUT_WR), never a reset: a reset can discard an
        acknowledgement the client has not read yet, and the client would then send that batch again. Nothing
        that arrives after this is recorded."""
        with self._lock:
            self._away = True
            connections, self._connections = list(self._connections), set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)

    def come_back(self) -> None:
        if self._server is None:
            self.start()

    def close(self) -> None:
        self.go_away()

    def _handle(self, path: str, auth: str, encoding: str, body: bytes) -> int:
        """Called with the lock held."""
        self.requests += 1
        status = self._decide(path, auth)
        if status == 204:
            try:
                self._record(gzip.decompress(body) if encoding == "gzip" else body)
            except ValueError as exc:
                self.errors.append(str(exc))
                status = 400
        self.statuses[status] += 1
        return status

    def _decide(self, path: str, auth: str) -> int:
        url = urlsplit(path)
        if url.path != "/api/v2/write":
            return 404
        if self.mode == "unauthorized" or auth != f"Token {self.token}":
            return 401
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503
        if self.mode == "unavailable":
            return 503
        query = parse_qs(url.query)
        if query.get("org") != [self.org] or query.get("bucket") != [self.bucket]:
            self.errors.append(f"wrong org/bucket: {query}")
            return 404
        if query.get("precision", ["ns"]) != ["ns"]:
            self.errors.append(f"unexpected precision {query.get('precision')}")
            return 400
        return 204

    def _record(self, body: bytes) -> None:
        arrived = time.time()
        lines = [x for x in body.decode("utf-8").split("\n") if x]
        self.batch_sizes.append(len(lines))
        if self.parse:
            self.points.extend(parse_line(x, arrived) for x in lines)
        else:
            self.raw_batches.append((arrived, lines))

    # -- views for assertions ---------------------------------------------------------------------
    def snapshot(self, measurement: str | None = None) -> list[Point]:
        with self._lock:
            points = list(self.points)
        return [p for p in points if measurement is None or p.measurement == measurement]

    def duplicates(self, measurement: str | None = None) -> int:
        counts = Counter(p.series_key for p in self.snapshot(measurement))
        return sum(n - 1 for n in counts.values() if n > 1)
