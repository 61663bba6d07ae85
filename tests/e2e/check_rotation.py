#!/usr/bin/env python3
"""Secret rotation with the real services (the e2e job of .github/workflows/ci.yml): after platform_secrets.py
--rotate and a deploy, each running service holds the new secret, and no reading published meanwhile is lost.

    check_rotation.py before --out rotation.json          # the worker's token ids and container
    python3 scripts/platform_secrets.py --env local --rotate grafana_admin_password --rotate influxdb_admin_password \\
        --rotate influxdb_token/analytics --rotate mqtt/analytics
    check_rotation.py publish --until deployed --out published.json &     # one reading a second, QoS 1
    ansible-playbook site.yml ...; touch deployed
    check_rotation.py after --before rotation.json --published published.json
    # then an MQTT service account alone (Telegraf's recreate would upset the reload check of the deploy above):
    python3 scripts/platform_secrets.py --env local --rotate mqtt/telegraf
    check_rotation.py publish --until deployed-mqtt --out published-mqtt.json &
    ansible-playbook site.yml ...; touch deployed-mqtt
    check_rotation.py mqtt --account telegraf --published published-mqtt.json

What decides each behaviour upstream: Grafana's PUT /api/user/password (grafana/grafana v11.3.1 pkg/api/user.go),
InfluxDB's POST /api/v2/users/{id}/password and /api/v2/signin (influxdata/influxdb v2.7.11
tenant/http_server_user.go, session/http_server.go), an authorization's token made by InfluxDB
(authorization/http_server.go).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from check_platform import (
    CA_FILE,
    SECRETS,
    Box,
    Influx,
    Report,
    _basic,
    load_secrets,
    publish,
    readings,
    wait_until,
)

WORKER = "analytics"
WORKER_TOKEN_FILE = "/opt/mov/analytics/secrets/influxdb.token"
PASSWD = "/opt/mov/mosquitto/config/passwd"
STAMP = "%Y-%m-%dT%H:%M:%SZ"


def worker_authorizations(influx: Influx) -> list[dict[str, Any]]:
    """The worker's authorizations (description mov:analytics, or mov:analytics@<rotation>)."""
    status, body = influx.box.http(
        "GET", f"{influx.url}/api/v2/authorizations", {"Authorization": f"Token {influx.token}"}
    )
    if status != 200:
        raise RuntimeError(f"InfluxDB answered {status} listing the authorizations: {body[:300]}")
    return [
        a
        for a in json.loads(body)["authorizations"]
        if a["description"] == f"mov:{WORKER}" or a["description"].startswith(f"mov:{WORKER}@")
    ]


def worker_container(box: Box) -> str:
    return box.compose("ps", "-q", WORKER).stdout.strip()


def before(args: argparse.Namespace) -> int:
    box = Box(args.box)
    influx = Influx(box, load_secrets(args.secrets)["influxdb_admin_token"], args.org)
    state = {"ids": [a["id"] for a in worker_authorizations(influx)], "container": worker_container(box)}
    args.out.write_text(json.dumps(state))
    print(f"before: {state}")
    return 0 if state["ids"] and state["container"] else 1


def publish_until(args: argparse.Namespace) -> int:
    """One reading a second as args.device, each with its own second, until the file args.until exists; writes
    the times of the readings the broker acknowledged (PUBACK) and of those it did not."""
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    client, name = args.device.split("/", 1)
    device = {"client": client, "name": name, "site": args.site, "type": "temperatura"}
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write(box.run("cat", CA_FILE).stdout)
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
            try:
                publish(
                    args.mqtt_host,
                    args.mqtt_port,
                    Path(handle.name),
                    args.device,
                    secrets["mqtt"][args.device],
                    f"mov/dados/{args.device}",
                    payload,
                )
                acked.append(at.strftime(STAMP))
            except Exception as exc:  # a device retries later; the check counts what the broker took
                failed.append(f"{at.strftime(STAMP)} {exc!r}")
    finally:
        Path(handle.name).unlink(missing_ok=True)
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

    rotation = (secrets.get("influxdb_token_rotations") or {}).get(WORKER, "")
    auths = worker_authorizations(influx)
    report.check(
        f"the worker has one token, mov:{WORKER}@<the vault's rotation id>, and the ones it replaced are deleted",
        [a["description"] for a in auths] == [f"mov:{WORKER}@{rotation}"]
        and not {a["id"] for a in auths} & set(earlier["ids"]),
        str([(a["id"], a["description"]) for a in auths]),
    )
    written = box.run("cat", WORKER_TOKEN_FILE).stdout.strip()
    report.check("the worker's token file holds that token", bool(auths) and written == auths[0]["token"])
    report.check("the worker was recreated with it", worker_container(box) not in ("", earlier["container"]))

    def healthy() -> tuple[bool, str]:
        state = box.run("docker", "inspect", "-f", "{{.State.Health.Status}}", worker_container(box)).stdout.strip()
        return state == "healthy", f"analytics is {state}"

    report.check("the worker is healthy (connected to the broker with its new password)", *wait_until(healthy, 120))
    only_new_username(report, box, secrets, WORKER)
    every_reading_stored(report, influx, args)
    return report.summary()


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


def mqtt_account(args: argparse.Namespace) -> int:
    """After --rotate mqtt/<account> and a deploy: the new username only, and no acknowledged reading lost."""
    report = Report()
    box = Box(args.box)
    secrets = load_secrets(args.secrets)
    only_new_username(report, box, secrets, args.account)
    every_reading_stored(report, Influx(box, secrets["influxdb_admin_token"], args.org), args)
    return report.summary()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--box", default="mov-box")
    parser.add_argument("--secrets", type=Path, default=SECRETS)
    parser.add_argument("--org", default="mov_industria")
    parser.add_argument("--device", default="industria_abc/sensor_002", help="client/name of a device")
    parser.add_argument("--site", default="linha_producao")
    sub = parser.add_subparsers(dest="command", required=True)
    p_before = sub.add_parser("before", help="record the worker's token ids and container")
    p_before.add_argument("--out", type=Path, required=True)
    p_publish = sub.add_parser("publish", help="a reading a second until a file exists")
    p_publish.add_argument("--until", type=Path, required=True)
    p_publish.add_argument("--out", type=Path, required=True)
    p_publish.add_argument("--max-seconds", type=float, default=1200)
    p_publish.add_argument("--mqtt-host", default="mov.localhost")
    p_publish.add_argument("--mqtt-port", type=int, default=8883)
    p_after = sub.add_parser("after", help="every service holds the new secret; no reading lost")
    p_after.add_argument("--before", type=Path, required=True)
    p_after.add_argument("--published", type=Path, required=True)
    p_after.add_argument("--bucket", default="mov_dados")
    p_after.add_argument("--grafana", default="http://127.0.0.1:3000")
    p_after.add_argument("--influxdb", default="http://127.0.0.1:8086")
    p_after.add_argument("--timeout", type=float, default=120)
    p_mqtt = sub.add_parser("mqtt", help="a rotated MQTT service account: new username only; no reading lost")
    p_mqtt.add_argument("--account", required=True, help="the service account rotated, e.g. telegraf")
    p_mqtt.add_argument("--published", type=Path, required=True)
    p_mqtt.add_argument("--bucket", default="mov_dados")
    p_mqtt.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    commands = {"before": before, "publish": publish_until, "after": after, "mqtt": mqtt_account}
    return int(commands[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
