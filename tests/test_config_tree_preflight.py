"""Bad inputs in the config tree stop the run at its first task, naming the variable and the reason.

Unit tests of scripts/config_tree.py, then the same checks through playbooks/render.yml with extra vars
(the first play of render.yml and services.yml is the same), so the message an operator sees is asserted.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from mov_render import REPO, new_workspace

sys.path.append(str(REPO / "scripts"))
import config_tree

GOOD: dict[str, Any] = {
    "mov_env": "prod",
    "mov_domain": "mov.example.com",
    "mov_devices": [{"name": "sensor_001", "client": "industria_abc", "site": "sala", "type": "temperatura"}],
    "mov_device_publish_interval_s": 5,
    "mov_mqtt_service_users": [{"name": "telegraf", "read": ["mov/dados/#"], "write": []}],
    "mov_thresholds": {"temperatura_c": {"alerta": 30, "critico": 35}},
    "mov_alert_for": "1m",
    "mov_alert_contacts": {"webhook_url": "", "emails": ["ops@example.com"]},
    "mov_smtp": {"host": "smtp.example.com", "port": 587, "user": "mov", "from_address": "mov@mov.example.com"},
    "mov_influxdb_retention": "30d",
    "mov_influxdb_history_retention": "730d",
    "mov_influxdb_history_every": "1h",
    "mov_influxdb_history_lookback": "6h",
    "mov_telegraf_interval_s": 5,
    "mov_telegraf_outage_tolerance_s": 900,
}
DEVICE = GOOD["mov_devices"][0]


def _with(**changes: Any) -> dict[str, Any]:
    tree = copy.deepcopy(GOOD)
    tree.update(changes)
    return tree


def test_the_good_tree_passes() -> None:
    assert config_tree.validate(GOOD) == []
    assert config_tree.required_secrets(GOOD)[:2] == ["mqtt/telegraf", "mqtt/industria_abc/sensor_001"]


@pytest.mark.parametrize(
    ("smtp", "error"),
    [
        ({"host": "", "port": 587, "user": "", "from_address": ""}, "mov_smtp.host: alert e-mails"),
        ({"host": "smtp example", "port": 587, "user": "", "from_address": "a@b"}, "mov_smtp.host: must be"),
        ({"host": "smtp.example.com", "port": "587", "user": "", "from_address": "a@b"}, "mov_smtp.port: "),
        ({"host": "smtp.example.com", "port": 587, "user": "", "from_address": "nobody"}, "mov_smtp.from_address: "),
        ({"host": "smtp.example.com", "starttls": "no", "user": "", "from_address": "a@b"}, "mov_smtp.starttls: "),
        (
            {"host": "smtp.example.com", "starttls": False, "user": "mov", "from_address": "a@b"},
            "mov_smtp.user: a relay without STARTTLS (mov_smtp.starttls: false) takes no login",
        ),
    ],
)
def test_alert_emails_need_a_valid_relay(smtp: dict[str, Any], error: str) -> None:
    errors = config_tree.validate(_with(mov_smtp=smtp))
    assert len(errors) == 1 and errors[0].startswith(error)


def test_a_plain_relay_without_a_login_is_fine() -> None:
    relay = {"host": "relay.internal", "port": 25, "starttls": False, "user": "", "from_address": "mov@example.com"}
    assert config_tree.validate(_with(mov_smtp=relay)) == []


def test_no_emails_need_no_relay() -> None:
    tree = _with(
        mov_alert_contacts={"webhook_url": "", "emails": []},
        mov_smtp={"host": "", "port": 587, "user": "", "from_address": ""},
    )
    assert config_tree.validate(tree) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a/b", "contains '/'"),
        ("a+b", "contains '+'"),
        ("a#", "contains '#'"),
        ("sensor 1", "contains a space"),
        ("", "must be a non-empty string"),
        ("-x", "must match"),
    ],
)
def test_a_bad_device_name_is_refused(name: str, reason: str) -> None:
    errors = config_tree.validate(_with(mov_devices=[{**DEVICE, "name": name}]))
    assert len(errors) == 1 and errors[0].startswith("mov_devices[0].name: ") and reason in errors[0]


def test_a_bad_client_name_is_refused() -> None:
    errors = config_tree.validate(_with(mov_devices=[{**DEVICE, "client": "abc/def"}]))
    assert errors == [
        "mov_devices[0].client: 'abc/def' contains '/' (not allowed in an MQTT topic level or username part)"
    ]


def test_a_duplicate_device_is_refused() -> None:
    errors = config_tree.validate(_with(mov_devices=[DEVICE, {**DEVICE, "site": "elsewhere"}]))
    assert errors == ["mov_devices: duplicate device 'sensor_001' of client 'industria_abc' (2 entries)"]


def test_the_same_device_name_under_two_clients_is_fine() -> None:
    assert config_tree.validate(_with(mov_devices=[DEVICE, {**DEVICE, "client": "industria_xyz"}])) == []


@pytest.mark.parametrize("value", ["35", "hot", None, True, float("nan")])
def test_a_threshold_that_is_not_a_number_is_refused(value: object) -> None:
    errors = config_tree.validate(_with(mov_thresholds={"temperatura_c": {"alerta": 30, "critico": value}}))
    assert errors == [f"mov_thresholds.temperatura_c.critico: must be a number, got {value!r}"]


def test_thresholds_in_the_wrong_order_are_refused() -> None:
    errors = config_tree.validate(_with(mov_thresholds={"temperatura_c": {"alerta": 36, "critico": 35}}))
    assert errors == ["mov_thresholds.temperatura_c: alerta (36) must be below critico (35)"]


@pytest.mark.parametrize("field", ["Temperatura", "umidade-rel", "1st", "x" * 29])
def test_a_threshold_field_that_cannot_name_a_reading_or_a_rule_is_refused(field: str) -> None:
    levels = {"alerta": 30, "critico": 35}
    errors = config_tree.validate(_with(mov_thresholds={"temperatura_c": levels, field: levels}))
    assert errors == [
        f"mov_thresholds.{field}: a field name must be lower case letters, digits and _, starting with a letter, at "
        "most 28 characters"
    ]


@pytest.mark.parametrize("domain", [None, ""])
def test_a_missing_domain_is_refused(domain: object) -> None:
    errors = config_tree.validate(_with(mov_domain=domain))
    assert errors == ["mov_domain: missing; set the platform's public DNS name (e.g. mov.example.com)"]


def test_a_service_account_named_like_a_client_is_refused() -> None:
    errors = config_tree.validate(_with(mov_mqtt_service_users=[{"name": "industria_abc", "read": [], "write": []}]))
    assert len(errors) == 1 and errors[0].startswith("mov_mqtt_service_users[0].name: 'industria_abc' is also")


def test_a_short_outage_tolerance_is_refused() -> None:
    errors = config_tree.validate(_with(mov_telegraf_outage_tolerance_s=300))
    assert errors == ["mov_telegraf_outage_tolerance_s: must be a number >= 600, got 300"]


DEV_ONLY = {"mov_dev_override": "the development override", "mov_dev_loop": "the developer loop"}


@pytest.mark.parametrize("env", ["staging", "prod"])
@pytest.mark.parametrize("key", DEV_ONLY)
def test_the_dev_override_and_the_developer_loop_are_refused_outside_local(env: str, key: str) -> None:
    errors = config_tree.validate(_with(mov_env=env, **{key: True}))
    assert len(errors) == 1 and errors[0].startswith(f"{key}: {DEV_ONLY[key]}")
    assert f"is for local only, and the env is '{env}'" in errors[0]
    assert f"remove it from inventories/{env}/group_vars/mov/" in errors[0]


@pytest.mark.parametrize("key", DEV_ONLY)
def test_the_dev_override_and_the_developer_loop_are_fine_in_local_and_must_be_a_bool(key: str) -> None:
    assert config_tree.validate(_with(mov_env="local", **{key: True})) == []
    assert config_tree.validate(_with(mov_env="local", **{key: "yes"})) == [f"{key}: must be true or false, got 'yes'"]


@pytest.fixture(scope="module")
def workspace_dir() -> Path:
    return new_workspace().root


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mov_devices": [{**DEVICE, "name": "sensor/1"}]}, "mov_devices[0].name: 'sensor/1' contains '/'"),
        ({"mov_devices": [{**DEVICE, "name": "sensor 1"}]}, "mov_devices[0].name: 'sensor 1' contains a space"),
        ({"mov_devices": [DEVICE, DEVICE]}, "mov_devices: duplicate device 'sensor_001' of client 'industria_abc'"),
        (
            {"mov_thresholds": {"temperatura_c": {"alerta": 30, "critico": "quente"}}},
            "mov_thresholds.temperatura_c.critico: must be a number, got 'quente'",
        ),
        ({"mov_domain": ""}, "mov_domain: missing"),
    ],
)
def test_the_playbook_stops_at_the_tree_check_with_the_reason(
    workspace_dir: Path, overrides: dict[str, Any], message: str
) -> None:
    from mov_render import Workspace

    ws = Workspace(workspace_dir)
    result = ws.render("local", ws.root / "render-bad", "-e", json.dumps(overrides), check=False)
    # Ansible's YAML result format wraps long lines and doubles single quotes.
    output = re.sub(r"\s+", " ", result.stdout + result.stderr).replace("''", "'")
    assert result.returncode != 0
    assert message in output
    assert "TASK [Check the config tree]" in output
    assert not (ws.root / "render-bad").exists(), "nothing may be rendered from a bad tree"
    assert not (ws.inventory("local") / "group_vars" / "mov" / "secrets.yml").exists()


@pytest.mark.parametrize("key", DEV_ONLY)
def test_staging_stops_at_the_tree_check_when_asked_for_the_dev_override_or_the_loop(
    workspace_dir: Path, key: str
) -> None:
    from mov_render import Workspace

    ws = Workspace(workspace_dir)
    result = ws.render("staging", ws.root / "render-dev", "-e", json.dumps({key: True}), check=False)
    output = re.sub(r"\s+", " ", result.stdout + result.stderr).replace("''", "'")
    assert result.returncode != 0
    assert f"{key}: {DEV_ONLY[key]}" in output and "TASK [Check the config tree]" in output
    assert not (ws.root / "render-dev").exists()
