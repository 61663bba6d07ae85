"""The central side's consumers of the edge gateways (docs/plants.md): Telegraf stores each gateway's state, backlog and
heartbeat, and Grafana alerts on a gateway of the inventory whose heartbeat is older than mov_edge_offline_for.

The rendered configs are the cached renders of tests/mov_render.py (staging as shipped, and staging with the changed
tree and gateways, CHANGED_TREE); the rule's query shape is checked with every other rule's (tests/test_data_path.py).
The heartbeat itself is bridged by the gateway's broker: tests/test_edge_gateway.py sees it arrive and stop.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from conftest import role_preflights
from mov_render import CHANGED_TREE, REPO, rendered, rendered_with_changed_tree, resolved


def _platform_rules(host_dir: Path) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((host_dir / "opt/mov/grafana/provisioning/alerting/mov-rules.yml").read_text())
    (group,) = [g for g in doc["groups"] if g["name"] == "mov-plataforma"]
    return {r["uid"]: r for r in group["rules"]}


def _gateway_inputs(host_dir: Path) -> list[dict[str, Any]]:
    config = tomllib.loads((host_dir / "opt/mov/telegraf/telegraf.conf").read_text())
    return [c for c in config["inputs"]["mqtt_consumer"] if c.get("name_override") == "mov_gateway"]


def test_a_gateway_silent_for_longer_than_the_tree_s_window_fires_and_so_does_one_never_heard() -> None:
    rule = _platform_rules(rendered_with_changed_tree())["mov-gateway-offline"]
    by_ref = {d["refId"]: d for d in rule["data"]}
    query = by_ref["A"]["model"]["query"]
    # mov_edge_offline_for 7m: older than 420 s fires; at once (for 0s): the heartbeat comes every 10 s.
    (condition,) = by_ref["C"]["model"]["conditions"]
    assert condition["evaluator"] == {"type": "gt", "params": [420.0]}
    assert rule["for"] == "0s" and rule["labels"] == {"severity": "alerta"}
    assert by_ref["B"]["model"] == {
        "refId": "B",
        "type": "reduce",
        "expression": "A",
        "reducer": "last",
        "settings": {"mode": "dropNN"},
    }
    assert rule["noDataState"] == "OK" and rule["execErrState"] == "Error"
    # The heartbeat Telegraf stores (field uptime, tag planta), for the inventory's plants only.
    assert 'from(bucket: "mov_infra")' in query
    assert 'r._measurement == "mov_gateway" and r._field == "uptime"' in query
    assert 'sites = ["fabrica_sul", "fabrica_norte"]' in query and "contains(value: r.planta, set: sites)" in query
    # A plant never heard from gets the look-back (a day, more than 420 s) and fires too; the rule's range covers it.
    never = re.findall(r'\{_time: now\(\), planta: "([^"]+)", _value: ([0-9.]+)\}', query)
    assert never == [("fabrica_sul", "86400.0"), ("fabrica_norte", "86400.0")]
    assert "range(start: -86400s)" in query and by_ref["A"]["relativeTimeRange"] == {"from": 86400, "to": 0}
    assert "{{ $labels.planta }}" in rule["annotations"]["description"]


def test_without_gateways_there_is_no_offline_rule() -> None:
    host_dir, _ = rendered("staging")
    assert "mov-gateway-offline" not in _platform_rules(host_dir)


def test_telegraf_stores_each_gateway_s_numbers_and_heartbeat_with_its_plant() -> None:
    host_dir, _ = rendered("staging")
    numbers, heartbeat = _gateway_inputs(host_dir)
    assert numbers["topics"] == [f"mov/plantas/+/gateway/{n}" for n in ("estado", "fila", "descartadas")]
    assert numbers["data_type"] == "integer" and "value_field_name" not in numbers
    assert numbers["topic_parsing"] == [{"topic": "mov/plantas/+/gateway/+", "tags": "_/_/planta/_/metrica"}]
    # "<n> seconds" is no integer (plugins/parsers/value/parser.go): a string field of its own.
    assert heartbeat["topics"] == ["mov/plantas/+/gateway/uptime"]
    assert heartbeat["data_type"] == "string" and heartbeat["value_field_name"] == "uptime"
    assert heartbeat["topic_parsing"] == [{"topic": "mov/plantas/+/gateway/+", "tags": "_/_/planta/_/_"}]
    for consumer in (numbers, heartbeat):
        # The infrastructure bucket's route, no session (a missed heartbeat is the point), an id of its own.
        assert consumer["tags"] == {"mov_route": "infra"} and consumer["persistent_session"] is False
        assert consumer["client_id"].startswith("mov-telegraf-gateways") and consumer["qos"] == 0
    assert numbers["client_id"] != heartbeat["client_id"]
    # The prefix is the tree's (mov_mqtt_topic_plants), like the readings'.
    changed = _gateway_inputs(rendered_with_changed_tree())
    plants = CHANGED_TREE["mov_mqtt_topic_plants"]
    assert [c["topics"][-1] for c in changed] == [f"{plants}/+/gateway/descartadas", f"{plants}/+/gateway/uptime"]


def test_the_offline_rule_and_the_status_page_watch_the_inventory_s_gateways_over_the_tree_s_window() -> None:
    gateways = [
        {"host": "gw-sul", "site": "fabrica_sul", "devices": []},
        {"host": "gw-norte", "site": "fabrica_norte", "devices": []},
    ]
    inventory = json.dumps({"mov_edge_gateways": gateways, "mov_edge_offline_for": "7m"})
    # Both read mov_edge_sites; the status page takes the window in minutes.
    assert resolved("mov_edge_sites", "-e", inventory) == ["fabrica_sul", "fabrica_norte"]
    wiring = {
        name: yaml.safe_load((REPO / "group_vars/all" / file).read_text())[name]
        for name, file in (("grafana_gateways", "services.yml"), ("status_page_gateways", "status_page.yml"))
    }
    assert set(wiring.values()) == {"{{ mov_edge_sites }}"}
    assert float(resolved("status_page_gateway_offline_minutes", "-e", inventory)) == 7.0


def test_a_window_under_a_minute_fails_at_preflight_naming_the_tree_s_variable(tmp_path: Path) -> None:
    base = {
        "grafana_thresholds": {"temperatura_c": {"alerta": 30, "critico": 35}},
        "grafana_admin_password": "p" * 24,
    }
    cases = {"default": base, "short": {**base, "grafana_gateway_offline_for": "30s"}}
    found = role_preflights("grafana", cases, tmp_path, gather_facts=False)
    assert found["default"] == []
    wanted = "grafana_gateway_offline_for (mov_edge_offline_for, 30s) must be a duration of at least 1m"
    assert any(wanted in " ".join(failure.split()) for failure in found["short"]), found["short"]


def test_the_infrastructure_dashboard_shows_the_gateways_where_there_are_some() -> None:
    def panels(host_dir: Path) -> dict[str, str]:
        doc = json.loads((host_dir / "opt/mov/grafana/dashboards/mov-infrastructure.json").read_text())
        return {p["title"]: p["targets"][0]["query"] for p in doc["panels"] if p["title"].startswith("Gateways")}

    shown = panels(rendered_with_changed_tree())
    assert list(shown) == [
        "Gateways: último sinal",
        "Gateways: ponte conectada (1) ou perdida (0)",
        "Gateways: leituras retidas (fila)",
    ]
    assert all('from(bucket: "mov_infra")' in q and 'r._measurement == "mov_gateway"' in q for q in shown.values())
    assert 'r._field == "uptime"' in shown["Gateways: último sinal"]
    assert 'r.metrica == "estado"' in shown["Gateways: ponte conectada (1) ou perdida (0)"]
    assert 'r.metrica == "fila"' in shown["Gateways: leituras retidas (fila)"]
    host_dir, _ = rendered("staging")
    assert panels(host_dir) == {}
