"""The render preview (playbooks/render.yml) and the secrets generator (scripts/platform_secrets.py), end to end.

Every env renders on the controller without touching its hosts (staging/prod's addresses are unreachable
documentation addresses), local generating its secrets on first run, staging/prod reading a test vault made here.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mov_render import ENVS, REPO, new_workspace, rendered, rendered_with_changed_tree, resolved, workspace

EXPECTED = [
    "opt/mov/mosquitto/config/mosquitto.conf",
    "opt/mov/mosquitto/config/acl",
    "opt/mov/mosquitto/config/passwd",
    "opt/mov/telegraf/telegraf.conf",
    "opt/mov/telegraf/secrets/mqtt.password",
    "opt/mov/influxdb/secrets/influxdb.env",
    "opt/mov/influxdb/secrets/admin.password",
    "opt/mov/influxdb/secrets/admin.token",
    "opt/mov/influxdb/tokens.json",
    "opt/mov/grafana/grafana.ini",
    "opt/mov/grafana/secrets/admin.password",
    "opt/mov/grafana/dashboards/mov-overview.json",
    "opt/mov/grafana/provisioning/datasources/mov-influxdb.yml",
    "opt/mov/grafana/provisioning/dashboards/mov.yml",
    "opt/mov/grafana/provisioning/alerting/mov-rules.yml",
    "opt/mov/grafana/provisioning/alerting/mov-contact-points.yml",
    "opt/mov/grafana/provisioning/alerting/mov-policies.yml",
]
# Where each secret may appear in plaintext: its own 0400 file, which its consumer reads (a compose secret, a *_FILE
# variable, $__file{}), nowhere else: no env file (a container's environment shows in `docker inspect`).
SECRET_HOMES = {
    "influxdb_admin_password": "opt/mov/influxdb/secrets/admin.password",
    "influxdb_admin_token": "opt/mov/influxdb/secrets/admin.token",
    "grafana_admin_password": "opt/mov/grafana/secrets/admin.password",
    "mqtt/telegraf": "opt/mov/telegraf/secrets/mqtt.password",
}


def _flat(store: dict[str, object]) -> dict[str, str]:
    flat = {k: str(v) for k, v in store.items() if k != "mqtt"}
    mqtt = store["mqtt"]
    assert isinstance(mqtt, dict)
    flat.update({f"mqtt/{k}": str(v) for k, v in mqtt.items()})
    return flat


@pytest.mark.parametrize("env", ENVS)
def test_every_env_renders_every_service(env: str) -> None:
    host_dir, _ = rendered(env)
    missing = [p for p in EXPECTED if not (host_dir / p).is_file()]
    assert not missing


@pytest.mark.parametrize("env", ENVS)
def test_secret_files_are_private(env: str) -> None:
    host_dir, _ = rendered(env)
    assert stat.S_IMODE(host_dir.parent.stat().st_mode) == 0o700
    for path in SECRET_HOMES.values():
        assert stat.S_IMODE((host_dir / path).stat().st_mode) == 0o400, path
    for path in ("opt/mov/mosquitto/config/passwd", "opt/mov/influxdb/secrets/influxdb.env"):
        assert stat.S_IMODE((host_dir / path).stat().st_mode) == 0o600, path


@pytest.mark.parametrize("env", ENVS)
def test_secrets_appear_only_in_their_own_files_and_never_in_the_output(env: str) -> None:
    host_dir, output = rendered(env)
    secrets = _flat(workspace().secret_store(env))
    files = {str(p.relative_to(host_dir)): p.read_text() for p in host_dir.rglob("*") if p.is_file()}
    for name, value in secrets.items():
        assert len(value) >= 16
        assert value not in output, f"{name} printed by ansible-playbook -v"
        holders = sorted(path for path, text in files.items() if value in text)
        assert holders == ([SECRET_HOMES[name]] if name in SECRET_HOMES else []), name


def test_local_secrets_are_generated_on_first_run_into_a_private_ignored_file() -> None:
    rendered("local")
    path = workspace().inventory("local") / "group_vars" / "mov" / "secrets.yml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = _flat(workspace().secret_store("local"))
    assert {
        "mqtt/industria_abc/sensor_001",
        "mqtt/industria_abc/sensor_002",
        "mqtt/telegraf",
        "backup_password",
        "backup_salt",
    } <= set(store)
    ignored = subprocess.run(
        [
            "git",
            "-C",
            str(Path(__file__).parent.parent),
            "check-ignore",
            "-q",
            "inventories/local/group_vars/mov/secrets.yml",
        ],
        check=False,
    )
    assert ignored.returncode == 0


def test_rendering_again_changes_nothing() -> None:
    """Same secrets, same hashes: a second render into the same directory reports changed=0."""
    host_dir, _ = rendered("local")
    result = workspace().render("local", host_dir.parent)
    recap = re.search(r"mov-box\s*:\s*ok=\d+\s+changed=(\d+)", result.stdout)
    assert recap and recap.group(1) == "0", result.stdout[-3000:]


def test_the_vault_is_encrypted_and_keeps_the_operators_content() -> None:
    ws = workspace()
    raw = (ws.inventory("prod") / "group_vars" / "mov" / "vault.yml").read_text()
    assert raw.startswith("$ANSIBLE_VAULT;1.1;AES256")
    plain = yaml.safe_load(ws.vault_plaintext("prod"))
    assert plain["vault_mov_admin_ssh_keys"] == ["ssh-ed25519 AAAAtest operator@test"]
    assert "# operator's keys" in ws.vault_plaintext("prod")


def test_secrets_are_kept_rotated_on_request_and_added_for_a_new_device() -> None:
    ws = new_workspace()
    first = ws.secrets("staging")
    assert "generated" in first.stdout
    before = _flat(ws.secret_store("staging"))
    for value in before.values():
        assert value not in first.stdout + first.stderr

    again = ws.secrets("staging")
    assert "none added" in again.stdout
    assert _flat(ws.secret_store("staging")) == before

    # Grafana asks for the old password to set a new one: the rotated value is kept as `previous`.
    ws.secrets("staging", "--rotate", "grafana_admin_password")
    rotated = _flat(ws.secret_store("staging"))
    assert rotated["grafana_admin_password"] != before["grafana_admin_password"]
    assert ws.secret_store("staging")["previous"] == {"grafana_admin_password": before["grafana_admin_password"]}
    assert {k: v for k, v in rotated.items() if k not in ("grafana_admin_password", "previous")} == {
        k: v for k, v in before.items() if k != "grafana_admin_password"
    }

    # A token's rotation is an id (InfluxDB makes the value at the deploy), one per rotation.
    tokens = ws.secrets("staging", "--rotate", "influxdb_token/telegraf")
    assert "generated influxdb_token/telegraf;" in tokens.stdout
    first_id = ws.secret_store("staging")["influxdb_token_rotations"]["telegraf"]
    ws.secrets("staging", "--rotate", "influxdb_token/telegraf")
    assert ws.secret_store("staging")["influxdb_token_rotations"]["telegraf"] not in ("", first_id)
    assert {k: v for k, v in _flat(ws.secret_store("staging")).items() if k != "influxdb_token_rotations"} == rotated

    overrides = ws.inventory("staging") / "group_vars" / "mov" / "services.yml"
    tree = yaml.safe_load(overrides.read_text())
    tree["mov_devices"] = [
        {"name": "sensor_001", "client": "industria_abc", "site": "sala_servidores", "type": "temperatura"},
        {"name": "sensor_009", "client": "industria_abc", "site": "caldeira", "type": "temperatura"},
    ]
    overrides.write_text(yaml.safe_dump(tree))
    added = ws.secrets("staging")
    assert "generated mqtt/industria_abc/sensor_009;" in added.stdout
    after = _flat(ws.secret_store("staging"))
    assert {k: v for k, v in after.items() if k in rotated} == rotated


def test_rotating_an_unknown_secret_is_refused() -> None:
    result = new_workspace().secrets("local", "--rotate", "mqtt/nobody", check=False)
    assert result.returncode == 1
    assert "unknown secret(s) mqtt/nobody" in result.stderr


def test_rotating_the_influxdb_admin_token_is_refused_with_the_runbook() -> None:
    ws = new_workspace()
    ws.secrets("local")
    before = ws.secret_store("local")
    result = ws.secrets("local", "--rotate", "influxdb_admin_token", check=False)
    assert result.returncode == 1
    assert "--rotate influxdb_admin_token: not a routine rotation" in result.stderr
    assert "docs/operations/rotate-secret.md" in result.stderr
    assert ws.secret_store("local") == before


def test_the_backup_keys_rotate_together_and_the_old_pair_is_kept_with_its_date() -> None:
    """The off-site copy's old path stays readable: its keys are kept, named by the id of the path they wrote."""
    ws = new_workspace()
    ws.secrets("local")
    first = ws.secret_store("local")
    ws.secrets("local", "--rotate", "backup_salt")
    second = ws.secret_store("local")
    assert second["backup_password"] != first["backup_password"] and second["backup_salt"] != first["backup_salt"]
    key_id = second["backup_key_id"]
    assert isinstance(key_id, str) and key_id
    retired = second["backup_retired_keys"]
    assert isinstance(retired, list) and len(retired) == 1
    assert {k: retired[0][k] for k in ("id", "password", "salt")} == {
        "id": "",
        "password": first["backup_password"],
        "salt": first["backup_salt"],
    }
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", retired[0]["retired"])
    ws.secrets("local", "--rotate", "backup_password")
    third = ws.secret_store("local")
    assert [k["id"] for k in third["backup_retired_keys"]] == ["", key_id]  # type: ignore[index, union-attr]
    assert third["backup_key_id"] not in ("", key_id)


