"""The logs part (mov_logs_enabled): Loki's and Alloy's configs, their compose services, Grafana's Loki datasource.

Loki and Alloy do not run here (neither is in Debian: the Debian package named `loki` is a genetics program): the
rendered files are parsed and checked for what each service will be told. The e2e job of .github/workflows/ci.yml
runs the real images, their own validators (`loki -verify-config`, `alloy fmt`) and a query for shipped lines.

Cost: one extra render (staging with the switch on); the switched-off checks reuse the render the other render tests
share, and the role's own checks run its render tasks alone on the controller (seconds).
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ansible_env, role_preflights
from mov_render import REPO, rendered, resolved, workspace

ALLOY_COMPONENTS = {
    ("discovery.docker", "containers"),
    ("loki.relabel", "containers"),
    ("loki.source.docker", "containers"),
    ("loki.relabel", "journal"),
    ("loki.source.journal", "host"),
    ("loki.write", "loki"),
}
IMAGE_TAG = re.compile(r"^[a-z0-9./-]+:v?\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?$")


def group_vars(name: str) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "group_vars" / "all" / name).read_text())
    assert isinstance(data, dict)
    return data


@functools.cache
def rendered_with_logs() -> Path:
    """staging rendered once more with the logs part switched on (its stack runs every service): Grafana's, the
    logs' and the stack's files."""
    ws = workspace()
    dest = ws.root / "render" / "staging-logs"
    # The roles whose files the logs part adds to or changes (render.yml's render_roles).
    ws.render(
        "staging", dest, "-e", json.dumps({"mov_logs_enabled": True, "render_roles": ["grafana", "logs", "stack"]})
    )
    (host_dir,) = [p for p in dest.iterdir() if p.is_dir()]
    return host_dir


def _read(host_dir: Path, path: str) -> str:
    return (host_dir / "opt/mov" / path).read_text()


def _compose(host_dir: Path) -> dict[str, Any]:
    data = yaml.safe_load(_read(host_dir, "compose.yaml"))
    assert isinstance(data, dict)
    return data


def alloy_components(text: str) -> set[tuple[str, str]]:
    """The top-level `kind "label" {` blocks of an Alloy config (comments dropped), braces checked balanced."""
    lines = [line.split("//", 1)[0] if not line.lstrip().startswith("//") else "" for line in text.splitlines()]
    body = "\n".join(lines)
    assert body.count("{") == body.count("}"), "unbalanced braces"
    depth, found = 0, set()
    for line in lines:
        if depth == 0 and (m := re.match(r'^([a-z_]+(?:\.[a-z_]+)+) "([A-Za-z0-9_]+)" \{\s*$', line)):
            found.add((m.group(1), m.group(2)))
        depth += line.count("{") - line.count("}")
    return found


def alloy_references(text: str) -> set[tuple[str, str]]:
    """Components another one points at (`loki.write.loki.receiver`, `loki.relabel.journal.rules`, ...)."""
    refs = re.findall(r"= \[?((?:discovery|loki)\.[a-z_.]+)\.(receiver|rules|targets)\b", text)
    found = set()
    for path, _export in refs:
        kind, label = path.rsplit(".", 1)
        found.add((kind, label))
    return found


# --- the config tree -------------------------------------------------------------------------------------------


def test_the_tree_keeps_logs_off_by_default_with_a_retention_in_days() -> None:
    logs = group_vars("logs.yml")
    assert logs["mov_logs_enabled"] is False
    assert isinstance(logs["mov_logs_retention_days"], int) and logs["mov_logs_retention_days"] >= 1
    assert logs["logs_retention_days"] == "{{ mov_logs_retention_days }}"
    assert logs["grafana_loki_enabled"] == "{{ mov_logs_enabled | bool }}"


def test_loki_and_alloy_are_pinned_in_the_one_versions_table() -> None:
    services = group_vars("services.yml")
    images = services["mov_images"]
    assert images["loki"].startswith("grafana/loki:3.") and IMAGE_TAG.match(images["loki"])
    assert images["alloy"].startswith("grafana/alloy:v1.") and IMAGE_TAG.match(images["alloy"])
    assert services["mov_service_uids"]["loki"] == {"uid": 10001, "gid": 10001}
    assert services["mov_service_uids"]["alloy"] == {"uid": 473, "gid": 473}


def test_nothing_of_the_logs_part_is_public() -> None:
    ports = group_vars("main.yml")["mov_ports"]
    assert ports["loki"]["reach"] == "loopback"
    assert sorted(p["port"] for p in ports.values() if p["reach"] == "public") == [80, 443, 8883]


def test_the_stack_movctl_and_the_update_know_loki_and_alloy_when_on() -> None:
    # The local env runs mosquitto and analytics; movctl start/stop/logs and update's "what changes" read the same list.
    on = ("-e", '{"mov_logs_enabled": true}')
    assert resolved("mov_compose_services") == ["mosquitto", "analytics"]
    assert (
        resolved("movctl_services", *on)
        == resolved("stack_services", *on)
        == ["mosquitto", "analytics", "loki", "alloy"]
    )


# --- switched on: the render preview --------------------------------------------------------------------------


def test_loki_config_keeps_lines_as_long_as_the_tree_says() -> None:
    config = yaml.safe_load(_read(rendered_with_logs(), "logs/loki/loki.yaml"))
    days = group_vars("logs.yml")["mov_logs_retention_days"]
    assert config["limits_config"]["retention_period"] == f"{days * 24}h"
    compactor = config["compactor"]
    assert compactor["retention_enabled"] is True and compactor["delete_request_store"] == "filesystem"
    assert compactor["working_directory"] == "/loki/compactor"
    (schema,) = config["schema_config"]["configs"]
    assert schema == {
        "from": "2024-04-01",
        "store": "tsdb",
        "object_store": "filesystem",
        "schema": "v13",
        "index": {"prefix": "index_", "period": "24h"},
    }
    assert config["common"]["path_prefix"] == "/loki" and config["common"]["replication_factor"] == 1
    assert config["common"]["storage"]["filesystem"]["chunks_directory"] == "/loki/chunks"
    assert config["server"]["http_listen_port"] == 3100 and config["auth_enabled"] is False
    assert config["analytics"] == {"reporting_enabled": False}


def test_alloy_reads_the_project_containers_and_the_journal_into_loki_on_the_internal_network() -> None:
    text = _read(rendered_with_logs(), "logs/alloy/config.alloy")
    components = alloy_components(text)
    assert components == ALLOY_COMPONENTS
    # Every component another one points at is declared.
    assert alloy_references(text) <= components, alloy_references(text) - components
    assert 'values = ["com.docker.compose.project=mov"]' in text
    assert text.count('host          = "unix:///var/run/docker.sock"') == 1
    assert 'refresh_interval = "15s"' in text
    assert 'url = "http://loki:3100/loki/api/v1/push"' in text
    assert 'labels        = {source = "docker", host = "mov-staging-1"}' in text
    assert 'labels        = {source = "journal", host = "mov-staging-1"}' in text
    assert 'source_labels = ["__meta_docker_container_label_com_docker_compose_service"]' in text
    assert 'max_age       = "12h"' in text


def test_compose_runs_loki_and_alloy_on_the_internal_network_with_nothing_public() -> None:
    compose = _compose(rendered_with_logs())
    services = compose["services"]
    loki, alloy = services["loki"], services["alloy"]
    for name, service in (("loki", loki), ("alloy", alloy)):
        assert service["networks"] == ["internal"], name
        assert service["mem_limit"] and service["logging"]["options"]["max-size"], name
        assert service["healthcheck"]["test"] and service["healthcheck"]["retries"] >= 1, name
        assert "privileged" not in service and "network_mode" not in service, name
    assert loki["image"] == "grafana/loki:3.3.2" and alloy["image"] == "grafana/alloy:v1.5.1"
    assert loki["user"] == "10001:10001" and alloy["user"] == "473:473"
    # Loki on the host's loopback only, like InfluxDB; Alloy publishes nothing.
    assert loki["ports"] == ["127.0.0.1:3100:3100"] and "ports" not in alloy
    assert loki["command"] == ["-config.file=/opt/mov/logs/loki/loki.yaml"]
    assert "loki_data:/loki" in loki["volumes"]
    assert compose["volumes"]["loki_data"] == {}
    assert compose["volumes"]["alloy_data"]["driver_opts"]["device"] == "/opt/mov/logs/alloy/data"
    # Alloy only reads what it collects: everything but its positions is mounted read-only.
    assert set(alloy["volumes"]) == {
        "/opt/mov/logs/alloy/config.alloy:/opt/mov/logs/alloy/config.alloy:ro",
        "alloy_data:/var/lib/alloy/data",
        "/var/run/docker.sock:/var/run/docker.sock:ro",
        "/etc/machine-id:/etc/machine-id:ro",
        "/var/log/journal:/var/log/journal:ro",
        "/run/log/journal:/run/log/journal:ro",
    }
    assert alloy["command"][:2] == ["run", "/opt/mov/logs/alloy/config.alloy"]
    assert "--server.http.listen-addr=127.0.0.1:12345" in alloy["command"]
    assert alloy["depends_on"] == {"loki": {"condition": "service_healthy"}}
    # The preview touches no host, so it knows no gid to add.
    assert alloy["group_add"] == []
    # A changed config recreates its container: each is labelled with its file's checksum.
    assert loki["labels"]["org.mov.config-sha256"] != alloy["labels"]["org.mov.config-sha256"]
    public = [
        port
        for service in services.values()
        for port in service.get("ports", [])
        if not str(port).startswith("127.0.0.1:")
    ]
    assert public == ["8883:8883"], public


def test_grafana_gets_a_loki_datasource_on_the_compose_network() -> None:
    doc = yaml.safe_load(_read(rendered_with_logs(), "grafana/provisioning/datasources/mov-loki.yml"))
    (source,) = doc["datasources"]
    assert source["uid"] == "mov-loki" and source["type"] == "loki"
    assert source["url"] == "http://loki:3100" and source["isDefault"] is False and source["editable"] is False
    assert "deleteDatasources" not in doc
    # The InfluxDB datasource stays the default.
    influx = yaml.safe_load(_read(rendered_with_logs(), "grafana/provisioning/datasources/mov-influxdb.yml"))
    assert influx["datasources"][0]["isDefault"] is True


# --- switched off (the default) --------------------------------------------------------------------------------


def test_switched_off_nothing_of_it_is_rendered_and_grafana_deletes_the_datasource() -> None:
    host_dir, _ = rendered("staging")
    assert not (host_dir / "opt/mov/logs").exists()
    compose = _compose(host_dir)
    assert not {"loki", "alloy"} & set(compose["services"])
    assert not {"loki_data", "alloy_data"} & set(compose.get("volumes", {}))
    doc = yaml.safe_load(_read(host_dir, "grafana/provisioning/datasources/mov-loki.yml"))
    assert doc == {"apiVersion": 1, "deleteDatasources": [{"name": "MOV Loki", "orgId": 1}]}


# --- the role alone, and the stack's preflight ------------------------------------------------------------------


def _render_role(tmp_path: Path, variables: dict[str, object]) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "render_logs.yml"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        '  vars:\n    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        "  tasks:\n    - ansible.builtin.include_role:\n        name: logs\n        tasks_from: render\n"
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"mov_render_root": str(tmp_path / "root"), **variables}))
    return subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(playbook), "-e", f"@{extra}"],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_role_alone_writes_the_retention_and_can_leave_the_journal_out(tmp_path: Path) -> None:
    result = _render_role(
        tmp_path,
        {
            "logs_retention_days": 45,
            "logs_journal_enabled": False,
            "logs_compose_project": "other",
            "logs_host_label": "box-1",
        },
    )
    assert result.returncode == 0, result.stdout[-3000:]
    root = tmp_path / "root/opt/mov/logs"
    config = yaml.safe_load((root / "loki/loki.yaml").read_text())
    assert config["limits_config"]["retention_period"] == "1080h"
    alloy = (root / "alloy/config.alloy").read_text()
    assert alloy_components(alloy) == ALLOY_COMPONENTS - {("loki.source.journal", "host"), ("loki.relabel", "journal")}
    assert "journal" not in alloy
    assert 'values = ["com.docker.compose.project=other"]' in alloy and 'host = "box-1"' in alloy
    assert (root / "alloy/data").is_dir()


WRONG: dict[str, tuple[dict[str, object], str]] = {
    "retention": ({"logs_retention_days": 0}, "logs_retention_days (the tree's mov_logs_retention_days, 0)"),
    "journal-age": ({"logs_journal_max_age": "a day"}, "logs_journal_max_age (mov_logs_journal_max_age, a day)"),
    "url-with-path": (
        {"logs_loki_url": "http://loki:3100/loki/api/v1/push"},
        "logs_loki_url (http://loki:3100/loki/api/v1/push)",
    ),
    "schema-date": ({"logs_loki_schema_from": "2024-4-1"}, "logs_loki_schema_from (2024-4-1)"),
}


@pytest.fixture(scope="module")
def wrong_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Each wrong setting's preflight failures, all in one run (conftest.role_preflights)."""
    cases = {name: variables for name, (variables, _) in WRONG.items()}
    return role_preflights("logs", cases, tmp_path_factory.mktemp("logs-preflight"), gather_facts=False)


