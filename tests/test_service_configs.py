"""The rendered service configs parse and hold the security-relevant values the config tree asks for.

InfluxDB 2, Grafana and Telegraf binaries are not available here, so their files are checked by parsing them
(tomllib, configparser, YAML, JSON); their real behaviour is tested by the GitHub Actions job with the images.
"""

from __future__ import annotations

import configparser
import json
import math
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import filter_plugin
from mov_render import ENVS, REPO, rendered, workspace

PAYLOAD = {
    "timestamp": "2024-01-15T10:30:00Z",
    "tags": {
        "dispositivo": "sensor_001",
        "localizacao": "sala_servidores",
        "tipo": "temperatura",
        "cliente": "industria_abc",
    },
    "fields": {"temperatura_c": 23.5, "umidade": 45.2, "pressao": 1013.25},
}


def tree(env: str) -> dict[str, Any]:
    """The env's plain-data tree: group_vars/all, then the env's overrides (templated values are not needed)."""
    merged: dict[str, Any] = {}
    for path in sorted((REPO / "group_vars" / "all").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    for path in sorted((REPO / "inventories" / env / "group_vars" / "mov").glob("*.yml")):
        if path.name not in ("secrets.yml", "vault.yml"):
            merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def _file(env: str, path: str) -> str:
    host_dir, _ = rendered(env)
    return (host_dir / path).read_text()


def _env_file(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


# --- Mosquitto ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_mosquitto_listeners_auth_and_limits(env: str) -> None:
    conf = _file(env, "opt/mov/mosquitto/config/mosquitto.conf")
    lines = [line.strip() for line in conf.splitlines() if line.strip() and not line.startswith("#")]
    assert "allow_anonymous false" in lines
    assert "per_listener_settings false" in lines
    assert "persistence true" in lines
    assert f"message_size_limit {tree(env)['mov_mqtt_message_size_limit']}" in lines
    # Each consumer's queue holds every device's readings through the tolerated outage, times the headroom.
    t = tree(env)
    outage = len(t["mov_devices"]) / t["mov_device_publish_interval_s"] * t["mov_telegraf_outage_tolerance_s"]
    queued = max(t["mov_mqtt_queue_min_messages"], math.ceil(outage * t["mov_mqtt_queue_headroom"]))
    assert f"max_queued_messages {queued}" in lines
    assert f"max_queued_bytes {queued * t['mov_mqtt_queued_reading_bytes']}" in lines
    assert "password_file /opt/mov/mosquitto/config/passwd" in lines
    listeners = [i for i, line in enumerate(lines) if line.startswith("listener ")]
    ends = [*listeners[1:], len(lines)]
    blocks = {lines[i].split()[1]: lines[i + 1 : j] for i, j in zip(listeners, ends, strict=True)}
    assert set(blocks) == {"1883", "8883", "9001"}
    assert "certfile /opt/mov/tls/fullchain.pem" in blocks["8883"]
    assert "keyfile /opt/mov/tls/privkey.pem" in blocks["8883"]
    assert "tls_version tlsv1.2" in blocks["8883"]
    # The public listener's connection limit comes from the tree; the internal ones have none.
    assert f"max_connections {t['mov_mqtt_max_connections']}" in blocks["8883"]
    assert not any(line.startswith("max_connections") for line in blocks["1883"] + blocks["9001"])
    assert "protocol websockets" in blocks["9001"]
    assert not any(line.startswith("certfile") for line in blocks["1883"])


@pytest.mark.parametrize("env", ENVS)
def test_mosquitto_accounts_and_acl_follow_the_tree(env: str) -> None:
    devices = tree(env)["mov_devices"]
    passwd = _file(env, "opt/mov/mosquitto/config/passwd")
    users = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in passwd.splitlines()}
    expected = {"telegraf", "analytics", "verify"} | {f"{d['client']}/{d['name']}" for d in devices}
    assert set(users) == expected
    assert all(re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}", h) for h in users.values())
    verify = filter_plugin("mosquitto", "mosquitto_passwd").verify
    store = workspace().secret_store(env)["mqtt"]
    assert isinstance(store, dict)
    assert all(verify(store[user], encoded) for user, encoded in users.items())
    acl = _file(env, "opt/mov/mosquitto/config/acl")
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules[0] == "pattern write mov/dados/%u/#"
    assert "topic read #" not in rules and "topic readwrite #" not in rules
    assert rules[rules.index("user telegraf") + 1 :][:2] == [
        "topic deny mov/dados/telegraf/#",
        "topic read mov/dados/#",
    ]
    analytics = rules[rules.index("user analytics") :]
    assert "topic write mov/status/#" in analytics
    # The worker reads what the gateways forward too (docs/plants.md), under the tree's prefix, and reads it in the
    # prefix its own config names (analytics/tests: the worker subscribes there and tags the plant).
    plants = tree(env)["mov_mqtt_topic_plants"]
    assert f"topic read {plants}/+/mov/dados/#" in analytics[: analytics.index("topic write mov/status/#")]
    worker = yaml.safe_load(_file(env, "opt/mov/analytics/config.yaml"))
    assert worker["mqtt"]["plants_topic"] == plants


# --- Telegraf -----------------------------------------------------------------------------------------------


def expected_buffer(env: str) -> tuple[int, float]:
    """The buffer the tree asks for, and the metrics per second it must hold."""
    t = tree(env)
    rate = len(t["mov_devices"]) / t["mov_device_publish_interval_s"] + 20 / t["mov_telegraf_interval_s"]
    return max(10_000, math.ceil(t["mov_telegraf_outage_tolerance_s"] * rate * 2 / 1000) * 1000), rate


@pytest.mark.parametrize("env", ENVS)
def test_telegraf_buffer_holds_ten_minutes_of_influxdb_outage(env: str) -> None:
    config = tomllib.loads(_file(env, "opt/mov/telegraf/telegraf.conf"))
    agent = config["agent"]
    limit, rate = expected_buffer(env)
    assert agent["interval"] == "5s"
    assert agent["metric_buffer_limit"] == limit
    assert agent["metric_buffer_limit"] >= 600 * rate


def test_telegraf_buffer_arithmetic_scales_with_the_devices() -> None:
    """The role's formula, for a large plant: 2000 devices every 5 s is 400 metrics/s (+4 internal)."""
    rate = 2000 / 5 + 20 / 5
    assert max(10_000, math.ceil(900 * rate * 2 / 1000) * 1000) == 728_000 >= 600 * rate


@pytest.mark.parametrize("env", ENVS)
def test_telegraf_consumes_with_qos1_persistent_session_and_reads_its_secrets_from_files(env: str) -> None:
    config = tomllib.loads(_file(env, "opt/mov/telegraf/telegraf.conf"))
    (mqtt,) = [c for c in config["inputs"]["mqtt_consumer"] if c["client_id"] == "mov-telegraf"]
    # Direct devices, and the plants' readings their gateways bridge under mov/plantas/<site>/ (docs/plants.md).
    assert mqtt["topics"] == ["mov/dados/#", "mov/plantas/+/mov/dados/#"]
    assert mqtt["qos"] == 1 and mqtt["persistent_session"] is True and mqtt["client_id"] == "mov-telegraf"
    assert mqtt["username"] == "telegraf" and mqtt["password"] == "@{docker:telegraf_mqtt_password}"
    assert config["secretstores"]["docker"] == [{"id": "docker"}]
    assert mqtt["data_format"] == "json_v2"
    assert config["inputs"]["internal"]
    # The readings' output comes first; the second one takes the infrastructure metrics (tests/test_infra_metrics.py).
    out = config["outputs"]["influxdb_v2"][0]
    assert out["token"] == "@{docker:telegraf_influxdb_token}"
    assert out["organization"] == "mov_industria" and out["bucket"] == "mov_dados"
    # The secret store reads the file's bytes as they are (no newline), under the compose secret's name.
    assert _file(env, "opt/mov/telegraf/secrets/mqtt.password") == workspace().secret_store(env)["mqtt"]["telegraf"]  # type: ignore[index]
    # The local env runs no Telegraf (its compose file has none); staging and prod do.
    telegraf = yaml.safe_load(_file(env, "opt/mov/compose.yaml"))["services"].get("telegraf", {"secrets": []})
    assert "env_file" not in telegraf
    assert not any("PASSWORD" in key or "TOKEN" in key for key in telegraf.get("environment", {}))
    assert set(telegraf["secrets"]) == (
        set() if env == "local" else {"telegraf_mqtt_password", "telegraf_influxdb_token"}
    )


def _gjson(document: Any, path: str) -> Any:
    """GJSON for plain dotted paths (the only form the rendered config uses); None when absent."""
    if not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", path):
        raise NotImplementedError(f"model supports dotted paths only: {path}")
    for key in path.split("."):
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def json_v2_model(section: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """A model of Telegraf's json_v2 parser for the subset rendered here (not Telegraf itself).

    Supports measurement_name, timestamp_path with the RFC 3339 Go layout, and tag/field entries with a dotted
    GJSON path, rename, type (float/int/string) and optional. The real parser runs in the GitHub Actions job.
    """
    assert section["timestamp_format"] == "2006-01-02T15:04:05Z07:00", "model knows the RFC 3339 layout only"
    raw_time = _gjson(payload, section["timestamp_path"])
    time = datetime.fromisoformat(raw_time.replace("Z", "+00:00")).astimezone(UTC)
    tags, fields = {}, {}
    for tag in section.get("tag", []):
        value = _gjson(payload, tag["path"])
        if value is None:
            raise ValueError(f"tag {tag['path']} missing")
        tags[tag.get("rename") or tag["path"]] = str(value)
    for field in section.get("field", []):
        value = _gjson(payload, field["path"])
        if value is None:
            if field.get("optional"):
                continue
            raise ValueError(f"field {field['path']} missing")
        convert = {"float": float, "int": int, "string": str}[field.get("type", "float")]
        fields[field.get("rename") or field["path"]] = convert(value)
    return {"measurement": section["measurement_name"], "time": time, "tags": tags, "fields": fields}


def topic_parsing_model(rules: list[dict[str, str]], topic: str, tags: dict[str, str]) -> None:
    """A model of mqtt_consumer's topic_parsing for the rendered subset (`+` levels, one trailing `#`, tags only):
    a matching topic's named levels overwrite the tags; another topic is left alone. Not Telegraf itself."""
    levels = topic.split("/")
    for rule in rules:
        pattern, names = rule["topic"].split("/"), rule["tags"].split("/")
        assert pattern[-1] == "#" and names[-1] == "#" and "#" not in pattern[:-1], "model: one trailing # only"
        fixed = pattern[:-1]
        if len(levels) < len(fixed) or any(p not in ("+", level) for p, level in zip(fixed, levels, strict=False)):
            continue
        tags.update({name: level for name, level in zip(names[:-1], levels, strict=False) if name != "_"})


def starlark_apply(source: str, tags: dict[str, str]) -> dict[str, str] | None:
    """Runs a processors.starlark script of ours under Python (its Starlark is a subset with the same dict
    semantics); the metric it returns, or None when it drops it. Tests our script, not Telegraf's interpreter."""
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    metric = SimpleNamespace(tags=dict(tags), fields={})
    result = namespace["apply"](metric)
    return None if result is None else dict(result.tags)


def _stored_tags(env: str, topic: str, payload: dict[str, Any]) -> dict[str, str] | None:
    """The tags of the point a reading on `topic` becomes: json_v2, topic_parsing, then the identity processor."""
    config = tomllib.loads(_file(env, "opt/mov/telegraf/telegraf.conf"))
    mqtt = config["inputs"]["mqtt_consumer"][0]
    tags = json_v2_model(mqtt["json_v2"][0], payload)["tags"]
    topic_parsing_model(mqtt["topic_parsing"], topic, tags)
    (identity,) = [p for p in config["processors"]["starlark"] if p["namepass"] == ["mov_leituras"]]
    return starlark_apply(identity["source"], tags)


@pytest.mark.parametrize("env", ENVS)
def test_a_devices_tags_in_stored_points_come_from_its_topic(env: str) -> None:
    own = _stored_tags(env, "mov/dados/industria_abc/sensor_001", PAYLOAD)
    assert own == {
        "dispositivo": "sensor_001",
        "localizacao": "sala_servidores",
        "tipo": "temperatura",
        "cliente": "industria_abc",
    }
    assert _stored_tags(env, "mov/dados/industria_abc/sensor_001/extra/levels", PAYLOAD) == own
    # industria_abc/sensor_001's account may only publish under its own topic (the ACL): a payload naming another
    # device or client there is dropped, as the analytics worker refuses it.
    for key, other in (("dispositivo", "sensor_999"), ("cliente", "industria_xyz")):
        forged = json.loads(json.dumps(PAYLOAD))
        forged["tags"][key] = other
        assert _stored_tags(env, "mov/dados/industria_abc/sensor_001", forged) is None
    # A topic of another shape names no device: dropped.
    assert _stored_tags(env, "mov/dados/industria_abc", PAYLOAD) is None


@pytest.mark.parametrize("env", ENVS)
def test_a_gateways_reading_is_stored_with_its_site(env: str) -> None:
    """docs/plants.md: a gateway forwards mov/dados/... as mov/plantas/<site>/mov/dados/...; the site is a tag."""
    direct = _stored_tags(env, "mov/dados/industria_abc/sensor_001", PAYLOAD)
    assert direct is not None and "planta" not in direct
    forwarded = _stored_tags(env, "mov/plantas/fabrica_sul/mov/dados/industria_abc/sensor_001", PAYLOAD)
    assert forwarded == {**direct, "planta": "fabrica_sul"}
    forged = json.loads(json.dumps(PAYLOAD))
    forged["tags"]["dispositivo"] = "sensor_999"
    assert _stored_tags(env, "mov/plantas/fabrica_sul/mov/dados/industria_abc/sensor_001", forged) is None
    config = tomllib.loads(_file(env, "opt/mov/telegraf/telegraf.conf"))
    assert "mov/plantas/+/mov/dados/#" in config["inputs"]["mqtt_consumer"][0]["topics"]


def test_the_documented_payload_becomes_the_expected_point() -> None:
    config = tomllib.loads(_file("prod", "opt/mov/telegraf/telegraf.conf"))
    (section,) = config["inputs"]["mqtt_consumer"][0]["json_v2"]
    point = json_v2_model(section, PAYLOAD)
    point["tags"] = _stored_tags("prod", "mov/dados/industria_abc/sensor_001", PAYLOAD)
    assert point == {
        "measurement": "mov_leituras",
        "time": datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
        "tags": {
            "dispositivo": "sensor_001",
            "localizacao": "sala_servidores",
            "tipo": "temperatura",
            "cliente": "industria_abc",
        },
        "fields": {"temperatura_c": 23.5, "umidade": 45.2, "pressao": 1013.25},
    }
    assert all(isinstance(v, float) for v in point["fields"].values())
    partial = json.loads(json.dumps(PAYLOAD))
    partial["fields"] = {"temperatura_c": 24}
    assert json_v2_model(section, partial)["fields"] == {"temperatura_c": 24.0}


# --- InfluxDB -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_influxdb_setup_env_file(env: str) -> None:
    values = _env_file(_file(env, "opt/mov/influxdb/secrets/influxdb.env"))
    store = workspace().secret_store(env)
    assert values["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert values["DOCKER_INFLUXDB_INIT_ORG"] == "mov_industria"
    assert values["DOCKER_INFLUXDB_INIT_BUCKET"] == "mov_dados"
    # Retention is applied by the token step (tests/test_data_path.py), so changing it never recreates InfluxDB.
    assert "DOCKER_INFLUXDB_INIT_RETENTION" not in values
    # The secrets through the image's *_FILE variables (influxdata-docker influxdb/2.7/entrypoint.sh), each the
    # compose secret of that name, whose file holds exactly the vault's value.
    assert "DOCKER_INFLUXDB_INIT_PASSWORD" not in values and "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" not in values
    services = yaml.safe_load(_file(env, "opt/mov/compose.yaml"))["services"]
    assert ("influxdb" in services) == (env != "local")
    for name, secret, file in (
        ("PASSWORD", "influxdb_admin_password", "admin.password"),
        ("ADMIN_TOKEN", "influxdb_admin_token", "admin.token"),
    ):
        assert values[f"DOCKER_INFLUXDB_INIT_{name}_FILE"] == f"/run/secrets/{secret}"
        assert env == "local" or secret in services["influxdb"]["secrets"]
        assert _file(env, f"opt/mov/influxdb/secrets/{file}") == store[secret]


@pytest.mark.parametrize("env", ENVS)
def test_influxdb_tokens_are_least_privilege(env: str) -> None:
    spec = json.loads(_file(env, "opt/mov/influxdb/tokens.json"))
    tokens = {t["name"]: {(p["action"], p["bucket"]) for p in t["permissions"]} for t in spec["tokens"]}
    assert tokens == {
        "telegraf": {("write", "mov_dados"), ("write", "mov_infra")},
        "analytics": {("write", "mov_status")},
        "grafana": {("read", "mov_dados"), ("read", "mov_status"), ("read", "mov_historico"), ("read", "mov_infra")},
        "report": {("read", "mov_dados"), ("read", "mov_status"), ("read", "mov_infra")},
        "status-page": {("read", "mov_dados"), ("read", "mov_infra")},
        "bench": {("read", "mov_status")},
    }
    assert {b["name"] for b in spec["buckets"]} == {"mov_dados", "mov_status", "mov_historico", "mov_infra"}


def test_influxdb_token_plan_creates_keeps_and_replaces() -> None:
    plugin = filter_plugin("influxdb", "influxdb_tokens")
    buckets = {"mov_dados": "b1", "mov_status": "b2"}
    tokens = [
        {"name": "telegraf", "permissions": [{"action": "write", "bucket": "mov_dados"}]},
        {
            "name": "grafana",
            "permissions": [{"action": "read", "bucket": "mov_dados"}, {"action": "read", "bucket": "mov_status"}],
        },
    ]
    plan = plugin.influxdb_token_plan([], tokens, "o1", buckets)
    assert [c["name"] for c in plan["create"]] == ["telegraf", "grafana"] and not plan["keep"] and not plan["delete"]
    assert plan["create"][0]["body"] == {
        "orgID": "o1",
        "description": "mov:telegraf",
        "status": "active",
        "permissions": [{"action": "write", "resource": {"type": "buckets", "id": "b1", "orgID": "o1"}}],
    }
    # As InfluxDB lists them: extra resource keys, permissions in another order.
    existing = [
        {
            "id": "a1",
            "description": "mov:telegraf",
            "orgID": "o1",
            "status": "active",
            "token": "t1",
            "permissions": [
                {
                    "action": "write",
                    "resource": {
                        "type": "buckets",
                        "id": "b1",
                        "orgID": "o1",
                        "name": "mov_dados",
                        "org": "mov_industria",
                    },
                }
            ],
        },
        {
            "id": "a2",
            "description": "mov:grafana",
            "orgID": "o1",
            "status": "active",
            "token": "t2",
            "permissions": [{"action": "write", "resource": {"type": "buckets", "id": "b1", "orgID": "o1"}}],
        },
        {"id": "a3", "description": "someone else's", "orgID": "o1", "status": "active", "permissions": []},
    ]
    plan = plugin.influxdb_token_plan(existing, tokens, "o1", buckets)
    assert plan["keep"] == [{"name": "telegraf", "id": "a1"}]
    assert [c["name"] for c in plan["create"]] == ["grafana"]
    assert plan["delete"] == [{"name": "grafana", "id": "a2"}]
    with pytest.raises(ValueError, match="bucket 'nope' does not exist"):
        plugin.influxdb_permissions({"name": "x", "permissions": [{"action": "read", "bucket": "nope"}]}, "o1", buckets)
    assert plugin.influxdb_duration_seconds("30d") == 2_592_000
    assert plugin.influxdb_duration_seconds("1h30m") == 5400
    assert plugin.influxdb_duration_seconds("0") == 0


def test_a_rotated_token_is_created_and_the_old_one_only_listed_for_deletion() -> None:
    """A new rotation id makes a new token (mov:<name>@<id>); every other one of that name (the unrotated one, an
    older rotation) is in `delete`, which the role runs only after the consumer has the new token. Another token
    of a name that merely starts the same (telegraf2) is not the rotated token's."""
    plugin = filter_plugin("influxdb", "influxdb_tokens")
    buckets = {"mov_dados": "b1"}
    write = [{"action": "write", "resource": {"type": "buckets", "id": "b1", "orgID": "o1"}}]
    tokens = [{"name": "telegraf", "permissions": [{"action": "write", "bucket": "mov_dados"}]}]
    existing = [
        {"id": "a1", "description": "mov:telegraf", "orgID": "o1", "status": "active", "permissions": write},
        {"id": "a2", "description": "mov:telegraf@r1", "orgID": "o1", "status": "active", "permissions": write},
        {"id": "a3", "description": "mov:telegraf2", "orgID": "o1", "status": "active", "permissions": write},
    ]
    plan = plugin.influxdb_token_plan(existing, tokens, "o1", buckets, {"telegraf": "r2"})
    assert not plan["keep"]
    assert [c["body"]["description"] for c in plan["create"]] == ["mov:telegraf@r2"]
    assert plan["delete"] == [{"name": "telegraf", "id": "a1"}, {"name": "telegraf", "id": "a2"}]
    # The deploy after: the rotated token is kept, the one it replaced (still listed) goes.
    existing.append(
        {"id": "a4", "description": "mov:telegraf@r2", "orgID": "o1", "status": "active", "permissions": write}
    )
    plan = plugin.influxdb_token_plan(existing, tokens, "o1", buckets, {"telegraf": "r2"})
    assert plan["keep"] == [{"name": "telegraf", "id": "a4"}] and not plan["create"]
    assert [d["id"] for d in plan["delete"]] == ["a1", "a2"]
    assert plugin.influxdb_description(tokens[0], {"telegraf": "r2"}) == "mov:telegraf@r2"
    assert plugin.influxdb_description(tokens[0], {}) == "mov:telegraf"


# --- Grafana ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_grafana_ini_is_hardened_and_holds_no_password(env: str) -> None:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(_file(env, "opt/mov/grafana/grafana.ini"))
    domain = tree(env)["mov_domain"]
    assert ini["server"]["root_url"] == f"https://{domain}/"
    assert ini["security"]["cookie_secure"] == "true"
    assert ini["security"]["cookie_samesite"] in ("strict", "lax")
    # Grafana reads the password from its file ($__file{}: grafana/grafana v11.3.1 pkg/setting/expanders.go).
    assert ini["security"]["admin_password"] == "$__file{/opt/mov/grafana/secrets/admin.password}"
    assert ini["auth.anonymous"]["enabled"] == ("true" if env == "local" else "false")
    assert ini["users"]["allow_sign_up"] == "false"
    # E-mail through the tree's relay (STARTTLS required) when it has one; never a password in the ini.
    relay = tree(env).get("mov_smtp", {}).get("host", "")
    assert ini["smtp"]["enabled"] == ("true" if relay else "false")
    assert ini["smtp"]["host"] == (f"{relay}:587" if relay else "")
    assert ini["smtp"]["startTLS_policy"] == "MandatoryStartTLS"
    assert ini["smtp"].get("password", "") in ("", "$__file{/opt/mov/grafana/secrets/smtp.password}")
    password = workspace().secret_store(env)["grafana_admin_password"]
    assert _file(env, "opt/mov/grafana/secrets/admin.password") == password
    assert "env_file" not in yaml.safe_load(_file(env, "opt/mov/compose.yaml"))["services"].get("grafana", {})


@pytest.mark.parametrize("env", ENVS)
def test_grafana_datasource_is_pinned_flux_and_reads_its_token_from_a_file(env: str) -> None:
    doc = yaml.safe_load(_file(env, "opt/mov/grafana/provisioning/datasources/mov-influxdb.yml"))
    (ds,) = doc["datasources"]
    assert ds["uid"] == "mov-influxdb" and ds["type"] == "influxdb"
    assert ds["jsonData"]["version"] == "Flux" and ds["jsonData"]["organization"] == "mov_industria"
    assert ds["secureJsonData"]["token"] == "$__file{/opt/mov/grafana/secrets/influxdb.token}"


@pytest.mark.parametrize("env", ENVS)
def test_grafana_dashboard_is_pinned_and_uses_the_datasource(env: str) -> None:
    dashboard = json.loads(_file(env, "opt/mov/grafana/dashboards/mov-overview.json"))
    assert dashboard["uid"] == "mov-overview"
    titles = [p["title"] for p in dashboard["panels"]]
    assert titles == ["Temperatura (°C)", "Umidade (%)", "Pressão (hPa)", "Estado da análise", "Últimas leituras"]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {"mov-influxdb"}
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["planta", "cliente", "localizacao", "dispositivo"]
    steps = dashboard["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    levels = tree(env)["mov_thresholds"]["temperatura_c"]
    assert [s["value"] for s in steps] == [None, float(levels["alerta"]), float(levels["critico"])]


@pytest.mark.parametrize("env", ENVS)
def test_grafana_alert_rule_threshold_comes_from_the_tree(env: str) -> None:
    doc = yaml.safe_load(_file(env, "opt/mov/grafana/provisioning/alerting/mov-rules.yml"))
    (group,) = [g for g in doc["groups"] if g["name"] == "mov-temperatura"]
    (rule,) = group["rules"]
    assert rule["uid"] == "mov-temperatura-critica" and rule["condition"] == "C" and rule["for"] == "1m"
    by_ref = {d["refId"]: d for d in rule["data"]}
    assert by_ref["A"]["datasourceUid"] == "mov-influxdb"
    assert 'r._field == "temperatura_c"' in by_ref["A"]["model"]["query"]
    evaluator = by_ref["C"]["model"]["conditions"][0]["evaluator"]
    assert evaluator == {"type": "gt", "params": [float(tree(env)["mov_thresholds"]["temperatura_c"]["critico"])]}


@pytest.mark.parametrize("env", ENVS)
def test_grafana_contacts_and_policy_follow_the_tree(env: str) -> None:
    contacts = tree(env)["mov_alert_contacts"]
    points = yaml.safe_load(_file(env, "opt/mov/grafana/provisioning/alerting/mov-contact-points.yml"))
    policy = yaml.safe_load(_file(env, "opt/mov/grafana/provisioning/alerting/mov-policies.yml"))["policies"][0]
    if contacts["emails"] or contacts["webhook_url"]:
        (point,) = points["contactPoints"]
        receivers = {r["type"]: r["settings"] for r in point["receivers"]}
        if contacts["emails"]:
            assert receivers["email"]["addresses"] == ";".join(contacts["emails"])
        assert policy["receiver"] == point["name"] == "mov-contacts"
    else:
        assert points["contactPoints"] == []
        assert policy["receiver"] == "grafana-default-email"


def test_json_model_rejects_what_it_does_not_know() -> None:
    with pytest.raises(NotImplementedError):
        _gjson(PAYLOAD, "fields.#")


def test_no_plaintext_secret_under_version_control() -> None:
    tracked = Path(REPO / ".gitignore").read_text()
    assert "inventories/*/group_vars/mov/secrets.yml" in tracked
    for env in ENVS:
        store = workspace().secret_store(env)
        values = [v for k, v in store.items() if k != "mqtt"] + list(store["mqtt"].values())  # type: ignore[union-attr]
        for path in REPO.glob("roles/*/**/*"):
            if path.is_file() and path.suffix in (".yml", ".j2", ".py", ".md", ".json"):
                text = path.read_text(errors="ignore")
                assert not any(str(v) in text for v in values), path


# --- Backup keys ------------------------------------------------------------------------------------------------


def test_a_retired_backup_key_stays_readable_until_the_retention_has_replaced_its_snapshots() -> None:
    plugin = filter_plugin("backup", "backup_keys")
    retention = {"daily": 7, "weekly": 4, "monthly": 12}
    assert plugin.backup_retention_days(retention) == 372
    assert plugin.backup_retention_days({"daily": 7, "weekly": 4, "monthly": 0, "last": 40}) == 40
    current = {"id": "r2", "password": "p2", "salt": "s2"}
    retired = [
        {"id": "", "password": "p0", "salt": "s0", "retired": "2025-01-01"},
        {"id": "r1", "password": "p1", "salt": "s1", "retired": "2026-06-01"},
    ]
    generations = plugin.backup_key_generations(current, retired, "bucket/mov", retention, "2026-12-06", "mov-offsite")
    assert [(g["remote"], g["path"], g["password"]) for g in generations["readable"]] == [
        ("mov-offsite", "bucket/mov/keys-r2", "p2"),
        ("mov-offsite-retired-r1", "bucket/mov/keys-r1", "p1"),
    ]
    assert generations["readable"][1]["config"] == "retired-r1.json"
    assert generations["readable"][1]["readable_until"] == "2027-06-08"
    # The first key (no id) wrote to the path itself; 372 days after 2025-01-01 is 2026-01-08, so it has expired.
    assert [(g["remote"], g["path"]) for g in generations["expired"]] == [("mov-offsite-retired-first", "bucket/mov")]
    last_day = plugin.backup_key_generations(current, retired[1:], "bucket/mov", retention, "2027-06-08", "mov-offsite")
    assert len(last_day["readable"]) == 2 and not last_day["expired"]
