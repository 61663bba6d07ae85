"""Rotating an MQTT service account's password loses no reading (issue 20, docs/operations/rotate-secret.md).

The mosquitto role runs on the controller (tests/playbooks/role_configure.yml) into the test's directory, the real
mosquitto (tests/mosquitto_broker.py) runs what it wrote, and the role's reload command sends it SIGHUP, as the
deploy does. Two consumers hold the worker's kind of session (fixed client id, clean_session false, QoS 1,
subscribing on every connect: analytics/src/mov_analytics/app.py) while a device publishes QoS 1 readings throughout:

* `analytics` is rotated as scripts/platform_secrets.py does it now: a new password under a new username, the old
  account kept by the deploy until the consumer runs with the new one, then removed (tasks/retire_accounts.yml);
* `telegraf`, the control, is rotated as before: a new password under the same username. On the reload Mosquitto
  drops that consumer and gives its session no ACL until it logs in again, so what is published meanwhile is not
  queued for it (eclipse/mosquitto src/security_default.c, mosquitto_security_apply_default).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import filter_plugin, run_role
from mosquitto_broker import MOSQUITTO, Broker
from mov_render import resolved
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

needs_mosquitto = pytest.mark.skipif(
    shutil.which(MOSQUITTO[0]) is None, reason="no mosquitto binary (apt-get install mosquitto)"
)

DEVICE = {"name": "sensor_001", "client": "industria_abc", "site": "sala", "type": "temperatura"}
DEVICE_USER = "industria_abc/sensor_001"
TOPIC = "mov/dados/industria_abc/sensor_001"
READERS = [
    {"name": "analytics", "read": ["mov/dados/#"], "write": ["mov/status/#"]},
    {"name": "telegraf", "read": ["mov/dados/#"], "write": []},
]
OLD = {"analytics": "test-only-analytics-old", "telegraf": "test-only-telegraf-old", DEVICE_USER: "test-only-device"}
NEW = {**OLD, "analytics": "test-only-analytics-new", "telegraf": "test-only-telegraf-new"}
NEW_USERNAME = "analytics@20261206T160000Z-beef"
# The deploy's steps between the broker's reload (services play) and the consumers' new containers (stack play).
SWITCH_AFTER_S = 2.0
PUBLISH_EVERY_S = 0.02
WAIT_S = 15.0


class Consumer:
    """A persistent session under a fixed client id; paho reconnects it on its own, as the worker's does."""

    def __init__(self, port: int, client_id: str, username: str, password: str) -> None:
        self.received: set[int] = set()
        self.drops = 0
        self.refusals = 0
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(1, 1)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _c, _u, m: self.received.add(int(m.payload))
        self._client.on_disconnect = self._on_disconnect
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert self._subscribed.wait(5), f"{username} could not subscribe"

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self.refusals += 1
        else:
            client.subscribe("mov/dados/#", qos=1)

    def _on_disconnect(self, *_: object) -> None:
        self.drops += 1

    def stop(self) -> None:
        """The container stopped (its recreate): a clean DISCONNECT, the session stays on the broker."""
        drops = self.drops
        self._client.disconnect()
        self._client.loop_stop()
        self.drops = drops


