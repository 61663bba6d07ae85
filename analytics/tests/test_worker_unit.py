"""The message path of Worker without a broker: points written, heartbeat, alerts on critico and recovery."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from influx_write_double import parse_line

from mov_analytics.alerts import Alert
from mov_analytics.app import Worker, subscriptions
from mov_analytics.config import ConfigError, from_mapping
from mov_analytics.influx import line
from mov_analytics.rules import DeviceState


class MemoryTransport:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def send(self, body: bytes) -> None:
        self.bodies.append(body)

    def close(self) -> None:
        return


class RecordingSender:
    channel = "memory"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


@pytest.fixture
def worker() -> Iterator[tuple[Worker, MemoryTransport, RecordingSender]]:
    cfg = from_mapping(
        {
            "mqtt": {"plants_topic": "mov/plantas"},
            "influxdb": {"write_readings": True, "batch_size": 10, "flush_interval_ms": 10},
            "http": {"host": "127.0.0.1", "port": 0},
            "alerts": {"dedup_s": 3600},
        }
    )
    transport = MemoryTransport()
    sender = RecordingSender()
    w = Worker(cfg, transport=transport, senders=[sender])
    w.alerter.start()
    w.writer.start()
    yield w, transport, sender
    w.writer.stop(2)
    w.alerter.stop(1)
    w.health.stop()


def publish(w: Worker, value: float, t: int, device: str = "sensor_001", via: str = "") -> None:
    """A reading of `device` on its own topic, under `via` (a gateway's prefix: plants topic and plant) if given."""
    doc = {
        "timestamp": t,
        "tags": {
            "dispositivo": device,
            "localizacao": "sala servidores, 2",
            "tipo": "temperatura",
            "cliente": "industria_abc",
        },
        "fields": {"temperatura_c": value},
    }
    w.handle(f"{via}mov/dados/industria_abc/{device}/x", json.dumps(doc).encode())


def lines(transport: MemoryTransport) -> list[str]:
    return [x for body in transport.bodies for x in body.decode().split("\n")]


def wait(predicate: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_points_heartbeat_and_alerts(worker: tuple[Worker, MemoryTransport, RecordingSender]) -> None:
    w, transport, sender = worker
    t0 = int(time.time()) - 100
    for i, value in enumerate([25.0, 36.0, 37.0, 36.5, 20.0, 36.0]):
        publish(w, value, t0 + i)
    w.heartbeat()
    wait(lambda: w.writer.pending() == 0 and len(sender.alerts) >= 2)
    points = [parse_line(x) for x in lines(transport)]
    readings = [p for p in points if p.measurement == "mov_leituras"]
    changes = [p for p in points if p.measurement == "mov_status" and p.field("change") == "true"]
    beats = [p for p in points if p.measurement == "mov_status" and p.field("change") == "false"]
    assert len(readings) == 6
    assert readings[0].tag("localizacao") == "sala servidores, 2"  # escaped and parsed back
    assert [p.field("status") for p in changes] == ['"normal"', '"critico"', '"normal"', '"critico"']
    assert changes[1].field("previous") == '"normal"' and changes[1].field("value") == "36.0"
    assert len(beats) == 1 and beats[0].field("status") == '"critico"'
    # critico, recovery, and the second critico is inside dedup_s: suppressed
    assert [a.kind for a in sender.alerts] == ["critico", "recovery"]
    assert w.metrics.alerts_suppressed._value.get() == 1
    assert w.metrics.hot.processed == 6


def test_health_needs_broker_and_good_writes(worker: tuple[Worker, MemoryTransport, RecordingSender]) -> None:
    w, _, _ = worker
    assert w.healthy()[0] is False  # never connected
    w.subscribed = True
    assert w.healthy() == (True, "ok")
    w.writer.last_write_ok = False
    assert w.healthy()[0] is False


def test_a_plants_reading_tags_its_points_and_names_its_plant_in_the_alert(
    worker: tuple[Worker, MemoryTransport, RecordingSender],
) -> None:
    w, transport, sender = worker
    t0 = int(time.time()) - 100
    publish(w, 25.0, t0, device="caldeira_01", via="mov/plantas/fabrica_sul/")
    publish(w, 36.0, t0 + 1, device="caldeira_01", via="mov/plantas/fabrica_sul/")
    publish(w, 36.0, t0 + 2, device="direto_01")
    publish(w, 20.0, t0 + 3, device="caldeira_01", via="mov/plantas//")  # no plant: a rejection, no crash
    w.heartbeat()
    wait(lambda: w.writer.pending() == 0 and len(sender.alerts) >= 2)
    points = [parse_line(x) for x in lines(transport)]
    tags = [(p.measurement, dict(p.tags)) for p in points]
    plant = {m for m, t in tags if t["dispositivo"] == "caldeira_01" and t.get("planta") == "fabrica_sul"}
    assert plant == {"mov_leituras", "mov_status"}
    assert len([m for m, t in tags if t["dispositivo"] == "caldeira_01"]) == 5  # 2 readings, 2 changes, 1 beat
    assert [t for _, t in tags if t["dispositivo"] == "direto_01" and "planta" in t] == []
    assert [(a.subject, a.details["planta"]) for a in sender.alerts] == [
        ("industria_abc/caldeira_01", "fabrica_sul"),
        ("industria_abc/direto_01", ""),
    ]
    assert "planta fabrica_sul" in sender.alerts[0].message and "planta" not in sender.alerts[1].message
    assert w.metrics.rejected.labels("bad_topic")._value.get() == 1


def test_the_worker_subscribes_to_the_plants_topics_only_when_given() -> None:
    assert subscriptions(from_mapping({}).mqtt) == ["mov/dados/#"]
    with_plants = from_mapping({"mqtt": {"plants_topic": "mov/plantas"}}).mqtt
    assert subscriptions(with_plants) == ["mov/dados/#", "mov/plantas/+/mov/dados/#"]


@pytest.mark.parametrize(
    "tags",
    [
        ("industria_abc", "sensor_001", "sala_servidores", "fabrica_sul", "temperatura"),
        ("industria_abc", "sensor_001", "sala_servidores", "", "temperatura"),  # a direct device: no planta tag
        ("a,b", "c d", "e=f", "p q", "g\\h"),  # every character line protocol escapes in a tag
    ],
)
def test_status_line_is_line_protocol_as_influx_line_writes_it(
    worker: tuple[Worker, MemoryTransport, RecordingSender], tags: tuple[str, str, str, str, str]
) -> None:
    # _status_line builds the text itself (cached series); it must stay what influx.line() makes of the point.
    w, _, _ = worker
    names = ("cliente", "dispositivo", "localizacao", "planta", "tipo")
    cliente, dispositivo, localizacao, planta, tipo = tags
    device = DeviceState(cliente, dispositivo, localizacao, tipo, planta=planta)
    tag_map = {name: value for name, value in zip(names, tags, strict=True) if value}
    for status, change, previous, field, value in [
        ("alerta", True, "normal", "temperatura_c", 30.5),
        ("normal", False, None, 'we"ird\\', 7),
        ("critico", True, None, None, None),
    ]:
        fields: dict[str, float | int | bool | str] = {"status": status, "change": change}
        if previous is not None:
            fields["previous"] = previous
        if field is not None and value is not None:
            fields["field"], fields["value"] = field, float(value)
        for _ in range(2):  # the second time from the cache
            text = w._status_line(
                device,
                status,
                level_change=change,
                time_ns=123,
                previous=previous,
                driver_field=field,
                driver_value=value,
            )
            assert text == line("mov_status", tag_map, fields, 123)
            assert parse_line(text).tags == tuple(sorted(tag_map.items()))


def test_late_critico_alerts_duplicate_does_not(worker: tuple[Worker, MemoryTransport, RecordingSender]) -> None:
    # After a broker restart readings can come out of order, and QoS 1 redeliveries come twice.
    w, transport, sender = worker
    t0 = int(time.time()) - 100
    for i in range(0, 21, 5):
        publish(w, 25.0, t0 + i, device="late_1")
    publish(w, 36.0, t0 + 12, device="late_1")  # late, within late_window_s, critico
    publish(w, 36.0, t0 + 12, device="late_1")  # its redelivery
    publish(w, 36.0, t0 - 400, device="late_1")  # older than the window: stale, skipped
    wait(lambda: w.writer.pending() == 0 and len(sender.alerts) >= 1)
    time.sleep(0.05)
    assert [(a.kind, a.details["time_ns"], a.details["late"]) for a in sender.alerts] == [
        ("critico", (t0 + 12) * 10**9, True)
    ]
    hot = w.metrics.hot
    assert (hot.late, hot.duplicate, hot.stale, hot.processed) == (1, 1, 1, 8)
    points = [parse_line(x) for x in lines(transport)]
    status = [
        (p.time_ns, dict(p.fields)["status"], dict(p.fields).get("previous"), dict(p.fields).get("late"))
        for p in points
        if p.measurement == "mov_status"
    ]
    # The initial status, then the excursion at the late reading's own time and the return one ns after it.
    assert status == [
        (t0 * 10**9, '"normal"', None, None),
        ((t0 + 12) * 10**9, '"critico"', '"normal"', "true"),
        ((t0 + 12) * 10**9 + 1, '"normal"', '"critico"', "true"),
    ]


def test_a_transient_clients_devices_get_status_points_but_no_heartbeat() -> None:
    cfg = from_mapping(
        {
            "influxdb": {"batch_size": 10, "flush_interval_ms": 10},
            "http": {"host": "127.0.0.1", "port": 0},
            "transient_clients": "movbench",
        }
    )
    transport = MemoryTransport()
    w = Worker(cfg, transport=transport)
    w.writer.start()
    try:
        t0 = int(time.time()) - 10
        for client, device in (("industria_abc", "sensor_001"), ("movbench", "d01")):
            for i, value in enumerate([20.0, 32.0]):
                doc = {
                    "timestamp": t0 + i,
                    "tags": {"dispositivo": device, "localizacao": "x", "tipo": "temperatura", "cliente": client},
                    "fields": {"temperatura_c": value},
                }
                w.handle(f"mov/dados/{client}/{device}", json.dumps(doc).encode())
        w.heartbeat()
        wait(lambda: w.writer.pending() == 0)
        points = [parse_line(x) for x in lines(transport) if x]
        status = [p for p in points if p.measurement == "mov_status"]
        changes = {(p.tag("cliente"), p.field("status")) for p in status if p.field("change") == "true"}
        beats = [p.tag("cliente") for p in status if p.field("change") == "false"]
        assert ("movbench", '"alerta"') in changes and ("industria_abc", '"alerta"') in changes
        assert beats == ["industria_abc"]
    finally:
        w.writer.stop(2)
        w.health.stop()


def test_transient_clients_are_names() -> None:
    with pytest.raises(ConfigError, match="transient_clients"):
        from_mapping({"transient_clients": ["movbench/d01"]})
