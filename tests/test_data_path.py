"""The core data path's contracts with Telegraf, InfluxDB 2 and Grafana, as far as a render can show them.

These services cannot run here: each test states one behaviour of theirs that our files rely on (the upstream file
that decides it is named in the role that relies on it, and in docs/upstream.md) and checks the rendered files
against it. The GitHub Actions e2e job (tests/e2e/check_platform.py) proves the same behaviours with the images.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import threading
import tomllib
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import filter_plugin, run_role
from mov_render import ENVS, REPO, rendered, rendered_with_changed_tree

# The envs whose stack has all five services (local runs Mosquitto and the worker only, without a registry).
FULL_ENVS = [env for env in ENVS if env != "local"]


def _compose(env: str) -> dict[str, Any]:
    host_dir, _ = rendered(env)
    document = yaml.safe_load((host_dir / "opt/mov/compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of each short-syntax volume."""
    return {spec.split(":")[1]: spec.split(":")[0] for spec in service.get("volumes", [])}


# --- Grafana's paths -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", FULL_ENVS)
def test_grafana_environment_sets_the_paths_the_image_would_otherwise_impose(env: str) -> None:
    """The image's ENV sets GF_PATHS_DATA/PROVISIONING/PLUGINS, and GF_* beat grafana.ini: ours must be in the
    container's environment, naming the directories the stack mounts."""
    grafana = _compose(env)["services"]["grafana"]
    environment, mounts = grafana["environment"], _mounts(grafana)
    assert mounts[environment["GF_PATHS_DATA"]] == "grafana_data"
    assert environment["GF_PATHS_PLUGINS"].startswith(environment["GF_PATHS_DATA"] + "/")
    assert mounts[environment["GF_PATHS_PROVISIONING"]] == environment["GF_PATHS_PROVISIONING"]
    assert mounts[environment["GF_PATHS_CONFIG"]] == environment["GF_PATHS_CONFIG"]
    # The data volume is the directory the grafana role creates and the backup reads (grafana.db).
    volume = _compose(env)["volumes"]["grafana_data"]["driver_opts"]["device"]
    assert volume == environment["GF_PATHS_DATA"] == "/opt/mov/grafana/data"
    ini = configparser.ConfigParser(interpolation=None)
    host_dir, _ = rendered(env)
    ini.read_string((host_dir / "opt/mov/grafana/grafana.ini").read_text())
    assert not ini.has_section("paths"), "a [paths] key in grafana.ini never takes effect in the image"


# --- Tokens before their consumers --------------------------------------------------------------------------------
# Proven on the boxes by the site scenario (scenarios/site/test_site.py): against its InfluxDB double, the first
# deploy's worker never writes without its token (written before the worker starts), and a rotated token comes
# back with the worker recreated before the old one is deleted.


# --- Grafana's alert queries ----------------------------------------------------------------------------------------

_KEEP = re.compile(r"\|>\s*keep\(columns:\s*\[([^\]]*)\]\)\s*$")
_GROUP = re.compile(r"\|>\s*group\(columns:\s*\[([^\]]*)\]\)")


def _columns(listing: str) -> list[str]:
    return [c.strip().strip('"') for c in listing.split(",") if c.strip()]


