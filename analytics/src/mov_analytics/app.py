"""Wiring: MQTT in -> validate -> rules -> InfluxDB writer / alerts; metrics, health, signals."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from . import logs
from .alerts import Alert, Alerter, Sender, senders_from_config
from .config import Config, ConfigError, MqttConfig, load, rules_digest
from .influx import (
    DiscardTransport,
    InfluxClientTransport,
    InfluxWriter,
    Transport,
    escape_key,
    escape_measurement,
    string_field,
)
from .metrics import HealthServer, Metrics
from .parsing import Reading, Rejected, Validator
from .rules import DUPLICATE, FRESH, LATE, LEVELS, DeviceState, RulesEngine, StatusChange

log = logging.getLogger("mov_analytics")

# SIGTERM must end within 10 s: MQTT disconnect (<= 1 s) + flush (<= 6.5 s, +0.5 s join) + alerts (0.5 s).
SHUTDOWN_FLUSH_S = 6.5


class Worker:
    def __init__(
        self,
        cfg: Config,
        transport: Transport | None = None,
        metrics: Metrics | None = None,
        senders: Sequence[Sender] | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.validator = Validator(cfg.validation, plants_topic=cfg.mqtt.plants_topic)
        self.rules = RulesEngine(cfg.rules, late_window_s=cfg.late_window_s)
        senders = senders_from_config(cfg.alerts) if senders is None else senders
        self.alerter = Alerter(cfg.alerts, self.metrics, senders)
        if transport is None:
            transport = InfluxClientTransport(cfg.influxdb) if cfg.influxdb.enabled else DiscardTransport()
        self.writer = InfluxWriter(
            cfg.influxdb, self.metrics, transport, on_overflow=self._on_overflow, on_auth_failure=self._on_auth_failure
        )
        self.health = HealthServer(cfg.http.host, cfg.http.port, self.metrics, self.healthy, self.reload_rules)
        # True from the broker's SUBACK to the next disconnect: readings reach the worker (/healthz).
        self.subscribed = False
        self._subscribe_mid: int | None = None
        self._stop = threading.Event()
        self._mqtt_thread: threading.Thread | None = None
        self._log_limit = logs.RateLimiter(10.0)
        self._readings_prefix = escape_measurement(cfg.influxdb.readings_measurement)
        self._status_prefix = escape_measurement(cfg.influxdb.status_measurement)
        self._write_readings = cfg.influxdb.write_readings
        self._series_cache: dict[_Series, str] = {}
        self._status_series_cache: dict[_Series, str] = {}
        self._field_key_cache: dict[str, str] = {}
        self.client = self._make_client()
        self.rules_sha256 = cfg.rules_sha256
        self._reload_lock = threading.Lock()
        if cfg.rules_file:
            self.metrics.rules_loaded(cfg.rules_sha256)

    # -- MQTT -------------------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        m = self.cfg.mqtt
        # A fixed client id with clean_session=False keeps the session (subscription and queued QoS 1
        # readings) on the broker while the worker is down.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=m.client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        if m.username:
            client.username_pw_set(m.username, m.password or None)
        if m.tls.enabled:
            client.tls_set(
                ca_certs=m.tls.ca_file or None,
                certfile=m.tls.cert_file or None,
                keyfile=m.tls.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(m.tls.insecure)
        client.reconnect_delay_set(m.reconnect_min_delay_s, m.reconnect_max_delay_s)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection", extra={"reason": str(reason_code)})
            return
        # Healthy once the broker acknowledged the subscription (_on_subscribe), not at CONNACK: a reading published
        # between the two would reach no session of ours on a first start.
        _, self._subscribe_mid = client.subscribe(
            [(topic, self.cfg.mqtt.qos) for topic in subscriptions(self.cfg.mqtt)]
        )
        self.metrics.mqtt_connected.set(1)
        log.info(
            "mqtt connected",
            extra={"session_present": flags.session_present, "host": self.cfg.mqtt.host, "port": self.cfg.mqtt.port},
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            # The broker's ACL refused a topic: no reading would come, so the worker stays unhealthy.
            log.error("broker refused the subscription", extra={"reasons": refused})
            return
        self.subscribed = True

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason_code: ReasonCode, properties: Any
    ) -> None:
        self.subscribed = False
        self.metrics.mqtt_connected.set(0)
        if not self._stop.is_set():
            log.warning("mqtt disconnected, reconnecting", extra={"reason": str(reason_code)})

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Any exception escaping here would end paho's network thread, so nothing may escape.
        try:
            self.handle(message.topic, bytes(message.payload))
        except Exception:
            self.metrics.rejected.labels("internal_error").inc()
            if self._log_limit.allow("internal_error") is not None:
                log.exception("unexpected error handling a message")

    # -- the message path ---------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes) -> None:
        metrics = self.metrics
        hot = metrics.hot
        hot.received += 1
        try:
            reading = self.validator.parse(topic, payload)
        except Rejected as rejected:
            metrics.rejected.labels(rejected.reason).inc()
            held = self._log_limit.allow(rejected.reason)
            if held is not None:
                log.warning(
                    "reading rejected",
                    extra={
                        "reason": rejected.reason,
                        "detail": rejected.detail,
                        "topic": topic[:200],
                        "similar_suppressed": held,
                    },
                )
            return
        if reading.had_unknown_keys:
            hot.unknown_keys += 1
        if self._write_readings:
            self.writer.add(self._reading_line(reading))
        outcome = self.rules.evaluate(reading)
        kind = outcome.kind
        if kind == FRESH:
            if outcome.change is not None:
                self._status_changed(outcome.change)
        elif kind == LATE:
            hot.late += 1
            if outcome.change is not None:
                self._late_excursion(outcome.change)
        elif kind == DUPLICATE:
            hot.duplicate += 1
        else:
            hot.stale += 1
        hot.processed += 1

    def _reading_line(self, r: Reading) -> str:
        # Hot path (one call per reading): the escaped series prefix and field keys are cached, bounded.
        series = (r.cliente, r.dispositivo, r.localizacao, r.planta, r.tipo)
        prefix = self._series_cache.get(series)
        if prefix is None:
            prefix = _series_prefix(self._readings_prefix, series, self._series_cache)
        keys = self._field_key_cache
        parts = []
        for name, value in r.fields.items():
            key = keys.get(name)
            if key is None:
                key = keys[name] = escape_key(name) + "="
                if len(keys) >= 10_000:
                    keys.clear()
            parts.append(key + repr(value))
        return f"{prefix}{','.join(parts)} {r.time_ns}"

    def _status_line(
        self,
        device: DeviceState,
        status: str,
        *,
        level_change: bool,
        time_ns: int,
        previous: str | None,
        driver_field: str | None,
        driver_value: float | None,
        late: bool = False,
    ) -> str:
        # The same text as influx.line() with these tags and fields (a test holds the two together), with the
        # escaped series cached: a heartbeat writes one per known device at once, in the main thread.
        series = (device.cliente, device.dispositivo, device.localizacao, device.planta, device.tipo)
        prefix = self._status_series_cache.get(series)
        if prefix is None:
            prefix = _series_prefix(self._status_prefix, series, self._status_series_cache)
        text = f"{prefix}status={string_field(status)},change={'true' if level_change else 'false'}"
        if previous is not None:
            text += f",previous={string_field(previous)}"
        if driver_field is not None and driver_value is not None:
            text += f",field={string_field(driver_field)},value={float(driver_value)!r}"
        if late:
            text += ",late=true"
        return f"{text} {time_ns}"

    def _status_changed(self, change: StatusChange) -> None:
        d = change.device
        self.metrics.status_changes.labels(change.status).inc()
        self.writer.add(
            self._status_line(
                d,
                change.status,
                level_change=True,
                time_ns=change.time_ns,
                previous=change.previous,
                driver_field=change.driver_field,
                driver_value=change.driver_value,
            )
        )
        subject = f"{d.cliente}/{d.dispositivo}"
        details: dict[str, object] = {
            "cliente": d.cliente,
            "dispositivo": d.dispositivo,
            "localizacao": d.localizacao,
            "tipo": d.tipo,
            "planta": d.planta,
            "status": change.status,
            "previous": change.previous,
            "field": change.driver_field,
            "value": change.driver_value,
            "time_ns": change.time_ns,
            "late": False,
        }
        log.info("status change", extra=details)
        if change.status == "critico":
            self.alerter.submit(
                Alert(
                    "critico",
                    subject,
                    f"{subject} ({_where(d)}) is critico: {change.driver_field}={change.driver_value}",
                    details,
                )
            )
        elif change.recovered:
            self.alerter.submit(Alert("recovery", subject, f"{subject} ({_where(d)}) is back to normal", details))

    def _late_excursion(self, change: StatusChange) -> None:
        """A late reading worse than the status its device had at its time (rules.py): two points, maybe an alert.

        The excursion is written at the reading's own time and the status of that time again one nanosecond
        later, so a query for the status at any later moment still finds what the fresh readings said.
        """
        d = change.device
        self.writer.add(
            self._status_line(
                d,
                change.status,
                level_change=True,
                time_ns=change.time_ns,
                previous=change.previous,
                driver_field=change.driver_field,
                driver_value=change.driver_value,
                late=True,
            )
        )
        if change.previous is not None:
            self.writer.add(
                self._status_line(
                    d,
                    change.previous,
                    level_change=True,
                    time_ns=change.time_ns + 1,
                    previous=change.status,
                    driver_field=None,
                    driver_value=None,
                    late=True,
                )
            )
        subject = f"{d.cliente}/{d.dispositivo}"
        current = LEVELS[d.level]
        details: dict[str, object] = {
            "cliente": d.cliente,
            "dispositivo": d.dispositivo,
            "localizacao": d.localizacao,
            "tipo": d.tipo,
            "planta": d.planta,
            "status": change.status,
            "previous": change.previous,
            "field": change.driver_field,
            "value": change.driver_value,
            "time_ns": change.time_ns,
            "late": True,
            "current": current,
        }
        log.info("late reading excursion", extra=details)
        if change.status == "critico":
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(change.time_ns // 10**9))
            self.alerter.submit(
                Alert(
                    "critico",
                    subject,
                    f"{subject} ({_where(d)}) was critico at {when} (reading arrived late): "
                    f"{change.driver_field}={change.driver_value}; now {current}",
                    details,
                )
            )

    def heartbeat(self) -> None:
        now_ns = time.time_ns()
        transient = self.cfg.transient_clients
        for d in self.rules.devices():
            if d.cliente in transient:
                continue
            status = LEVELS[d.level]
            self.writer.add(
                self._status_line(
                    d,
                    status,
                    level_change=False,
                    time_ns=now_ns,
                    previous=None,
                    driver_field=d.driver_field,
                    driver_value=d.driver_value,
                )
            )

    def _on_overflow(self, dropped: int) -> None:
        if self._log_limit.allow("buffer_full") is not None:
            log.error(
                "write buffer full, dropping oldest points",
                extra={"dropped": dropped, "buffer_max_points": self.cfg.influxdb.buffer_max_points},
            )
        self.alerter.submit(
            Alert(
                "buffer_overflow",
                "worker",
                "InfluxDB write buffer full: oldest points are being dropped",
                {"buffer_max_points": self.cfg.influxdb.buffer_max_points},
            )
        )

    def _on_auth_failure(self, error: str) -> None:
        self.alerter.submit(Alert("influx_auth", "worker", "InfluxDB refuses the worker's token", {"error": error}))

    # -- lifecycle ------------------------------------------------------------------------------------
    def healthy(self) -> tuple[bool, str]:
        if not self.subscribed:
            return False, "mqtt: not connected, or the subscription not acknowledged yet"
        if self.writer.auth_failed:
            return False, "influxdb: token refused (401/403)"
        if not self.writer.last_write_ok:
            return False, "influxdb: last write failed: " + self.writer.last_error[:200]
        return True, "ok"

    def start(self) -> None:
        self.health.start()
        self.alerter.start()
        self.writer.start()
        m = self.cfg.mqtt
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s)
        # loop_forever in a thread of our own rather than loop_start(): in loop_start's mode paho wakes its
        # select() through a socketpair for every outgoing packet, i.e. two extra syscalls and a wake-up per
        # QoS 1 PUBACK; this measured ~2x slower than the same loop run directly (bench/results.md).
        self._mqtt_thread = threading.Thread(target=self._mqtt_loop, name="mqtt", daemon=True)
        self._mqtt_thread.start()
        log.info(
            "worker started",
            extra={"metrics_port": self.health.port, "topics": subscriptions(m), "bucket": self.cfg.influxdb.bucket},
        )
        if not self.cfg.influxdb.enabled:
            log.warning(
                "no InfluxDB (influxdb.enabled is false): status points are not stored; status changes are only logged"
            )

    def _mqtt_loop(self) -> None:
        # retry_first_connection: keep trying while the broker is not up yet; later drops reconnect too.
        while not self._stop.is_set():
            try:
                self.client.loop_forever(retry_first_connection=True)
            except Exception:
                log.exception("mqtt loop failed, restarting it")
                self._stop.wait(self.cfg.mqtt.reconnect_min_delay_s)
            else:
                return

    def reload_rules(self) -> tuple[bool, dict[str, str]]:
        """Read the rules file again and evaluate with its rules from now on; devices keep their state. A file that
        does not load is logged and counted, and the running rules stay. Returns whether the file's rules now run,
        and the result: what happened and the sha256 of the rules file that runs."""
        with self._reload_lock:  # SIGHUP (the reloader thread) and POST /-/reload (an HTTP thread)
            path = self.cfg.rules_file
            if not path:
                self.metrics.rules_reloads.labels("no_rules_file").inc()
                log.warning("reload asked, but the rules are in the config (no rules_file): restart to change them")
                return False, {"result": "no_rules_file", "sha256": ""}
            try:
                rules, sha256 = rules_digest(path)
            except ConfigError as exc:
                self.metrics.rules_reloads.labels("invalid").inc()
                log.error(
                    "rules not reloaded: the running rules stay",
                    extra={"error": str(exc), "file": path, "running": self.rules_sha256},
                )
                return False, {"result": "invalid", "sha256": self.rules_sha256, "error": str(exc)}
            self.rules.replace_rules(rules)
            self.rules_sha256 = sha256
            self.metrics.rules_loaded(sha256)
            self.metrics.rules_reloads.labels("applied").inc()
            log.info("rules reloaded", extra={"rules": len(rules), "sha256": sha256})
            return True, {"result": "applied", "sha256": sha256}

    def request_stop(self) -> None:
        self._stop.set()

    def run_until_stopped(self) -> None:
        interval = self.cfg.heartbeat_interval_s
        next_beat = time.monotonic() + interval if interval > 0 else float("inf")
        while not self._stop.wait(timeout=min(1.0, max(0.01, next_beat - time.monotonic()))):
            if time.monotonic() >= next_beat:
                self.heartbeat()
                next_beat += interval

    def shutdown(self) -> int:
        self._stop.set()
        self.client.disconnect()
        if self._mqtt_thread is not None:
            self._mqtt_thread.join(1.0)
        lost = self.writer.stop(SHUTDOWN_FLUSH_S)
        self.alerter.stop(0.5)
        self.health.stop()
        log.info("worker stopped", extra={"points_lost": lost, "points_written": self.writer.written})
        return lost


_SERIES_TAGS = ("cliente", "dispositivo", "localizacao", "planta", "tipo")  # sorted, as influx.line() orders tags
_Series = tuple[str, str, str, str, str]  # the values of _SERIES_TAGS


def _where(d: DeviceState) -> str:
    """Where a device is, for an alert's text: its localizacao, and its plant when a gateway forwards it."""
    return f"{d.localizacao}, planta {d.planta}" if d.planta else d.localizacao


