"""The long-term history (issue 20): an InfluxDB task downsamples the readings into hourly min, mean and max in a
bucket of its own, Grafana's history dashboard reads it, the restore drill compares it, its retention is applied.

InfluxDB and Grafana cannot run here: these tests check what the render and the roles send (the task's Flux, the API
calls' plan, the dashboard's queries, the drill's windows). The e2e job (tests/e2e/check_platform.py history) runs
the task in InfluxDB 2.7.11 and reads its points through Grafana.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import PreflightRunner, filter_plugin
from mov_host.backup import drill as backup_drill
from mov_host.backup.config import load_config
from mov_host.backup.records import Manifest
from mov_render import REPO, rendered, resolved

sys.path.append(str(REPO / "scripts"))
import config_tree

TREE = {
    "mov_influxdb_retention": "30d",
    "mov_influxdb_history_retention": "730d",
    "mov_influxdb_history_every": "1h",
    "mov_influxdb_history_lookback": "6h",
}


def _spec(env: str) -> dict[str, Any]:
    host_dir, _ = rendered(env)
    spec = json.loads((host_dir / "opt/mov/influxdb/tokens.json").read_text())
    assert isinstance(spec, dict)
    return spec


# --- The task -------------------------------------------------------------------------------------------------------


def test_the_downsampling_task_aggregates_whole_windows_of_the_look_back_into_the_history_bucket() -> None:
    spec = _spec("prod")
    assert {"name": "mov_historico", "retention": "730d"} in spec["buckets"]
    (task,) = spec["tasks"]
    flux = task["flux"]
    assert task["name"] == "mov_historico"
    assert 'option task = {name: "mov_historico", every: 1h}' in flux
    # Whole windows only: from the look-back's start up to the run's time truncated to the window (the run's now()
    # is its scheduled time), so a run never writes a partial window over a complete one.
    assert "stop = date.truncate(t: now(), unit: 1h)" in flux and "start = date.sub(d: 6h, from: stop)" in flux
    assert 'from(bucket: "mov_dados")\n    |> range(start: start, stop: stop)' in flux
    assert 'r._measurement == "mov_leituras" and r.cliente != "movbench"' in flux
    assert 'aggregateWindow(every: 1h, fn: fn, timeSrc: "_start", createEmpty: false)' in flux
    for agg in ("min", "mean", "max"):
        assert f'readings |> downsample(fn: {agg}, agg: "{agg}")' in flux
    assert flux.rstrip().endswith('|> to(bucket: "mov_historico")')


def test_the_history_settings_reach_the_task_its_bucket_its_readers_and_the_drill() -> None:
    # One expression without spaces (the debug module's key=value arguments split on them).
    names = (
        "[influxdb_tasks[0].flux,influxdb_extra_buckets,(influxdb_tokens|selectattr('name','eq','grafana')|first)"
        ".permissions,grafana_influxdb_history_bucket,grafana_history_range,backup_stack_influxdb_history_bucket,"
        "backup_stack_influxdb_history_settle_s]"
    )
    changed = {
        "mov_influxdb_history_bucket": "mov_longo",
        "mov_influxdb_history_retention": "3650d",
        "mov_influxdb_history_every": "30m",
        "mov_influxdb_history_lookback": "3h",
    }
    flux, buckets, grafana, bucket, grafana_range, drill_bucket, settle = resolved(names, "-e", json.dumps(changed))
    assert "every: 30m}" in flux and "unit: 30m" in flux and "date.sub(d: 3h, from: stop)" in flux
    assert "aggregateWindow(every: 30m," in flux and 'to(bucket: "mov_longo")' in flux
    assert {"name": "mov_longo", "retention": "3650d"} in buckets
    assert {"action": "read", "bucket": "mov_longo"} in grafana
    assert (bucket, grafana_range, drill_bucket, settle) == ("mov_longo", "3650d", "mov_longo", 12600)
    # A history kept forever: the dashboard opens on ten years.
    assert resolved("grafana_history_range", "-e", '{"mov_influxdb_history_retention": "0"}') == "520w"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"mov_influxdb_history_every": "1h30m"}, "mov_influxdb_history_every: must be a whole number"),
        ({"mov_influxdb_history_lookback": "90m"}, "mov_influxdb_history_lookback: must be a whole number of windows"),
        ({"mov_influxdb_history_retention": "1y"}, "mov_influxdb_history_retention: must be 0 (forever) or whole"),
        ({"mov_influxdb_history_retention": "21d"}, "must be longer than the readings' (mov_influxdb_retention, 30d)"),
        ({"mov_influxdb_retention": "0"}, "must be longer than the readings' (mov_influxdb_retention, 0)"),
    ],
)
def test_the_config_tree_refuses_history_settings_flux_or_grafana_cannot_take(
    changes: dict[str, str], error: str
) -> None:
    assert not [e for e in config_tree.validate(TREE) if "history" in e]
    assert any(error in e for e in config_tree.validate(TREE | changes)), config_tree.validate(TREE | changes)


def test_a_task_whose_flux_names_another_task_is_refused(role_preflight: PreflightRunner) -> None:
    """(Every render runs the same preflight on the tree's own task, which passes.)"""
    flux = 'option task = {name: "other", every: 1h}\nfrom(bucket: "b") |> range(start: -1h) |> to(bucket: "c")'
    base = {"influxdb_admin_password": "p" * 16, "influxdb_admin_token": "t" * 32}
    result = role_preflight("influxdb", base | {"influxdb_tasks": [{"name": "mov_historico", "flux": flux}]})
    assert result.returncode != 0
    assert "influxdb_tasks[0] (mov_historico): needs a name matching" in result.stdout


# --- The role's API calls -------------------------------------------------------------------------------------------


def test_the_task_plan_creates_puts_back_and_deletes_only_the_roles_tasks() -> None:
    plan = filter_plugin("influxdb", "influxdb_tokens").influxdb_task_plan
    wanted = [{"name": "mov_historico", "flux": "F2"}, {"name": "mov_novo", "flux": "N"}]
    # As InfluxDB lists an org's tasks (GET /api/v2/tasks: every field, the flux as it was sent).
    existing = [
        {
            "id": "t1",
            "orgID": "o1",
            "name": "mov_historico",
            "description": "mov:mov_historico",
            "flux": "F1",
            "status": "inactive",
            "every": "1h",
        },
        {
            "id": "t2",
            "orgID": "o1",
            "name": "mov_historico",
            "description": "mov:mov_historico",
            "flux": "F2",
            "status": "active",
        },
        {
            "id": "t3",
            "orgID": "o1",
            "name": "mov_velho",
            "description": "mov:mov_velho",
            "flux": "V",
            "status": "active",
        },
        {"id": "t4", "orgID": "o1", "name": "alguem", "description": "someone else's", "flux": "X", "status": "active"},
        {"id": "t5", "orgID": "o2", "name": "outra", "description": "mov:mov_novo", "flux": "N", "status": "active"},
    ]
    assert plan(existing, wanted, "o1") == {
        "create": [
            {
                "name": "mov_novo",
                "body": {"orgID": "o1", "description": "mov:mov_novo", "status": "active", "flux": "N"},
            }
        ],
        "patch": [{"name": "mov_historico", "id": "t1", "body": {"flux": "F2", "status": "active"}}],
        "delete": [{"name": "mov_historico", "id": "t2"}, {"name": "mov_velho", "id": "t3"}],
    }
    # What InfluxDB holds once the plan ran: nothing left to do (a second deploy changes nothing).
    applied = [
        {"id": "t1", "orgID": "o1", "description": "mov:mov_historico", "flux": "F2", "status": "active"},
        {"id": "t6", "orgID": "o1", "description": "mov:mov_novo", "flux": "N", "status": "active"},
    ]
    assert plan(applied + existing[3:], wanted, "o1") == {"create": [], "patch": [], "delete": []}


def test_a_changed_history_retention_is_patched_onto_the_existing_bucket() -> None:
    """The token step's retention PATCH covers every bucket of the spec, the history's included."""
    buckets = _spec("prod")["buckets"]
    existing = [
        {"id": f"b{i}", "name": b["name"], "retentionRules": [{"type": "expire", "everySeconds": 86400}]}
        for i, b in enumerate(buckets)
    ]
    updates = filter_plugin("influxdb", "influxdb_tokens").influxdb_retention_updates(existing, buckets)
    (history,) = [u for u in updates if u["name"] == "mov_historico"]
    assert history["body"]["retentionRules"][0]["everySeconds"] == 730 * 86400


# --- Grafana --------------------------------------------------------------------------------------------------------


def test_the_history_dashboard_reads_min_mean_and_max_beyond_the_readings_retention() -> None:
    host_dir, _ = rendered("prod")
    dashboard = json.loads((host_dir / "opt/mov/grafana/dashboards/mov-history.json").read_text())
    assert dashboard["uid"] == "mov-history" and dashboard["tags"] == ["mov"]
    # It opens on the whole history, longer than the readings are kept (prod: 90d).
    assert dashboard["time"] == {"from": "now-730d", "to": "now"}
    fields = [p["targets"][0]["query"].split('r._field == "')[1].split('"')[0] for p in dashboard["panels"]]
    assert fields == ["temperatura_c", "umidade", "pressao"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "mov-influxdb"
        for target, agg in zip(panel["targets"], ("min", "mean", "max"), strict=True):
            query = target["query"]
            assert query.startswith('from(bucket: "mov_historico")') and f'r.agg == "{agg}"' in query
            # A coarser range keeps each aggregate's meaning: the min of the mins, the max of the maxes.
            assert f'aggregateWindow(every: v.windowPeriod, fn: {agg}, timeSrc: "_start"' in query
            assert query.endswith('keep(columns: ["_time", "_value", "cliente", "localizacao", "dispositivo", "agg"])')
    variables = {v["name"]: v["query"] for v in dashboard["templating"]["list"]}
    assert list(variables) == ["planta", "cliente", "localizacao", "dispositivo"]
    assert all('bucket: "mov_historico"' in q and "start: -730d" in q for q in variables.values())
    overview = json.loads((host_dir / "opt/mov/grafana/dashboards/mov-overview.json").read_text())
    assert [link["url"] for link in overview["links"]] == ["/d/mov-history"]


PLANT_MATCH = '(if exists r.planta then r.planta else "") =~ /^${planta:regex}$/'


@pytest.mark.parametrize("uid", ["mov-overview", "mov-history"])
def test_the_dashboards_filter_on_the_plant_and_all_keeps_the_direct_devices(uid: str) -> None:
    """docs/plants.md: a gateway's readings carry the tag planta, a direct device's none. The variable's "All" is the
    custom value .*, which the filter matches against "" for a reading without the tag (the e2e job's
    dashboard-plants runs the query in InfluxDB both ways)."""
    host_dir, _ = rendered("prod")
    dashboard = json.loads((host_dir / f"opt/mov/grafana/dashboards/{uid}.json").read_text())
    (plant,) = [v for v in dashboard["templating"]["list"] if v["name"] == "planta"]
    assert plant["includeAll"] is True and plant["multi"] is True and plant["allValue"] == ".*"
    assert 'tag: "planta"' in plant["query"] and plant["current"] == {"text": "All", "value": "$__all"}
    queries = [t["query"] for p in dashboard["panels"] for t in p["targets"]]
    filtered = [q for q in queries if "${cliente:regex}" in q]
    assert filtered and all(PLANT_MATCH in q for q in filtered)
    # Every query of a readings' bucket filters on the plant (the status table reads the worker's own bucket).
    readings = [q for q in queries if '"mov_dados"' in q.split("\n", 1)[0] or '"mov_historico"' in q.split("\n", 1)[0]]
    assert readings == filtered


# --- The restore drill ------------------------------------------------------------------------------------------------

TAKEN = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)


def _drill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counts: dict[tuple[str, str], str]
) -> tuple[list[Any], list[str]]:
    """drill_checks with the history set (settle 7 h) and InfluxDB's answers per (project, bucket); the queries."""
    config = tmp_path / "config.json"
    stack = {
        "dir": str(tmp_path),
        "services": ["influxdb"],
        "influxdb_history_bucket": "mov_historico",
        "influxdb_history_settle_s": 25200,
    }
    config.write_text(
        json.dumps(
            {
                "backup_dir": str(tmp_path / "b"),
                "status_file": str(tmp_path / "s.json"),
                "retention": {"daily": 1, "weekly": 0, "monthly": 0},
                "stack": stack,
            }
        )
    )
    cfg = load_config(str(config))
    drill = replace(cfg, stack_project="mov-drill")
    queries: list[str] = []

    def answer(used: Any, query: str, what: str) -> str:
        queries.append(query)
        bucket = query.split('"')[1]
        rows = counts.get((used.stack_project, bucket), "")
        return "#datatype,string,long,string,long\n,result,table,_measurement,_value\n" + rows

    monkeypatch.setattr(backup_drill, "influx_query", answer)
    manifest: Manifest = {
        "id": TAKEN.strftime("%Y%m%dT%H%M%SZ"),
        "created": "",
        "host": "h",
        "skipped": [],
        "files": [],
        "sources": [{"name": "influxdb", "kind": "influxdb", "path": "", "data": True}],
    }
    return backup_drill.drill_checks(cfg, drill, manifest, tmp_path / "root"), queries


