"""Configuration: a YAML file overlaid with MOV_ANALYTICS_* environment variables, validated at start.

Environment mapping: ``MOV_ANALYTICS_<SECTION>__<KEY>`` sets ``<section>.<key>`` (lower-cased, ``__``
separates levels, single ``_`` stays part of the key). Examples: ``MOV_ANALYTICS_MQTT__PASSWORD`` ->
``mqtt.password``, ``MOV_ANALYTICS_MQTT__TLS__CA_FILE`` -> ``mqtt.tls.ca_file``. Values are read as YAML
scalars, so ``MOV_ANALYTICS_RULES='[{field: temperatura_c, alerta: 30, critico: 35}]'`` works too.
Secrets (``mqtt.password``, ``influxdb.token``, ``alerts.email.password``) can instead be read from a file
named by the matching ``*_file`` key; giving both is an error.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "MOV_ANALYTICS_"


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message names the key and what was expected."""

    def __init__(self, key: str, expected: str, got: object = None) -> None:
        self.key = key
        detail = f"config error: {key}: expected {expected}"
        if got is not None:
            detail += f", got {got!r}"
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    enabled: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "localhost"
    port: int = 1883
    client_id: str = "mov-analytics"
    topic: str = "mov/dados/#"
    # Where edge gateways forward their plants' readings: <plants_topic>/<planta>/<topic>; "" for none.
    plants_topic: str = ""
    qos: int = 1
    username: str = ""
    password: str = ""
    keepalive_s: int = 30
    reconnect_min_delay_s: int = 1
    reconnect_max_delay_s: int = 30
    tls: TlsConfig = field(default_factory=TlsConfig)


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    # False where no InfluxDB is deployed (a local platform without a registry): status points are discarded,
    # status changes are logged, and the worker's health does not wait for a write.
    enabled: bool = True
    url: str = "http://localhost:8086"
    org: str = "mov_industria"
    bucket: str = "mov_dados"
    token: str = ""
    timeout_ms: int = 10_000
    gzip: bool = False
    ca_file: str = ""
    batch_size: int = 1000
    flush_interval_ms: int = 1000
    buffer_max_points: int = 100_000
    retry_initial_ms: int = 500
    retry_max_ms: int = 30_000
    auth_retry_interval_s: float = 60.0
    status_measurement: str = "mov_status"
    readings_measurement: str = "mov_leituras"
    write_readings: bool = False


@dataclass(frozen=True, slots=True)
class ValidationConfig:
    max_payload_bytes: int = 16_384
    max_depth: int = 4
    max_future_s: float = 300.0
    max_past_s: float = 7 * 86_400.0
    max_abs_value: float = 1e12
    extra_keys: str = "ignore"
    field_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RuleConfig:
    field: str
    alerta: float
    critico: float
    hysteresis: float = 0.5
    direction: str = "above"
    localizacao: str | None = None
    tipo: str | None = None


DEFAULT_RULES: tuple[RuleConfig, ...] = (RuleConfig(field="temperatura_c", alerta=30.0, critico=35.0),)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str = ""
    timeout_s: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmailConfig:
    host: str = ""
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = ""
    sender: str = ""
    recipients: tuple[str, ...] = ()
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    dedup_s: float = 900.0
    max_attempts: int = 5
    retry_initial_s: float = 1.0
    # The backoff's cap: while a channel fails, at most one attempt per this many seconds.
    retry_max_s: float = 60.0
    queue_size: int = 1000
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    email: EmailConfig = field(default_factory=EmailConfig)


DEFAULT_REPORT_FIELDS = ("temperatura_c", "umidade", "pressao")


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """The weekly report (``mov-report``): where the readings are, what counts as a gap, where the platform's own
    health is.

    The status points are read from ``influxdb.bucket``/``influxdb.status_measurement`` (where the worker writes
    them) and the readings from ``readings_bucket``/``influxdb.readings_measurement`` (where Telegraf writes them).
    """

    readings_bucket: str = "mov_dados"
    fields: tuple[str, ...] = DEFAULT_REPORT_FIELDS
    publish_interval_s: float = 5.0
    gap_factor: float = 3.0
    # Empty: the alert e-mail recipients (alerts.email.recipients).
    recipients: tuple[str, ...] = ()
    # Telegraf's infrastructure bucket (containers, host CPU, memory, disk); empty: those metrics are off.
    infra_bucket: str = ""
    # mov-backup's history of runs and drills (history.jsonl beside its status file); empty: not reported.
    backup_history_file: str = ""


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str = "0.0.0.0"  # noqa: S104 - the metrics endpoint is scraped from outside the container
    port: int = 9108