def subscriptions(m: MqttConfig) -> list[str]:
    """The topic filters the worker reads: its devices' and, with gateways, the same under every plant."""
    return [m.topic, f"{m.plants_topic}/+/{m.topic}"] if m.plants_topic else [m.topic]


def _series_prefix(measurement: str, series: _Series, cache: dict[_Series, str]) -> str:
    """``measurement,cliente=..,dispositivo=..,localizacao=..,planta=..,tipo=.. `` as influx.line() writes it (tags
    in sorted order, empty ones left out: a direct device has no planta), remembered in ``cache`` (bounded)."""
    tags = "".join(
        f",{name}={escape_key(value)}" for name, value in zip(_SERIES_TAGS, series, strict=True) if value != ""
    )
    if len(cache) >= 100_000:
        cache.clear()
    cache[series] = prefix = f"{measurement}{tags} "
    return prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mov-analytics", description=__doc__)
    parser.add_argument(
        "--config",
        default=os.environ.get("MOV_ANALYTICS_CONFIG") or None,
        help="YAML config file (default: $MOV_ANALYTICS_CONFIG); MOV_ANALYTICS_* env overrides it",
    )
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    logs.setup(cfg.log_level)
    if args.check_config:
        print("config ok", file=sys.stderr)
        return 0
    # SIGHUP reloads the rules. It is blocked here, before any thread starts, so every thread inherits the mask and
    # only the reloader takes it, through sigwait: the reload runs on a thread of its own, not in a signal handler.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        worker = Worker(cfg)
    except OSError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        worker.request_stop()

    def reloader() -> None:
        while True:
            signal.sigwait({signal.SIGHUP})
            worker.reload_rules()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=reloader, name="reloader", daemon=True).start()
    worker.start()
    worker.run_until_stopped()
    worker.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