def test_staging_without_a_vault_password_is_refused_with_the_fix() -> None:
    ws = new_workspace()
    result = ws.run(
        "python3",
        str(ws.root / "scripts/platform_secrets.py"),
        "--env",
        "prod",
        "--root",
        str(ws.root),
        "--tree-json",
        '{"mov_env": "prod"}',
        check=False,
    )
    assert result.returncode == 1


@pytest.mark.parametrize("env", ENVS)
def test_only_the_local_env_renders_the_dev_override(env: str) -> None:
    host_dir, _ = rendered(env)
    compose = yaml.safe_load((host_dir / "opt/mov/compose.yaml").read_text())
    services = compose["services"]
    dev = env == "local"
    assert ("127.0.0.1:9108:9108" in services["analytics"].get("ports", [])) is dev
    assert ("127.0.0.1:1883:1883" in services["mosquitto"].get("ports", [])) is dev
    assert (services["analytics"]["environment"].get("MOV_ANALYTICS_LOG_LEVEL") == "DEBUG") is dev
    ini = (host_dir / "opt/mov/grafana/grafana.ini").read_text()
    anonymous = re.search(r"\[auth\.anonymous\]\nenabled = (\w+)", ini)
    assert anonymous and anonymous.group(1) == ("true" if dev else "false")
    # Whatever the override adds, only the MQTT TLS port is published beyond the host's loopback.
    public = [
        port
        for service in services.values()
        for port in service.get("ports", [])
        if not str(port).startswith("127.0.0.1:")
    ]
    assert public == ["8883:8883"], public


