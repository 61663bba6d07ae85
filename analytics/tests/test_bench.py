"""The load generator of `movctl bench`: its plan from stdin, its readings as the worker parses them, its probe
query, and a run through a real Mosquitto over TLS with per-device accounts (the site scenario runs it through the
platform's broker, and the e2e job against InfluxDB itself)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from mosquitto_runner import Mosquitto
from smtp_relay import make_certificate

from mov_analytics.bench import cli, load, probe
from mov_analytics.bench.plan import Device, PlanError, plan_from_dict
from mov_analytics.config import ValidationConfig
from mov_analytics.parsing import Validator

PLAN: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8883,
    "ca_pem": "",
    "topic": "mov/dados",
    "devices": [{"username": "movbench/d01", "password": "p1"}, {"username": "movbench/d02", "password": "p2"}],
    "field": "temperatura_c",
    "values": [20, 32.5],
    "tipo": "bench",
    "localizacao": "movctl-bench",
    "rate": 50,
    "duration_s": 2,
    "probe": None,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"devices": []}, "devices must be a non-empty list"),
        ({"devices": [{"username": "movbench", "password": "x"}]}, "<client>/<device>"),
        ({"values": [20]}, "values must be two numbers"),
        ({"rate": 0}, "rate must be a number"),
        ({"duration_s": True}, "duration_s must be a number"),
        ({"probe": {"url": "http://x"}}, "org must be a non-empty string"),
    ],
)
def test_a_bad_plan_is_refused_with_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_from_dict({**PLAN, **change})


def test_each_reading_is_one_the_worker_accepts_and_alternates_its_status() -> None:
    plan = plan_from_dict(PLAN)
    device = plan.devices[1]
    validator = Validator(ValidationConfig())
    sender = load.Sender(device, client=None)  # type: ignore[arg-type]
    values = [sender.next_value(plan) for _ in range(4)]
    assert values == [32.5, 20.0, 32.5, 20.0]
    now_ns = time.time_ns()
    reading = validator.parse(load.topic_of(device, plan), load.payload(device, plan, 32.5, now_ns))
    assert (reading.cliente, reading.dispositivo, reading.fields) == ("movbench", "d02", {"temperatura_c": 32.5})
    assert reading.time_ns == now_ns


def test_the_probe_asks_for_one_point_at_its_exact_time() -> None:
    plan = plan_from_dict(
        {**PLAN, "probe": {"url": "u", "org": "o", "bucket": "b", "measurement": "m", "token": "t", "timeout_s": 5}}
    )
    assert plan.probe is not None
    flux = probe.status_point_flux(plan.probe, "movbench", "d01", 1_765_000_000_000_000_123)
    assert 'from(bucket: "b")' in flux
    assert "range(start: 2025-12-06T05:46:40.000000123Z, stop: 2025-12-06T05:46:40.000000124Z)" in flux
    assert 'r.cliente == "movbench" and r.dispositivo == "d01"' in flux


@pytest.fixture
def tls_broker(tmp_path: Path) -> Any:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = make_certificate(tmp_path)  # for 127.0.0.1, the plan's host below
    users = {d["username"]: d["password"] for d in PLAN["devices"]}
    acl = "pattern write mov/dados/%u/#\n"
    broker = Mosquitto(tmp_path / "broker", users=users, acl=acl, tls=(str(cert), str(key)))
    broker.start()
    yield broker, cert.read_text()
    broker.stop()


def test_a_run_through_a_real_broker_over_tls_acknowledges_every_reading(tls_broker: Any) -> None:
    broker, ca = tls_broker
    plan = plan_from_dict({**PLAN, "port": broker.port, "ca_pem": ca})
    result = cli.measure(plan)
    assert result["ok"] and result["failed"] == 0, result
    assert 80 <= result["published"] <= 105 and result["acked"] == result["published"], result
    assert len(result["puback_ms"]) == result["acked"] and all(ms > 0 for ms in result["puback_ms"])
    assert result["status_latency_ms"]["values"] == []  # no InfluxDB given: not measured, and said so
    assert "not measured" in result["status_latency_ms"]["error"]


def test_a_refused_device_fails_the_run(tls_broker: Any) -> None:
    broker, ca = tls_broker
    devices = [{"username": "movbench/d01", "password": "wrong"}]
    result = cli.measure(plan_from_dict({**PLAN, "port": broker.port, "ca_pem": ca, "devices": devices}))
    assert not result["ok"] and "movbench/d01" in result["error"], result


def test_the_command_reads_its_plan_on_stdin_and_prints_one_document(tmp_path: Path) -> None:
    bad = subprocess.run(
        ["python3", "-m", "mov_analytics.bench"],
        input=json.dumps({**PLAN, "devices": []}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"].startswith("bad plan"), bad.stdout + bad.stderr


def test_device_names() -> None:
    assert (Device("a/b", "x").client, Device("a/b", "x").name) == ("a", "b")
