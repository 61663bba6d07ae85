"""Infrastructure metrics (mov_infra_metrics_enabled): Telegraf's host and Docker inputs into their own bucket, the
token and bucket that go with them, the compose mounts, the "MOV infrastructure" dashboard and its alert rules.

Telegraf, InfluxDB and Grafana do not run here: the rendered files are parsed (the render preview, shared with the
other render tests) and checked for what each service will be told; the e2e job of .github/workflows/ci.yml runs
them for real and queries the infrastructure bucket.
"""

from __future__ import annotations

import functools
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from mov_render import ENVS, REPO, rendered, workspace

INFRA_INPUTS = ("cpu", "mem", "disk", "diskio", "net", "docker", "internal")
HOST_MOUNTS = (
    "/:/hostfs:ro",
    "/proc:/hostfs/proc:ro",
    "/sys:/hostfs/sys:ro",
)
SOCKET = "/var/run/docker.sock:/var/run/docker.sock:ro"
RULES = {"mov-disco-cheio", "mov-container-reiniciando", "mov-dispositivo-silencioso", "mov-mensagens-descartadas"}
# Envs whose stack runs Telegraf (local runs mosquitto and analytics only).
STACK_ENVS = ("staging", "prod")


def tree() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "group_vars" / "all" / "services.yml").read_text())
    assert isinstance(data, dict)
    return data


def _read(host_dir: Path, path: str) -> str:
    return (host_dir / "opt/mov" / path).read_text()


def _telegraf(host_dir: Path) -> dict[str, Any]:
    return tomllib.loads(_read(host_dir, "telegraf/telegraf.conf"))


@functools.cache
def rendered_without_infra() -> Path:
    """staging rendered once more with the switch off (its stack runs Telegraf); only the roles the switch reaches."""
    ws = workspace()
    dest = ws.root / "render" / "staging-no-infra"
    ws.render(
        "staging",
        dest,
        "-e",
        json.dumps({"mov_infra_metrics_enabled": False, "render_roles": ["telegraf", "influxdb", "grafana", "stack"]}),
    )
    (host_dir,) = [p for p in dest.iterdir() if p.is_dir()]
    return host_dir


def test_the_tree_switches_it_on_with_its_own_bucket_retention_and_interval() -> None:
    values = tree()
    assert values["mov_infra_metrics_enabled"] is True
    assert values["mov_infra_metrics_bucket"] == "mov_infra" != values["mov_influxdb_bucket"]
    assert values["mov_infra_metrics_retention"] and values["mov_infra_metrics_interval_s"] > 0
    assert values["mov_infra_disk_alert_percent"] == 85 and values["mov_device_silence_for"] == "5m"


# --- Telegraf -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_telegraf_reads_the_host_and_docker_into_the_infra_bucket(env: str) -> None:
    host_dir, _ = rendered(env)
    config = _telegraf(host_dir)
    interval = f"{tree()['mov_infra_metrics_interval_s']}s"
    for name in INFRA_INPUTS:
        (plugin,) = config["inputs"][name]
        assert plugin["tags"] == {"mov_route": "infra"}, name
        assert plugin["interval"] == interval, name
    (docker,) = config["inputs"]["docker"]
    # Never the engine's socket: its read-only API proxy on the compose network.
    assert docker["endpoint"] == "tcp://dockerproxy:2375"
    assert "exited" in docker["container_state_include"] and "restarting" in docker["container_state_include"]
    # Totals per container, and no label that changes per deploy (the config checksum) becomes a tag.
    assert docker["perdevice"] is False and docker["total"] is True and "network" in docker["total_include"]
    assert docker["docker_label_include"] == ["com.docker.compose.service"]
    (disk,) = config["inputs"]["disk"]
    assert "overlay" in disk["ignore_fs"] and "tmpfs" in disk["ignore_fs"]
    assert config["inputs"]["net"][0]["ignore_protocol_stats"] is True
    assert config["inputs"]["cpu"][0]["report_active"] is True
    # The readings' input is untouched and untagged; the broker's drop counter goes to the infrastructure bucket.
    readings, broker = config["inputs"]["mqtt_consumer"]
    assert readings["client_id"] == "mov-telegraf" and "tags" not in readings and "interval" not in readings
    assert broker["topics"] == ["$SYS/broker/publish/messages/dropped"] and broker["tags"] == {"mov_route": "infra"}
    assert broker["client_id"] != readings["client_id"] and broker["persistent_session"] is False
    assert broker["data_format"] == "value" and broker["name_override"] == "mosquitto_broker"


