"""Simulated devices: one paho client each, over TLS, QoS 1, paced so all together send `rate` readings a second.

Every reading alternates between the plan's two values, so each one changes its device's status: the worker stores
a status point for every reading, the heaviest path a reading can take. Latency here is publish to PUBACK, taken
from paho's on_publish callback (the broker has the message).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from .plan import Device, Plan

CONNECT_TIMEOUT_S = 15.0
# Acknowledgements still missing this long after the last publish count as failed.
ACK_GRACE_S = 10.0


def payload(device: Device, plan: Plan, value: float, time_ns: int) -> bytes:
    tags = {"dispositivo": device.name, "cliente": device.client, "localizacao": plan.localizacao, "tipo": plan.tipo}
    return json.dumps({"timestamp": time_ns, "tags": tags, "fields": {plan.field: value}}).encode()


def topic_of(device: Device, plan: Plan) -> str:
    return f"{plan.topic}/{device.client}/{device.name}"


@dataclass
class Sender:
    """One device's connection, what it sent (by message id) and when the broker acknowledged each."""

    device: Device
    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    refused: str = ""
    sent: dict[int, float] = field(default_factory=dict)
    acked: dict[int, float] = field(default_factory=dict)
    stamps: dict[int, int] = field(default_factory=dict)  # each message's reading time (ns), by message id
    failed: int = 0
    turn: int = 0

    def next_value(self, plan: Plan) -> float:
        self.turn += 1
        return plan.values[self.turn % 2]

    def publish(self, plan: Plan) -> mqtt.MQTTMessageInfo | None:
        now_ns = time.time_ns()
        started = time.monotonic()
        info = self.client.publish(
            topic_of(self.device, plan), payload(self.device, plan, self.next_value(plan), now_ns), qos=1
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.failed += 1
            return None
        # on_publish may run before this line (the network thread): both sides are kept, matched at the end.
        self.sent[info.mid] = started
        self.stamps[info.mid] = now_ns
        return info

    def latencies(self) -> list[float]:
        return [self.acked[mid] - t for mid, t in self.sent.items() if mid in self.acked]


def _tls_context(ca_pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def connect(device: Device, plan: Plan) -> Sender:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{device.name}", protocol=mqtt.MQTTv5)
    sender = Sender(device, client)
    client.username_pw_set(device.username, device.password)
    client.tls_set_context(_tls_context(plan.ca_pem))
    client.max_inflight_messages_set(1000)

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            sender.refused = str(reason)
        sender.connected.set()

    def on_publish(_c: mqtt.Client, _u: Any, mid: int, _reason: ReasonCode, _p: Any) -> None:
        sender.acked[mid] = time.monotonic()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect_async(plan.host, plan.port, keepalive=30)
    client.loop_start()
    return sender


def connect_all(plan: Plan) -> list[Sender]:
    senders = [connect(d, plan) for d in plan.devices]
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    for sender in senders:
        if not sender.connected.wait(max(0.0, deadline - time.monotonic())):
            sender.refused = sender.refused or f"no CONNACK within {CONNECT_TIMEOUT_S:.0f}s"
    return senders


def run_load(senders: list[Sender], plan: Plan, stop: Callable[[], bool]) -> float:
    """Publish round robin at the plan's rate for its duration; the seconds from the first publish to the last ack."""
    if not senders:
        return 0.0
    interval = 1.0 / plan.rate
    started = time.monotonic()
    due = started
    i = 0
    while (now := time.monotonic()) - started < plan.duration_s and not stop():
        if now < due:
            time.sleep(due - now)
        senders[i % len(senders)].publish(plan)
        i += 1
        due += interval
    deadline = time.monotonic() + ACK_GRACE_S
    while time.monotonic() < deadline and any(len(s.acked) < len(s.sent) for s in senders):
        time.sleep(0.02)
    last_ack = max((max(s.acked.values(), default=started) for s in senders), default=started)
    return max(last_ack - started, 1e-9)


def close_all(senders: list[Sender]) -> None:
    for sender in senders:
        sender.client.disconnect()
        sender.client.loop_stop()
