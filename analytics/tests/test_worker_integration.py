"""The worker as a process against a real Mosquitto (password file + ACL) and the write-API double."""

from __future__ import annotations

import hashlib
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import GATEWAY_PASSWORD, GATEWAY_SITE, GATEWAY_USER, Publisher, WorkerProcess, reading
from influx_write_double import InfluxWriteDouble
from mosquitto_runner import Mosquitto, free_port


def wait_until(predicate: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def worker(tmp_path: Path, broker: Mosquitto, double: InfluxWriteDouble) -> Iterator[WorkerProcess]:
    w = WorkerProcess(tmp_path, broker, double)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    p = Publisher(broker.port)
    yield p
    p.close()


def test_readings_in_status_points_out(worker: WorkerProcess, publisher: Publisher, double: InfluxWriteDouble) -> None:
    t0 = int(time.time()) - 60
    values = [25.0, 31.0, 31.5, 36.0, 34.8, 34.0, 20.0]
    for i, value in enumerate(values):
        publisher.publish(reading(value, t0 + i))
    publisher.publish(reading(36.0, t0 + 3))  # a QoS 1 style redelivery of an already seen reading
    publisher.publish(b"{not json")
    publisher.publish(reading(float("nan"), t0 + 99) | {"fields": {"temperatura_c": "hot"}})
    assert wait_until(lambda: len(double.snapshot("mov_status")) == 5, 10), double.snapshot("mov_status")
    statuses = [(p.field("status"), p.time_ns) for p in sorted(double.snapshot("mov_status"), key=lambda p: p.time_ns)]
    assert [s for s, _ in statuses] == ['"normal"', '"alerta"', '"critico"', '"alerta"', '"normal"']
    assert statuses[2][1] == (t0 + 3) * 10**9
    status = double.snapshot("mov_status")[0]
    assert dict(status.tags) == {
        "cliente": "industria_abc",
        "dispositivo": "sensor_001",
        "localizacao": "sala_servidores",
        "tipo": "temperatura",
    }
    assert wait_until(lambda: len(double.snapshot("mov_leituras")) == 8, 5)
    assert double.duplicates("mov_leituras") == 1  # the redelivered reading: same series+time, idempotent
    assert worker.metric("mov_analytics_readings_received_total") == 10
    assert worker.metric("mov_analytics_readings_processed_total") == 8
    assert worker.metric("mov_analytics_readings_duplicate_total") == 1  # the redelivery, not a late reading
    assert worker.metric("mov_analytics_readings_late_total") == 0
    assert worker.metric("mov_analytics_readings_stale_total") == 0
    assert worker.metric("mov_analytics_readings_rejected_total", 'reason="malformed_json"') == 1
    assert worker.metric("mov_analytics_readings_rejected_total", 'reason="wrong_type"') == 1
    assert worker.metric("mov_analytics_status_changes_total", 'status="critico"') == 1


def test_a_gateways_readings_carry_their_plant_and_direct_ones_do_not(
    tmp_path: Path, broker: Mosquitto, double: InfluxWriteDouble, publisher: Publisher
) -> None:
    w = WorkerProcess(tmp_path, broker, double, mqtt={"plants_topic": "mov/plantas"})
    w.start()
    gateway = Publisher(broker.port, GATEWAY_USER, GATEWAY_PASSWORD)
    try:
        t0 = time.time() - 30
        plant_topic = f"mov/plantas/{GATEWAY_SITE}/mov/dados/industria_abc/caldeira_01"
        gateway.publish(reading(36.0, t0, device="caldeira_01"), topic=plant_topic)
        gateway.publish(reading(25.0, t0 + 1, device="caldeira_01"), topic=plant_topic)
        gateway.publish(reading(25.0, t0 + 1, device="caldeira_02"), topic=plant_topic)  # not its own device
        gateway.publish(reading(25.0, t0 + 2, device="caldeira_01"), topic=f"mov/plantas/{GATEWAY_SITE}/mov/dados/x")
        publisher.publish(reading(36.0, t0 + 3))
        assert wait_until(lambda: len(double.snapshot("mov_status")) == 3, 10), double.snapshot("mov_status")
        by_device = {dict(p.tags)["dispositivo"]: dict(p.tags) for p in double.snapshot("mov_status")}
        assert by_device["caldeira_01"]["planta"] == GATEWAY_SITE
        assert "planta" not in by_device["sensor_001"]
        assert {dict(p.tags).get("planta") for p in double.snapshot("mov_leituras")} == {GATEWAY_SITE, None}
        assert w.metric("mov_analytics_readings_rejected_total", 'reason="topic_mismatch"') == 1
        assert w.metric("mov_analytics_readings_rejected_total", 'reason="bad_topic"') == 1
        assert w.metric("mov_analytics_readings_processed_total") == 3
    finally:
        gateway.close()
        w.stop()


def test_readings_published_while_the_worker_is_down_are_processed(
    worker: WorkerProcess, publisher: Publisher, double: InfluxWriteDouble
) -> None:
    publisher.publish(reading(25.0, time.time() - 600, seq=-1))
    assert wait_until(lambda: len(double.snapshot("mov_leituras")) == 1, 10)
    worker.kill()  # SIGKILL: no goodbye; the broker keeps the persistent session
    t0 = time.time() - 500
    for i in range(500):
        publisher.publish(reading(20.0 + (i % 20), t0 + i * 0.5, seq=i))
    worker.start()
    assert wait_until(lambda: len(double.snapshot("mov_leituras")) >= 501, 30)
    time.sleep(0.5)
    seqs = sorted(int(float(p.field("seq"))) for p in double.snapshot("mov_leituras"))
    assert seqs == [-1, *range(500)]
    assert worker.metric("mov_analytics_readings_processed_total") == 500


def test_broker_restart_reconnects_and_resumes(
    worker: WorkerProcess, publisher: Publisher, broker: Mosquitto, double: InfluxWriteDouble
) -> None:
    publisher.publish(reading(25.0, time.time() - 30, seq=1))
    assert wait_until(lambda: len(double.snapshot("mov_leituras")) == 1, 10)
    publisher.close()
    broker.stop()
    assert worker.wait_health(503, 10), "health stayed green with the broker down"
    broker.start()
    assert worker.wait_health(200, 20), "worker did not reconnect"
    again = Publisher(broker.port)
    try:
        again.publish(reading(36.0, time.time() - 20, seq=2))
        assert wait_until(lambda: len(double.snapshot("mov_leituras")) == 2, 10)
    finally:
        again.close()
    assert worker.metric("mov_analytics_mqtt_connected") == 1


def test_influx_auth_failure_turns_health_red(
    worker: WorkerProcess, publisher: Publisher, double: InfluxWriteDouble
) -> None:
    double.mode = "unauthorized"
    publisher.publish(reading(25.0, time.time() - 5, seq=1))
    assert worker.wait_health(503, 10)
    assert worker.metric("mov_analytics_influx_auth_failed") == 1
    requests = double.requests
    time.sleep(1.5)
    assert double.requests - requests <= 1  # no retry storm (auth_retry_interval_s defaults to 60 s)


def test_sigterm_flushes_buffered_points_and_exits_0(
    tmp_path: Path, broker: Mosquitto, double: InfluxWriteDouble, publisher: Publisher
) -> None:
    w = WorkerProcess(tmp_path, broker, double, influxdb={"batch_size": 10_000, "flush_interval_ms": 600_000})
    w.start()
    try:
        t0 = time.time() - 100
        for i in range(50):
            publisher.publish(reading(22.0, t0 + i, seq=i))
        assert wait_until(lambda: w.metric("mov_analytics_readings_processed_total") == 50, 10)
        assert double.snapshot() == []
        started = time.monotonic()
        assert w.terminate() == 0
        assert time.monotonic() - started < 10
        assert len(double.snapshot("mov_leituras")) == 50
        assert '"worker stopped"' in w.log.read_text()
    finally:
        w.stop()


def test_wrong_mqtt_password_keeps_health_red(tmp_path: Path, broker: Mosquitto, double: InfluxWriteDouble) -> None:
    w = WorkerProcess(tmp_path, broker, double)
    (tmp_path / "mqtt_password").write_text("wrong\n")
    w.start(wait_healthy=False)
    try:
        # Bounded waits, not a fixed sleep: on a loaded machine the metrics server can take seconds to start.
        assert w.wait_health(503, 20), f"health endpoint never answered 503:\n{w.log.read_text()[-3000:]}"
        deadline = time.monotonic() + 20
        while "broker refused the connection" not in w.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "broker refused the connection" in w.log.read_text()
        time.sleep(1)
        assert w.health() == 503  # still red: a refused login never turns it green
    finally:
        w.stop()


def test_without_influxdb_the_worker_logs_status_changes_and_stays_healthy(
    tmp_path: Path, broker: Mosquitto, double: InfluxWriteDouble, publisher: Publisher
) -> None:
    """A platform without InfluxDB (the local box without a registry): the worker's InfluxDB is switched off, so a
    status change neither turns its health red (it would keep retrying a host that is not deployed) nor is lost
    unnoticed: it is logged, with one line at start saying why nothing is stored."""
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there, like the missing `influxdb` host
    w = WorkerProcess(tmp_path, broker, double, influxdb={"enabled": False, "url": nowhere})
    w.start()
    try:
        t0 = int(time.time()) - 30
        for i, value in enumerate((25.0, 31.0, 36.0)):
            publisher.publish(reading(value, t0 + i))

        def critico_seen() -> bool:
            try:
                return w.metric("mov_analytics_status_changes_total", 'status="critico"') == 1
            except KeyError:  # not exported before the first change
                return False

        assert wait_until(critico_seen, 10), w.log.read_text()[-2000:]
        time.sleep(0.5)  # several flush intervals (50 ms): a write would have been tried and failed by now
        assert w.health() == 200, w.log.read_text()[-2000:]
        log = w.log.read_text()
        assert log.count("no InfluxDB (influxdb.enabled is false)") == 1
        assert log.count('"status change"') == 3
        assert double.snapshot() == []
    finally:
        w.stop()


def test_sighup_reloads_the_rules_file_in_the_same_process_and_a_bad_file_keeps_the_running_rules(
    tmp_path: Path, broker: Mosquitto, double: InfluxWriteDouble, publisher: Publisher
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"rules": [{"field": "temperatura_c", "alerta": 30, "critico": 35}]}))
    w = WorkerProcess(tmp_path, broker, double, rules_file=str(rules_file))
    w.start()
    try:
        assert w.proc is not None
        pid, t0 = w.proc.pid, int(time.time()) - 60

        def statuses() -> list[str]:
            points = sorted(double.snapshot("mov_status"), key=lambda p: p.time_ns)
            return [str(p.field("status")) for p in points]

        def loaded(body: bytes) -> bool:
            return f'mov_analytics_rules_info{{sha256="{hashlib.sha256(body).hexdigest()}"}} 1.0' in w.metrics()

        assert loaded(rules_file.read_bytes())
        publisher.publish(reading(32.0, t0))  # above 30: alerta under the first rules
        assert wait_until(lambda: statuses() == ['"alerta"'], 10), statuses()

        rules_file.write_text(yaml.safe_dump({"rules": [{"field": "temperatura_c", "alerta": 40, "critico": 45}]}))
        w.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: loaded(rules_file.read_bytes()), 5), w.log.read_text()[-2000:]
        # The same device, its state kept: 33 is normal under the new rules (more than the hysteresis below 40).
        publisher.publish(reading(33.0, t0 + 1))
        assert wait_until(lambda: statuses() == ['"alerta"', '"normal"'], 10), statuses()

        # The deploy's way (roles/stack): POST /-/reload answers once the reload is done, with its result.
        good = hashlib.sha256(rules_file.read_bytes()).hexdigest()
        rules_file.write_text(yaml.safe_dump({"rules": [{"field": "temperatura_c", "alerta": 50, "critico": 45}]}))
        status, answer = post_reload(w)
        assert (status, answer["result"], answer["sha256"]) == (409, "invalid", good), answer
        assert "rules[0].critico" in answer["error"] and "rules[0].critico" in w.log.read_text()
        assert w.metric("mov_analytics_rules_reloads_total", 'result="invalid"') == 1
        publisher.publish(reading(41.0, t0 + 2))  # alerta under the running rules (40/45), normal under the bad one
        assert wait_until(lambda: statuses() == ['"alerta"', '"normal"', '"alerta"'], 10), statuses()

        rules_file.write_text(yaml.safe_dump({"rules": [{"field": "temperatura_c", "alerta": 45, "critico": 50}]}))
        status, answer = post_reload(w)
        assert (status, answer) == (
            200,
            {"result": "applied", "sha256": hashlib.sha256(rules_file.read_bytes()).hexdigest()},
        )
        assert loaded(rules_file.read_bytes())
        assert w.metric("mov_analytics_rules_reloads_total", 'result="applied"') == 2
        assert w.proc.poll() is None and w.proc.pid == pid
    finally:
        w.stop()


def post_reload(w: WorkerProcess) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{w.metrics_port}/-/reload", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def test_sighup_without_a_rules_file_is_counted_and_does_not_stop_the_worker(worker: WorkerProcess) -> None:
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: worker.metric("mov_analytics_rules_reloads_total", 'result="no_rules_file"') == 1, 5)
    assert worker.proc.poll() is None and worker.health() == 200