@dataclass(frozen=True, slots=True)
class Config:
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    influxdb: InfluxConfig = field(default_factory=InfluxConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    rules: tuple[RuleConfig, ...] = DEFAULT_RULES
    # Where the rules live when not in this file: the worker reads them again on SIGHUP (app.py), so a threshold
    # changes without a restart. "" keeps them under ``rules`` here, read at start only.
    rules_file: str = ""
    rules_sha256: str = ""  # of the rules file's bytes as read at start; "" without a rules file
    heartbeat_interval_s: float = 60.0
    # Clients whose devices come and go (movctl bench's): their readings take the full path, status points
    # included, but the heartbeat leaves them out, so nothing of theirs is written once they stop publishing.
    transient_clients: tuple[str, ...] = ()
    # How far behind a device's newest reading a reading is still evaluated (rules.py: late readings).
    late_window_s: float = 300.0
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    log_level: str = "INFO"
    report: ReportConfig = field(default_factory=ReportConfig)


class _Section:
    """Typed reads from one mapping; every read key is remembered so leftovers can be reported as typos."""

    def __init__(self, raw: object, path: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(path or "<root>", "a mapping", raw)
        self._raw: dict[str, Any] = raw
        self._path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def get(self, name: str) -> Any:
        self._seen.add(name)
        return self._raw.get(name)

    def has(self, name: str) -> bool:
        return self._raw.get(name) not in (None, "")

    def section(self, name: str) -> _Section:
        return _Section(self.get(name), self.key(name))

    def str_(self, name: str, default: str) -> str:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(self.key(name), "a string", value)
        return str(value)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str_(name, default)
        if value not in choices:
            raise ConfigError(self.key(name), "one of " + ", ".join(choices), value)
        return value

    def int_(self, name: str, default: int, low: int, high: int | None = None) -> int:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        wanted = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), wanted, value)
        if value < low or (high is not None and value > high):
            raise ConfigError(self.key(name), wanted, value)
        return value

    def float_(self, name: str, default: float, low: float | None = None) -> float:
        value = self.get(name)
        if value is None:
            return default
        return _number(value, self.key(name), low)

    def bool_(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), "true or false", value)
        return value

    def secret(self, name: str) -> str:
        """A secret given inline (usually from env) or as ``<name>_file``; never both."""
        file_key = f"{name}_file"
        inline = self.str_(name, "")
        path = self.str_(file_key, "")
        if inline and path:
            raise ConfigError(self.key(name), f"either {name} or {file_key}, not both")
        if not path:
            return inline
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(self.key(file_key), "a readable file", f"{path} ({exc.strerror})") from None

    def existing_file(self, name: str) -> str:
        value = self.str_(name, "")
        if value and not Path(value).is_file():
            raise ConfigError(self.key(name), "an existing file", value)
        return value

    def finish(self) -> None:
        unknown = sorted(set(self._raw) - self._seen)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "a known key (check the spelling)", unknown[0])


def _number(value: object, key: str, low: float | None = None) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(key, "a number", value) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, "a finite number", value)
    if low is not None and value < low:
        raise ConfigError(key, f"a number >= {low}", value)
    return float(value)


def _url(section: _Section, name: str, default: str) -> str:
    value = section.str_(name, default)
    if not value.startswith(("http://", "https://")):
        raise ConfigError(section.key(name), "an http:// or https:// URL", value)
    return value