@pytest.mark.parametrize("env", ENVS)
def test_a_second_output_takes_exactly_the_infra_metrics_with_the_same_token(env: str) -> None:
    host_dir, _ = rendered(env)
    readings, infra = _telegraf(host_dir)["outputs"]["influxdb_v2"]
    assert readings["bucket"] == "mov_dados" and readings["tagdrop"] == {"mov_route": ["infra"]}
    assert infra["bucket"] == "mov_infra"
    assert infra["tagpass"] == {"mov_route": ["infra"]} and infra["tagexclude"] == ["mov_route"]
    assert infra["token"] == readings["token"] == "@{docker:telegraf_influxdb_token}"
    assert infra["organization"] == readings["organization"] == "mov_industria"
    assert infra["urls"] == readings["urls"]
    # Its own buffer: 900 s of 150 metrics per 10 s, x2, rounded up to a thousand.
    assert infra["metric_buffer_limit"] == 27_000
    # No secret in the file: the token stays in its compose secret.
    token_line = [line for line in _read(host_dir, "telegraf/telegraf.conf").splitlines() if "token" in line]
    assert token_line == ['token = "@{docker:telegraf_influxdb_token}"'] * 2


def test_switched_off_telegraf_has_no_infra_input_and_one_output() -> None:
    config = _telegraf(rendered_without_infra())
    assert set(config["inputs"]) == {"mqtt_consumer", "internal"}
    assert config["inputs"]["internal"] == [{"collect_memstats": True}]
    (output,) = config["outputs"]["influxdb_v2"]
    assert output["bucket"] == "mov_dados" and "tagdrop" not in output


# --- InfluxDB: the bucket and least-privilege tokens ------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_the_infra_bucket_has_its_retention_and_only_telegraf_writes_it(env: str) -> None:
    host_dir, _ = rendered(env)
    spec = json.loads(_read(host_dir, "influxdb/tokens.json"))
    buckets = {b["name"]: b["retention"] for b in spec["buckets"]}
    assert buckets["mov_infra"] == tree()["mov_infra_metrics_retention"]
    grants = {t["name"]: {(p["action"], p["bucket"]) for p in t["permissions"]} for t in spec["tokens"]}
    assert grants["telegraf"] == {("write", "mov_dados"), ("write", "mov_infra")}
    assert grants["grafana"] == {("read", "mov_dados"), ("read", "mov_status"), ("read", "mov_infra")}
    assert grants["analytics"] == {("write", "mov_status")}


def test_switched_off_there_is_no_infra_bucket_or_grant() -> None:
    spec = json.loads(_read(rendered_without_infra(), "influxdb/tokens.json"))
    assert "mov_infra" not in {b["name"] for b in spec["buckets"]}
    assert "mov_infra" not in {p["bucket"] for t in spec["tokens"] for p in t["permissions"]}


# --- compose: read-only mounts, nothing published ----------------------------------------------------------------


@pytest.mark.parametrize("env", STACK_ENVS)
def test_telegraf_sees_the_host_and_docker_read_only_and_publishes_nothing(env: str) -> None:
    host_dir, _ = rendered(env)
    services = yaml.safe_load(_read(host_dir, "compose.yaml"))["services"]
    telegraf = services["telegraf"]
    assert set(HOST_MOUNTS) <= set(telegraf["volumes"])
    assert all(volume.endswith(":ro") for volume in telegraf["volumes"]), telegraf["volumes"]
    assert telegraf["environment"] == {
        "HOST_PROC": "/hostfs/proc",
        "HOST_SYS": "/hostfs/sys",
        "HOST_MOUNT_PREFIX": "/hostfs",
    }
    # No socket and no supplementary group (the docker group's would reach the engine): the proxy alone has them.
    assert SOCKET not in telegraf["volumes"] and "group_add" not in telegraf
    assert telegraf["depends_on"]["dockerproxy"] == {"condition": "service_healthy"}
    proxy = services["dockerproxy"]
    assert SOCKET in proxy["volumes"] and "ports" not in proxy and proxy["read_only"] is True
    assert "ports" not in telegraf and "privileged" not in telegraf and "network_mode" not in telegraf
    public = [
        port
        for service in services.values()
        for port in service.get("ports", [])
        if not str(port).startswith("127.0.0.1:")
    ]
    assert public == ["8883:8883"], public