class Device(threading.Thread):
    """Numbered QoS 1 readings every PUBLISH_EVERY_S until stopped; `acked` holds those the broker acknowledged.

    No lock of ours is held across a paho call: paho runs on_publish holding its own lock, so a publish made under
    ours while a PUBACK comes in would deadlock the two threads. The acknowledged message ids are kept as they come
    (a PUBACK may come before publish() returns its id) and matched to their numbers when read."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self._numbers: dict[int, int] = {}
        self._acked_mids: set[int] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="mov-test-device")
        self._client.username_pw_set(DEVICE_USER, OLD[DEVICE_USER])
        self._client.on_publish = self._on_publish
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    @property
    def acked(self) -> set[int]:
        with self._lock:
            return {number for mid, number in self._numbers.items() if mid in self._acked_mids}

    def _on_publish(self, _c: object, _u: object, mid: int, *_: object) -> None:
        with self._lock:
            self._acked_mids.add(mid)

    def run(self) -> None:
        for number in range(int(300 / PUBLISH_EVERY_S)):  # bounded: 5 minutes at most (fewer ids than paho's 65,535)
            if self._done.is_set():
                break
            mid = self._client.publish(TOPIC, str(number), qos=1).mid
            with self._lock:
                self._numbers[mid] = number
            time.sleep(PUBLISH_EVERY_S)

    def finish(self) -> None:
        self._done.set()
        self.join(10)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and len(self.acked) < len(self._numbers):
            time.sleep(0.1)
        self._client.disconnect()
        self._client.loop_stop()


def _refused(port: int, username: str, password: str) -> bool:
    answered = threading.Event()
    refused: list[bool] = []

    def on_connect(_c: object, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        refused.append(reason.is_failure)
        answered.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="mov-test-probe")
    c.username_pw_set(username, password)
    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert answered.wait(5), "no CONNACK"
    finally:
        c.disconnect()
        c.loop_stop()
    return refused == [True]


def _users(passwd: Path) -> set[str]:
    return {line.split(":", 1)[0] for line in passwd.read_text().splitlines()}


@pytest.fixture
def role_vars(tmp_path: Path) -> dict[str, object]:
    return {
        "mosquitto_dir": str(tmp_path / "host" / "opt/mov/mosquitto"),
        "mosquitto_uid": os.getuid(),
        "mosquitto_gid": os.getgid(),
        "mosquitto_devices": [DEVICE],
        "mosquitto_service_users": READERS,
        "mosquitto_passwords": OLD,
        "mosquitto_reload_command": "",
    }


@pytest.fixture
def broker(tmp_path: Path, role_vars: dict[str, object]) -> Iterator[Broker]:
    run_role(tmp_path, "mosquitto", role_vars)
    (tmp_path / "broker").mkdir()
    b = Broker(tmp_path / "host", tmp_path / "broker")
    b.start()
    assert b.proc is not None
    role_vars["mosquitto_reload_command"] = f"kill -HUP {b.proc.pid}"
    try:
        yield b
    finally:
        b.kill()


@needs_mosquitto
def test_a_service_account_rotated_under_a_new_username_loses_no_reading(
    tmp_path: Path, role_vars: dict[str, object], broker: Broker
) -> None:
    passwd = tmp_path / "host" / "opt/mov/mosquitto/config/passwd"
    analytics = Consumer(broker.port, "mov-analytics", "analytics", OLD["analytics"])
    telegraf = Consumer(broker.port, "mov-telegraf", "telegraf", OLD["telegraf"])
    device = Device(broker.port)
    device.start()
    try:
        time.sleep(0.5)
        # The services play after `platform_secrets.py --rotate mqtt/analytics --rotate mqtt/telegraf`, had
        # telegraf's username stayed the same: the new account beside the old for analytics, a new hash for telegraf.
        rotated = {**role_vars, "mosquitto_passwords": NEW, "mosquitto_usernames": {"analytics": NEW_USERNAME}}
        output = run_role(tmp_path, "mosquitto", rotated)
        assert "RUNNING HANDLER [mosquitto : Reload mosquitto]" in output
        assert _users(passwd) == {"analytics", NEW_USERNAME, "telegraf", DEVICE_USER}
        time.sleep(SWITCH_AFTER_S)
        # The stack play: each consumer's container is recreated with its new credentials.
        analytics.stop()
        telegraf.stop()
        analytics_new = Consumer(broker.port, "mov-analytics", NEW_USERNAME, NEW["analytics"])
        telegraf_new = Consumer(broker.port, "mov-telegraf", "telegraf", NEW["telegraf"])
        # After the stack's verify: the account the rotation replaced goes.
        output = run_role(tmp_path, "mosquitto", rotated, tasks_from="retire_accounts")
        assert "RUNNING HANDLER [mosquitto : Reload mosquitto]" in output
        time.sleep(0.5)
    finally:
        device.finish()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not device.acked <= analytics.received | analytics_new.received:
        time.sleep(0.1)
    analytics_new.stop()
    telegraf_new.stop()

    published = len(device.acked)
    assert published > (2 * SWITCH_AFTER_S) / PUBLISH_EVERY_S, f"only {published} readings across the rotation"
    missed = sorted(device.acked - analytics.received - analytics_new.received)
    assert not missed, f"analytics missed {len(missed)} of {published}: {missed[:5]}...{missed[-5:]}"
    assert analytics.drops == 0, "the reload dropped the consumer of the account that was kept"
    assert _users(passwd) == {NEW_USERNAME, "telegraf", DEVICE_USER}
    assert _refused(broker.port, "analytics", OLD["analytics"])
    assert not _refused(broker.port, NEW_USERNAME, NEW["analytics"])

    # The control: the same rotation without a new username drops the consumer at the reload, refuses it until
    # its new container logs in, and what the device published in between never reaches it.
    assert telegraf.drops >= 1 and telegraf.refusals >= 1
    lost = device.acked - telegraf.received - telegraf_new.received
    assert len(lost) > (SWITCH_AFTER_S / 2) / PUBLISH_EVERY_S, f"telegraf lost {len(lost)}: Mosquitto now queues"
    assert max(telegraf.received) < min(lost) and max(lost) < max(telegraf_new.received)


def test_the_rotated_usernames_reach_the_broker_and_every_consumer() -> None:
    """The vault's mqtt_usernames (scripts/platform_secrets.py) is the one source of the broker's usernames and of
    the ones Telegraf, the worker and the deploy's verify log in with; an account never rotated keeps its name."""
    usernames = {"telegraf": "telegraf@20261206T160000Z-0a0a", "analytics": NEW_USERNAME}
    secrets = {"mqtt": {"telegraf": "x", "analytics": "x", "verify": "x"}, "mqtt_usernames": usernames}
    wiring = "[mosquitto_usernames,telegraf_mqtt_username,stack_analytics_mqtt_username,stack_verify_mqtt_username]"
    broker, telegraf, worker, verify = resolved(wiring, "-e", json.dumps({"vault_mov_secrets": secrets}))
    assert broker == {**usernames, "verify": "verify"}
    assert (telegraf, worker, verify) == (usernames["telegraf"], NEW_USERNAME, "verify")


def test_only_a_service_accounts_own_earlier_usernames_are_kept() -> None:
    """`analytics2` or a device is not an earlier username of `analytics`; a kept line is copied as it is."""
    plugin = filter_plugin("mosquitto", "mosquitto_passwd")
    current = "".join(
        f"{user}:$7$101$c2FsdA==$aGFzaA==\n"
        for user in ("analytics", "analytics@1", "analytics2", "analytics2@1", "industria_abc/analytics")
    )
    usernames = {"analytics": "analytics@2", "analytics2": "analytics2@1"}
    replaced = plugin.mosquitto_replaced(current, usernames)
    assert replaced == {"analytics": ["analytics", "analytics@1"], "analytics2": ["analytics2"]}
    written = plugin.mosquitto_passwd({"analytics": "new"}, current, usernames, replaced["analytics"])
    lines = dict(line.split(":", 1) for line in written.splitlines())
    assert set(lines) == {"analytics", "analytics@1", "analytics@2"}
    assert lines["analytics"] == "$7$101$c2FsdA==$aGFzaA==" and plugin.verify("new", lines["analytics@2"])