def _read_mqtt(s: _Section) -> MqttConfig:
    tls_s = s.section("tls")
    tls = TlsConfig(
        enabled=tls_s.bool_("enabled", False),
        ca_file=tls_s.existing_file("ca_file"),
        cert_file=tls_s.existing_file("cert_file"),
        key_file=tls_s.existing_file("key_file"),
        insecure=tls_s.bool_("insecure", False),
    )
    tls_s.finish()
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError(tls_s.key("key_file"), "cert_file and key_file given together")
    topic = s.str_("topic", "mov/dados/#")
    if not topic.startswith("mov/dados/"):
        raise ConfigError(s.key("topic"), "a topic filter under mov/dados/", topic)
    plants_topic = s.str_("plants_topic", "")
    if plants_topic and not _disjoint_topics(plants_topic, "mov/dados"):
        wanted = "a topic name of its own, neither under mov/dados nor above it"
        raise ConfigError(s.key("plants_topic"), wanted, plants_topic)
    low_delay = s.int_("reconnect_min_delay_s", 1, 1, 3600)
    cfg = MqttConfig(
        host=s.str_("host", "localhost"),
        port=s.int_("port", 1883, 1, 65535),
        client_id=s.str_("client_id", "mov-analytics"),
        topic=topic,
        plants_topic=plants_topic,
        qos=s.int_("qos", 1, 0, 2),
        username=s.str_("username", ""),
        password=s.secret("password"),
        keepalive_s=s.int_("keepalive_s", 30, 5, 3600),
        reconnect_min_delay_s=low_delay,
        reconnect_max_delay_s=s.int_("reconnect_max_delay_s", 30, low_delay, 3600),
        tls=tls,
    )
    if not cfg.client_id:
        raise ConfigError(s.key("client_id"), "a non-empty fixed client id (the session is kept under it)")
    if cfg.qos == 0:
        raise ConfigError(s.key("qos"), "1 or 2 (QoS 0 readings are not kept while the worker is down)", 0)
    s.finish()
    return cfg


def _disjoint_topics(name: str, other: str) -> bool:
    """True when ``name`` is a topic name (levels non-empty, no wildcard) and neither it nor ``other`` lies under
    the other: a direct device's topic must never read as a plant's, nor the reverse."""
    levels = name.split("/")
    if any(not level or "+" in level or "#" in level for level in levels):
        return False
    others = other.split("/")
    shorter = min(len(levels), len(others))
    return levels[:shorter] != others[:shorter]


def _read_influx(s: _Section) -> InfluxConfig:
    cfg = InfluxConfig(
        enabled=s.bool_("enabled", True),
        url=_url(s, "url", "http://localhost:8086"),
        org=s.str_("org", "mov_industria"),
        bucket=s.str_("bucket", "mov_dados"),
        token=s.secret("token"),
        timeout_ms=s.int_("timeout_ms", 10_000, 100, 600_000),
        gzip=s.bool_("gzip", False),
        ca_file=s.existing_file("ca_file"),
        batch_size=s.int_("batch_size", 1000, 1, 100_000),
        flush_interval_ms=s.int_("flush_interval_ms", 1000, 1, 600_000),
        buffer_max_points=s.int_("buffer_max_points", 100_000, 1),
        retry_initial_ms=s.int_("retry_initial_ms", 500, 1),
        retry_max_ms=s.int_("retry_max_ms", 30_000, 1),
        auth_retry_interval_s=s.float_("auth_retry_interval_s", 60.0, 0.01),
        status_measurement=s.str_("status_measurement", "mov_status"),
        readings_measurement=s.str_("readings_measurement", "mov_leituras"),
        write_readings=s.bool_("write_readings", False),
    )
    if cfg.buffer_max_points <= cfg.batch_size:
        raise ConfigError(s.key("buffer_max_points"), f"more than batch_size ({cfg.batch_size})", cfg.buffer_max_points)
    for name in ("org", "bucket", "status_measurement", "readings_measurement"):
        if not getattr(cfg, name):
            raise ConfigError(s.key(name), "a non-empty string")
    s.finish()
    return cfg


def _read_validation(s: _Section) -> ValidationConfig:
    ranges_raw = s.get("field_ranges") or {}
    if not isinstance(ranges_raw, dict):
        raise ConfigError(s.key("field_ranges"), "a mapping of field name to [min, max]", ranges_raw)
    ranges: dict[str, tuple[float, float]] = {}
    for name, bounds in ranges_raw.items():
        key = f"{s.key('field_ranges')}.{name}"
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise ConfigError(key, "[min, max]", bounds)
        low, high = _number(bounds[0], key), _number(bounds[1], key)
        if low >= high:
            raise ConfigError(key, "min < max", bounds)
        ranges[str(name)] = (low, high)
    cfg = ValidationConfig(
        max_payload_bytes=s.int_("max_payload_bytes", 16_384, 64),
        max_depth=s.int_("max_depth", 4, 2, 64),
        max_future_s=s.float_("max_future_s", 300.0, 0.0),
        max_past_s=s.float_("max_past_s", 7 * 86_400.0, 0.0),
        max_abs_value=s.float_("max_abs_value", 1e12, 0.0),
        extra_keys=s.choice("extra_keys", "ignore", ("ignore", "reject")),
        field_ranges=ranges,
    )
    s.finish()
    return cfg