def _alert_rules(env: str) -> list[dict[str, Any]]:
    host_dir = rendered_with_changed_tree() if env == "changed" else rendered(env)[0]
    doc = yaml.safe_load((host_dir / "opt/mov/grafana/provisioning/alerting/mov-rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


# "changed": staging with gateways (mov_render.CHANGED_TREE), whose offline rule the envs do not have.
@pytest.mark.parametrize("env", [*ENVS, "changed"])
def test_every_alert_query_ends_in_time_value_and_its_labels(env: str) -> None:
    """Grafana's Flux frame builder makes a time series (what reduce takes) of a table with _time, _value and its
    group key as labels; any other column makes a long frame (the rule errors), no _time no series (NoData)."""
    rules = _alert_rules(env)
    assert len(rules) >= 4
    for rule in rules:
        (query,) = [d["model"]["query"] for d in rule["data"] if d["datasourceUid"] != "__expr__"]
        keep = _KEEP.search(query.strip())
        assert keep, f"{rule['uid']}: the query must end in keep(columns: [...]):\n{query}"
        kept = _columns(keep.group(1))
        assert kept[:2] == ["_time", "_value"], rule["uid"]
        labels = kept[2:]
        groups = _GROUP.findall(query)
        assert groups, rule["uid"]
        # The labels are the last grouping's columns, so each table is one series and nothing else is left over.
        assert sorted(labels) == sorted(_columns(groups[-1])), rule["uid"]
        # Aggregates that drop _time (sum, mean, count) may not be the last step before keep.
        steps = [s.strip().split("(")[0] for s in query.split("|>")[1:]]
        assert steps[-2] not in ("sum", "mean", "count", "median"), f"{rule['uid']}: {steps}"
        reducers = [d["model"] for d in rule["data"] if d["model"].get("type") == "reduce"]
        assert reducers and all(r["expression"] == "A" for r in reducers), rule["uid"]


# --- InfluxDB retention ---------------------------------------------------------------------------------------------


def test_a_changed_retention_is_patched_onto_the_existing_bucket() -> None:
    updates = filter_plugin("influxdb", "influxdb_tokens").influxdb_retention_updates
    existing = [
        {"id": "b1", "name": "mov_dados", "retentionRules": [{"type": "expire", "everySeconds": 2592000}]},
        {"id": "b2", "name": "mov_status", "retentionRules": [{"type": "expire", "everySeconds": 7776000}]},
        {"id": "b3", "name": "mov_infra", "retentionRules": []},
    ]
    wanted = [
        {"name": "mov_dados", "retention": "60d"},
        {"name": "mov_status", "retention": "90d"},
        {"name": "mov_infra", "retention": "14d"},
        {"name": "not_yet", "retention": "1d"},
    ]

    def rule(seconds: int) -> dict[str, Any]:
        return {"retentionRules": [{"type": "expire", "everySeconds": seconds, "shardGroupDurationSeconds": 0}]}

    assert updates(existing, wanted) == [
        {"name": "mov_dados", "id": "b1", "body": rule(5184000)},
        {"name": "mov_infra", "id": "b3", "body": rule(1209600)},
    ]
    # Forever is an explicit 0: PATCH ignores an empty rule list.
    assert updates(existing[:1], [{"name": "mov_dados", "retention": "0"}]) == [
        {"name": "mov_dados", "id": "b1", "body": rule(0)}
    ]
    assert updates(existing, [{"name": "mov_dados", "retention": "30d"}]) == []


@pytest.fixture
def influx_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ModuleType, list[str]]]:
    """The InfluxDB API double of the site scenario (molecule/_shared/influx-api-double), on loopback in this process,
    set up as the image's setup leaves InfluxDB: the org, the setup bucket with no expiry, the admin. Its URL, the
    module (its state) and the requests it logged ("PATCH /api/v2/buckets/<id>")."""
    path = REPO / "molecule/_shared/influx-api-double/influx_api_double.py"
    spec = importlib.util.spec_from_file_location("influx_api_double", path)
    assert spec is not None and spec.loader is not None
    double = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(double)
    requests: list[str] = []
    monkeypatch.setattr(double, "STATE", tmp_path / "double-state.json")
    monkeypatch.setattr(double, "CONFIGS", tmp_path / "influx-configs")
    monkeypatch.setattr(double, "say", lambda record: requests.append(str(record.get("request", ""))))
    for name, value in {
        "DOCKER_INFLUXDB_INIT_ORG": "mov_industria",
        "DOCKER_INFLUXDB_INIT_BUCKET": "mov_dados",
        "DOCKER_INFLUXDB_INIT_USERNAME": "admin",
        "DOCKER_INFLUXDB_INIT_PASSWORD": INFLUX_PASSWORD,
        "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN": INFLUX_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    server = ThreadingHTTPServer(("127.0.0.1", 0), double.Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", double, requests
    finally:
        server.shutdown()
        server.server_close()


INFLUX_PASSWORD = "test-only-influx-password"
INFLUX_TOKEN = "test-only-influx-admin-token"


def test_the_token_step_applies_a_changed_retention_to_every_existing_bucket_of_the_tree(
    tmp_path: Path, influx_api: tuple[str, ModuleType, list[str]]
) -> None:
    """The influxdb role's token step, run by Ansible against the API double with the tree's buckets: the first
    deploy gives the setup bucket its retention and creates the others with theirs; a deploy with every retention
    changed sends one PATCH per bucket, whose rule InfluxDB keeps; a deploy with nothing changed sends none."""
    url, double, requests = influx_api
    buckets = json.loads((rendered("prod")[0] / "opt/mov/influxdb/tokens.json").read_text())["buckets"]
    assert {b["name"] for b in buckets} == {"mov_dados", "mov_status", "mov_historico", "mov_infra"}

    def deploy(tree: list[dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
        requests.clear()
        run_role(
            tmp_path,
            "influxdb",
            {
                "influxdb_api_url": url,
                "influxdb_org": "mov_industria",
                "influxdb_admin_user": "admin",
                "influxdb_admin_password": INFLUX_PASSWORD,
                "influxdb_admin_token": INFLUX_TOKEN,
                "influxdb_bucket": tree[0]["name"],
                "influxdb_retention": tree[0]["retention"],
                "influxdb_extra_buckets": tree[1:],
            },
            tasks_from="tokens",
        )
        return {b["name"]: b["retentionRules"] for b in double.load()["buckets"]}

    seconds = filter_plugin("influxdb", "influxdb_tokens").influxdb_duration_seconds

    def rule(retention: str) -> dict[str, Any]:
        return {"type": "expire", "everySeconds": seconds(retention), "shardGroupDurationSeconds": 0}

    # The setup bucket by a PATCH, the others by their creation (POST, with no shard group duration).
    first = deploy(buckets)
    assert first == {
        b["name"]: [rule(b["retention"]) if i == 0 else {"type": "expire", "everySeconds": seconds(b["retention"])}]
        for i, b in enumerate(buckets)
    }
    ids = {b["name"]: b["id"] for b in double.load()["buckets"]}

    changed = [{**b, "retention": f"{seconds(b['retention']) // 86400 + 7}d"} for b in buckets]
    after = deploy(changed)
    assert sorted(r for r in requests if r.startswith("PATCH ")) == sorted(
        f"PATCH /api/v2/buckets/{ids[b['name']]}" for b in buckets
    )
    assert after == {b["name"]: [rule(b["retention"])] for b in changed}

    assert deploy(changed) == after
    assert not [r for r in requests if r.startswith(("PATCH ", "POST /api/v2/buckets"))], requests


# --- Telegraf's health: delivery, not the process -------------------------------------------------------------------


def _telegraf(env: str) -> dict[str, Any]:
    host_dir, _ = rendered(env)
    return tomllib.loads((host_dir / "opt/mov/telegraf/telegraf.conf").read_text())


def _health_after(config: dict[str, Any], reports: list[dict[str, int]]) -> list[bool]:
    """Feed internal_write reports (one per flush, for the readings output) through our health processor, then judge
    each as outputs.health does: every compares must hold and every contains field be present (a model of
    plugins/outputs/health at v1.32.3, not Telegraf itself). The processor runs under Python (see
    test_service_configs.starlark_apply)."""
    (processor,) = [p for p in config["processors"]["starlark"] if p["namepass"] == ["internal_write"]]
    (health,) = config["outputs"]["health"]
    namespace: dict[str, Any] = {}
    exec(processor["source"], namespace)
    verdicts = []
    for fields in reports:
        metric = SimpleNamespace(tags={"output": "influxdb_v2", "alias": "readings"}, fields=dict(fields))
        out = namespace["apply"](metric)
        ok = all(c["field"] in out.fields and out.fields[c["field"]] < c["lt"] for c in health["compares"])
        ok = ok and all(c["field"] in out.fields for c in health["contains"])
        verdicts.append(ok)
    return verdicts


@pytest.mark.parametrize("env", ENVS)
def test_telegraf_is_unhealthy_while_its_writes_fail_and_healthy_once_they_succeed(env: str) -> None:
    config = _telegraf(env)
    # A revoked token: every flush fails and influxdb_v2 logs an error (errors counts up); restored: it stops.
    reports = [
        {"errors": 0, "metrics_dropped": 0},
        {"errors": 0, "metrics_dropped": 0},
        {"errors": 2, "metrics_dropped": 0},
        {"errors": 4, "metrics_dropped": 0},
        {"errors": 4, "metrics_dropped": 0},
        {"errors": 4, "metrics_dropped": 7},
        {"errors": 4, "metrics_dropped": 7},
    ]
    assert _health_after(config, reports) == [True, True, False, False, True, False, True]
    (health,) = config["outputs"]["health"]
    assert health["namepass"] == ["internal_write"] and health["tagpass"] == {"output": ["influxdb_v2"]}
    # The two InfluxDB outputs keep stats of their own (without an alias they share one set).
    aliases = [o.get("alias") for o in config["outputs"]["influxdb_v2"]]
    assert None not in aliases and len(set(aliases)) == len(aliases)


@pytest.mark.parametrize("env", FULL_ENVS)
def test_the_compose_healthcheck_asks_telegrafs_health_output(env: str) -> None:
    (health,) = _telegraf(env)["outputs"]["health"]
    address = health["service_address"]
    assert address.startswith("http://127.0.0.1:"), "the health endpoint stays on the container's loopback"
    test = _compose(env)["services"]["telegraf"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "curl", "--fail"] and test[-1] == address + "/"
    assert not any("cmdline" in part for part in test)


def test_the_docker_inputs_deprecated_options_go_with_telegraf_1_35() -> None:
    """At 1.32.3 perdevice/total must be set for per-container totals (plugins/inputs/docker/docker.go, Init: unset,
    perdevice defaults to true and total to false, which rewrites the *_include lists); 1.35 removes them. A bump of
    the pinned image past 1.35 fails here until the options are dropped."""
    images = yaml.safe_load((REPO / "group_vars/all/services.yml").read_text())["mov_images"]
    version = tuple(int(part) for part in images["telegraf"].split(":")[1].split("@")[0].split(".")[:2])
    (docker,) = _telegraf("prod")["inputs"]["docker"]
    deprecated = {"perdevice", "total"} & docker.keys()
    if version >= (1, 35):
        assert not deprecated, "Telegraf 1.35 removed perdevice/total: drop them (roles/telegraf/vars/main.yml)"
    else:
        assert docker["perdevice"] is False and docker["total"] is True
        assert docker["perdevice_include"] == [] and sorted(docker["total_include"]) == ["blkio", "cpu", "network"]
