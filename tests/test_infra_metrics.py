"""Infrastructure metrics (mov_infra_metrics_enabled): Telegraf's host and Docker inputs into their own bucket, the
token and bucket that go with them, the compose mounts, the "MOV infrastructure" dashboard and its alert rules; and
the platform watching itself there: the analytics worker's own metrics, stopped containers, backups and drills.

Telegraf, InfluxDB and Grafana do not run here: the rendered files are parsed (the render preview, shared with the
other render tests) and checked for what each service will be told; the e2e job of .github/workflows/ci.yml runs
them for real and queries the infrastructure bucket.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from mov_analytics.metrics import Metrics
from mov_host.backup.influx import result_point
from mov_host.backup.records import BackupStatus, DrillStatus
from mov_render import ENVS, REPO, rendered, resolved, workspace
from prometheus_client import generate_latest

INFRA_INPUTS = ("cpu", "mem", "disk", "diskio", "net", "docker", "internal")
HOST_MOUNTS = (
    "/:/hostfs:ro",
    "/proc:/hostfs/proc:ro",
    "/sys:/hostfs/sys:ro",
)
SOCKET = "/var/run/docker.sock:/var/run/docker.sock:ro"
RULES = {"mov-disco-cheio", "mov-container-reiniciando", "mov-dispositivo-silencioso", "mov-mensagens-descartadas"}
PLATFORM_RULES = {"mov-container-parado", "mov-analytics-parado", "mov-backup-atrasado", "mov-restauracao-falhou"}
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
    # and no label that changes per deploy (the config checksum) becomes a tag: a new series each time.
    labels = docker["docker_label_include"]
    assert "org.mov.config-sha256" not in labels and not any("*" in label for label in labels)
    (disk,) = config["inputs"]["disk"]
    assert "overlay" in disk["ignore_fs"] and "tmpfs" in disk["ignore_fs"]
    assert config["inputs"]["net"][0]["ignore_protocol_stats"] is True
    assert config["inputs"]["cpu"][0]["report_active"] is True
    # The readings' input is untouched and untagged; the broker's drop counter goes to the infrastructure bucket (the
    # gateways' state and heartbeat too: tests/test_edge_consumers.py).
    readings, broker, *gateways = config["inputs"]["mqtt_consumer"]
    assert [g["name_override"] for g in gateways] == ["mov_gateway", "mov_gateway"]
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
    # Its own buffer: 900 s of 150 metrics (and, where it scrapes the worker, its 60) per 10 s, x2, rounded up to a
    # thousand.
    assert infra["metric_buffer_limit"] == (38_000 if env in STACK_ENVS else 27_000)
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
    assert grants["grafana"] == {
        ("read", "mov_dados"),
        ("read", "mov_status"),
        ("read", "mov_historico"),
        ("read", "mov_infra"),
    }
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
    worker = env in STACK_ENVS  # where Telegraf scrapes the worker (the local env runs no Telegraf)
    assert titles[:7] == [
        "CPU (%)",
        "Memória (%)",
        "Disco usado (%)",
        "Disco: leitura e escrita (bytes/s)",
        "Rede por container (bytes/s)",
        "Reinícios por container",
        "Containers: estado e reinícios",
    ]
    assert len(titles) == (12 if worker else 7)
    assert len({p["id"] for p in dashboard["panels"]}) == len(titles)
    measurements = [
        '"cpu"',
        '"mem"',
        '"disk"',
        '"diskio"',
        '"docker_container_net"',
        '"docker_container_status"',
        '"docker_container_status"',
    ] + ['"mov_analytics"'] * (len(titles) - 7)
    for panel, measurement in zip(dashboard["panels"], measurements, strict=True):
        assert panel["datasource"]["uid"] == "mov-influxdb"
        (target,) = panel["targets"]
        assert 'from(bucket: "mov_infra")' in target["query"], panel["title"]
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
    assert set(groups) == {"mov-temperatura", "mov-infraestrutura", "mov-plataforma"}
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


# --- The platform watches itself ------------------------------------------------------------------------------


def _rules(host_dir: Path, group: str) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(_read(host_dir, "grafana/provisioning/alerting/mov-rules.yml"))
    (found,) = [g for g in doc["groups"] if g["name"] == group]
    return {r["uid"]: r for r in found["rules"]}


def _query(rule: dict[str, Any]) -> str:
    (query,) = [d["model"]["query"] for d in rule["data"] if d["refId"] == "A"]
    assert isinstance(query, str)
    return query


def _threshold(rule: dict[str, Any]) -> Any:
    (condition,) = {d["refId"]: d for d in rule["data"]}["C"]["model"]["conditions"]
    return condition["evaluator"]


def telegraf_v2_fields(exposition: str, exclude: list[str]) -> dict[str, set[str]]:
    """{field: label names} of the metrics inputs.prometheus makes of a text exposition with metric_version 2: one
    field per sample, named as the family its TYPE line declares plus the histogram's _bucket/_sum/_count (which is
    each sample's own name in this format), the sample's labels as tags; `fieldexclude` globs drop fields (a model of
    telegraf v1.32.3 plugins/parsers/prometheus/metric_v2.go and models/filter.go, not Telegraf itself)."""
    fields: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
        if not match or any(fnmatch.fnmatchcase(match.group(1), pattern) for pattern in exclude):
            continue
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(2) or ""))
        fields.setdefault(match.group(1), set()).update(labels)
    return fields


@pytest.mark.parametrize("env", STACK_ENVS)
def test_telegraf_scrapes_the_workers_metrics_into_the_fields_grafana_reads(env: str) -> None:
    host_dir, _ = rendered(env)
    config = _telegraf(host_dir)
    (scrape,) = config["inputs"]["prometheus"]
    (url,) = scrape["urls"]
    # The worker's own port (its config's http.port) and service name on the compose network; nothing published.
    worker = yaml.safe_load(_read(host_dir, "analytics/config.yaml"))
    assert url == f"http://analytics:{worker['http']['port']}/metrics"
    assert "analytics" in yaml.safe_load(_read(host_dir, "compose.yaml"))["services"]
    assert scrape["tags"] == {"mov_route": "infra"}
    assert scrape["interval"] == f"{tree()['mov_infra_metrics_interval_s']}s"
    assert scrape["metric_version"] == 2 and scrape["content_type_override"] == "text"
    # What the worker serves, as Telegraf stores it; every field and tag the dashboard and the rules name is there.
    metrics = Metrics()
    metrics.alerts_sent.labels("webhook").inc()
    metrics.write_latency.observe(0.02)
    fields = telegraf_v2_fields(generate_latest(metrics.registry).decode(), scrape["fieldexclude"])
    assert not [name for name in fields if name.endswith("_created")]
    measurement = scrape["name_override"]
    dashboard = json.loads(_read(host_dir, "grafana/dashboards/mov-infrastructure.json"))
    queries = [p["targets"][0]["query"] for p in dashboard["panels"] if measurement in p["targets"][0]["query"]]
    queries.append(_query(_rules(host_dir, "mov-plataforma")["mov-analytics-parado"]))
    assert len(queries) == 6
    named = {name for query in queries for name in re.findall(rf'"({measurement}_[a-z_]+)"', query)}
    named |= {name for query in queries for name in re.findall(rf"r\.({measurement}_[a-z_]+)", query)}
    assert named and named <= set(fields), named - set(fields)
    for query in queries:
        assert f'r._measurement == "{measurement}"' in query
        for tag in re.findall(r'group\(columns: \["(reason|channel)"\]\)', query):
            assert any(tag in labels for labels in fields.values()), tag
    assert "le" in fields[f"{measurement}_write_latency_seconds_bucket"]


def test_without_telegraf_and_the_worker_nothing_is_scraped_or_watched() -> None:
    """The local env runs no Telegraf: no scrape, no worker panel, no stall rule (it would fire on no data)."""
    host_dir, _ = rendered("local")
    assert "prometheus" not in _telegraf(host_dir)["inputs"]
    assert set(_rules(host_dir, "mov-plataforma")) == PLATFORM_RULES - {"mov-analytics-parado"}
    dashboard = json.loads(_read(host_dir, "grafana/dashboards/mov-infrastructure.json"))
    assert not [p for p in dashboard["panels"] if p["title"].startswith("Analytics")]


@pytest.mark.parametrize("env", STACK_ENVS)
def test_the_platform_rules_and_the_worker_panels_are_provisioned(env: str) -> None:
    host_dir, _ = rendered(env)
    rules = _rules(host_dir, "mov-plataforma")
    assert set(rules) == PLATFORM_RULES
    for uid, rule in rules.items():
        by_ref = {d["refId"]: d for d in rule["data"]}
        assert rule["condition"] == "C" and by_ref["A"]["datasourceUid"] == "mov-influxdb", uid
        assert by_ref["B"]["model"]["type"] == "reduce" and by_ref["C"]["model"]["type"] == "threshold", uid
        assert rule["noDataState"] == "OK" and rule["execErrState"] == "Error", uid
        # The rule's time range covers its query's own range.
        ranges = [int(n) * {"s": 1, "h": 3600}[u] for n, u in re.findall(r"range\(start: -(\d+)([sh])", _query(rule))]
        assert by_ref["A"]["relativeTimeRange"]["from"] >= max(ranges), uid
    # A container removed on purpose ages out of the query's 90 s before `for` is over; one left stopped does not.
    stopped = rules["mov-container-parado"]
    assert stopped["for"] == "2m" and "range(start: -90s)" in _query(stopped)
    # No successful backup for mov_backup_max_age_hours, in seconds (the query's value); none at all fires too.
    hours = yaml.safe_load((REPO / "group_vars/all/backup.yml").read_text())["mov_backup_max_age_hours"]
    assert _threshold(rules["mov-backup-atrasado"]) == {"type": "gt", "params": [hours * 3600.0]}
    never = re.search(r"array\.from\(rows: \[\{.*_value: ([0-9.]+)\}\]\)", _query(rules["mov-backup-atrasado"]))
    assert never and float(never.group(1)) > hours * 3600
    # Readings of the last mov_analytics_stall_for against the counter over that and one more minute.
    stall = _query(rules["mov-analytics-parado"])
    assert "range(start: -300s, stop: -30s)" in stall and "range(start: -360s)" in stall
    titles = [p["title"] for p in json.loads(_read(host_dir, "grafana/dashboards/mov-infrastructure.json"))["panels"]]
    assert [t for t in titles if t.startswith("Analytics")] == [
        "Analytics: leituras por segundo",
        "Analytics: leituras rejeitadas por motivo (por intervalo)",
        "Analytics: latência de escrita no InfluxDB (s)",
        "Analytics: buffer de escrita (% da capacidade)",
        "Analytics: alertas enviados por canal (por intervalo)",
    ]


@pytest.mark.parametrize("env", STACK_ENVS)
def test_the_stopped_container_rule_filters_on_labels_telegraf_keeps_and_only_the_stack_has(env: str) -> None:
    host_dir, _ = rendered(env)
    query = _query(_rules(host_dir, "mov-plataforma")["mov-container-parado"])
    labels = set(re.findall(r'r\["([a-z.]+)"\]', query))
    assert labels == {"org.mov.service", "com.docker.compose.oneoff"}
    (docker,) = _telegraf(host_dir)["inputs"]["docker"]
    assert labels <= set(docker["docker_label_include"])
    # Every service of the stack carries the label (compose adds com.docker.compose.oneoff itself); the restore
    # drill's scratch project copies a service's image, env, user and secrets only, not its labels.
    services = yaml.safe_load(_read(host_dir, "compose.yaml"))["services"]
    assert {name: s["labels"]["org.mov.service"] for name, s in services.items()} == {n: n for n in services}


def test_mov_backup_records_its_results_where_the_backup_rules_read_them() -> None:
    rules = _rules(rendered("staging")[0], "mov-plataforma")
    bucket = resolved("backup_metrics_bucket")
    assert bucket == "mov_infra"
    assert resolved("backup_metrics_bucket", "-e", '{"mov_infra_metrics_enabled": false}') == ""
    ok: BackupStatus = {
        "time": "2026-12-06T02:30:00+00:00",
        "result": "ok",
        "snapshot": "20261206T023000Z",
        "size_bytes": 1,
        "new_bytes": 1,
        "offsite": "disabled",
        "duration_s": 12.5,
    }
    failed: DrillStatus = {
        "time": "2026-12-06T04:30:00+00:00",
        "result": "failed",
        "origin": "local",
        "snapshot": None,
        "checks": [],
    }
    for kind, status, uid in (("backup", ok, "mov-backup-atrasado"), ("drill", failed, "mov-restauracao-falhou")):
        line = result_point(kind, status)  # type: ignore[arg-type]
        series, fields, stamp = line.split(" ")
        measurement, tag = series.split(",")
        key, value = tag.split("=")
        query = _query(rules[uid])
        assert f'from(bucket: "{bucket}")' in query
        assert f'r._measurement == "{measurement}"' in query and f'r.{key} == "{value}"' in query
        assert 'r._field == "ok"' in query and fields.split(",")[0] in ("ok=1i", "ok=0i")
        assert int(stamp) == int(datetime.fromisoformat(status["time"]).astimezone(UTC).timestamp())
    assert result_point("backup", ok) == "mov_backup,kind=backup ok=1i,duration_s=12.500 1796524200"
    assert result_point("drill", failed) == "mov_backup,kind=drill ok=0i 1796531400"


def test_one_backup_max_age_reaches_movctl_the_status_page_and_grafana() -> None:
    names = "[movctl_backup_max_age_hours,status_page_backup_max_age_hours,grafana_backup_max_age_hours]"
    assert resolved(names) == [26, 26, 26]
    assert resolved(names, "-e", '{"mov_backup_max_age_hours": 50}') == [50, 50, 50]
    files = "[backup_status_file,movctl_backup_status_file,status_page_backup_status_file,"
    files += "status_page_backup_history_file]"
    assert resolved(files, "-e", '{"mov_backup_status_dir": "/srv/b"}') == [
        "/srv/b/status.json",
        "/srv/b/status.json",
        "/srv/b/status.json",
        "/srv/b/history.jsonl",
    ]