def _read_rules(raw: object) -> tuple[RuleConfig, ...]:
    if raw is None:
        return DEFAULT_RULES
    if not isinstance(raw, list):
        raise ConfigError("rules", "a list of rules", raw)
    rules = []
    for index, item in enumerate(raw):
        s = _Section(item, f"rules[{index}]")
        name = s.str_("field", "")
        if not name:
            raise ConfigError(s.key("field"), "the name of a reading field, e.g. temperatura_c")
        for required in ("alerta", "critico"):
            if s.get(required) is None:
                raise ConfigError(s.key(required), "a threshold number")
        rule = RuleConfig(
            field=name,
            alerta=s.float_("alerta", 0.0),
            critico=s.float_("critico", 0.0),
            hysteresis=s.float_("hysteresis", 0.5, 0.0),
            direction=s.choice("direction", "above", ("above", "below")),
            localizacao=s.str_("localizacao", "") or None,
            tipo=s.str_("tipo", "") or None,
        )
        ordered = rule.alerta < rule.critico if rule.direction == "above" else rule.alerta > rule.critico
        if not ordered:
            relation = "<" if rule.direction == "above" else ">"
            raise ConfigError(
                s.key("critico"), f"alerta {relation} critico for direction {rule.direction}", rule.critico
            )
        s.finish()
        rules.append(rule)
    return tuple(rules)


