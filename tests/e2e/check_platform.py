#!/usr/bin/env python3
"""End-to-end checks of the whole platform with the real images (the e2e job of .github/workflows/ci.yml).

The platform runs in the local box (`inventories/local`, all five services from their registry images). This
script publishes readings over MQTT with TLS as a device does, then asserts what must follow, each check printed
as it passes or fails, and exits non-zero when one failed:

    check_platform.py receive --port 8099 --out alerts.jsonl &     # the webhook receiver (the alert target)
    check_platform.py smtp-receive --port 8587 --out mails.jsonl \
        --cert relay.pem --key relay.key --user mov-e2e --password-file relay.password &   # the mail relay
    check_platform.py grafana-email --mails mails.jsonl            # Grafana's contact point delivers by e-mail
    check_platform.py check --alerts alerts.jsonl                   # publish, then every assertion
    check_platform.py counts --out before.json                      # points per bucket (before a backup)
    check_platform.py counts --compare before.json                  # after the restore: the same counts
    check_platform.py logs                                          # the logs part: Loki holds the platform's lines

Services listen on the box's loopback (InfluxDB, Grafana); requests to them run inside the box (docker exec,
with the box's python3) and secrets go through stdin, never the command line. MQTT goes from here to the box's
published TLS port under the certificate's name (the job maps that name to the box's address).
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import mail_inbox
import yaml

REPO = Path(__file__).resolve().parents[2]
SECRETS = REPO / "inventories" / "local" / "group_vars" / "mov" / "secrets.yml"
# The gateways' topic scheme, written once (PlantScheme).
GATEWAYS_VARS = REPO / "group_vars" / "all" / "gateways.yml"
COMPOSE = "/opt/mov/compose.yaml"
CA_FILE = "/opt/mov/tls/ca.pem"
# The infrastructure rules roles/grafana provisions when mov_infra_metrics_enabled (the default) is on.
INFRA_ALERT_RULES = (
    "mov-disco-cheio",
    "mov-container-reiniciando",
    "mov-dispositivo-silencioso",
    "mov-mensagens-descartadas",
)
# The platform's own rules (group mov-plataforma): the worker, the stack's containers, backups and drills.
PLATFORM_ALERT_RULES = ("mov-container-parado", "mov-analytics-parado", "mov-backup-atrasado", "mov-restauracao-falhou")
# The worker's metrics as Telegraf stores them (roles/telegraf: inputs.prometheus, metric_version 2).
ANALYTICS_MEASUREMENT = "mov_analytics"

# Run inside the box: one HTTP request described as JSON on stdin; prints {"status", "body"}.
_BOX_HTTP = """
import json, sys, urllib.request, urllib.error
r = json.load(sys.stdin)
req = urllib.request.Request(r["url"], data=r["body"].encode() if r["body"] is not None else None,
                             headers=r["headers"], method=r["method"])
try:
    with urllib.request.urlopen(req, timeout=20) as resp:
        print(json.dumps({"status": resp.status, "body": resp.read().decode()}))
except urllib.error.HTTPError as exc:
    print(json.dumps({"status": exc.code, "body": exc.read().decode()}))
"""


# --- pure helpers (unit-tested in tests/test_e2e_checks.py) ----------------------------------------------------


def flux_rows(csv_text: str) -> list[dict[str, str]]:
    """The rows of InfluxDB's annotated CSV, each by its table's header (every table; annotations and blank lines
    skipped). A table without a column (a tag its series lacks) has no such key."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for row in csv.reader(io.StringIO(csv_text)):
        if not row or all(cell == "" for cell in row):
            header = None
            continue
        if row[0].startswith("#"):
            continue
        if header is None:
            header = row
            continue
        rows.append(dict(zip(header, row, strict=False)))
    return rows


def column_of(rows: Iterable[dict[str, str]], column: str = "_value") -> list[str]:
    """The values of one column, over the rows that have it."""
    return [row[column] for row in rows if column in row]


def flux_column(csv_text: str, column: str = "_value") -> list[str]:
    """The values of one column of InfluxDB's annotated CSV, over every table that has it."""
    return column_of(flux_rows(csv_text), column)


def grafana_numbers(answer: dict[str, Any]) -> dict[str, list[float]]:
    """Per refId, the numbers of every frame of a /api/ds/query answer (its number fields, frame after frame)."""
    numbers: dict[str, list[float]] = {}
    for ref, result in answer.get("results", {}).items():
        for frame in result.get("frames", []):
            fields = frame.get("schema", {}).get("fields", [])
            columns = frame.get("data", {}).get("values", [])
            for spec, column in zip(fields, columns, strict=False):
                if spec.get("type") == "number":
                    numbers.setdefault(ref, []).extend(float(v) for v in column if v is not None)
    return numbers