def test_switched_off_telegraf_mounts_nothing_of_the_host() -> None:
    telegraf = yaml.safe_load(_read(rendered_without_infra(), "compose.yaml"))["services"]["telegraf"]
    assert not set(HOST_MOUNTS) & set(telegraf["volumes"])
    assert "environment" not in telegraf and "group_add" not in telegraf


# --- Grafana: dashboard and alert rules --------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_the_infrastructure_dashboard_is_pinned_and_reads_the_infra_bucket(env: str) -> None:
    host_dir, _ = rendered(env)
    dashboard = json.loads(_read(host_dir, "grafana/dashboards/mov-infrastructure.json"))
    assert dashboard["uid"] == "mov-infrastructure" and dashboard["title"] == "MOV infrastructure"
    titles = [p["title"] for p in dashboard["panels"]]
    assert titles == [
        "CPU (%)",
        "Memória (%)",
        "Disco usado (%)",
        "Disco: leitura e escrita (bytes/s)",
        "Rede por container (bytes/s)",
        "Reinícios por container",
        "Containers: estado e reinícios",
    ]
    assert len({p["id"] for p in dashboard["panels"]}) == len(titles)
    measurements = [
        '"cpu"',
        '"mem"',
        '"disk"',
        '"diskio"',
        '"docker_container_net"',
        '"docker_container_status"',
        '"docker_container_status"',
    ]
    for panel, measurement in zip(dashboard["panels"], measurements, strict=True):
        assert panel["datasource"]["uid"] == "mov-influxdb"
        (target,) = panel["targets"]
        assert target["query"].startswith('from(bucket: "mov_infra")'), panel["title"]
        assert f"r._measurement == {measurement}" in target["query"], panel["title"]
    # The disk panel turns red where the alert fires.
    steps = dashboard["panels"][2]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 85.0}
    # Panels do not overlap on Grafana's 24-column grid.
    cells = [
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in dashboard["panels"]
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)) and all(x < 24 for x, _ in cells)


@pytest.mark.parametrize("env", ENVS)
def test_the_three_infra_alert_rules_are_provisioned_with_their_thresholds(env: str) -> None:
    host_dir, _ = rendered(env)
    doc = yaml.safe_load(_read(host_dir, "grafana/provisioning/alerting/mov-rules.yml"))
    groups = {g["name"]: g for g in doc["groups"]}
    assert set(groups) == {"mov-temperatura", "mov-infraestrutura"}
    rules = {r["uid"]: r for r in groups["mov-infraestrutura"]["rules"]}
    assert set(rules) == RULES
    for uid, rule in rules.items():
        by_ref = {d["refId"]: d for d in rule["data"]}
        assert rule["condition"] == "C" and by_ref["A"]["datasourceUid"] == "mov-influxdb", uid
        assert by_ref["B"]["model"]["type"] == "reduce" and by_ref["C"]["model"]["type"] == "threshold", uid

    def threshold(uid: str) -> Any:
        (condition,) = {d["refId"]: d for d in rules[uid]["data"]}["C"]["model"]["conditions"]
        return condition["evaluator"]

    disk = {d["refId"]: d for d in rules["mov-disco-cheio"]["data"]}["A"]["model"]["query"]
    assert 'from(bucket: "mov_infra")' in disk and 'r._field == "used_percent"' in disk
    assert threshold("mov-disco-cheio") == {"type": "gt", "params": [85.0]}
    restarts = {d["refId"]: d for d in rules["mov-container-reiniciando"]["data"]}["A"]["model"]["query"]
    assert 'from(bucket: "mov_infra")' in restarts and 'r._field == "restart_count"' in restarts
    assert "difference(nonNegative: true)" in restarts
    assert threshold("mov-container-reiniciando") == {"type": "gt", "params": [0.0]}
    silence = {d["refId"]: d for d in rules["mov-dispositivo-silencioso"]["data"]}["A"]["model"]["query"]
    assert 'from(bucket: "mov_dados")' in silence and 'r._measurement == "mov_leituras"' in silence
    assert 'set: ["mov_verify"]' in silence
    assert threshold("mov-dispositivo-silencioso") == {"type": "gt", "params": [300.0]}
    assert rules["mov-disco-cheio"]["for"] == "5m"


def test_switched_off_grafana_has_no_infra_dashboard_or_rules() -> None:
    host_dir = rendered_without_infra()
    assert not (host_dir / "opt/mov/grafana/dashboards/mov-infrastructure.json").exists()
    doc = yaml.safe_load(_read(host_dir, "grafana/provisioning/alerting/mov-rules.yml"))
    assert [g["name"] for g in doc["groups"]] == ["mov-temperatura"]