@pytest.mark.parametrize("env", ENVS)
def test_only_the_local_env_runs_the_developer_loop(env: str) -> None:
    """The worker runs the box's copy of analytics/src (read-only, ahead of the installed package) under watchfiles
    and debugpy, from its dev image, the debugger's port on the host's loopback; elsewhere, the release image as
    built."""
    host_dir, _ = rendered(env)
    worker = yaml.safe_load((host_dir / "opt/mov/compose.yaml").read_text())["services"]["analytics"]
    release = yaml.safe_load((REPO / "group_vars/all/services.yml").read_text())["mov_images"]["analytics"]
    if env != "local":
        assert worker["image"] == release
        assert not {"entrypoint", "init"} & worker.keys(), worker
        assert "PYTHONPATH" not in worker["environment"], worker["environment"]
        assert not [v for v in worker["volumes"] if ":/opt/mov-src" in v], worker["volumes"]  # no source mounted
        return
    assert worker["image"] == f"{release}-dev"
    assert worker["entrypoint"][:3] == ["python3", "-m", "watchfiles"] and worker["entrypoint"][-1] == "/opt/mov-src"
    assert "debugpy --listen 0.0.0.0:5678 -m mov_analytics" in worker["entrypoint"][-2]
    assert "--wait-for-client" not in worker["entrypoint"][-2]
    assert "/opt/mov-dev/analytics-src:/opt/mov-src:ro" in worker["volumes"]
    assert worker["environment"]["PYTHONPATH"] == "/opt/mov-src:/opt/mov:/opt/mov-dev"
    assert "127.0.0.1:5678:5678" in worker["ports"]
    # The loop keeps the worker's hardening; init reaps the debug adapter each restart leaves behind.
    assert worker["init"] is True and worker["read_only"] is True and worker["cap_drop"] == ["ALL"]
    assert worker["user"] == "9108:9108"