def _json_objects(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The receiver's lines that are JSON objects (anything else is skipped)."""
    for line in lines:
        try:
            body = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(body, dict):
            yield body


def critical_alerts(lines: Iterable[str], subject: str) -> list[dict[str, Any]]:
    """The analytics worker's critico alerts for `subject` among the receiver's JSON lines (Grafana's are others)."""
    return [body for body in _json_objects(lines) if body.get("kind") == "critico" and body.get("subject") == subject]


def grafana_alerts(lines: Iterable[str], alertname: str, device: str) -> list[dict[str, Any]]:
    """Grafana's firing alerts named `alertname` for `device` (label dispositivo) among the receiver's JSON lines."""
    found = []
    for body in _json_objects(lines):
        if not isinstance(body.get("alerts"), list):
            continue
        for alert in body["alerts"]:
            labels = alert.get("labels", {}) if isinstance(alert, dict) else {}
            if (
                alert.get("status") == "firing"
                and labels.get("alertname") == alertname
                and labels.get("dispositivo") == device
            ):
                found.append(alert)
    return found


NEVER_EVALUATED = "0001-01-01T00:00:00Z"


def rule_health(answer: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{rule name: (health, lastError)} from Grafana's GET /api/prometheus/grafana/api/v1/rules answer. A rule not
    evaluated yet reads "not evaluated": the API reports health "ok" until a state says otherwise."""
    health = {}
    for group in answer.get("data", {}).get("groups", []):
        for rule in group.get("rules", []):
            evaluated = str(rule.get("lastEvaluation") or NEVER_EVALUATED) != NEVER_EVALUATED
            health[str(rule.get("name"))] = (
                str(rule.get("health")) if evaluated else "not evaluated",
                str(rule.get("lastError") or ""),
            )
    return health


def firing(answer: dict[str, Any], title: str, labels: dict[str, str]) -> bool:
    """Whether the rule named `title` has an alert whose labels include `labels` in state Alerting, in Grafana's
    GET /api/prometheus/grafana/api/v1/rules answer (an alert's state reads "Alerting", or "Alerting (NoData)" and
    the like: grafana v11.3.1 pkg/services/ngalert/state FormatStateAndReason)."""
    for group in answer.get("data", {}).get("groups", []):
        for rule in group.get("rules", []):
            if rule.get("name") != title:
                continue
            for alert in rule.get("alerts") or []:
                got = alert.get("labels", {}) if isinstance(alert, dict) else {}
                if str(alert.get("state", "")).startswith("Alerting") and labels.items() <= got.items():
                    return True
    return False


def panel_flux(query: str, start: str = "-1h", window: str = "1m") -> str:
    """A dashboard panel's Flux as InfluxDB runs it outside Grafana: Grafana's dashboard variables given values."""
    return (
        query.replace("v.timeRangeStart", start).replace("v.timeRangeStop", "now()").replace("v.windowPeriod", window)
    )


_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.DOTALL)
_PDF_TEXT = re.compile(rb"\(((?:\\.|[^\\)])*)\)\s*Tj")


def pdf_text(pdf: bytes) -> str:
    """The strings a PDF's content streams show (Tj), inflated where compressed: enough to read back what the
    report's fpdf2 writer put on its pages with a core font."""
    parts = []
    for raw in _PDF_STREAM.findall(pdf):
        try:
            data = zlib.decompress(raw)
        except zlib.error:
            data = raw
        for text in _PDF_TEXT.findall(data):
            parts.append(re.sub(rb"\\(.)", rb"\1", text).decode("latin-1"))
    return "\n".join(parts)


TELEGRAF_PARSE_ERROR = re.compile(r"\bE! .*(pars|invalid|unmarshal|json)", re.IGNORECASE)


def telegraf_parse_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if TELEGRAF_PARSE_ERROR.search(line)]


def loki_lines(body: str) -> list[str]:
    """The log lines of a Loki query_range answer (every stream), or [] for anything but a successful one."""
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        return []
    if not isinstance(answer, dict) or answer.get("status") != "success":
        return []
    result = answer.get("data", {}).get("result", [])
    return [
        str(value[1])
        for stream in result
        if isinstance(stream, dict)
        for value in stream.get("values", [])
        if isinstance(value, list) and len(value) == 2
    ]


def readings(
    device: dict[str, str], start: datetime, count: int, critical_at: Sequence[int], base: float = 22.0
) -> list[dict[str, Any]]:
    """`count` readings one second apart from `start`: `base` °C plus a tenth a second, except at the indexes in
    `critical_at` (36.5 °C)."""
    tags = {
        "dispositivo": device["name"],
        "cliente": device["client"],
        "localizacao": device["site"],
        "tipo": device["type"],
    }
    return [
        {
            "timestamp": (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tags": tags,
            "fields": {"temperatura_c": 36.5 if i in critical_at else base + i / 10},
        }
        for i in range(count)
    ]


# What an edge gateway's bridge forwards besides readings (roles/edge_gateway, mosquitto.conf.j2): the bridge's state
# (1 connected, 0 lost) and the gateway broker's uptime, "<n> seconds", its heartbeat.
GATEWAY_STATE = "estado"
GATEWAY_HEARTBEAT = "uptime"


@dataclass(frozen=True)
class PlantScheme:
    """The gateways' topic scheme, as group_vars/all/gateways.yml writes it once (docs/plants.md)."""

    plants: str  # mov_mqtt_topic_plants
    account_prefix: str  # mov_edge_account_prefix
    state_topic: str  # mov_edge_state_topic
    measurement: str  # mov_edge_state_measurement

    @classmethod
    def load(cls, path: Path) -> PlantScheme:
        tree = yaml.safe_load(path.read_text())
        keys = (
            "mov_mqtt_topic_plants",
            "mov_edge_account_prefix",
            "mov_edge_state_topic",
            "mov_edge_state_measurement",
        )
        values = [str(tree[key]) for key in keys]
        templated = [key for key, value in zip(keys, values, strict=True) if "{" in value]
        if templated:
            raise ValueError(f"{path}: {', '.join(templated)} must be plain values for the e2e checks to read")
        return cls(*values)

    def account(self, plant: str) -> str:
        """The gateway's account on the central broker."""
        return self.account_prefix + plant

    def central(self, plant: str, topic: str) -> str:
        """A gateway's local topic as its bridge forwards it to the central broker."""
        return f"{self.plants}/{plant}/{topic}"

    def state(self, plant: str, name: str) -> str:
        """One of the gateway's own topics (its bridge's state, its heartbeat) on the central broker."""
        return self.central(plant, f"{self.state_topic}/{name}")


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def plant_readings_stored(
    rows: Sequence[dict[str, str]], sent: Sequence[dict[str, Any]], plant: str
) -> tuple[bool, str]:
    """Whether every reading of `sent` (payloads as a gateway forwarded them) is among `rows` (temperatura_c points of
    the readings' measurement) as Telegraf must store it: at the payload's timestamp, with its value and its tags, and
    the tag planta=`plant`. A stored point of one of those instants with other tags (no planta, another plant, another
    device) is a failure too."""
    want = {
        (_instant(r["timestamp"]), float(r["fields"]["temperatura_c"])): {**r["tags"], "planta": plant} for r in sent
    }
    found: dict[tuple[datetime | None, float], list[dict[str, str]]] = {}
    for row in rows:
        try:
            key = (_instant(row.get("_time", "")), float(row.get("_value", "")))
        except ValueError:
            continue
        found.setdefault(key, []).append(row)
    missing = [str(key[0]) for key in want if key not in found]
    wrong = [
        {tag: row.get(tag, "") for tag in tags}
        for key, tags in want.items()
        for row in found.get(key, [])
        if any(row.get(tag, "") != value for tag, value in tags.items())
    ]
    detail = f"{len(want) - len(missing)} of {len(want)} stored"
    detail += f"; missing at {missing}" if missing else ""
    detail += f"; with wrong tags: {wrong}" if wrong else ""
    return not missing and not wrong, detail


def gateway_state_stored(rows: Sequence[dict[str, str]], plant: str, heartbeat: str) -> tuple[bool, str]:
    """Whether `rows` (the gateways' measurement) hold, for `plant`, the heartbeat `heartbeat` as the string field
    uptime and the bridge's state 1 as the field value with tag metrica=estado, as Telegraf's two gateway inputs store
    them (roles/telegraf)."""
    ours = [row for row in rows if row.get("planta") == plant]
    beat = any(row.get("_field") == GATEWAY_HEARTBEAT and row.get("_value") == heartbeat for row in ours)
    state = any(
        row.get("_field") == "value" and row.get("metrica") == GATEWAY_STATE and row.get("_value") == "1"
        for row in ours
    )
    seen = sorted({(row.get("_field", ""), row.get("metrica", ""), row.get("_value", "")) for row in ours})
    return (
        beat and state,
        f"heartbeat {'stored' if beat else 'missing'}, state {'stored' if state else 'missing'}; {seen}",
    )


@dataclass
class Report:
    passed: int = 0
    failed: int = 0
    lines: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        line = f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}"
        self.lines.append(line)
        print(line, flush=True)
        return ok

    def summary(self) -> int:
        print(f"e2e: {self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 and self.passed > 0 else 1


def wait_until(probe: Callable[[], tuple[bool, str]], timeout: float, interval: float = 3.0) -> tuple[bool, str]:
    """Call probe until it says ok or the time is up; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = probe()
        if ok or time.monotonic() >= deadline:
            return ok, detail
        time.sleep(interval)


# --- the box -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    name: str

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", "-i", self.name, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("docker", "compose", "-f", COMPOSE, *args, timeout=timeout)

    def http(
        self, method: str, url: str, headers: dict[str, str] | None = None, body: str | None = None
    ) -> tuple[int, str]:
        request = {"method": method, "url": url, "headers": headers or {}, "body": body}
        out = self.run("python3", "-c", _BOX_HTTP, stdin=json.dumps(request))
        if out.returncode != 0:
            return 0, out.stderr.strip()[-500:]
        answer = json.loads(out.stdout)
        return int(answer["status"]), str(answer["body"])


@dataclass(frozen=True)
class Influx:
    box: Box
    token: str
    org: str
    url: str = "http://127.0.0.1:8086"

    def query(self, flux: str) -> tuple[int, str]:
        return self.box.http(
            "POST",
            f"{self.url}/api/v2/query?org={self.org}",
            {
                "Authorization": f"Token {self.token}",
                "Content-Type": "application/vnd.flux",
                "Accept": "application/csv",
            },
            flux,
        )

    def rows(self, flux: str) -> list[dict[str, str]]:
        status, body = self.query(flux)
        if status != 200:
            raise RuntimeError(f"InfluxDB answered {status}: {body[:300]}")
        return flux_rows(body)

    def values(self, flux: str) -> list[str]:
        return column_of(self.rows(flux))

    def count(self, bucket: str, measurement: str) -> int:
        values = self.values(
            f'from(bucket: "{bucket}") |> range(start: 0) '
            f'|> filter(fn: (r) => r._measurement == "{measurement}") '
            "|> group() |> count()"
        )
        return sum(int(v) for v in values)


def rows_probe(
    influx: Influx, flux: str, judge: Callable[[list[dict[str, str]]], tuple[bool, str]]
) -> Callable[[], tuple[bool, str]]:
    """A wait_until probe: the query's rows judged, or the query's failure."""

    def probe() -> tuple[bool, str]:
        try:
            rows = influx.rows(flux)
        except RuntimeError as exc:
            return False, str(exc)
        return judge(rows)

    return probe


def flux_probe(
    influx: Influx, flux: str, judge: Callable[[list[str]], tuple[bool, str]]
) -> Callable[[], tuple[bool, str]]:
    """A wait_until probe: the query's _value column judged, or the query's failure."""
    return rows_probe(influx, flux, lambda rows: judge(column_of(rows)))


def load_secrets(path: Path) -> dict[str, Any]:
    store = yaml.safe_load(path.read_text())["vault_mov_secrets"]
    if not isinstance(store, dict):
        raise SystemExit(f"{path}: vault_mov_secrets is not a mapping")
    return store


def mqtt_login(secrets: dict[str, Any], account: str) -> tuple[str, str]:
    """An MQTT account's username and password from the secret store: a service account's username is its name until
    its password is first rotated, then the one mqtt_usernames holds (scripts/platform_secrets.py)."""
    username = (secrets.get("mqtt_usernames") or {}).get(account) or account
    return str(username), str(secrets["mqtt"][account])


def flat_secrets(value: object) -> list[str]:
    """Every string value of the secret store, nested mappings (the MQTT accounts) included."""
    if isinstance(value, dict):
        return [item for child in value.values() for item in flat_secrets(child)]
    return [str(value)] if value is not None else []


# --- MQTT --------------------------------------------------------------------------------------------------------


class PublishRefused(RuntimeError):
    """The broker acknowledged a publish with a failure reason code (MQTT 5): its ACL denied the topic."""


def publish(
    host: str,
    port: int,
    ca_file: Path,
    username: str,
    password: str,
    topic: str,
    payloads: Sequence[dict[str, Any] | str],
) -> None:
    """Publish each payload with QoS 1 over TLS (the broker's certificate checked against `host`), as a device: a
    mapping as JSON, a string as it is (a gateway's state and heartbeat are plain text).

    MQTT 5, so a refusal (bad password, or the ACL denying the topic) comes back as a reason code and fails here.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    refused: dict[int, str] = {}
    connected = threading.Event()
    connect_result: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        connect_result.append(str(reason))
        connected.set()

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            refused[mid] = str(reason)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"e2e-{username.replace('/', '-')}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(username, password)
    client.tls_set_context(ssl.create_default_context(cafile=str(ca_file)))
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(15) or connect_result != ["Success"]:
            raise RuntimeError(f"the broker did not accept {username}: {connect_result or 'no CONNACK'}")
        for payload in payloads:
            info = client.publish(topic, payload if isinstance(payload, str) else json.dumps(payload), qos=1)
            info.wait_for_publish(timeout=10)
            if not info.is_published():
                raise RuntimeError(f"no PUBACK for a reading on {topic}")
            if info.mid in refused:
                raise PublishRefused(f"the broker refused a message on {topic}: {refused[info.mid]}")
    finally:
        client.disconnect()
        client.loop_stop()


# --- the checks --------------------------------------------------------------------------------------------------


def publish_as_device(
    args: argparse.Namespace, secrets: dict[str, Any], ca_file: Path, payloads: Sequence[dict[str, Any] | str]
) -> None:
    """publish() as ``args.device`` (client/name) on its own topic, mov/dados/<client>/<name>, with its password."""
    publish(
        args.mqtt_host,
        args.mqtt_port,
        ca_file,
        args.device,
        secrets["mqtt"][args.device],
        f"mov/dados/{args.device}",
        payloads,
    )


def check(args: argparse.Namespace) -> int:
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    influx = Influx(box, secrets["influxdb_admin_token"], args.org)
    client, name = args.device.split("/", 1)
    device = {"client": client, "name": name, "site": args.site, "type": "temperatura"}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=args.readings)
    since = (start - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    ca = box.run("cat", CA_FILE)
    if not report.check("the platform's CA certificate can be read", ca.returncode == 0, ca.stderr.strip()):
        return report.summary()
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write(ca.stdout)
    try:
        publish_as_device(args, secrets, Path(handle.name), readings(device, start, args.readings, critical_at=(5, 6)))
        report.check(f"{args.readings} readings published over MQTT/TLS as {args.device}", True)
    except Exception as exc:  # any failure to publish is the finding
        report.check(f"readings published over MQTT/TLS as {args.device}", False, repr(exc))
    finally:
        Path(handle.name).unlink(missing_ok=True)

    def landed() -> tuple[bool, str]:
        try:
            values = influx.values(
                f'from(bucket: "{args.bucket}") |> range(start: {since}) '
                f'|> filter(fn: (r) => r._measurement == "mov_leituras" and r.dispositivo == "{name}" '
                'and r._field == "temperatura_c") |> group() |> count()'
            )
        except RuntimeError as exc:
            return False, str(exc)
        got = sum(int(v) for v in values)
        return got >= args.readings, f"{got} of {args.readings} readings in {args.bucket}"

    report.check("the readings landed in InfluxDB (Flux query)", *wait_until(landed, args.timeout))

    logs = box.compose("logs", "--no-color", "telegraf")
    errors = telegraf_parse_errors(logs.stdout + logs.stderr)
    report.check(
        "Telegraf reports no parse errors",
        logs.returncode == 0 and not errors,
        "; ".join(errors[:5]) or logs.stderr.strip()[-300:],
    )

    # `config check` loads the file and initialises every plugin without starting one (telegraf v1.32.3
    # cmd/telegraf/cmd_config.go). Not `--test`: it starts service inputs, and the MQTT consumer would take over
    # the live consumer's client id and persistent session.
    test = box.compose(
        "exec", "-T", "telegraf", "telegraf", "config", "check", "--config", "/etc/telegraf/telegraf.conf", timeout=180
    )
    report.check(
        "telegraf config check accepts the rendered config",
        test.returncode == 0,
        (test.stderr or test.stdout).strip()[-500:],
    )

    # Infrastructure metrics: Telegraf's host inputs reach their own bucket (cpu every mov_infra_metrics_interval_s).
    infra = f'from(bucket: "{args.infra_bucket}") |> range(start: -5m) '

    def cpu_points(values: list[str]) -> tuple[bool, str]:
        got = sum(int(v) for v in values)
        return got > 0, f"{got} cpu points in {args.infra_bucket} in the last 5 minutes"

    cpu = '|> filter(fn: (r) => r._measurement == "cpu" and r._field == "usage_active") |> group() |> count()'
    report.check(
        "host cpu points landed in the infrastructure bucket (Flux query)",
        *wait_until(flux_probe(influx, infra + cpu, cpu_points), args.timeout),
    )

    def containers(values: list[str]) -> tuple[bool, str]:
        return any(name.endswith("-telegraf-1") for name in values), f"containers seen: {sorted(set(values))}"

    report.check(
        "Docker's containers are read through the socket (docker_container_status)",
        *wait_until(
            flux_probe(
                influx,
                infra
                + '|> filter(fn: (r) => r._measurement == "docker_container_status" and r._field == "restart_count") '
                '|> keep(columns: ["container_name"]) |> group() |> distinct(column: "container_name")',
                containers,
            ),
            args.timeout,
        ),
    )

    def labelled(values: list[str]) -> tuple[bool, str]:
        got = sum(int(v) for v in values)
        return got > 0, f"{got} analytics status points tagged org.mov.service and com.docker.compose.oneoff=False"

    report.check(
        "container statuses carry the labels Grafana's stopped-container rule filters on",
        *wait_until(
            flux_probe(
                influx,
                infra + '|> filter(fn: (r) => r._measurement == "docker_container_status" and r._field == "pid") '
                '|> filter(fn: (r) => r["org.mov.service"] == "analytics") '
                '|> filter(fn: (r) => r["com.docker.compose.oneoff"] == "False") |> group() |> count()',
                labelled,
            ),
            60,
        ),
    )

    def processed(values: list[str]) -> tuple[bool, str]:
        return max((float(v) for v in values), default=0.0) >= args.readings, f"the worker's counter: {values}"

    report.check(
        "Telegraf scrapes the worker's /metrics into the infrastructure bucket (the readings processed, counted)",
        *wait_until(
            flux_probe(
                influx,
                infra + f'|> filter(fn: (r) => r._measurement == "{ANALYTICS_MEASUREMENT}" '
                f'and r._field == "{ANALYTICS_MEASUREMENT}_readings_processed_total") |> last()',
                processed,
            ),
            args.timeout,
        ),
    )

    def statuses() -> tuple[bool, str]:
        try:
            values = influx.values(
                f'from(bucket: "{args.status_bucket}") |> range(start: {since}) '
                f'|> filter(fn: (r) => r._measurement == "mov_status" and r.dispositivo == "{name}" '
                'and r._field == "status")'
            )
        except RuntimeError as exc:
            return False, str(exc)
        return "critico" in values, f"statuses written: {values[-10:]}"

    report.check("the analytics worker wrote status points (critico among them)", *wait_until(statuses, args.timeout))

    def alerted() -> tuple[bool, str]:
        lines = args.alerts.read_text().splitlines() if args.alerts.exists() else []
        found = critical_alerts(lines, args.device)
        return bool(found), f"{len(found)} critico alert(s) for {args.device} among {len(lines)} webhook calls"

    report.check("the > 35 °C alert reached the webhook receiver", *wait_until(alerted, args.timeout))
    if args.mails is not None:
        check_mail(
            report,
            args.mails,
            f"the worker's > 35 °C alert arrived by e-mail through mov_smtp to {', '.join(args.mail_to)}",
            [f"[MOV critico] {args.device}"],
            args.mail_to,
            args.timeout,
            body_has="is critico: temperatura_c=36.5",
        )

    auth = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}
    status, body = box.http("GET", f"{args.grafana}/api/datasources/uid/mov-influxdb/health", auth)
    report.check("Grafana's InfluxDB datasource is healthy", status == 200 and '"OK"' in body, f"{status} {body[:300]}")
    status, body = box.http("GET", f"{args.grafana}/api/dashboards/uid/mov-overview", auth)
    report.check("Grafana's dashboard mov-overview is provisioned", status == 200, f"{status} {body[:200]}")
    # One rule per field of mov_thresholds: the e2e deploy adds umidade to temperatura_c.
    for uid in ("mov-temperatura-critica", "mov-critico-umidade", *INFRA_ALERT_RULES, *PLATFORM_ALERT_RULES):
        status, body = box.http("GET", f"{args.grafana}/api/v1/provisioning/alert-rules/{uid}", auth)
        report.check(f"Grafana's alert rule {uid} is provisioned", status == 200, f"{status} {body[:200]}")
    status, body = box.http("GET", f"{args.grafana}/api/dashboards/uid/mov-infrastructure", auth)
    report.check("Grafana's dashboard mov-infrastructure is provisioned", status == 200, f"{status} {body[:200]}")
    return report.summary()


def grafana_rules(args: argparse.Namespace) -> int:
    """Every provisioned alert rule evaluates without error, and > 35 °C held for the rule's `for` fires Grafana's
    temperature alert to the webhook receiver (the worker's own alert is checked by `check`)."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    auth = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}
    status, body = box.http("GET", f"{args.grafana}/api/v1/provisioning/alert-rules", auth)
    titles = {rule["uid"]: rule["title"] for rule in json.loads(body)} if status == 200 else {}
    report.check("Grafana lists the provisioned alert rules", bool(titles), f"{status} {body[:200]}")

    def evaluated() -> tuple[bool, str]:
        status, body = box.http("GET", f"{args.grafana}/api/prometheus/grafana/api/v1/rules", auth)
        if status != 200:
            return False, f"{status} {body[:200]}"
        health = rule_health(json.loads(body))
        bad = {
            title: health.get(title, ("not evaluated", ""))
            for title in titles.values()
            if health.get(title, ("", ""))[0] != "ok"
        }
        return not bad and bool(titles), f"not ok: {bad}" if bad else f"{len(titles)} rules ok"

    report.check(
        "every alert rule evaluates without error (health ok in the rules API)", *wait_until(evaluated, args.timeout)
    )

    client, name = args.device.split("/", 1)
    device = {"client": client, "name": name, "site": args.site, "type": "temperatura"}
    ca = _ca_file(box)
    deadline = time.monotonic() + args.hot_for
    sent = 0
    try:
        while time.monotonic() < deadline:
            now = datetime.now(UTC).replace(microsecond=0)
            publish(
                args.mqtt_host,
                args.mqtt_port,
                ca,
                args.device,
                secrets["mqtt"][args.device],
                f"mov/dados/{args.device}",
                readings(device, now, 1, critical_at=(0,)),
            )
            sent += 1
            time.sleep(args.every)
        report.check(f"{sent} readings above 35 °C published over {args.hot_for:.0f} s", sent > 0)
    except Exception as exc:  # any failure to publish is the finding
        report.check("readings above 35 °C published", False, repr(exc))
    finally:
        ca.unlink(missing_ok=True)

    def fired() -> tuple[bool, str]:
        lines = args.alerts.read_text().splitlines() if args.alerts.exists() else []
        found = grafana_alerts(lines, titles.get("mov-temperatura-critica", "?"), name)
        return bool(found), f"{len(found)} firing Grafana alert(s) for {name} among {len(lines)} webhook calls"

    report.check("Grafana's temperature alert fired to the webhook receiver", *wait_until(fired, args.timeout))
    if args.mails is not None:
        check_mail(
            report,
            args.mails,
            "Grafana's temperature alert fired by e-mail too (the policy's contact point, one message to all)",
            ["[FIRING:", titles.get("mov-temperatura-critica", "?"), name],
            args.mail_to,
            args.timeout,
        )
    return report.summary()


def _rule_titles(box: Box, grafana: str, auth: dict[str, str]) -> dict[str, str]:
    status, body = box.http("GET", f"{grafana}/api/v1/provisioning/alert-rules", auth)
    return {rule["uid"]: rule["title"] for rule in json.loads(body)} if status == 200 else {}


def _firing_probe(
    box: Box, grafana: str, auth: dict[str, str], title: str, labels: dict[str, str], wanted: bool
) -> Callable[[], tuple[bool, str]]:
    def probe() -> tuple[bool, str]:
        status, body = box.http("GET", f"{grafana}/api/prometheus/grafana/api/v1/rules", auth)
        if status != 200:
            return False, f"{status} {body[:200]}"
        now = firing(json.loads(body), title, labels)
        return now == wanted, f"{title} {labels}: {'firing' if now else 'not firing'}"

    return probe


def rule_state(args: argparse.Namespace) -> int:
    """One of Grafana's rules is firing (an alert with the given labels in state Alerting), or no longer is."""
    report = Report()
    box = Box(args.box)
    auth = {"Authorization": "Basic " + _basic("admin", load_secrets(args.secrets)["grafana_admin_password"])}
    title = _rule_titles(box, args.grafana, auth).get(args.rule)
    if not report.check(f"Grafana has the rule {args.rule}", title is not None):
        return report.summary()
    assert title is not None
    labels = dict(item.split("=", 1) for item in args.label)
    wanted = args.state == "firing"
    report.check(
        f"{args.rule} ({title}) is {args.state} {labels or ''}".rstrip(),
        *wait_until(_firing_probe(box, args.grafana, auth, title, labels, wanted), args.timeout, interval=10),
    )
    return report.summary()


def infra_panels(args: argparse.Namespace) -> int:
    """Every panel of the infrastructure dashboard, as provisioned in Grafana, runs in InfluxDB without an error (over
    the last hour, one-minute windows); the worker's readings, latency and buffer panels return values."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    influx = Influx(box, secrets["influxdb_admin_token"], args.org)
    auth = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}
    status, body = box.http("GET", f"{args.grafana}/api/dashboards/uid/mov-infrastructure", auth)
    panels = json.loads(body).get("dashboard", {}).get("panels", []) if status == 200 else []
    if not report.check("Grafana serves the dashboard mov-infrastructure", bool(panels), f"{status} {body[:200]}"):
        return report.summary()
    must_have_values = ("leituras por segundo", "latência de escrita", "buffer de escrita")
    for panel in panels:
        for target in panel.get("targets", []):
            status, answer = influx.query(panel_flux(str(target.get("query", ""))))
            values = [v for v in flux_column(answer) if v != ""] if status == 200 else []
            required = any(part in panel["title"] for part in must_have_values)
            report.check(
                f"panel {panel['title']!r}: its query runs" + (" and returns values" if required else ""),
                status == 200 and (bool(values) or not required),
                f"{status}: {len(values)} value(s) {answer[:300] if status != 200 else values[-3:]}",
            )
    return report.summary()


def worker_stopped(args: argparse.Namespace) -> int:
    """The analytics worker stopped while readings arrive: Grafana's stall rule and its stopped-container rule fire;
    started again, the worker is healthy and both rules stop firing. Readings are published all along, one every
    --every seconds, as a device."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    auth = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}
    titles = _rule_titles(box, args.grafana, auth)
    client, name = args.device.split("/", 1)
    device = {"client": client, "name": name, "site": args.site, "type": "temperatura"}
    container = f"mov-{args.service}-1"
    watched = (
        (titles.get("mov-analytics-parado", "?"), {"service": args.service}),
        (titles.get("mov-container-parado", "?"), {"container_name": container}),
    )
    ca = _ca_file(box)

    def publishing(probe: Callable[[], tuple[bool, str]]) -> Callable[[], tuple[bool, str]]:
        def with_a_reading() -> tuple[bool, str]:
            reading = readings(device, datetime.now(UTC).replace(microsecond=0), 1, critical_at=())
            account = (args.device, secrets["mqtt"][args.device])
            publish(args.mqtt_host, args.mqtt_port, ca, *account, f"mov/dados/{args.device}", reading)
            return probe()

        return with_a_reading

    try:
        stop = box.compose("stop", args.service)
        if not report.check(f"{args.service} is stopped", stop.returncode == 0, stop.stderr.strip()[-300:]):
            return report.summary()
        for title, labels in watched:
            probe = _firing_probe(box, args.grafana, auth, title, labels, True)
            report.check(f"{title} fires {labels}", *wait_until(publishing(probe), args.timeout, args.every))
        start = box.compose("up", "-d", "--wait", args.service, timeout=300)
        report.check(f"{args.service} is started and healthy", start.returncode == 0, start.stderr.strip()[-300:])
        for title, labels in watched:
            probe = _firing_probe(box, args.grafana, auth, title, labels, False)
            report.check(f"{title} stops firing {labels}", *wait_until(publishing(probe), args.timeout, args.every))
    finally:
        box.compose("up", "-d", "--wait", args.service, timeout=300)
        ca.unlink(missing_ok=True)
    return report.summary()


def identity(args: argparse.Namespace) -> int:
    """A device that puts another device's tags in its payload stores no point under that device: Telegraf takes
    the identity from the topic (which the ACL ties to the account) and drops the mismatch."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    influx = Influx(box, secrets["influxdb_admin_token"], args.org)
    client, name = args.device.split("/", 1)
    own = {"client": client, "name": name, "site": args.site, "type": "temperatura"}
    forged = dict(own, name=args.victim)
    start = datetime.now(UTC).replace(microsecond=0)
    ca = _ca_file(box)
    try:
        # The forged readings first, then genuine ones: once the genuine ones are stored, the forged ones have been
        # through Telegraf too (one consumer, in order).
        topic = f"mov/dados/{args.device}"
        publish(
            args.mqtt_host,
            args.mqtt_port,
            ca,
            args.device,
            secrets["mqtt"][args.device],
            topic,
            readings(forged, start, 5, critical_at=()),
        )
        publish(
            args.mqtt_host,
            args.mqtt_port,
            ca,
            args.device,
            secrets["mqtt"][args.device],
            topic,
            readings(own, start + timedelta(seconds=5), 5, critical_at=()),
        )
        report.check(f"5 readings tagged {args.victim} and 5 of its own published as {args.device}", True)
    except Exception as exc:
        report.check("readings published", False, repr(exc))
    finally:
        ca.unlink(missing_ok=True)

    def points_of(device: str, begin: datetime, end: datetime) -> int:
        return sum(
            int(v)
            for v in influx.values(
                f'from(bucket: "{args.bucket}") |> range(start: {begin.strftime("%Y-%m-%dT%H:%M:%SZ")}, '
                f"stop: {end.strftime('%Y-%m-%dT%H:%M:%SZ')}) "
                f'|> filter(fn: (r) => r._measurement == "mov_leituras" and r.dispositivo == "{device}" '
                'and r._field == "temperatura_c") |> group() |> count()'
            )
        )

    forged_span = (start, start + timedelta(seconds=5))  # the forged readings' seconds
    genuine_span = (start + timedelta(seconds=5), start + timedelta(seconds=10))

    def genuine() -> tuple[bool, str]:
        got = points_of(name, *genuine_span)
        return got == 5, f"{got} of 5 genuine readings stored"

    report.check("the genuine readings are stored under the publisher", *wait_until(genuine, args.timeout))
    forged_points = points_of(args.victim, start, start + timedelta(seconds=10))
    report.check(f"no point stored under {args.victim}", forged_points == 0, f"{forged_points} point(s)")
    # Telegraf renames the payload's tag and takes the topic's, so a forged reading that was not dropped would
    # be stored under the publisher: none may be in the forged readings' seconds.
    relabelled = points_of(name, *forged_span)
    report.check(f"the forged readings are dropped, not stored as {name}", relabelled == 0, f"{relabelled} point(s)")
    return report.summary()


def telegraf_health(args: argparse.Namespace) -> int:
    """Telegraf's healthcheck reads delivery: unhealthy once its InfluxDB token is made inactive, healthy again once
    it is active (PATCH /api/v2/authorizations/{id} status)."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    headers = {"Authorization": f"Token {secrets['influxdb_admin_token']}", "Content-Type": "application/json"}
    status, body = box.http("GET", f"{args.influxdb}/api/v2/authorizations?org={args.org}", headers)
    ids = (
        [a["id"] for a in json.loads(body).get("authorizations", []) if a.get("description") == "mov:telegraf"]
        if status == 200
        else []
    )
    if not report.check("Telegraf's token is found", len(ids) == 1, f"{status} {body[:200]}"):
        return report.summary()

    def health_is(wanted: str) -> Callable[[], tuple[bool, str]]:
        def probe() -> tuple[bool, str]:
            out = box.run("docker", "inspect", "--format", "{{.State.Health.Status}}", args.container)
            got = out.stdout.strip()
            return got == wanted, f"health {got or out.stderr.strip()}"

        return probe

    report.check("Telegraf is healthy before", *wait_until(health_is("healthy"), args.timeout))
    for state, wanted in (("inactive", "unhealthy"), ("active", "healthy")):
        status, body = box.http(
            "PATCH", f"{args.influxdb}/api/v2/authorizations/{ids[0]}", headers, json.dumps({"status": state})
        )
        report.check(f"the token is made {state}", status == 200, f"{status} {body[:200]}")
        report.check(f"Telegraf turns {wanted}", *wait_until(health_is(wanted), args.timeout))
    return report.summary()


def recreate(args: argparse.Namespace) -> int:
    """Grafana's dashboards, data and users survive `docker compose up --force-recreate`: grafana.db lives on the
    grafana_data volume (GF_PATHS_DATA), not in the container's layer."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    auth = {
        "Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"]),
        "Content-Type": "application/json",
    }
    login = "e2e-viewer"
    status, body = box.http(
        "POST",
        f"{args.grafana}/api/admin/users",
        auth,
        json.dumps({"name": "e2e", "login": login, "password": secrets_token(24)}),
    )
    report.check("a user is created", status == 200, f"{status} {body[:200]}")
    status, body = box.http(
        "POST", f"{args.grafana}/api/annotations", auth, json.dumps({"text": "e2e marker", "tags": ["e2e-recreate"]})
    )
    report.check("an annotation is stored", status == 200, f"{status} {body[:200]}")
    before = box.compose("ps", "-q", "grafana").stdout.strip()
    up = box.compose("up", "-d", "--force-recreate", "--no-deps", "--wait", "grafana", timeout=300)
    after = box.compose("ps", "-q", "grafana").stdout.strip()
    report.check(
        "grafana is recreated (a new container) and healthy",
        up.returncode == 0 and before != after,
        (up.stderr or up.stdout).strip()[-300:],
    )
    db = box.run("stat", "-c", "%s", args.grafana_db)
    report.check(
        f"grafana.db is on the host at {args.grafana_db}",
        db.returncode == 0 and int(db.stdout or 0) > 0,
        db.stderr.strip(),
    )
    status, body = box.http("GET", f"{args.grafana}/api/users/lookup?loginOrEmail={login}", auth)
    report.check("the user is still there", status == 200, f"{status} {body[:200]}")
    status, body = box.http("GET", f"{args.grafana}/api/annotations?tags=e2e-recreate", auth)
    report.check("the annotation is still there", status == 200 and "e2e marker" in body, f"{status} {body[:200]}")
    for uid in ("mov-overview", "mov-infrastructure"):
        status, body = box.http("GET", f"{args.grafana}/api/dashboards/uid/{uid}", auth)
        report.check(f"the dashboard {uid} is provisioned", status == 200, f"{status} {body[:200]}")
    status, body = box.http("GET", f"{args.grafana}/api/datasources/uid/mov-influxdb/health", auth)
    report.check("the InfluxDB datasource is healthy", status == 200 and '"OK"' in body, f"{status} {body[:300]}")
    return report.summary()


def weekly_report(args: argparse.Namespace) -> int:
    """The weekly report's cron job, run as cron runs it, on readings of the week it reports (yesterday's), and its
    PDF holds their figures: the device, the count, the minimum and the maximum."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    influx = Influx(box, secrets["influxdb_admin_token"], args.org)
    client, name = args.device.split("/", 1)
    device = {"client": client, "name": name, "site": args.site, "type": "temperatura"}
    # The week the job reports ends yesterday; the other checks' readings are today's.
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    values = readings(device, yesterday, 10, critical_at=(4,))
    expected_min = min(v["fields"]["temperatura_c"] for v in values)
    expected_max = max(v["fields"]["temperatura_c"] for v in values)
    ca = _ca_file(box)
    try:
        publish(
            args.mqtt_host,
            args.mqtt_port,
            ca,
            args.device,
            secrets["mqtt"][args.device],
            f"mov/dados/{args.device}",
            values,
        )
        report.check(f"10 readings of yesterday published as {args.device}", True)
    except Exception as exc:
        report.check("readings of yesterday published", False, repr(exc))
    finally:
        ca.unlink(missing_ok=True)

    def landed() -> tuple[bool, str]:
        got = sum(
            int(v)
            for v in influx.values(
                f'from(bucket: "{args.bucket}") |> range(start: {yesterday.strftime("%Y-%m-%dT00:00:00Z")}, '
                f"stop: {datetime.now(UTC).strftime('%Y-%m-%dT00:00:00Z')}) "
                f'|> filter(fn: (r) => r.dispositivo == "{name}" and r._field == "temperatura_c") '
                "|> group() |> count()"
            )
        )
        return got == 10, f"{got} of 10 stored"

    report.check("yesterday's readings are stored", *wait_until(landed, args.timeout))
    crontab = box.run("crontab", "-l").stdout.splitlines()
    marker = f"#Ansible: mov: {args.job}"
    lines = [crontab[i + 1] for i, line in enumerate(crontab[:-1]) if line.strip() == marker]
    if not report.check(f"root's crontab has the job {args.job}", len(lines) == 1, f"{len(lines)} line(s)"):
        return report.summary()
    command = lines[0].split(None, 5)[5].replace("\\%", "%")
    run = box.run("sh", "-c", command, timeout=600)
    job_log = box.run("tail", "-n", "30", f"/var/log/mov-cron/{args.job}.log").stdout if run.returncode else ""
    report.check(
        f"the {args.job} job runs as cron runs it",
        run.returncode == 0,
        ((run.stderr or run.stdout) + job_log).strip()[-800:],
    )
    week_ending = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    pdf = box.run("base64", "-w0", f"{args.report_dir}/report-{week_ending}.pdf")
    if not report.check(f"report-{week_ending}.pdf was written", pdf.returncode == 0, pdf.stderr.strip()):
        return report.summary()
    import base64

    text = pdf_text(base64.b64decode(pdf.stdout))
    report.check(f"the PDF names {client} / {name}", f"{client} / {name}" in text, text[:300])
    report.check("the PDF counts its 10 readings", "10 readings" in text, text[:300])
    for label, value in (("minimum", expected_min), ("maximum", expected_max)):
        report.check(f"the PDF holds the {label} {value:.2f}", f"{value:.2f}" in text.split(), text[:300])
    if args.mails is not None:
        check_mail(
            report,
            args.mails,
            "the job e-mailed the report through mov_smtp with both files attached",
            ["MOV weekly report", f"to {week_ending}"],
            args.mail_to,
            args.timeout,
            attachments=[f"report-{week_ending}.html", f"report-{week_ending}.pdf"],
        )
    return report.summary()


def hardening(args: argparse.Namespace) -> int:
    """Every running container of the stack, as Docker runs it: no capability, no privilege gain, a bounded number
    of processes, a non-root user of its own (never uid 1000, InfluxDB's image's and often the host admin's), no
    secret in its environment (what `docker inspect`, and so the Docker API proxy, shows); a read-only root
    filesystem where the stack asks for one."""
    report = Report()
    box = Box(args.box)
    secrets = [value for value in flat_secrets(load_secrets(args.secrets)) if len(value) >= 12]
    users: dict[str, str] = {}
    ids = box.compose("ps", "--all", "-q").stdout.split()
    services = box.compose("config", "--services").stdout.split()
    report.check(
        "one container for every service of the stack",
        bool(ids) and len(ids) == len(services),
        f"{len(ids)} containers, services {services}",
    )
    for container_id in ids:
        out = box.run("docker", "inspect", container_id)
        if not report.check(f"docker inspect {container_id[:12]}", out.returncode == 0, out.stderr.strip()):
            continue
        info = json.loads(out.stdout)[0]
        name, config = info["Name"].lstrip("/"), info["HostConfig"]
        report.check(
            f"{name}: every capability dropped",
            config.get("CapDrop") == ["ALL"] and not config.get("CapAdd"),
            f"{config.get('CapDrop')} {config.get('CapAdd')}",
        )
        report.check(f"{name}: no-new-privileges", "no-new-privileges:true" in (config.get("SecurityOpt") or []))
        report.check(f"{name}: a process limit", (config.get("PidsLimit") or 0) > 0, str(config.get("PidsLimit")))
        user = str(info["Config"].get("User") or "")
        report.check(f"{name}: runs as a non-root user", user.split(":")[0] not in ("", "0", "root", "1000"), user)
        report.check(f"{name}: a uid no other service has", users.setdefault(user.split(":")[0], name) == name, user)
        report.check(f"{name}: no secret in its environment", not any(v in out.stdout for v in secrets))
        service = info["Config"]["Labels"].get("com.docker.compose.service", "")
        if service in args.read_only:
            report.check(f"{name}: read-only root filesystem", config.get("ReadonlyRootfs") is True)
    return report.summary()


def retention(args: argparse.Namespace) -> int:
    """The bucket's retention in InfluxDB is the tree's (the token step PATCHes it onto the existing bucket)."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    headers = {"Authorization": f"Token {secrets['influxdb_admin_token']}"}
    status, body = box.http("GET", f"{args.influxdb}/api/v2/buckets?name={args.bucket}", headers)
    buckets = json.loads(body).get("buckets", []) if status == 200 else []
    rules = [r for b in buckets for r in b.get("retentionRules", []) if r.get("type") == "expire"]
    seconds = int(rules[0].get("everySeconds", 0)) if rules else 0
    wanted = duration_seconds(args.expect)
    report.check(
        f"{args.bucket} keeps data {args.expect}",
        len(buckets) == 1 and seconds == wanted,
        f"{status}: everySeconds {seconds}, wanted {wanted}",
    )
    return report.summary()


def history(args: argparse.Namespace) -> int:
    """The long-term history (roles/influxdb's task, group_vars/all/services.yml): the task exists once after two
    deploys; readings of a past hour (the job's own device) give that hour's min, mean and max in the history bucket
    after a forced run, and a reading arriving late is counted by the next run with no point doubled; Grafana's
    history dashboard reads them with its own token."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    admin = {"Authorization": f"Token {secrets['influxdb_admin_token']}", "Content-Type": "application/json"}
    api = f"{args.influxdb}/api/v2"
    status, body = box.http("GET", f"{api}/tasks?org={args.org}&limit=500", admin)
    tasks = (
        [t for t in json.loads(body).get("tasks", []) if t.get("description") == f"mov:{args.task}"]
        if status == 200
        else []
    )
    if not report.check(
        f"the task {args.task} exists once after two deploys, active, every {args.every}",
        [(t.get("status"), t.get("every")) for t in tasks] == [("active", args.every)],
        f"{status} {json.dumps(tasks)[:400] if tasks else body[:300]}",
    ):
        return report.summary()
    task_id = tasks[0]["id"]

    # A past whole hour the look-back of a run scheduled at its end still covers; the device is the verify client's,
    # whose silence Grafana ignores.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=args.hours_ago)
    series = f"mov_leituras,cliente=mov_verify,localizacao=e2e,dispositivo={args.history_device},tipo=temperatura"

    def write(minutes_values: Sequence[tuple[int, float]]) -> None:
        lines = "\n".join(
            f"{series} temperatura_c={v} {int((hour + timedelta(minutes=m)).timestamp())}" for m, v in minutes_values
        )
        url = f"{api}/write?org={args.org}&bucket={args.bucket}&precision=s"
        status, body = box.http("POST", url, {**admin, "Content-Type": "text/plain; charset=utf-8"}, lines)
        report.check(
            f"{len(minutes_values)} reading(s) of {hour:%H}:00 UTC written to {args.bucket}", status == 204, body
        )

    def run(scheduled: datetime) -> None:
        """A forced run whose now() is `scheduled` (influxdata/influxdb v2.7.11 http/task_service.go, scheduledFor)."""
        status, body = box.http(
            "POST",
            f"{api}/tasks/{task_id}/runs",
            admin,
            json.dumps({"scheduledFor": f"{scheduled:%Y-%m-%dT%H:%M:%SZ}"}),
        )
        run_id = json.loads(body).get("id", "") if status == 201 else ""

        def finished() -> tuple[bool, str]:
            status, body = box.http("GET", f"{api}/tasks/{task_id}/runs/{run_id}", admin)
            state = json.loads(body).get("status", "") if status == 200 else ""
            return state in ("success", "failed", "canceled"), state or f"{status} {body[:200]}"

        done, state = wait_until(finished, args.timeout, 2) if run_id else (False, f"{status} {body[:300]}")
        if state != "success" and run_id:
            _, logs = box.http("GET", f"{api}/tasks/{task_id}/runs/{run_id}/logs", admin)
            state += " " + logs[:600]
        report.check(
            f"a run of {args.task} scheduled for {scheduled:%H:%M} UTC succeeded", done and state == "success", state
        )

    def stored() -> dict[str, list[tuple[str, float]]]:
        """The history's points of the device in that hour, per agg: [(time, value)]."""
        status, answer = Influx(box, secrets["influxdb_admin_token"], args.org).query(
            f'from(bucket: "{args.history_bucket}") |> range(start: {hour:%Y-%m-%dT%H:%M:%SZ}, '
            f"stop: {hour + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}) |> filter(fn: (r) => r.dispositivo == "
            f'"{args.history_device}" and r._field == "temperatura_c") |> group() '
            '|> keep(columns: ["_time", "agg", "_value"])'
        )
        points: dict[str, list[tuple[str, float]]] = {}
        rows = zip(flux_column(answer, "agg"), flux_column(answer, "_time"), flux_column(answer, "_value"), strict=True)
        for agg, when, value in rows if status == 200 else []:
            points.setdefault(agg, []).append((when, float(value)))
        return points

    def judged(values: Sequence[float]) -> tuple[bool, str]:
        got, at = stored(), f"{hour:%Y-%m-%dT%H:%M:%SZ}"
        want = {"min": [(at, min(values))], "mean": [(at, sum(values) / len(values))], "max": [(at, max(values))]}
        return got == want, f"got {got}, want {want}"

    values = [21.5, 24.0, 19.25, 30.5]
    write(list(zip((5, 20, 35, 50), values, strict=True)))
    run(hour + timedelta(hours=1))
    report.check(f"{args.history_bucket} holds that hour's min, mean and max (tag agg) at its start", *judged(values))
    # Late: a reading of the same hour arrives after that run; the next run, an hour later, covers the hour again.
    write([(55, 17.0)])
    run(hour + timedelta(hours=2))
    report.check("a later run counts the late reading and overwrites the same points", *judged([*values, 17.0]))

    # Grafana's history dashboard, its panel's three queries as Grafana's backend runs them (its datasource's token,
    # v.* filled in from the range: grafana/grafana v11.3.1 pkg/tsdb/influxdb/flux/macros.go), the dashboard's
    # variables as the frontend fills them for this device.
    grafana = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}
    status, body = box.http("GET", f"{args.grafana}/api/dashboards/uid/mov-history", grafana)
    dashboard = json.loads(body).get("dashboard", {}) if status == 200 else {}
    panels = dashboard.get("panels", [])
    if not report.check("Grafana's history dashboard is provisioned", bool(panels), f"{status} {body[:200]}"):
        return report.summary()
    fill = {
        "${planta:regex}": all_value(dashboard, "planta"),
        "${cliente:regex}": "mov_verify",
        "${localizacao:regex}": ".*",
        "${dispositivo:regex}": args.history_device,
    }
    status, body = panel_query(box, args.grafana, grafana, panels[0]["targets"], fill, hour, hour + timedelta(hours=1))
    got = grafana_numbers(json.loads(body)) if status == 200 else {}
    everything = [*values, 17.0]
    want = {"A": [min(everything)], "B": [sum(everything) / len(everything)], "C": [max(everything)]}
    report.check(
        "Grafana's history panel reads the hour's min, mean and max", got == want, f"{status}: {got or body[:400]}"
    )
    return report.summary()


def all_value(dashboard: dict[str, Any], name: str) -> str:
    """The custom value "All" of a dashboard's variable stands for ("" when it has none)."""
    variables = dashboard.get("templating", {}).get("list", [])
    return next((str(v.get("allValue") or "") for v in variables if v.get("name") == name), "")


def panel_query(
    box: Box,
    grafana: str,
    auth: dict[str, str],
    targets: Sequence[dict[str, Any]],
    fill: dict[str, str],
    start: datetime,
    stop: datetime,
) -> tuple[int, str]:
    """A panel's queries as Grafana's backend runs them (its datasource's token, v.* filled in from the range:
    grafana/grafana v11.3.1 pkg/tsdb/influxdb/flux/macros.go), the dashboard's variables as its frontend fills them
    (`fill`: each ${name:regex} and its text)."""
    queries = [
        {
            "refId": target["refId"],
            "datasource": {"uid": target["datasource"]["uid"]},
            "query": functools.reduce(lambda q, kv: q.replace(*kv), fill.items(), target["query"]),
            "intervalMs": 60000,
            "maxDataPoints": 100,
        }
        for target in targets
    ]
    span = {"from": str(int(start.timestamp() * 1000)), "to": str(int(stop.timestamp() * 1000))}
    return box.http(
        "POST",
        f"{grafana}/api/ds/query",
        {**auth, "Content-Type": "application/json"},
        json.dumps({**span, "queries": queries}),
    )


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def gateway(args: argparse.Namespace) -> int:
    """Issue 17 (docs/plants.md), the central side of an edge gateway end to end. What its bridge forwards (readings
    under <plants>/<plant>/mov/dados/<cliente>/<dispositivo>; the bridge's state and the gateway broker's heartbeat
    under <plants>/<plant>/<state topic>/) is published to the central broker over MQTT/TLS with the gateway's own
    account, which the deploy made from its list of gateways. Telegraf stores the readings with planta and the topic's
    cliente and dispositivo, and the state and heartbeat as the gateways' measurement with planta (what Grafana's
    offline rule reads). The same account publishing under another plant is refused and nothing of it is stored."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    influx = Influx(box, secrets["influxdb_admin_token"], args.org)
    scheme = PlantScheme.load(GATEWAYS_VARS)
    account = scheme.account(args.plant)
    if not report.check(
        f"the deploy generated the account {account} of the gateway of {args.plant}",
        account in (secrets.get("mqtt") or {}),
    ):
        return report.summary()
    client, name = args.gateway_device.split("/", 1)
    device = {"client": client, "name": name, "site": args.gateway_site, "type": "temperatura"}
    local_topic = f"mov/dados/{args.gateway_device}"
    start = datetime.now(UTC).replace(microsecond=0)
    since = _stamp(start - timedelta(seconds=1))
    elsewhere = readings(device, start, 2, critical_at=())
    sent = readings(device, start + timedelta(seconds=2), 3, critical_at=())
    heartbeat = f"{int(time.time()) % 86400} seconds"
    ca = _ca_file(box)

    def send(topic: str, payloads: Sequence[dict[str, Any] | str]) -> None:
        publish(args.mqtt_host, args.mqtt_port, ca, *mqtt_login(secrets, account), topic, payloads)

    try:
        # Another plant's topic first: once the gateway's own readings are stored, those would have been through
        # Telegraf too had the broker let them pass (one consumer, in order).
        other = scheme.central(args.other_plant, local_topic)
        try:
            send(other, elsewhere)
            report.check(f"the broker refuses {account} a reading under {args.other_plant}", False, "acknowledged")
        except PublishRefused as exc:
            report.check(f"the broker refuses {account} a reading under {args.other_plant}", True, str(exc))
        send(scheme.central(args.plant, local_topic), sent)
        send(scheme.state(args.plant, GATEWAY_STATE), ["1"])
        send(scheme.state(args.plant, GATEWAY_HEARTBEAT), [heartbeat])
        report.check(f"3 readings, the bridge's state and a heartbeat published as {account} under {args.plant}", True)
    except Exception as exc:  # any failure to publish is the finding
        report.check(f"readings, state and heartbeat published as {account}", False, repr(exc))
    finally:
        ca.unlink(missing_ok=True)

    stored = (
        f'from(bucket: "{args.bucket}") |> range(start: {since}) '
        f'|> filter(fn: (r) => r._measurement == "mov_leituras" and r.dispositivo == "{name}" '
        'and r._field == "temperatura_c")'
    )
    report.check(
        f"Telegraf stored the readings with planta={args.plant}, cliente and dispositivo from the topic (Flux query)",
        *wait_until(
            rows_probe(influx, stored, lambda rows: plant_readings_stored(rows, sent, args.plant)), args.timeout
        ),
    )
    leaked = influx.rows(
        f'from(bucket: "{args.bucket}") |> range(start: {since}) '
        f'|> filter(fn: (r) => r._measurement == "mov_leituras" and r.planta == "{args.other_plant}")'
    )
    report.check(f"nothing stored under planta={args.other_plant}", not leaked, f"{len(leaked)} point(s)")
    state = (
        f'from(bucket: "{args.infra_bucket}") |> range(start: {since}) '
        f'|> filter(fn: (r) => r._measurement == "{scheme.measurement}" and r.planta == "{args.plant}")'
    )
    report.check(
        f"Telegraf stored the bridge's state and the heartbeat in {scheme.measurement} with planta={args.plant} "
        "(Flux query)",
        *wait_until(
            rows_probe(influx, state, lambda rows: gateway_state_stored(rows, args.plant, heartbeat)), args.timeout
        ),
    )
    return report.summary()


def dashboard_plants(args: argparse.Namespace) -> int:
    """Issue 17 (docs/plants.md): a reading forwarded by an edge gateway carries the tag planta, a direct device's
    none. One of each goes through MQTT and Telegraf (the gateway's as its bridge forwards it, with its account; the
    direct one with the verify playbook's account); the overview's temperature panel, run by Grafana, finds both
    with its variable planta on "All" (the variable's custom all value) and only the gateway's with the plant
    chosen. The two points are deleted after."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    influx = Influx(box, secrets["influxdb_admin_token"], args.org)
    admin = {"Authorization": f"Token {secrets['influxdb_admin_token']}"}
    grafana = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}
    status, body = box.http("GET", f"{args.grafana}/api/dashboards/uid/mov-overview", grafana)
    dashboard = json.loads(body).get("dashboard", {}) if status == 200 else {}
    targets = [
        target
        for panel in dashboard.get("panels", [])
        for target in panel.get("targets", [])
        if 'r._field == "temperatura_c"' in target.get("query", "") and panel.get("type") == "timeseries"
    ]
    everything = all_value(dashboard, "planta")
    if not report.check(
        "the overview's temperature panel filters on the variable planta, whose All is a custom value",
        len(targets) == 1 and "${planta:regex}" in targets[0]["query"] and bool(everything),
        f"{status} {len(targets)} panel(s), allValue {everything!r}",
    ):
        return report.summary()
    # The verify client's devices, whose silence Grafana ignores; a location of their own, which the panel filters on.
    at = datetime.now(UTC).replace(microsecond=0)
    location = "e2e_plantas"
    scheme = PlantScheme.load(GATEWAYS_VARS)
    gateway_account = scheme.account(args.plant)
    # (client/name, the account publishing, its topic, the reading's value)
    sources = (
        (args.gateway_device, gateway_account, scheme.central(args.plant, f"mov/dados/{args.gateway_device}"), 21.25),
        (args.direct_device, args.direct_account, f"mov/dados/{args.direct_device}", 23.75),
    )
    devices = [dict(zip(("client", "name"), source[0].split("/", 1), strict=True)) for source in sources]
    ca = _ca_file(box)
    try:
        for device, (_, account, topic, value) in zip(devices, sources, strict=True):
            reading = readings({**device, "site": location, "type": "temperatura"}, at, 1, (), base=value)
            publish(args.mqtt_host, args.mqtt_port, ca, *mqtt_login(secrets, account), topic, reading)
        report.check(f"a gateway's reading (as {gateway_account}) and a direct one published over MQTT/TLS", True)
    except Exception as exc:  # any failure to publish is the finding
        report.check("a gateway's reading and a direct one published over MQTT/TLS", False, repr(exc))
    finally:
        ca.unlink(missing_ok=True)
    try:
        want = sorted([(args.plant, 21.25), ("", 23.75)])

        def both(rows: list[dict[str, str]]) -> tuple[bool, str]:
            got = sorted((row.get("planta", ""), float(row["_value"])) for row in rows)
            return got == want, f"stored (planta, value): {got}"

        stored = (
            f'from(bucket: "{args.bucket}") |> range(start: {_stamp(at)}, stop: {_stamp(at + timedelta(seconds=1))}) '
            f'|> filter(fn: (r) => r._measurement == "mov_leituras" and r.localizacao == "{location}" '
            'and r._field == "temperatura_c")'
        )
        report.check(
            f"Telegraf stored both, the gateway's alone with planta={args.plant} (Flux query)",
            *wait_until(rows_probe(influx, stored, both), args.timeout),
        )
        fill = {
            "${cliente:regex}": "|".join(sorted({device["client"] for device in devices})),
            "${localizacao:regex}": location,
            "${dispositivo:regex}": f"({'|'.join(device['name'] for device in devices)})",
        }
        for choice, values in ((everything, [21.25, 23.75]), (args.plant, [21.25])):
            status, body = panel_query(
                box,
                args.grafana,
                grafana,
                targets,
                {"${planta:regex}": choice, **fill},
                at - timedelta(minutes=9),
                at + timedelta(minutes=1),
            )
            got = sorted(grafana_numbers(json.loads(body)).get("A", [])) if status == 200 else []
            report.check(
                f"the panel with planta {choice!r} finds {values}", got == values, f"{status}: {got or body[:400]}"
            )
    finally:
        status, body = box.http(
            "POST",
            f"{args.influxdb}/api/v2/delete?org={args.org}&bucket={args.bucket}",
            {**admin, "Content-Type": "application/json"},
            json.dumps(
                {
                    "start": _stamp(at - timedelta(minutes=1)),
                    "stop": _stamp(at + timedelta(minutes=1)),
                    "predicate": f'_measurement="mov_leituras" AND localizacao="{location}"',
                }
            ),
        )
        report.check("the two points are deleted", status == 204, body[:300])
    return report.summary()


def duration_seconds(text: str) -> int:
    """An InfluxDB duration of whole units ("30d", "12h"); 0 is forever."""
    if text == "0":
        return 0
    match = re.fullmatch(r"(\d+)([smhdw])", text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]


def _ca_file(box: Box) -> Path:
    """The platform's CA certificate in a local file (the caller removes it)."""
    ca = box.run("cat", CA_FILE)
    if ca.returncode != 0:
        raise RuntimeError(f"cannot read {CA_FILE}: {ca.stderr.strip()}")
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write(ca.stdout)
    return Path(handle.name)


def logs(args: argparse.Namespace) -> int:
    """The logs part (mov_logs_enabled): Alloy shipped the containers' and the journal's lines to Loki."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)

    def ready() -> tuple[bool, str]:
        status, body = box.http("GET", f"{args.loki}/ready")
        return status == 200, f"{status} {body.strip()[:200]}"

    report.check("Loki is ready", *wait_until(ready, args.timeout))

    def lines_of(selector: str) -> Callable[[], tuple[bool, str]]:
        def probe() -> tuple[bool, str]:
            query = urllib.parse.urlencode({"query": selector, "since": "30m", "limit": "20"})
            status, body = box.http("GET", f"{args.loki}/loki/api/v1/query_range?{query}")
            found = loki_lines(body)
            return bool(found), f"{status}: {len(found)} line(s); {found[:2] or body[:200]}"

        return probe

    for service in args.services:
        report.check(
            f"Loki returns lines of the {service} container (Alloy, Docker socket)",
            *wait_until(lines_of(f'{{source="docker", service="{service}"}}'), args.timeout),
        )
    report.check(
        "Loki returns lines of the host's journal (Alloy, systemd journal)",
        *wait_until(lines_of('{source="journal"}'), args.timeout),
    )

    auth = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}
    status, body = box.http("GET", f"{args.grafana}/api/datasources/uid/mov-loki/health", auth)
    report.check("Grafana's Loki datasource is healthy", status == 200 and '"OK"' in body, f"{status} {body[:300]}")
    return report.summary()


def secrets_token(length: int) -> str:
    """A random password for a throwaway account."""
    import secrets

    return secrets.token_urlsafe(length)


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


def history_stop(now: datetime, every: timedelta) -> str:
    """The end of the history the counts compare: before the window the task completed last, so no run of the task
    between the two counts (one at each `every`, writing the window that just ended) adds a point to it."""
    step = int(every.total_seconds())
    start_of_window = datetime.fromtimestamp(int(now.timestamp()) // step * step, UTC)
    return (start_of_window - every).strftime("%Y-%m-%dT%H:%M:%SZ")


def counts(args: argparse.Namespace) -> int:
    secrets = load_secrets(args.secrets)
    influx = Influx(Box(args.box), secrets["influxdb_admin_token"], args.org)
    before = json.loads(args.compare.read_text()) if args.compare else {}
    every = timedelta(seconds=duration_seconds(args.history_every))
    stop = before.get("history_stop") or history_stop(datetime.now(UTC), every)
    history = influx.values(
        f'from(bucket: "{args.history_bucket}") |> range(start: 0, stop: {stop}) '
        '|> filter(fn: (r) => r._measurement == "mov_leituras") |> group() |> count()'
    )
    now = {
        "readings": influx.count(args.bucket, "mov_leituras"),
        "statuses": influx.count(args.status_bucket, "mov_status"),
        "history": sum(int(v) for v in history),
    }
    if args.out:
        args.out.write_text(json.dumps({**now, "history_stop": stop}))
        print(f"counts: {now} (history before {stop})")
        return 0 if now["readings"] > 0 and now["history"] > 0 else 1
    report = Report()
    for key, value in now.items():
        report.check(
            f"{key} after the restore equal those before the backup",
            value == before.get(key),
            f"before {before.get(key)}, after {value}",
        )
    return report.summary()


def check_mail(
    report: Report,
    mails: Path,
    name: str,
    subject_has: Sequence[str],
    recipients: Sequence[str],
    timeout: float,
    body_has: str = "",
    attachments: Sequence[str] = (),
) -> bool:
    """One message whose subject holds `subject_has` reached the job's relay over TLS with a login, addressed to
    exactly `recipients` (one message for all of them), with `body_has` in its text and `attachments` attached."""

    def arrived() -> tuple[bool, str]:
        lines = mails.read_text().splitlines() if mails.exists() else []
        found = mail_inbox.messages(lines, subject_has)
        if not found:
            subjects = [m.get("subject") for m in mail_inbox.messages(lines)]
            return False, f"none among {len(lines)} message(s): {subjects[-5:]}"
        got = found[-1]
        problems = [
            what
            for what, ok in (
                (f"envelope to {got['envelope_to']}", sorted(got["envelope_to"]) == sorted(recipients)),
                ("not over TLS", got["tls"] is True),
                ("no login", bool(got["login"])),
                (f"body {got['body'][:200]!r}", body_has in got["body"]),
                (f"attachments {got['attachments']}", sorted(got["attachments"]) == sorted(attachments)),
            )
            if not ok
        ]
        return not problems, "; ".join(problems) or f"{got['subject']!r} from {got['from']} to {got['to']}"

    return report.check(name, *wait_until(arrived, timeout))


def grafana_email(args: argparse.Namespace) -> int:
    """Grafana's provisioned contact point holds the tree's e-mail addresses in one message, and Grafana delivers a
    test notification of it through its [smtp] (the tree's mov_smtp: host:port, STARTTLS, login) to the job's relay:
    the alerting API's receiver test, which sends what the contact point sends for a firing alert."""
    if args.mails is None or not args.mail_to:
        raise SystemExit("grafana-email needs --mails and --mail-to")
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    auth = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}
    status, body = box.http("GET", f"{args.grafana}/api/alertmanager/grafana/config/api/v1/alerts", auth)
    receivers = json.loads(body).get("alertmanager_config", {}).get("receivers", []) if status == 200 else []
    configs = [
        config
        for receiver in receivers
        if receiver.get("name") == args.contact_point
        for config in receiver.get("grafana_managed_receiver_configs", [])
        if config.get("type") == "email"
    ]
    if not report.check(
        f"the contact point {args.contact_point} has an e-mail receiver", len(configs) == 1, f"{status} {body[:300]}"
    ):
        return report.summary()
    (config,) = configs
    settings = config.get("settings", {})
    report.check(
        "its addresses are the tree's, in one message",
        settings.get("addresses") == ";".join(args.mail_to) and settings.get("singleEmail") is True,
        json.dumps(settings),
    )
    alertname = f"MovE2EMail{int(time.time())}"
    test = {
        "receivers": [{"name": args.contact_point, "grafana_managed_receiver_configs": [config]}],
        "alert": {"labels": {"alertname": alertname}, "annotations": {"summary": "e2e: Grafana's e-mail"}},
    }
    headers = {**auth, "Content-Type": "application/json"}
    url = f"{args.grafana}/api/alertmanager/grafana/config/api/v1/receivers/test"
    status, body = box.http("POST", url, headers, json.dumps(test))
    results = [
        result
        for receiver in (json.loads(body).get("receivers", []) if status in (200, 207) else [])
        for result in receiver.get("grafana_managed_receiver_configs", [])
    ]
    report.check(
        "Grafana reports the test notification sent",
        status == 200 and [r.get("status") for r in results] == ["ok"],
        f"{status} {body[:500]}",
    )
    check_mail(
        report,
        args.mails,
        f"the test notification arrived through mov_smtp to {', '.join(args.mail_to)}",
        [alertname],
        args.mail_to,
        args.timeout,
    )
    return report.summary()


# --- the webhook receiver ------------------------------------------------------------------------------------------


def serve(port: int, out: Path, ready: threading.Event | None = None, stop_after: float | None = None) -> None:
    """Append every POSTed body to `out`, one line each; answer 200. Runs until killed (or stop_after seconds)."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock, out.open("a") as handle:
                handle.write(" ".join(body.decode(errors="replace").split()) + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            print(f"receiver: {self.command} {self.path}", flush=True)

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # the box's containers call it over Docker's bridge
    if stop_after is not None:
        threading.Timer(stop_after, server.shutdown).start()
    if ready is not None:
        ready.set()
    with server:
        server.serve_forever()


def bench(args: argparse.Namespace) -> int:
    """`movctl bench` against the real InfluxDB and Grafana: every reading acknowledged, each status point read back
    through Flux (so the latency figures are InfluxDB's), writes and /api/health timed, every container measured;
    afterwards no account of the bench's client in the broker and no point of it in either bucket (the delete API's
    predicate on a tag)."""
    report = Report()
    box = Box(args.box)
    out = box.run("movctl", "bench", "--json", "--devices", "3", "--rate", "30", "--duration", "10", timeout=300)
    report.check("movctl bench exits 0", out.returncode == 0, (out.stderr or out.stdout).strip()[-800:])
    try:
        doc = json.loads(out.stdout)
    except ValueError:
        report.check("movctl bench prints one JSON document", False, out.stdout[-500:])
        return report.summary()
    mqtt = doc.get("mqtt", {})
    status = mqtt.get("status_latency_ms", {})
    report.check("every reading acknowledged", mqtt.get("failed") == 0 and mqtt.get("acked", 0) > 200, json.dumps(mqtt))
    report.check(
        "every probe's status point read back from InfluxDB",
        status.get("samples", 0) >= 5 and status.get("missing") == 0 and not status.get("error"),
        json.dumps(status),
    )
    for timing in ("influxdb_write", "grafana_health"):
        got = doc.get(timing, {})
        report.check(f"{timing} timed", got.get("samples", 0) >= 5 and got.get("failed") == 0, json.dumps(got))
    measured = set(doc.get("containers", {}))
    report.check(
        "every service's CPU and memory measured",
        {"mosquitto", "analytics", "telegraf", "influxdb", "grafana"} <= measured,
        str(sorted(measured)),
    )
    passwd = box.run("cat", "/opt/mov/mosquitto/config/passwd").stdout
    report.check("no bench account left in the broker", "movbench/" not in passwd, "")
    influx = Influx(box, load_secrets(args.secrets)["influxdb_admin_token"], args.org)
    for bucket in (args.bucket, args.status_bucket):
        left = influx.values(
            f'from(bucket: "{bucket}") |> range(start: -1h) |> filter(fn: (r) => r.cliente == "movbench") '
            "|> group() |> count()"
        )
        report.check(f"no bench point left in {bucket}", sum(int(v) for v in left) == 0, str(left))
    return report.summary()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_receive = sub.add_parser("receive", help="webhook receiver")
    p_receive.add_argument("--port", type=int, default=8099)
    p_receive.add_argument("--out", type=Path, required=True)
    p_mail = sub.add_parser("smtp-receive", help="the mail relay (STARTTLS, then a login)")
    p_mail.add_argument("--port", type=int, default=8587)
    p_mail.add_argument("--out", type=Path, required=True)
    p_mail.add_argument("--cert", type=Path, required=True)
    p_mail.add_argument("--key", type=Path, required=True)
    p_mail.add_argument("--user", required=True)
    p_mail.add_argument("--password-file", type=Path, required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--box", default="mov-box")
    common.add_argument("--secrets", type=Path, default=SECRETS)
    common.add_argument("--org", default="mov_industria")
    common.add_argument("--bucket", default="mov_dados")
    common.add_argument("--status-bucket", default="mov_status")
    common.add_argument("--infra-bucket", default="mov_infra")
    common.add_argument("--mails", type=Path, help="the mail relay's output; without it no e-mail is checked")
    common.add_argument(
        "--mail-to", type=lambda text: text.split(","), default=[], help="the tree's mov_alert_contacts.emails"
    )
    p_check = sub.add_parser("check", parents=[common], help="publish readings, then every assertion")
    p_check.add_argument("--alerts", type=Path, required=True, help="the receiver's output")
    p_check.add_argument("--device", default="industria_abc/sensor_001", help="client/name of a device")
    p_check.add_argument("--site", default="sala_servidores")
    p_check.add_argument("--readings", type=int, default=20)
    p_check.add_argument("--mqtt-host", default="mov.localhost", help="the certificate's name, resolving to the box")
    p_check.add_argument("--mqtt-port", type=int, default=8883)
    p_check.add_argument("--grafana", default="http://127.0.0.1:3000")
    p_check.add_argument("--timeout", type=float, default=120, help="seconds to wait for each outcome")
    p_counts = sub.add_parser("counts", parents=[common], help="points per bucket: save, or compare with saved")
    p_counts.add_argument("--history-bucket", default="mov_historico")
    p_counts.add_argument("--history-every", default="1h", help="the tree's mov_influxdb_history_every")
    target = p_counts.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path)
    target.add_argument("--compare", type=Path)
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", default="industria_abc/sensor_001", help="client/name of a device")
    device.add_argument("--site", default="sala_servidores")
    device.add_argument("--mqtt-host", default="mov.localhost", help="the certificate's name, resolving to the box")
    device.add_argument("--mqtt-port", type=int, default=8883)
    device.add_argument("--grafana", default="http://127.0.0.1:3000")
    device.add_argument("--influxdb", default="http://127.0.0.1:8086")
    device.add_argument("--timeout", type=float, default=240, help="seconds to wait for each outcome")
    p_rules = sub.add_parser(
        "grafana-rules", parents=[common, device], help="every alert rule evaluates; > 35 °C fires Grafana's alert"
    )
    p_rules.add_argument("--alerts", type=Path, required=True, help="the receiver's output")
    p_rules.add_argument("--hot-for", type=float, default=150, help="seconds of readings above 35 °C")
    p_rules.add_argument("--every", type=float, default=5, help="seconds between two of them")
    p_identity = sub.add_parser(
        "identity", parents=[common, device], help="a payload naming another device stores nothing under it"
    )
    p_identity.add_argument("--victim", default="sensor_forged", help="the device name the payload claims")
    p_state = sub.add_parser("rule-state", parents=[common, device], help="one of Grafana's rules fires, or stops")
    p_state.add_argument("--rule", required=True, help="the rule's uid")
    p_state.add_argument("--state", choices=["firing", "normal"], required=True)
    p_state.add_argument("--label", action="append", default=[], help="key=value an alert of the rule must carry")
    sub.add_parser("infra-panels", parents=[common, device], help="every infrastructure panel's query runs in InfluxDB")
    # The e2e deploy's gateway (its mov_edge_gateways): its plant and a device of its list.
    plant = argparse.ArgumentParser(add_help=False)
    plant.add_argument("--plant", default="fabrica_e2e", help="the gateway's plant (tag planta)")
    plant.add_argument("--gateway-device", default="mov_verify/e2e_planta", help="client/name of one of its devices")
    p_gateway = sub.add_parser(
        "gateway",
        parents=[common, device, plant],
        help="a gateway's readings and heartbeat through the central broker and Telegraf; another plant refused",
    )
    p_gateway.add_argument("--gateway-site", default="e2e_gateway", help="its device's localizacao")
    p_gateway.add_argument("--other-plant", default="other_site", help="a plant the gateway's account may not write")
    p_plants = sub.add_parser(
        "dashboard-plants",
        parents=[common, device, plant],
        help="the overview's panel filters on planta; All keeps the rest",
    )
    p_plants.add_argument("--direct-device", default="mov_verify/e2e_direto", help="client/name of a direct reading")
    p_plants.add_argument("--direct-account", default="verify", help="an MQTT account that may write for it")
    p_stopped = sub.add_parser(
        "worker-stopped", parents=[common, device], help="the worker stopped: its stall and stopped-container rules"
    )
    p_stopped.add_argument("--service", default="analytics")
    p_stopped.add_argument("--every", type=float, default=5, help="seconds between two readings published")
    p_health = sub.add_parser(
        "telegraf-health",
        parents=[common, device],
        help="Telegraf unhealthy with its token inactive, healthy again once active",
    )
    p_health.add_argument("--container", default="mov-telegraf-1")
    p_recreate = sub.add_parser(
        "recreate", parents=[common, device], help="Grafana's users, data and dashboards survive a forced recreate"
    )
    p_recreate.add_argument("--grafana-db", default="/opt/mov/grafana/data/grafana.db")
    p_report = sub.add_parser(
        "report",
        parents=[common, device],
        help="the weekly report's cron job on yesterday's readings; its PDF's figures",
    )
    # A device the other checks do not publish as: their readings of today become "yesterday" after midnight UTC.
    p_report.set_defaults(device="industria_abc/sensor_002", site="linha_producao")
    p_report.add_argument("--job", default="weekly-report")
    p_report.add_argument("--report-dir", default="/opt/mov/report/out")
    p_hardening = sub.add_parser("hardening", parents=[common], help="the running containers hold no privilege")
    p_hardening.add_argument(
        "--read-only",
        nargs="*",
        default=["mosquitto", "analytics", "telegraf", "grafana", "dockerproxy"],
        help="services whose root filesystem must be read-only",
    )
    p_retention = sub.add_parser("retention", parents=[common, device], help="a bucket's retention is the tree's")
    p_retention.add_argument("--expect", required=True, help="an InfluxDB duration, e.g. 30d (0: forever)")
    p_history = sub.add_parser(
        "history",
        parents=[common, device],
        help="the history task's min, mean and max of a past hour; Grafana reads them",
    )
    p_history.add_argument("--task", default="mov_historico")
    p_history.add_argument("--every", default="1h", help="the tree's mov_influxdb_history_every")
    p_history.add_argument("--history-bucket", default="mov_historico")
    p_history.add_argument("--history-device", default="e2e_historico")
    # Inside the restore drill's comparison of the history (the day before the snapshot less look-back and window).
    p_history.add_argument("--hours-ago", type=int, default=10, help="the readings' hour, this many hours back")
    sub.add_parser("bench", parents=[common], help="movctl bench measures, then leaves no account and no point")
    p_email = sub.add_parser(
        "grafana-email", parents=[common], help="Grafana's contact point delivers a test notification by e-mail"
    )
    p_email.add_argument("--grafana", default="http://127.0.0.1:3000")
    p_email.add_argument("--contact-point", default="mov-contacts")
    p_email.add_argument("--timeout", type=float, default=120, help="seconds to wait for the message")
    p_logs = sub.add_parser("logs", parents=[common], help="the logs part: Loki holds the platform's lines")
    p_logs.add_argument("--loki", default="http://127.0.0.1:3100")
    p_logs.add_argument("--grafana", default="http://127.0.0.1:3000")
    p_logs.add_argument(
        "--services",
        nargs="+",
        default=["mosquitto", "analytics"],
        help="compose services whose lines Loki must return",
    )
    p_logs.add_argument("--timeout", type=float, default=120, help="seconds to wait for each outcome")
    args = parser.parse_args(argv)
    if args.command == "receive":
        serve(args.port, args.out)
        return 0
    if args.command == "smtp-receive":
        mail_inbox.serve(args.port, args.out, args.cert, args.key, args.user, args.password_file)
        return 0
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "check": check,
        "logs": logs,
        "grafana-rules": grafana_rules,
        "rule-state": rule_state,
        "infra-panels": infra_panels,
        "dashboard-plants": dashboard_plants,
        "gateway": gateway,
        "worker-stopped": worker_stopped,
        "identity": identity,
        "telegraf-health": telegraf_health,
        "recreate": recreate,
        "report": weekly_report,
        "retention": retention,
        "history": history,
        "hardening": hardening,
        "counts": counts,
        "bench": bench,
        "grafana-email": grafana_email,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
