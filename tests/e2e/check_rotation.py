#!/usr/bin/env python3
"""Secret rotation with the real services (the e2e job of .github/workflows/ci.yml): after platform_secrets.py
--rotate and a deploy, each running service holds the new secret, and no reading published meanwhile is lost.

    check_rotation.py before --out rotation.json          # the worker's token ids and container
    python3 scripts/platform_secrets.py --env local --rotate grafana_admin_password --rotate influxdb_admin_password \\
        --rotate influxdb_token/analytics --rotate mqtt/analytics
    check_rotation.py publish --until deployed --out published.json &     # one reading a second, QoS 1
    ansible-playbook site.yml ...; touch deployed
    check_rotation.py after --before rotation.json --published published.json
    # then the rotations that recreate Telegraf and Grafana (which would upset the reload check of the deploy
    # above): Telegraf's MQTT account, Telegraf's and Grafana's InfluxDB tokens, and the mail relay's password
    check_rotation.py before --service telegraf --service grafana --out tokens.json
    python3 scripts/platform_secrets.py --env local --rotate mqtt/telegraf --rotate influxdb_token/telegraf \\
        --rotate influxdb_token/grafana
    check_rotation.py publish --until deployed-3 --out published-3.json &
    ansible-playbook site.yml ... (vault_mov_smtp_password: the relay's new one); touch deployed-3
    check_rotation.py services --account telegraf --token telegraf --token grafana --before tokens.json \\
        --published published-3.json
    check_rotation.py worker-email --mails mails.jsonl --mail-to ops@mov.test,oncall@mov.test

The publisher alternates a normal reading and one above the alert threshold (below the critical one), so each
reading changes the device's status and the worker writes a status point for each: the checks count both paths,
Telegraf's (the readings stored) and the worker's (its status points).

What decides each behaviour upstream: Grafana's PUT /api/user/password (grafana/grafana v11.3.1 pkg/api/user.go),
InfluxDB's POST /api/v2/users/{id}/password and /api/v2/signin (influxdata/influxdb v2.7.11
tenant/http_server_user.go, session/http_server.go), an authorization's token made by InfluxDB
(authorization/http_server.go), Grafana's datasource health for Flux: a buckets() query with the datasource's token
(grafana/grafana pkg/tsdb/influxdb/healthcheck.go, CheckFluxHealth), the worker's status point on every change of
level (analytics/src/mov_analytics/rules.py, app.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from check_platform import (
    SECRETS,
    Box,
    Influx,
    Report,
    _basic,
    _ca_file,
    check_mail,
    flux_column,
    load_secrets,
    publish_as_device,
    readings,
    wait_until,
)

WORKER = "analytics"
PASSWD = "/opt/mov/mosquitto/config/passwd"
STAMP = "%Y-%m-%dT%H:%M:%SZ"
STATUS_MEASUREMENT = "mov_status"


def token_file(service: str) -> str:
    """Where the influxdb role writes a service's token (group_vars/all/services.yml influxdb_tokens)."""
    return f"/opt/mov/{service}/secrets/influxdb.token"


def authorizations(influx: Influx, service: str) -> list[dict[str, Any]]:
    """A service's authorizations (description mov:<service>, or mov:<service>@<rotation>)."""
    status, body = influx.box.http(
        "GET", f"{influx.url}/api/v2/authorizations", {"Authorization": f"Token {influx.token}"}
    )
    if status != 200:
        raise RuntimeError(f"InfluxDB answered {status} listing the authorizations: {body[:300]}")
    return [
        a
        for a in json.loads(body)["authorizations"]
        if a["description"] == f"mov:{service}" or a["description"].startswith(f"mov:{service}@")
    ]


def container(box: Box, service: str) -> str:
    return box.compose("ps", "-q", service).stdout.strip()


