#!/usr/bin/env python3
"""A TEST DOUBLE of the InfluxDB v2 API subset the deploy and the worker use -- not InfluxDB.

The site scenario (scenarios/site) runs it as the compose service `influxdb` (InfluxDB's image cannot be pulled
here), so the deploy's token step and the analytics worker talk to it as they would to InfluxDB 2.7: setup from
DOCKER_INFLUXDB_INIT_ORG/_BUCKET/_USERNAME/_PASSWORD(_FILE)/_ADMIN_TOKEN(_FILE) on the first start, then /health,
signin, users (lookup, set password), orgs, buckets (list, create,
PATCH retention), authorizations (list, create, delete, status), tasks (list, create, PATCH flux and status, delete:
never run) and /api/v2/write, each with its token checked against the authorization's permissions. Its state
survives a restart (the influxdb_data volume), written points included (the last MAX_POINTS). Every request is
printed as one JSON line on stdout ({"request": ...}), every written point as {"point": ...}: the tests read `docker
logs`. For the `influx` CLI double beside it (backup, restore --full, query), /double/state reads and replaces the
whole state (admin token only). It proves our calls and their order, never InfluxDB's own behaviour (the e2e job
does).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets as random_tokens
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATE = Path(os.environ.get("DOUBLE_STATE", "/var/lib/influxdb2/double-state.json"))
# The image's setup (`influx setup`) writes the CLI's configs into the config volume: a volume the service's user
# cannot write fails the first start here as it does there.
CONFIGS = Path(os.environ.get("INFLUX_CONFIGS_PATH", "/etc/influxdb2/influx-configs"))
LOCK = threading.Lock()
MAX_POINTS = 10_000


def say(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def init_var(name: str) -> str:
    """A DOCKER_INFLUXDB_INIT_* value as the image's entrypoint reads it: from <name>_FILE when that is set
    (influxdata/influxdata-docker influxdb/2.7/entrypoint.sh, `$(cat ...)` drops trailing newlines), else <name>."""
    path = os.environ.get(f"{name}_FILE", "")
    if path:
        return Path(path).read_text().rstrip("\n")
    return os.environ[name]


def load() -> dict[str, Any]:
    if STATE.exists():
        state: dict[str, Any] = json.loads(STATE.read_text())
        return state
    org = {"id": "0000000000000001", "name": os.environ["DOCKER_INFLUXDB_INIT_ORG"]}
    state = {
        "org": org,
        "next": 100,
        "buckets": [
            {
                "id": "b000000000000001",
                "name": os.environ["DOCKER_INFLUXDB_INIT_BUCKET"],
                "orgID": org["id"],
                "retentionRules": [],
            }
        ],
        "points": [],
        "users": [
            {
                "id": "u000000000000001",
                "name": os.environ["DOCKER_INFLUXDB_INIT_USERNAME"],
                "password": init_var("DOCKER_INFLUXDB_INIT_PASSWORD"),
            }
        ],
        "auths": [
            {
                "id": "a000000000000001",
                "token": init_var("DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"),
                "status": "active",
                "description": "admin's Token",
                "orgID": org["id"],
                "admin": True,
                "permissions": [],
            }
        ],
    }
    CONFIGS.write_text("# TEST DOUBLE: where `influx setup` keeps the CLI's configs.\n")
    save(state)
    return state


def save(state: dict[str, Any]) -> None:
    partial = STATE.with_name(STATE.name + ".partial")
    partial.write_text(json.dumps(state))
    partial.replace(STATE)


def new_id(state: dict[str, Any], prefix: str) -> str:
    state["next"] += 1
    return f"{prefix}{state['next']:015d}"


def allowed(auth: dict[str, Any], action: str, bucket_id: str) -> bool:
    return bool(auth.get("admin")) or any(
        p["action"] == action and p["resource"].get("type") == "buckets" and p["resource"].get("id") == bucket_id
        for p in auth["permissions"]
    )


# --- movctl bench's two calls: its status point query and the delete of its points ---------------------------
# Only these shapes are answered (anything else is a 400): a model of neither Flux nor the delete predicate syntax.
# The e2e job runs `movctl bench` against InfluxDB itself.
BENCH_FLUX = re.compile(
    r'^from\(bucket: "(?P<bucket>[^"]+)"\) \|> range\(start: (?P<start>\S+), stop: (?P<stop>\S+)\)'
    r' \|> filter\(fn: \(r\) => r\._measurement == "(?P<measurement>[^"]+)" and r\._field == "(?P<field>[^"]+)"'
    r' and r\.cliente == "(?P<cliente>[^"]+)" and r\.dispositivo == "(?P<dispositivo>[^"]+)"\)$'
)
PREDICATE = re.compile(r'^\s*(\w+)\s*=\s*"([^"]*)"\s*$')
# A task's name is its flux's `option task = {name: "..."}` (InfluxDB parses the script; the double reads the name).
TASK_NAME = re.compile(r'option\s+task\s*=\s*\{[^}]*name:\s*"([^"]*)"')


def rfc3339_ns(text: str) -> int:
    """An RFC 3339 UTC time ("...Z", up to nanoseconds) in ns since the epoch."""
    base, _, fraction = text.rstrip("Z").partition(".")
    seconds = int(datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])


def parse_point(line: str) -> tuple[str, dict[str, str], set[str], int]:
    """Measurement, tags, field keys and time of a line without escaped characters (the bench's and the worker's)."""
    series, _, rest = line.partition(" ")
    fields, _, stamp = rest.rpartition(" ")
    measurement, *pairs = series.split(",")
    tags = dict(pair.split("=", 1) for pair in pairs)
    keys = {f.split("=", 1)[0] for f in re.split(r",(?=\w+=)", fields)}
    return measurement, tags, keys, int(stamp)


def bench_query_csv(points: list[dict[str, Any]], flux: str) -> str | None:
    match = BENCH_FLUX.match(flux.strip())
    if not match:
        return None
    want = match.groupdict()
    start, stop = rfc3339_ns(want["start"]), rfc3339_ns(want["stop"])
    rows = []
    for point in points:
        if point["bucket"] != want["bucket"]:
            continue
        measurement, tags, keys, stamp = parse_point(point["line"])
        if (
            measurement == want["measurement"]
            and want["field"] in keys
            and tags.get("cliente") == want["cliente"]
            and tags.get("dispositivo") == want["dispositivo"]
            and start <= stamp < stop
        ):
            rows.append(f",,0,{want['start']},{want['stop']},{stamp},x,{want['field']},{measurement}")
    head = [
        "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,long,string,string,string",
        "#group,false,false,true,true,false,false,true,true",
        "#default,_result,,,,,,,",
        ",result,table,_start,_stop,_time,_value,_field,_measurement",
    ]
    return "\r\n".join(head + rows) + "\r\n\r\n"


def delete_matching(points: list[dict[str, Any]], bucket: str, body: dict[str, Any]) -> int | None:
    """Removes the bucket's points in [start, stop] whose tag equals the predicate's; None for another predicate."""
    match = PREDICATE.match(str(body.get("predicate", "")))
    if not match:
        return None
    key, value = match.groups()
    start, stop = rfc3339_ns(str(body["start"])), rfc3339_ns(str(body["stop"]))
    keep = []
    for point in points:
        _, tags, _, stamp = parse_point(point["line"])
        if point["bucket"] != bucket or tags.get(key) != value or not start <= stamp <= stop:
            keep.append(point)
    removed = len(points) - len(keep)
    points[:] = keep
    return removed


class Handler(BaseHTTPRequestHandler):
    def _reply(self, status: int, body: object = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _auth(self, state: dict[str, Any]) -> dict[str, Any] | None:
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Token ").strip()
        for auth in state["auths"]:
            if token and auth["token"] == token and auth["status"] == "active":
                return dict(auth)
        return None

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return raw

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = self._body()
        with LOCK:
            state = load()
            auth = self._auth(state)
            say({"request": f"{self.command} {url.path}", "auth": (auth or {}).get("description", "")})
            if url.path == "/api/v2/signin" and self.command == "POST":
                return self._reply(204 if self._signed_in(state) else 401)
            if url.path in ("/health", "/ping"):
                return self._reply(
                    200 if url.path == "/health" else 204, {"status": "pass"} if url.path == "/health" else None
                )
            if auth is None:
                return self._reply(401, {"code": "unauthorized", "message": "unauthorized access"})
            parts = url.path.strip("/").split("/")
            if url.path == "/double/state" and auth.get("admin"):
                if self.command == "GET":
                    return self._reply(200, state)
                if self.command == "PUT":
                    save(json.loads(raw))
                    return self._reply(204)
            if url.path == "/api/v2/orgs" and self.command == "GET":
                orgs = [state["org"]] if auth.get("admin") and query.get("org") in (None, state["org"]["name"]) else []
                return self._reply(200, {"orgs": orgs})
            if url.path == "/api/v2/users" and self.command == "GET" and auth.get("admin"):
                users = [u for u in state.get("users", []) if query.get("name") in (None, u["name"])]
                return self._reply(200, {"users": [{"id": u["id"], "name": u["name"]} for u in users]})
            if parts[:3] == ["api", "v2", "users"] and parts[4:] == ["password"] and self.command == "POST":
                return self._set_password(state, auth, parts[3], raw)
            if url.path == "/api/v2/buckets" and self.command == "GET":
                buckets = [b for b in state["buckets"] if "name" not in query or b["name"] == query["name"]]
                return self._reply(200, {"buckets": [b for b in buckets if allowed(auth, "read", b["id"])]})
            if url.path == "/api/v2/buckets" and self.command == "POST" and auth.get("admin"):
                body = json.loads(raw)
                bucket = {
                    "id": new_id(state, "b"),
                    "name": body["name"],
                    "orgID": body["orgID"],
                    "retentionRules": body.get("retentionRules", []),
                }
                state["buckets"].append(bucket)
                save(state)
                return self._reply(201, bucket)
            if (
                parts[:3] == ["api", "v2", "buckets"]
                and len(parts) == 4
                and self.command == "PATCH"
                and auth.get("admin")
            ):
                body = json.loads(raw)
                for bucket in state["buckets"]:
                    if bucket["id"] == parts[3]:
                        if body.get("retentionRules"):  # as InfluxDB: an empty list changes nothing
                            bucket["retentionRules"] = body["retentionRules"]
                        save(state)
                        return self._reply(200, bucket)
                return self._reply(404, {"code": "not found"})
            if url.path == "/api/v2/authorizations" and self.command == "GET":
                listed = [a for a in state["auths"] if not a.get("admin")] if auth.get("admin") else []
                return self._reply(200, {"authorizations": listed})
            if url.path == "/api/v2/authorizations" and self.command == "POST" and auth.get("admin"):
                body = json.loads(raw)
                created = {
                    "id": new_id(state, "a"),
                    "token": random_tokens.token_urlsafe(32),
                    "status": "active",
                    "description": body.get("description", ""),
                    "orgID": body["orgID"],
                    "permissions": body["permissions"],
                }
                state["auths"].append(created)
                save(state)
                return self._reply(201, created)
            if parts[:3] == ["api", "v2", "authorizations"] and len(parts) == 4 and auth.get("admin"):
                found = [a for a in state["auths"] if a["id"] == parts[3]]
                if not found:
                    return self._reply(404, {"code": "not found"})
                if self.command == "DELETE":
                    state["auths"].remove(found[0])
                    save(state)
                    return self._reply(204)
                if self.command == "PATCH":
                    found[0]["status"] = json.loads(raw).get("status", found[0]["status"])
                    save(state)
                    return self._reply(200, found[0])
            if parts[:3] == ["api", "v2", "tasks"] and auth.get("admin"):
                return self._task_call(state, parts[3:], query, raw)
            if url.path == "/api/v2/write" and self.command == "POST":
                targets = [b for b in state["buckets"] if b["name"] == query.get("bucket")]
                if not targets or not allowed(auth, "write", targets[0]["id"]):
                    return self._reply(403, {"code": "forbidden"})
                lines = [line for line in raw.decode().splitlines() if line.strip()]
                if not lines:
                    return self._reply(400, {"code": "invalid", "message": "writing requires points"})
                for line in lines:
                    say({"point": line, "bucket": targets[0]["name"], "auth": auth["description"]})
                points = state.setdefault("points", [])
                points.extend({"bucket": targets[0]["name"], "line": line} for line in lines)
                del points[:-MAX_POINTS]
                save(state)
                return self._reply(204)
            if url.path in ("/api/v2/query", "/api/v2/delete") and self.command == "POST":
                return self._bench_call(state, auth, url.path, query, raw)
            return self._reply(404, {"code": "not found", "message": f"the double has no {self.command} {url.path}"})

    def _signed_in(self, state: dict[str, Any]) -> bool:
        """POST /api/v2/signin's check: basic auth with a user's current password (InfluxDB then sets a session)."""
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        name, _, password = base64.b64decode(encoded).decode().partition(":")
        return any(u["name"] == name and u["password"] == password for u in state.get("users", []))

    def _set_password(self, state: dict[str, Any], auth: dict[str, Any], user_id: str, raw: bytes) -> None:
        """POST /api/v2/users/{id}/password with an operator's token: no old password asked (InfluxDB 2.7.11
        tenant/http_server_user.go handlePostUserPassword)."""
        users = [u for u in state.get("users", []) if u["id"] == user_id]
        if not auth.get("admin"):
            return self._reply(403, {"code": "forbidden"})
        if not users:
            return self._reply(404, {"code": "not found"})
        password = str(json.loads(raw).get("password", ""))
        if len(password) < 8:  # InfluxDB's minimum (tenant/service_user.go)
            return self._reply(400, {"code": "invalid", "message": "passwords must be at least 8 characters long"})
        users[0]["password"] = password
        save(state)
        return self._reply(204)

    def _task_call(self, state: dict[str, Any], rest: list[str], query: dict[str, str], raw: bytes) -> None:
        """The calls the influxdb role's flux_tasks.yml makes, as InfluxDB 2.7 answers them: the flux kept as sent."""
        tasks = state.setdefault("tasks", [])
        if not rest and self.command == "GET":
            listed = [t for t in tasks if query.get("orgID") in (None, t["orgID"])]
            return self._reply(200, {"tasks": listed[: int(query.get("limit", 100))]})
        if not rest and self.command == "POST":
            body = json.loads(raw)
            name = TASK_NAME.search(str(body.get("flux", "")))
            if name is None or not body.get("orgID"):
                return self._reply(400, {"code": "invalid", "message": "the double needs orgID and option task's name"})
            task = {
                "id": new_id(state, "t"),
                "orgID": body["orgID"],
                "name": name.group(1),
                "description": body.get("description", ""),
                "status": body.get("status") or "active",
                "flux": body["flux"],
            }
            tasks.append(task)
            save(state)
            return self._reply(201, task)
        found = [t for t in tasks if rest and t["id"] == rest[0]]
        if len(rest) != 1 or not found:
            return self._reply(404, {"code": "not found", "message": "task not found"})
        if self.command == "DELETE":
            tasks.remove(found[0])
            save(state)
            return self._reply(204)
        if self.command == "PATCH":
            body = json.loads(raw)
            if "flux" in body:
                name = TASK_NAME.search(str(body["flux"]))
                found[0].update(flux=body["flux"], name=name.group(1) if name else found[0]["name"])
            found[0].update({k: body[k] for k in ("status", "description") if k in body})
            save(state)
            return self._reply(200, found[0])
        return self._reply(404, {"code": "not found", "message": f"the double has no {self.command} on a task"})

    def _bench_call(
        self, state: dict[str, Any], auth: dict[str, Any], path: str, query: dict[str, str], raw: bytes
    ) -> None:
        body = json.loads(raw or b"{}")
        points = state.setdefault("points", [])
        if path == "/api/v2/delete":
            targets = [b for b in state["buckets"] if b["name"] == query.get("bucket")]
            if not targets or not allowed(auth, "write", targets[0]["id"]):
                return self._reply(403, {"code": "forbidden"})
            removed = delete_matching(points, targets[0]["name"], body)
            if removed is None:
                return self._reply(400, {"code": "invalid", "message": 'the double deletes by one tag="value" only'})
            say({"deleted": removed, "bucket": targets[0]["name"], "predicate": body.get("predicate")})
            save(state)
            return self._reply(204)
        flux = str(body.get("query", ""))
        match, csv = BENCH_FLUX.match(flux.strip()), bench_query_csv(points, flux)
        if match is None or csv is None:
            return self._reply(400, {"code": "invalid", "message": "the double answers movctl bench's query only"})
        bucket = [b for b in state["buckets"] if b["name"] == match["bucket"]]
        if not bucket or not allowed(auth, "read", bucket[0]["id"]):
            return self._reply(403, {"code": "forbidden"})
        data = csv.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return None

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        return None


def main() -> None:
    with LOCK:
        load()
    say({"listening": 8086})
    ThreadingHTTPServer(("0.0.0.0", 8086), Handler).serve_forever()


if __name__ == "__main__":
    main()
