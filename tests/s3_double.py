"""A test double of an S3 bucket (path-style, no authentication) for rclone's s3 backend, on loopback: enough of the
API for listing, upload, download, server-side copy and delete. With `flip` set, it stores every upload with one
byte changed and reports the MD5 (ETag) of what it stored: a backend that corrupts data, as a failing disk or a
faulty gateway would. A test double, not S3: it checks no signature and no Content-MD5."""

from __future__ import annotations

import datetime
import hashlib
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


@dataclass
class Stored:
    body: bytes
    meta: dict[str, str]
    modified: float


@dataclass
class Bucket:
    objects: dict[str, Stored] = field(default_factory=dict)
    flip: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def etag(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'  # S3's ETag of a single-part object


def iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Handler(BaseHTTPRequestHandler):
    bucket: Bucket
    name: str

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _split(self) -> tuple[str, str, dict[str, list[str]]]:
        url = urllib.parse.urlsplit(self.path)
        parts = urllib.parse.unquote(url.path).lstrip("/").split("/", 1)
        return parts[0], parts[1] if len(parts) > 1 else "", urllib.parse.parse_qs(url.query)

    def _reply(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _object_headers(self, stored: Stored) -> dict[str, str]:
        return {
            "ETag": etag(stored.body),
            "Last-Modified": formatdate(stored.modified, usegmt=True),
            "Content-Type": "application/octet-stream",
        } | {f"x-amz-meta-{k}": v for k, v in stored.meta.items()}

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        _, key, query = self._split()
        if not key:
            self._list(query)
            return
        with self.bucket.lock:
            stored = self.bucket.objects.get(key)
        if stored is None:
            self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
            return
        headers = self._object_headers(stored)
        body = stored.body
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start = int(first) if first else len(body) - int(last)
            end = int(last) if first and last else len(body) - 1
            end = min(end, len(body) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            self._reply(206, body[start : end + 1], headers)
            return
        self._reply(200, body, headers)

    def _list(self, query: dict[str, list[str]]) -> None:
        prefix = query.get("prefix", [""])[0]
        delimiter = query.get("delimiter", [""])[0]
        with self.bucket.lock:
            keys = sorted(k for k in self.bucket.objects if k.startswith(prefix))
            contents, prefixes = [], set()
            for key in keys:
                rest = key[len(prefix) :]
                if delimiter and delimiter in rest:
                    prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
                    continue
                stored = self.bucket.objects[key]
                contents.append(
                    f"<Contents><Key>{escape(key)}</Key><LastModified>{iso(stored.modified)}</LastModified>"
                    f"<ETag>{escape(etag(stored.body))}</ETag><Size>{len(stored.body)}</Size>"
                    "<StorageClass>STANDARD</StorageClass></Contents>"
                )
        common = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in sorted(prefixes))
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
            f"<Name>{escape(self.name)}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(contents)}</KeyCount>"
            f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{''.join(contents)}{common}</ListBucketResult>"
        ).encode()
        self._reply(200, body, {"Content-Type": "application/xml"})

    def do_PUT(self) -> None:
        _, key, _ = self._split()
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if not key:
            self._reply(200)
            return
        source = self.headers.get("x-amz-copy-source")
        meta = {
            k[len("x-amz-meta-") :].lower(): v for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")
        }
        with self.bucket.lock:
            if source:
                copied = self.bucket.objects.get(urllib.parse.unquote(source).lstrip("/").split("/", 1)[1])
                if copied is None:
                    self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
                    return
                if self.headers.get("x-amz-metadata-directive", "COPY").upper() == "COPY":
                    meta = dict(copied.meta)
                stored = Stored(copied.body, meta, copied.modified)
            else:
                if self.bucket.flip and body:
                    body = body[:-1] + bytes([body[-1] ^ 0x01])
                stored = Stored(body, meta, time.time())
            self.bucket.objects[key] = stored
        if source:
            result = (
                f"<CopyObjectResult><LastModified>{iso(stored.modified)}</LastModified>"
                f"<ETag>{escape(etag(stored.body))}</ETag></CopyObjectResult>"
            ).encode()
            self._reply(200, result, {"Content-Type": "application/xml"})
        else:
            self._reply(200, b"", {"ETag": etag(stored.body)})

    def do_DELETE(self) -> None:
        _, key, _ = self._split()
        with self.bucket.lock:
            self.bucket.objects.pop(key, None)
        self._reply(204)


class S3Double:
    """The double on 127.0.0.1 (an ephemeral port) in a thread, until stop()."""

    def __init__(self, name: str = "offsite") -> None:
        self.bucket = Bucket()
        handler = type("BoundHandler", (Handler,), {"bucket": self.bucket, "name": name})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def rclone_section(self, remote: str) -> str:
        return (
            f"[{remote}]\ntype = s3\nprovider = Other\naccess_key_id = test\nsecret_access_key = test\n"
            f"endpoint = http://127.0.0.1:{self.port}\nforce_path_style = true\nno_check_bucket = true\n"
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