def test_the_box_mounts_the_source_where_the_worker_reads_it_and_the_debug_port_reaches_every_consumer(
    tmp_path: Path,
) -> None:
    sys.path.append(str(REPO / "scripts"))
    import box

    assert resolved("mov_dev_loop_source_dir") == box.DEV_SOURCE_IN_BOX
    extra = json.dumps({"mov_dev_loop_debug_port": 15678})
    assert 15678 in resolved("stack_verify_closed_ports", "-e", extra)
    workspace().render("local", tmp_path / "out", "-e", extra, "-e", json.dumps({"render_roles": ["stack"]}))
    [host_dir] = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    worker = yaml.safe_load((host_dir / "opt/mov/compose.yaml").read_text())["services"]["analytics"]
    assert "127.0.0.1:15678:15678" in worker["ports"]
    assert "debugpy --listen 0.0.0.0:15678 " in worker["entrypoint"][-2]


@pytest.mark.parametrize("env", ENVS)
def test_the_worker_writes_to_influxdb_only_where_it_is_deployed(env: str) -> None:
    """Local runs without InfluxDB (no registry): its worker must not retry a host that is not there (its health
    would stay red); it logs status changes instead (analytics/tests: the worker stays healthy)."""
    host_dir, _ = rendered(env)
    services = yaml.safe_load((host_dir / "opt/mov/compose.yaml").read_text())["services"]
    worker = yaml.safe_load((host_dir / "opt/mov/analytics/config.yaml").read_text())
    assert worker["influxdb"]["enabled"] is ("influxdb" in services)
    assert ("influxdb" in services) is (env != "local")


def test_the_plants_topic_changed_in_the_tree_reaches_the_worker_the_acl_and_telegraf() -> None:
    """mov_mqtt_topic_plants is the one place the gateways' prefix is written (group_vars/all/gateways.yml)."""
    host_dir = rendered_with_changed_tree()
    worker = yaml.safe_load((host_dir / "opt/mov/analytics/config.yaml").read_text())
    assert worker["mqtt"]["plants_topic"] == "mov/fabricas"
    acl = (host_dir / "opt/mov/mosquitto/config/acl").read_text().split("\nuser ")
    (analytics,) = [block for block in acl if block.startswith("analytics\n")]
    assert "topic read mov/fabricas/+/mov/dados/#" in analytics.splitlines()
    assert "mov/plantas" not in "\n".join(acl)
    telegraf = (host_dir / "opt/mov/telegraf/telegraf.conf").read_text()
    assert "mov/fabricas/+/mov/dados/#" in telegraf and "mov/plantas" not in telegraf