def rules_digest(path: str) -> tuple[tuple[RuleConfig, ...], str]:
    """The rules of a rules file (a mapping holding ``rules``) and the sha256 of the bytes they were read from."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("rules_file", "a readable YAML file", f"{path} ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(data) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("rules_file", "valid YAML", f"{path}: {str(exc).splitlines()[0]}") from None
    root = _Section(raw, "")
    if not root.has("rules"):
        raise ConfigError("rules", f"a list of rules in {path}")
    rules = _read_rules(root.get("rules"))
    root.finish()
    return rules, hashlib.sha256(data).hexdigest()


def _name_list(s: _Section, name: str) -> tuple[str, ...]:
    value = s.get(name) or []
    if isinstance(value, str):
        value = [r.strip() for r in value.split(",") if r.strip()]
    if not isinstance(value, list) or not all(isinstance(r, str) and r and "/" not in r for r in value):
        raise ConfigError(s.key(name), "a list of names without '/'", value)
    return tuple(value)


def _email_list(s: _Section, name: str) -> tuple[str, ...]:
    value = s.get(name) or []
    if isinstance(value, str):
        value = [r.strip() for r in value.split(",") if r.strip()]
    if not isinstance(value, list) or not all(isinstance(r, str) and "@" in r for r in value):
        raise ConfigError(s.key(name), "a list of e-mail addresses", value)
    return tuple(value)


def _read_report(s: _Section) -> ReportConfig:
    fields = s.get("fields")
    if fields is None:
        fields = list(DEFAULT_REPORT_FIELDS)
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",") if f.strip()]
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise ConfigError(s.key("fields"), "a non-empty list of field names", fields)
    cfg = ReportConfig(
        readings_bucket=s.str_("readings_bucket", "mov_dados"),
        fields=tuple(fields),
        publish_interval_s=s.float_("publish_interval_s", 5.0, 0.001),
        gap_factor=s.float_("gap_factor", 3.0, 1.0),
        recipients=_email_list(s, "recipients"),
        infra_bucket=s.str_("infra_bucket", ""),
        backup_history_file=s.str_("backup_history_file", ""),
    )
    if not cfg.readings_bucket:
        raise ConfigError(s.key("readings_bucket"), "a non-empty string")
    s.finish()
    return cfg


def _read_alerts(s: _Section) -> AlertsConfig:
    w = s.section("webhook")
    headers = w.get("headers") or {}
    if not isinstance(headers, dict):
        raise ConfigError(w.key("headers"), "a mapping of header name to value", headers)
    url = w.str_("url", "")
    if url:
        url = _url(w, "url", url)
    webhook = WebhookConfig(
        url=url, timeout_s=w.float_("timeout_s", 5.0, 0.1), headers={str(k): str(v) for k, v in headers.items()}
    )
    w.finish()
    e = s.section("email")
    recipients = _email_list(e, "recipients")
    email = EmailConfig(
        host=e.str_("host", ""),
        port=e.int_("port", 587, 1, 65535),
        starttls=e.bool_("starttls", True),
        username=e.str_("username", ""),
        password=e.secret("password"),
        sender=e.str_("sender", ""),
        recipients=recipients,
        timeout_s=e.float_("timeout_s", 10.0, 0.1),
    )
    e.finish()
    if email.host and (not email.sender or not email.recipients):
        raise ConfigError(
            e.key("sender" if not email.sender else "recipients"), "a value when alerts.email.host is set"
        )
    if email.username and not email.starttls:
        # The login would cross the network in clear; Grafana's mailer refuses the same (Go's net/smtp PlainAuth).
        raise ConfigError(e.key("starttls"), "true when alerts.email.username is set", email.starttls)
    retry_initial = s.float_("retry_initial_s", 1.0, 0.0)
    cfg = AlertsConfig(
        dedup_s=s.float_("dedup_s", 900.0, 0.0),
        max_attempts=s.int_("max_attempts", 5, 1, 100),
        retry_initial_s=retry_initial,
        retry_max_s=s.float_("retry_max_s", max(60.0, retry_initial), retry_initial),
        queue_size=s.int_("queue_size", 1000, 1),
        webhook=webhook,
        email=email,
    )
    s.finish()
    return cfg


def from_mapping(raw: object) -> Config:
    root = _Section(raw, "")
    mqtt = _read_mqtt(root.section("mqtt"))
    influx = _read_influx(root.section("influxdb"))
    validation = _read_validation(root.section("validation"))
    rules_file = root.str_("rules_file", "")
    if rules_file and root.has("rules"):
        raise ConfigError("rules", "absent when rules_file is set (the rules are read from that file)")
    rules, rules_sha256 = rules_digest(rules_file) if rules_file else (_read_rules(root.get("rules")), "")
    heartbeat = root.float_("heartbeat_interval_s", 60.0, 0.0)
    transient = _name_list(root, "transient_clients")
    late_window = root.float_("late_window_s", 300.0, 0.0)
    alerts = _read_alerts(root.section("alerts"))
    http_s = root.section("http")
    http = HttpConfig(
        host=http_s.str_("host", "0.0.0.0"),  # noqa: S104 - scraped from outside the container
        port=http_s.int_("port", 9108, 0, 65535),
    )
    http_s.finish()
    level = root.choice("log_level", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
    report = _read_report(root.section("report"))
    root.finish()
    return Config(
        mqtt=mqtt,
        influxdb=influx,
        validation=validation,
        rules=rules,
        rules_file=rules_file,
        rules_sha256=rules_sha256,
        heartbeat_interval_s=heartbeat,
        transient_clients=transient,
        late_window_s=late_window,
        alerts=alerts,
        http=http,
        log_level=level,
        report=report,
    )


def _overlay_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        target = raw
        for part in parts[:-1]:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts), f"{part} to be a mapping when set from {name}")
            target = child
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed = value
        # Secrets and ids stay verbatim: a password "0123" must not turn into the number 123.
        target[parts[-1]] = parsed if isinstance(parsed, (list, dict, bool, int, float)) else value
        if parts[-1] in ("password", "token", "username", "client_id", "url", "host"):
            target[parts[-1]] = value


def load(path: str | None, environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    raw: object = {}
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("--config", "a readable YAML file", f"{path} ({exc.strerror})") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError("--config", "valid YAML", str(exc).splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise ConfigError("<root>", "a YAML mapping at the top of the file", type(raw).__name__)
    _overlay_env(raw, environ)
    return from_mapping(raw)