@pytest.mark.parametrize("case", WRONG)
def test_wrong_logs_settings_fail_naming_the_variable(wrong_outcomes: dict[str, list[str]], case: str) -> None:
    failures = wrong_outcomes[case]
    assert any(WRONG[case][1] in failure for failure in failures), failures


def test_the_stack_refuses_half_of_the_logs_part(tmp_path: Path) -> None:
    images = {"mosquitto": "eclipse-mosquitto:2.0.21", "loki": "grafana/loki:3.3.2", "alloy": "grafana/alloy:v1.5.1"}
    whole: dict[str, object] = {"stack_services": ["mosquitto", "loki", "alloy"], "stack_images": images}
    cases = {"whole": whole, "half": {**whole, "stack_services": ["mosquitto", "alloy"]}}
    cases["clash"] = {**whole, "stack_loki_port": 8086}
    found = role_preflights("stack", cases, tmp_path, gather_facts=False)
    assert found["whole"] == []
    assert any("must hold both loki and alloy or neither" in f for f in found["half"]), found["half"]
    assert any("all must be distinct port numbers" in f for f in found["clash"]), found["clash"]


# --- the e2e job's Loki check (tests/e2e/check_platform.py logs) ------------------------------------------------


def test_the_e2e_check_counts_the_lines_of_a_loki_answer_and_nothing_else() -> None:
    sys.path.append(str(REPO / "tests" / "e2e"))
    import check_platform

    answer = {
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": [
                {
                    "stream": {"service": "mosquitto"},
                    "values": [
                        ["1764000000000000000", "New client connected"],
                        ["1764000001000000000", "Client verify disconnected"],
                    ],
                },
                {
                    "stream": {"service": "mosquitto", "stream": "stderr"},
                    "values": [["1764000002000000000", "warning"]],
                },
            ],
        },
    }
    assert check_platform.loki_lines(json.dumps(answer)) == [
        "New client connected",
        "Client verify disconnected",
        "warning",
    ]
    assert check_platform.loki_lines(json.dumps({**answer, "data": {"result": []}})) == []
    assert check_platform.loki_lines(json.dumps({"status": "error", "error": "parse error"})) == []
    assert check_platform.loki_lines("Loki is starting up") == []