def test_a_threshold_changed_in_the_tree_reaches_the_worker_grafana_s_rules_and_the_dashboard() -> None:
    """mov_thresholds is the one place the numbers are written: a changed critico and a new field reach the worker's
    rules, one Grafana alert rule per field with its critico, and the dashboard's colour steps."""
    host_dir = rendered_with_changed_tree()
    worker = yaml.safe_load((host_dir / "opt/mov/analytics/config.yaml").read_text())
    # The worker's rules live in their own file (reloaded by SIGHUP), where the compose file mounts their directory.
    volumes = yaml.safe_load((host_dir / "opt/mov/compose.yaml").read_text())["services"]["analytics"]["volumes"]
    mounts = dict(v.split(":")[:2][::-1] for v in volumes if isinstance(v, str))
    rules_file = Path(worker["rules_file"])
    assert "rules" not in worker and mounts[str(rules_file.parent)] == "/opt/mov/analytics/rules"
    rules = yaml.safe_load((host_dir / "opt/mov/analytics/rules" / rules_file.name).read_text())["rules"]
    assert sorted((r["field"], r["alerta"], r["critico"]) for r in rules) == [
        ("temperatura_c", 31.5, 41),
        ("umidade", 70, 85),
    ]
    rules_doc = yaml.safe_load((host_dir / "opt/mov/grafana/provisioning/alerting/mov-rules.yml").read_text())
    (group,) = [g for g in rules_doc["groups"] if g["name"] == "mov-temperatura"]
    by_uid = {r["uid"]: r for r in group["rules"]}
    assert set(by_uid) == {"mov-temperatura-critica", "mov-critico-umidade"}
    for uid, field, critico in (
        ("mov-temperatura-critica", "temperatura_c", 41.0),
        ("mov-critico-umidade", "umidade", 85.0),
    ):
        data = {d["refId"]: d for d in by_uid[uid]["data"]}
        assert f'r._field == "{field}"' in data["A"]["model"]["query"]
        assert data["C"]["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [critico]}
        assert by_uid[uid]["labels"] == {"severity": "critico", "field": field}
        # Grafana's own template syntax reaches the file as it is, for Grafana to fill in.
        assert "{{ $labels.dispositivo }}" in by_uid[uid]["annotations"]["description"]
    dashboard = json.loads((host_dir / "opt/mov/grafana/dashboards/mov-overview.json").read_text())
    steps = {
        p["targets"][0]["query"].split('r._field == "')[1].split('"')[0]: [
            s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        ]
        for p in dashboard["panels"]
        if p.get("type") == "timeseries" and 'r._field == "' in p["targets"][0]["query"]
    }
    assert steps["temperatura_c"] == [None, 31.5, 41.0] and steps["umidade"] == [None, 70.0, 85.0]
    assert steps["pressao"] == [None]


def test_a_service_accounts_rotation_gives_it_a_new_username_and_a_devices_keeps_its_own() -> None:
    """The new username lets the deploy keep the old account until its consumer switched (roles/mosquitto)."""
    ws = new_workspace()
    ws.secrets("local")
    before = ws.secret_store("local")
    assert "mqtt_usernames" not in before
    ws.secrets("local", "--rotate", "mqtt/analytics", "--rotate", "mqtt/industria_abc/sensor_001")
    first = ws.secret_store("local")
    assert first["mqtt"]["analytics"] != before["mqtt"]["analytics"]  # type: ignore[index]
    assert first["mqtt"]["industria_abc/sensor_001"] != before["mqtt"]["industria_abc/sensor_001"]  # type: ignore[index]
    usernames = first["mqtt_usernames"]
    assert isinstance(usernames, dict) and set(usernames) == {"analytics"}
    assert re.fullmatch(r"analytics@\d{8}T\d{6}Z-[0-9a-f]{4}", usernames["analytics"])
    ws.secrets("local", "--rotate", "mqtt/analytics")
    second = ws.secret_store("local")["mqtt_usernames"]
    assert isinstance(second, dict) and second["analytics"] not in ("analytics", usernames["analytics"])
