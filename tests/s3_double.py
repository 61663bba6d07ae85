"""A test double of an S3 bucket (path-style) for rclone's s3 backend, on loopback: enough of the API for listing,
upload, download, server-side copy and delete. With `flip` set, it stores every upload with one byte changed and
reports the MD5 (ETag) of what it stored: a backend that corrupts data, as a failing disk or a faulty gateway would.
With `credentials` set (a JSON file {"access_key_id", "secret_access_key"}, read at each request, so rewriting it
rotates the key as a provider does), every request must carry AWS Signature V4 made with that key; otherwise none is
checked. A test double, not S3: it checks no Content-MD5.

    python3 s3_double.py --port 9000 --credentials keys.json     # in a box: until killed
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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
    credentials: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def etag(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'  # S3's ETag of a single-part object


def iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4_refusal(method: str, target: str, headers: dict[str, str], access_key_id: str, secret: str) -> str:
    """Why a request's AWS Signature V4 (Authorization header) is not one made with this key ('' when it is).

    The canonical request as the AWS SDK's signer builds it for S3: the path as sent (S3 is not escaped twice), the
    query's pairs sorted and escaped (RFC 3986 unreserved characters kept), the signed headers' values trimmed, and
    the payload's hash from X-Amz-Content-Sha256 (docs.aws.amazon.com, "Create a signed AWS API request").
    """
    lowered = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    fields = lowered.get("authorization", "")
    algorithm, _, rest = fields.partition(" ")
    parts = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
    if algorithm != "AWS4-HMAC-SHA256" or not {"Credential", "SignedHeaders", "Signature"} <= parts.keys():
        return "no AWS4-HMAC-SHA256 signature"
    key_id, _, scope = parts["Credential"].partition("/")
    if key_id != access_key_id:
        return f"InvalidAccessKeyId: {key_id}"
    url = urllib.parse.urlsplit(target)
    pairs = sorted(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in pairs)
    signed = parts["SignedHeaders"].split(";")
    canonical = "\n".join(
        [
            method,
            url.path or "/",
            query,
            "".join(f"{name}:{lowered.get(name, '')}\n" for name in signed),
            parts["SignedHeaders"],
            lowered.get("x-amz-content-sha256", hashlib.sha256(b"").hexdigest()),
        ]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", lowered.get("x-amz-date", ""), scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret).encode()
    for step in scope.split("/"):
        key = _hmac(key, step)
    if not hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), parts["Signature"]):
        return "SignatureDoesNotMatch"
    return ""


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

    def _refused(self) -> bool:
        """Answers 403 when the bucket checks signatures and this request's is not made with its current key."""
        if self.bucket.credentials is None:
            return False
        key = json.loads(self.bucket.credentials.read_text())
        why = sigv4_refusal(
            self.command, self.path, dict(self.headers.items()), key["access_key_id"], key["secret_access_key"]
        )
        if why:
            code = why.split(":", 1)[0] if why.startswith(("Invalid", "Signature")) else "AccessDenied"
            self._reply(403, f"<Error><Code>{code}</Code><Message>{escape(why)}</Message></Error>".encode())
        return bool(why)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self._refused():
            return
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
        if self._refused():
            return
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
        if self._refused():
            return
        _, key, _ = self._split()
        with self.bucket.lock:
            self.bucket.objects.pop(key, None)
        self._reply(204)


class S3Double:
    """The double on 127.0.0.1 (an ephemeral port) in a thread, until stop()."""

    def __init__(self, name: str = "offsite", port: int = 0, credentials: Path | None = None) -> None:
        self.bucket = Bucket(credentials=credentials)
        handler = type("BoundHandler", (Handler,), {"bucket": self.bucket, "name": name})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
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


def main() -> None:
    parser = argparse.ArgumentParser(description="A test double of an S3 bucket on 127.0.0.1, until killed.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--credentials", type=Path, help='JSON {"access_key_id", "secret_access_key"}, read per request'
    )
    args = parser.parse_args()
    double = S3Double(port=args.port, credentials=args.credentials)
    print(f"s3 double on 127.0.0.1:{double.port}", flush=True)
    double.thread.join()


if __name__ == "__main__":
    main()
