"""What the broker promises about acknowledged readings (docs/data-promise.md), with the real mosquitto.

Each test renders the role's mosquitto.conf, passwd and ACL (tests/mov_render.py) and runs the `mosquitto` on PATH
(or $MOSQUITTO, e.g. Debian 13's 2.0.21 through its own loader) on a free 127.0.0.1 port. Only what ties the
config to a host is changed: one plain listener on loopback instead of the three, the password file and ACL from
the render directory, persistence_location in the test's tmp dir, and the user to run as. Persistence, queue,
in-flight and $SYS settings are the rendered lines, verbatim. Clients are paho with bounded waits.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mosquitto_broker import MOSQUITTO, Broker
from mov_render import rendered, workspace
from paho.mqtt.enums import CallbackAPIVersion

DEVICE = "industria_abc/sensor_001"
TOPIC = f"mov/dados/{DEVICE}"
READING = json.dumps(
    {
        "timestamp": "2024-01-15T10:30:00Z",
        "tags": {"dispositivo": "sensor_001"},
        "fields": {"temperatura_c": 23.5, "umidade": 45.2, "pressao": 1013.25},
    }
).encode()
DROPPED = "$SYS/broker/publish/messages/dropped"
# 60 devices publishing every 5 s for the 900 s of outage the tree tolerates: 10,800 readings, past the
# 10,000 that every client's queue used to hold.
BIG_PLANT = {
    "mov_devices": [
        {"name": f"sensor_{i:03d}", "client": "industria_abc", "site": "sala", "type": "temperatura"}
        for i in range(1, 61)
    ]
}
OUTAGE_READINGS = 60 * 900 // 5

pytestmark = pytest.mark.skipif(
    shutil.which(MOSQUITTO[0]) is None, reason="no mosquitto binary (apt-get install mosquitto)"
)


def _render(overrides: dict[str, object] | None) -> Path:
    """The local env's render (or one with these tree overrides): its host directory."""
    if overrides is None:
        return rendered("local")[0]
    ws = workspace()
    rendered("local")  # the local secrets exist before a second render reads them
    dest = ws.root / "render" / f"local-{abs(hash(json.dumps(overrides, sort_keys=True)))}"
    if not dest.exists():
        # The broker's config is all these tests read (render.yml's render_roles, as an extra var).
        ws.render("local", dest, "-e", json.dumps(overrides), "-e", json.dumps({"render_roles": ["mosquitto"]}))
    return next(p for p in dest.iterdir() if p.is_dir())


def _passwords() -> dict[str, str]:
    store = workspace().secret_store("local")["mqtt"]
    assert isinstance(store, dict)
    return store


def _client(user: str, client_id: str, clean: bool) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.username_pw_set(user, _passwords()[user])
    return c


def _wait_while_progressing(done: threading.Event, count: Callable[[], int], stall: float, cap: float = 300) -> None:
    """Wait for `done` while `count()` keeps growing; give up after `stall` seconds without growth (or `cap` in all).
    The bound is on a stall, so a loaded machine that is slow but still delivering is not a lost reading."""
    last, since = count(), time.monotonic()
    end = since + cap
    while not done.wait(0.5) and time.monotonic() < end:
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > stall:
            return


def _consume(port: int, expected: int, seconds: float) -> int:
    """Telegraf's session (fixed id, persistent, QoS 1): count readings until `expected`, or until none came for
    `seconds`, then leave."""
    got = 0
    enough = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        nonlocal got
        got += 1
        if got >= expected:
            enough.set()

    c = _client("telegraf", "mov-telegraf-test", clean=False)
    c.on_message = on_message
    c.on_connect = lambda cl, *_: cl.subscribe("mov/dados/#", qos=1)
    c.on_subscribe = lambda *_: subscribed.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert subscribed.wait(5), "the consumer could not subscribe"
        if expected:
            _wait_while_progressing(enough, lambda: got, seconds)
        time.sleep(0.3)  # anything past `expected` would show up here
    finally:
        c.disconnect()
        c.loop_stop()
    return got


def _publish(port: int, count: int, payload: bytes = READING, seconds: float = 20) -> int:
    """One device's QoS 1 readings; returns how many the broker acknowledged (PUBACK) before `seconds` passed
    without a new acknowledgement."""
    acked = 0
    done = threading.Event()

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked >= count:
            done.set()

    c = _client(DEVICE, "mov-test-device", clean=True)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for _ in range(count):
            c.publish(TOPIC, payload, qos=1)
        _wait_while_progressing(done, lambda: acked, seconds)
    finally:
        c.disconnect()
        c.loop_stop()
    return acked


def _dropped(port: int, expected: int, seconds: float) -> int:
    """The broker's dropped-message counter as the telegraf account reads it, once it shows `expected`."""
    value = -1
    seen = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        nonlocal value
        value = int(message.payload)
        if value == expected:
            seen.set()

    c = _client("telegraf", "mov-test-sys", clean=True)
    c.on_message = on_message
    c.on_connect = lambda cl, *_: cl.subscribe(DROPPED, qos=0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        seen.wait(seconds)
    finally:
        c.disconnect()
        c.loop_stop()
    return value


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(_render(getattr(request, "param", None)), tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.kill()


@pytest.mark.parametrize("broker", [BIG_PLANT], indirect=True)
def test_every_reading_acknowledged_during_the_tolerated_outage_arrives(broker: Broker) -> None:
    """Telegraf away for mov_telegraf_outage_tolerance_s at 60 devices: 10,800 readings, all delivered."""
    assert int(broker.settings["max_queued_messages"]) >= OUTAGE_READINGS
    _consume(broker.port, 0, 0)
    assert _publish(broker.port, OUTAGE_READINGS) == OUTAGE_READINGS
    assert _consume(broker.port, OUTAGE_READINGS, 20) == OUTAGE_READINGS
    assert _dropped(broker.port, 0, 2) == 0


def test_a_flooding_device_is_bounded_by_bytes_and_the_drops_are_counted(broker: Broker) -> None:
    """Largest payloads as fast as possible: the consumer's queue stops at max_queued_bytes, the rest is counted."""
    payload = b"x" * int(broker.settings["message_size_limit"])
    capacity = int(broker.settings["max_queued_bytes"]) // len(payload)
    flood = capacity + 50
    assert capacity < int(broker.settings["max_queued_messages"])
    _consume(broker.port, 0, 0)
    assert _publish(broker.port, flood, payload) == flood  # every one acknowledged to the device...
    assert _consume(broker.port, capacity, 10) == capacity  # ...only the bound delivered...
    interval = int(broker.settings["sys_interval"])
    assert _dropped(broker.port, 50, interval + 3) == 50  # ...and the rest counted where Telegraf can read it


def test_a_broker_killed_after_acknowledging_loses_at_most_the_documented_bound(broker: Broker) -> None:
    """Consumer away, readings acknowledged, SIGKILL, restart on the same database: at most autosave_interval - 1
    changes (one reading each, for one consumer queue) are missing."""
    assert broker.settings["autosave_on_changes"] == "true"
    bound = int(broker.settings["autosave_interval"]) - 1
    readings = 50
    assert bound < readings
    _consume(broker.port, 0, 0)
    assert _publish(broker.port, readings) == readings
    broker.kill()
    broker.start()
    delivered = _consume(broker.port, readings, 5)
    assert readings - bound <= delivered <= readings