def before(args: argparse.Namespace) -> int:
    """Each named service's token ids and container, for the check after the deploy that rotates them."""
    box = Box(args.box)
    influx = Influx(box, load_secrets(args.secrets)["influxdb_admin_token"], args.org)
    services = args.service or [WORKER]
    tokens = {s: [a["id"] for a in authorizations(influx, s)] for s in services}
    containers = {s: container(box, s) for s in services}
    args.out.write_text(json.dumps({"tokens": tokens, "containers": containers}))
    print(f"before: tokens {tokens}, containers {containers}")
    return 0 if all(tokens.values()) and all(containers.values()) else 1


def alternating_value(index: int, normal: float, above: float) -> float:
    """The publisher's value for its index-th reading: `above` first, then `normal`, and so on, so that each reading
    moves the device's status (normal <-> alerta) once the one before it was processed."""
    return above if index % 2 == 0 else normal


def changing_readings(acked: Sequence[str]) -> list[str]:
    """The acknowledged readings (their second) that must each have changed the device's status: those whose
    predecessor, one second earlier, was acknowledged too. The first one's predecessor is whatever the device sent
    before, and after a refused reading two in a row may hold the same level."""
    taken = set(acked)
    return [
        stamp for stamp in acked if (datetime.strptime(stamp, STAMP) - timedelta(seconds=1)).strftime(STAMP) in taken
    ]


