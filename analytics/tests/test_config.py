"""Config: defaults, env overlay, secrets from files, and errors that name the key."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from mov_analytics.config import ConfigError, from_mapping, load


def test_defaults() -> None:
    cfg = from_mapping({})
    assert cfg.influxdb.org == "mov_industria" and cfg.influxdb.bucket == "mov_dados"
    assert cfg.mqtt.topic == "mov/dados/#" and cfg.mqtt.qos == 1
    assert cfg.rules[0].alerta == 30.0 and cfg.rules[0].critico == 35.0
    assert cfg.http.port == 9108


def test_env_overrides_yaml_and_keeps_secrets_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("mqtt:\n  host: broker\n  port: 1883\ninfluxdb:\n  batch_size: 10\n")
    env = {
        "MOV_ANALYTICS_MQTT__PORT": "8883",
        "MOV_ANALYTICS_MQTT__PASSWORD": "0123",
        "MOV_ANALYTICS_MQTT__TLS__ENABLED": "true",
        "MOV_ANALYTICS_INFLUXDB__WRITE_READINGS": "yes",
        "MOV_ANALYTICS_RULES": "[{field: umidade, alerta: 70, critico: 90, localizacao: estufa}]",
        "OTHER": "ignored",
    }
    cfg = load(str(path), env)
    assert cfg.mqtt.host == "broker" and cfg.mqtt.port == 8883
    assert cfg.mqtt.password == "0123"
    assert cfg.mqtt.tls.enabled and cfg.influxdb.write_readings and cfg.influxdb.batch_size == 10
    assert cfg.rules[0].field == "umidade" and cfg.rules[0].localizacao == "estufa"


def test_secret_from_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t\n")
    cfg = load(None, {"MOV_ANALYTICS_INFLUXDB__TOKEN_FILE": str(token)})
    assert cfg.influxdb.token == "s3cr3t"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"mqtt": {"port": "abc"}}, "mqtt.port"),
        ({"mqtt": {"port": 70000}}, "mqtt.port"),
        ({"mqtt": {"qos": 0}}, "mqtt.qos"),
        ({"mqtt": {"tls": {"ca_file": "/nonexistent/ca.pem"}}}, "mqtt.tls.ca_file"),
        ({"mqtt": {"prot": 1883}}, "mqtt.prot"),
        ({"mqtt": {"plants_topic": "mov/dados/plantas"}}, "mqtt.plants_topic"),  # a direct device's topic
        ({"mqtt": {"plants_topic": "mov"}}, "mqtt.plants_topic"),  # every direct topic would read as a plant's
        ({"mqtt": {"plants_topic": "mov/+"}}, "mqtt.plants_topic"),
        ({"mqtt": {"plants_topic": "mov/plantas/"}}, "mqtt.plants_topic"),
        ({"influxdb": {"url": "localhost:8086"}}, "influxdb.url"),
        ({"influxdb": {"batch_size": 0}}, "influxdb.batch_size"),
        ({"influxdb": {"batch_size": 100, "buffer_max_points": 50}}, "influxdb.buffer_max_points"),
        ({"influxdb": {"token": "a", "token_file": "/x"}}, "influxdb.token"),
        ({"influxdb": {"token_file": "/nonexistent/token"}}, "influxdb.token_file"),
        ({"rules": [{"field": "temperatura_c", "alerta": 35, "critico": 30}]}, "rules[0].critico"),
        ({"rules": [{"field": "temperatura_c", "alerta": 30}]}, "rules[0].critico"),
        ({"rules": [{"alerta": 30, "critico": 35}]}, "rules[0].field"),
        ({"rules": [{"field": "t", "alerta": 30, "critico": 35, "direction": "up"}]}, "rules[0].direction"),
        ({"validation": {"extra_keys": "maybe"}}, "validation.extra_keys"),
        ({"alerts": {"email": {"host": "smtp.example", "sender": "a@b"}}}, "alerts.email.recipients"),
        ({"alerts": {"email": {"starttls": False, "username": "mov"}}}, "alerts.email.starttls"),
        ({"alerts": {"retry_initial_s": 5, "retry_max_s": 2}}, "alerts.retry_max_s"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"heartbeat_interval_s": "often"}, "heartbeat_interval_s"),
    ],
)
def test_errors_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"config error: {key}: expected ")


def test_cli_exits_2_with_the_key_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("influxdb:\n  batch_size: -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "mov_analytics", "--config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "influxdb.batch_size" in result.stderr and "expected an integer" in result.stderr


def test_late_window_default_and_bounds() -> None:
    assert from_mapping({}).late_window_s == 300.0
    assert from_mapping({"late_window_s": 0}).late_window_s == 0.0
    with pytest.raises(ConfigError) as err:
        from_mapping({"late_window_s": -1})
    assert err.value.key == "late_window_s"


def test_the_alert_backoff_is_capped_at_retry_max_s() -> None:
    assert from_mapping({}).alerts.retry_max_s == 60.0
    assert from_mapping({"alerts": {"retry_initial_s": 90}}).alerts.retry_max_s == 90.0
    assert from_mapping({"alerts": {"retry_max_s": 5}}).alerts.retry_max_s == 5.0


def test_rules_come_from_the_rules_file_with_the_digest_of_its_bytes(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_bytes(b"rules:\n- {field: umidade, alerta: 80, critico: 95}\n")
    cfg = from_mapping({"rules_file": str(rules_file)})
    assert [(r.field, r.alerta, r.critico) for r in cfg.rules] == [("umidade", 80.0, 95.0)]
    assert cfg.rules_sha256 == hashlib.sha256(rules_file.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("rules: []\nthresholds: 1\n", "thresholds"),  # a typo beside the rules
        ("{}\n", "rules"),  # no rules at all
        ("rules: [{field: t, alerta: 2, critico: 1}]\n", "rules[0].critico"),
        ("rules: [\n", "rules_file"),  # not YAML
    ],
)
def test_a_bad_rules_file_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        from_mapping({"rules_file": str(rules_file)})
    assert err.value.key == key


def test_rules_in_the_config_and_a_rules_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("rules: []\n")
    with pytest.raises(ConfigError) as err:
        from_mapping({"rules_file": str(tmp_path / "rules.yaml"), "rules": [{"field": "t", "alerta": 1, "critico": 2}]})
    assert err.value.key == "rules"