def test_the_drill_compares_the_history_over_the_windows_its_task_no_longer_rewrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    both = {
        (p, b): ",_result,0,mov_leituras,42\n" for p in ("mov", "mov-drill") for b in ("mov_dados", "mov_historico")
    }
    checks, queries = _drill(tmp_path, monkeypatch, both)
    parts = {c["part"]: c for c in checks}
    assert parts["influxdb-history"] == {
        "part": "influxdb-history",
        "ok": True,
        "restored": {"mov_leituras": 42},
        "production": {"mov_leituras": 42},
        "detail": "mov_historico: point counts per measurement, the day before the snapshot less 25200 s",
    }
    assert parts["influxdb"]["ok"] and "mov_dados" in parts["influxdb"]["detail"]
    stop = TAKEN - timedelta(hours=7)
    window = f"range(start: {(stop - timedelta(days=1)):%Y-%m-%dT%H:%M:%SZ}, stop: {stop:%Y-%m-%dT%H:%M:%SZ})"
    assert sum(1 for q in queries if q.startswith('from(bucket: "mov_historico") |> ' + window)) == 2

    # A restored copy without the history fails the drill; a young platform's history, empty on both sides, does not.
    lost = {k: v for k, v in both.items() if k != ("mov-drill", "mov_historico")}
    parts = {c["part"]: c for c in _drill(tmp_path, monkeypatch, lost)[0]}
    assert not parts["influxdb-history"]["ok"] and parts["influxdb"]["ok"]
    young = {k: v for k, v in both.items() if k[1] == "mov_dados"}
    parts = {c["part"]: c for c in _drill(tmp_path, monkeypatch, young)[0]}
    assert parts["influxdb-history"]["ok"] and parts["influxdb-history"]["production"] == {}


def test_the_e2e_check_reads_the_numbers_of_grafanas_answer() -> None:
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    import check_platform

    frame = {
        "schema": {"fields": [{"name": "_time", "type": "time"}, {"name": "_value", "type": "number"}]},
        "data": {"values": [[1796526000000], [17.0]]},
    }
    answer = {"results": {"A": {"status": 200, "frames": [frame]}, "B": {"status": 200, "frames": []}}}
    assert check_platform.grafana_numbers(answer) == {"A": [17.0]}