def normal_stamp(value: str) -> str:
    """An RFC 3339 time of InfluxDB's CSV (2026-12-07T01:40:59Z, or with a fraction) as a STAMP."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).strftime(STAMP)


def status_points_judged(acked: Sequence[str], refused: Sequence[str], stored: Sequence[str]) -> tuple[bool, str]:
    """Each reading that had to change the device's status has the worker's status point at its second, and every
    status point is at the second of a reading published (a refused one may still have reached the broker)."""
    times = {normal_stamp(t) for t in stored}
    expected = changing_readings(acked)
    missing = [t for t in expected if t not in times]
    extra = sorted(times - set(acked) - {r.split()[0] for r in refused if r})
    return not missing and not extra and bool(expected), (
        f"{len(times)} status changes stored for {len(acked)} acknowledged readings ({len(expected)} had to change"
        f" it); missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}; at no reading: {extra[:5]}"
    )


def publish_until(args: argparse.Namespace) -> int:
    """One reading a second as args.device, each with its own second, until the file args.until exists; writes
    the times of the readings the broker acknowledged (PUBACK) and of those it did not."""
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    client, name = args.device.split("/", 1)
    device = {"client": client, "name": name, "site": args.site, "type": "temperatura"}
    ca = _ca_file(box)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    acked: list[str] = []
    failed: list[str] = []
    try:
        for i in range(int(args.max_seconds)):
            if args.until.exists():
                break
            at = start + timedelta(seconds=i)
            time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
            payload = readings(device, at, 1, critical_at=())
            payload[0]["fields"]["temperatura_c"] = alternating_value(i, args.normal, args.above)
            try:
                publish_as_device(args, secrets, ca, payload)
                acked.append(at.strftime(STAMP))
            except Exception as exc:  # a device retries later; the check counts what the broker took
                failed.append(f"{at.strftime(STAMP)} {exc!r}")
    finally:
        ca.unlink(missing_ok=True)
    args.out.write_text(json.dumps({"acked": acked, "failed": failed}))
    print(f"published: {len(acked)} acknowledged, {len(failed)} not")
    return 0


def after(args: argparse.Namespace) -> int:
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    influx = Influx(box, secrets["influxdb_admin_token"], args.org)
    earlier = json.loads(args.before.read_text())

    def user_status(password: str) -> int:
        return box.http("GET", f"{args.grafana}/api/user", {"Authorization": "Basic " + _basic("admin", password)})[0]

    report.check("Grafana takes the rotated admin password", user_status(secrets["grafana_admin_password"]) == 200)
    previous = str((secrets.get("previous") or {}).get("grafana_admin_password") or "")
    report.check("Grafana refuses the admin password it replaced", bool(previous) and user_status(previous) == 401)

    signin = box.http(
        "POST",
        f"{args.influxdb}/api/v2/signin",
        {"Authorization": "Basic " + _basic("admin", secrets["influxdb_admin_password"])},
    )
    report.check("InfluxDB signs the admin in with the rotated password", signin[0] == 204, str(signin))

    new_token(report, box, influx, secrets, WORKER, earlier)
    report.check(
        "the worker is healthy (connected to the broker with its new password)", *wait_until(healthy(box, WORKER), 120)
    )
    only_new_username(report, box, secrets, WORKER)
    every_reading_stored(report, influx, args)
    every_reading_changed_status(report, influx, args)
    return report.summary()


def healthy(box: Box, service: str) -> Callable[[], tuple[bool, str]]:
    def probe() -> tuple[bool, str]:
        state = box.run("docker", "inspect", "-f", "{{.State.Health.Status}}", container(box, service)).stdout.strip()
        return state == "healthy", f"{service} is {state}"

    return probe


def new_token(
    report: Report, box: Box, influx: Influx, secrets: dict[str, Any], service: str, earlier: dict[str, Any]
) -> None:
    """After --rotate influxdb_token/<service> and a deploy: one token, mov:<service>@<the vault's rotation id>, the
    ones it replaced deleted, written where the service reads it, and the service recreated to read it."""
    rotation = (secrets.get("influxdb_token_rotations") or {}).get(service, "")
    auths = authorizations(influx, service)
    report.check(
        f"{service} has one token, mov:{service}@<the vault's rotation id>, and the ones it replaced are deleted",
        bool(rotation)
        and [a["description"] for a in auths] == [f"mov:{service}@{rotation}"]
        and not {a["id"] for a in auths} & set(earlier["tokens"][service]),
        f"vault: {rotation!r}, InfluxDB: {[(a['id'], a['description']) for a in auths]}",
    )
    written = box.run("cat", token_file(service)).stdout.strip()
    report.check(f"{service}'s token file holds that token", bool(auths) and written == auths[0]["token"])
    report.check(
        f"{service} was recreated with it", container(box, service) not in ("", earlier["containers"][service])
    )


def every_reading_stored(report: Report, influx: Influx, args: argparse.Namespace) -> None:
    """Once the publisher has stopped: every reading the broker acknowledged during the deploy is in InfluxDB
    (Telegraf's path: a reading lost on the broker, or by Telegraf, is missing there)."""

    def published() -> tuple[bool, str]:
        return args.published.exists(), f"{args.published} written"

    if report.check("the publisher has stopped", *wait_until(published, 60)):
        sent = json.loads(args.published.read_text())
        acked = sent["acked"]
        _, name = args.device.split("/", 1)
        stop = (
            (datetime.strptime(acked[-1], STAMP).replace(tzinfo=UTC) + timedelta(seconds=1)).strftime(STAMP)
            if acked
            else ""
        )

        def landed() -> tuple[bool, str]:
            values = influx.values(
                f'from(bucket: "{args.bucket}") |> range(start: {acked[0]}, stop: {stop}) '
                f'|> filter(fn: (r) => r._measurement == "mov_leituras" and r.dispositivo == "{name}" '
                'and r._field == "temperatura_c") |> group() |> count()'
            )
            got = sum(int(v) for v in values)
            return got == len(
                acked
            ), f"{got} of the {len(acked)} acknowledged readings stored ({len(sent['failed'])} refused)"

        report.check(
            "every reading the broker acknowledged during the deploy is in InfluxDB",
            len(acked) > 0 and wait_until(landed, args.timeout)[0],
            landed()[1] if acked else "none acknowledged",
        )


def every_reading_changed_status(report: Report, influx: Influx, args: argparse.Namespace) -> None:
    """Once the publisher has stopped: each acknowledged reading that changed the device's status has the worker's
    status point (the worker's path: a reading lost on the broker, or by a worker recreated meanwhile, or a point the
    worker took but never wrote, is missing there)."""
    if not args.published.exists():
        report.check("the worker's status points can be counted", False, f"{args.published} not written")
        return
    sent = json.loads(args.published.read_text())
    acked = sent["acked"]
    if not acked:
        report.check("the worker wrote a status point for every reading that changed the status", False, "none acked")
        return
    _, name = args.device.split("/", 1)
    stop = (datetime.strptime(acked[-1], STAMP).replace(tzinfo=UTC) + timedelta(seconds=1)).strftime(STAMP)
    flux = (
        f'from(bucket: "{args.status_bucket}") |> range(start: {acked[0]}, stop: {stop}) '
        f'|> filter(fn: (r) => r._measurement == "{STATUS_MEASUREMENT}" and r.dispositivo == "{name}" '
        'and r._field == "change") |> filter(fn: (r) => r._value == true) |> group()'
    )

    def judged() -> tuple[bool, str]:
        status, body = influx.query(flux)
        if status != 200:
            return False, f"InfluxDB answered {status}: {body[:300]}"
        return status_points_judged(acked, sent["failed"], flux_column(body, "_time"))

    report.check(
        "the worker wrote a status point for every acknowledged reading that changed the status",
        *wait_until(judged, args.timeout),
    )


def services(args: argparse.Namespace) -> int:
    """After a deploy that rotated MQTT service accounts (--account) and services' InfluxDB tokens (--token): each
    account under its new username only, each token new and the ones it replaced deleted, each service recreated
    and healthy, Grafana's InfluxDB datasource healthy (its query runs with the new token), and no acknowledged
    reading lost on Telegraf's path or the worker's."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    influx = Influx(box, secrets["influxdb_admin_token"], args.org)
    for account in args.account:
        only_new_username(report, box, secrets, account)
    earlier = json.loads(args.before.read_text()) if args.before else {"tokens": {}, "containers": {}}
    for service in args.token:
        if service not in earlier["tokens"]:
            report.check(f"{service}'s tokens were recorded before the rotation", False, str(args.before))
            continue
        new_token(report, box, influx, secrets, service, earlier)
        report.check(f"{service} is healthy", *wait_until(healthy(box, service), 120))
    if "grafana" in args.token:
        auth = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}

        def datasource() -> tuple[bool, str]:
            status, body = box.http("GET", f"{args.grafana}/api/datasources/uid/mov-influxdb/health", auth)
            return status == 200 and '"OK"' in body, f"{status} {body[:300]}"

        report.check("Grafana's InfluxDB datasource is healthy with the new token", *wait_until(datasource, 120))
    every_reading_stored(report, influx, args)
    every_reading_changed_status(report, influx, args)
    return report.summary()


def worker_email(args: argparse.Namespace) -> int:
    """After a deploy with a new mail relay password (the job's relay now takes only that one): a reading above the
    critical threshold makes the worker e-mail its alert through the relay, so it logged in with the new password."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    client, name = args.device.split("/", 1)
    device = {"client": client, "name": name, "site": args.site, "type": "temperatura"}
    # Newer than anything published as the device so far: normal, critical (the alert), normal again.
    values = readings(device, datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2), 3, critical_at=())
    for value, reading in zip((args.normal, args.critical, args.normal), values, strict=True):
        reading["fields"]["temperatura_c"] = value
    ca = _ca_file(box)
    try:
        publish_as_device(args, secrets, ca, values)
        report.check(f"a normal, a critical ({args.critical}) and a normal reading published as {args.device}", True)
    except Exception as exc:  # any failure to publish is the finding
        report.check(f"readings published as {args.device}", False, repr(exc))
        return report.summary()
    finally:
        ca.unlink(missing_ok=True)
    check_mail(
        report,
        args.mails,
        f"the worker's alert arrived through mov_smtp, logged in with the new password, to {', '.join(args.mail_to)}",
        [f"[MOV critico] {args.device}"],
        args.mail_to,
        args.timeout,
        body_has=f"is critico: temperatura_c={args.critical!r}",
    )
    return report.summary()


def only_new_username(report: Report, box: Box, secrets: dict[str, Any], account: str) -> None:
    """The broker holds the rotated service account under the vault's new username only: the deploy removed the one
    it replaced once the verify's reading had reached the consumers (roles/mosquitto tasks/retire_accounts.yml)."""
    username = str((secrets.get("mqtt_usernames") or {}).get(account, ""))
    names = [line.split(":", 1)[0] for line in box.run("cat", PASSWD).stdout.splitlines()]
    kept = sorted(n for n in names if n == account or n.startswith(f"{account}@"))
    report.check(
        f"the broker knows {account} only as the vault's new username, {account}@<rotation id>",
        username.startswith(f"{account}@") and kept == [username],
        f"vault: {username!r}, broker: {kept}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--box", default="mov-box")
    parser.add_argument("--secrets", type=Path, default=SECRETS)
    parser.add_argument("--org", default="mov_industria")
    parser.add_argument("--device", default="industria_abc/sensor_002", help="client/name of a device")
    parser.add_argument("--site", default="linha_producao")
    # The job's mov_thresholds.temperatura_c: alerta 30, critico 35.
    parser.add_argument("--normal", type=float, default=22.0, help="a value below the alert threshold")
    parser.add_argument("--above", type=float, default=32.5, help="above the alert threshold, below the critical one")
    parser.add_argument("--critical", type=float, default=38.8, help="above the critical threshold")
    parser.add_argument("--mqtt-host", default="mov.localhost")
    parser.add_argument("--mqtt-port", type=int, default=8883)
    parser.add_argument("--bucket", default="mov_dados")
    parser.add_argument("--status-bucket", default="mov_status")
    parser.add_argument("--grafana", default="http://127.0.0.1:3000")
    parser.add_argument("--influxdb", default="http://127.0.0.1:8086")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for each outcome")
    sub = parser.add_subparsers(dest="command", required=True)
    p_before = sub.add_parser("before", help="record services' token ids and containers")
    p_before.add_argument("--service", action="append", default=[], help="one whose token rotates (default analytics)")
    p_before.add_argument("--out", type=Path, required=True)
    p_publish = sub.add_parser("publish", help="a reading a second until a file exists")
    p_publish.add_argument("--until", type=Path, required=True)
    p_publish.add_argument("--out", type=Path, required=True)
    p_publish.add_argument("--max-seconds", type=float, default=1200)
    p_after = sub.add_parser("after", help="the admin passwords, the worker's account and token; no reading lost")
    p_after.add_argument("--before", type=Path, required=True)
    p_after.add_argument("--published", type=Path, required=True)
    p_services = sub.add_parser("services", help="rotated MQTT service accounts and InfluxDB tokens; no reading lost")
    p_services.add_argument("--account", action="append", default=[], help="an MQTT service account rotated")
    p_services.add_argument("--token", action="append", default=[], help="a service whose InfluxDB token rotated")
    p_services.add_argument("--before", type=Path, help="what `before --service ...` recorded (with --token)")
    p_services.add_argument("--published", type=Path, required=True)
    p_email = sub.add_parser("worker-email", help="the worker's alert e-mailed through the relay's new login")
    p_email.add_argument("--mails", type=Path, required=True, help="the job's relay's output")
    p_email.add_argument("--mail-to", type=lambda text: text.split(","), required=True)
    args = parser.parse_args(argv)
    commands = {
        "before": before,
        "publish": publish_until,
        "after": after,
        "services": services,
        "worker-email": worker_email,
    }
    return int(commands[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
