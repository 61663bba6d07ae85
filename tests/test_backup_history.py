"""mov-backup's history (history.jsonl beside its status file): every run and drill adds its status as one line,
the file stays bounded and is replaced whole; the weekly report (analytics) reads what mov-backup writes; the weekly
job mounts the directory mov-backup writes it in and names the file mov-backup writes."""

from __future__ import annotations

import json
import os
import shlex
import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mov_analytics.report.backups import parse_history
from mov_host import backup
from mov_host.backup.config import history_file, load_config
from mov_host.backup.history import append_history
from mov_host.backup.records import HistoryEntry
from mov_render import resolved


def _entry(n: int) -> HistoryEntry:
    status = {"time": f"2026-11-{n:02d}T02:30:00+00:00", "result": "ok", "snapshot": None, "size_bytes": n}
    return {"kind": "backup", "status": status}  # type: ignore[typeddict-item]


def test_each_entry_is_one_line_the_oldest_dropped_beyond_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    for n in range(1, 6):
        append_history(path, _entry(n), limit=3)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["status"]["size_bytes"] for line in lines] == [3, 4, 5]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the report's container user reads it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.jsonl"]  # no temporary file left


def test_a_line_that_is_not_json_is_kept_as_it_is_and_read_past(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"kind": "backup", "status": {"time": "2026-11-01T02:30:00+00:00"\n', encoding="utf-8")
    append_history(path, _entry(2))
    history = parse_history(path.read_text(encoding="utf-8").splitlines())
    assert history.unreadable == 1 and [b.size_bytes for b in history.backups] == [2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "mosquitto.conf").write_text("listener 1883\n" * 50)
    cfg = {
        "backup_dir": str(tmp_path / "backups"),
        "status_file": str(tmp_path / "state" / "status.json"),
        "sources": [{"name": "config", "kind": "tree", "path": str(data)}],
        "retention": {"daily": 7, "weekly": 4, "monthly": 6, "last": 10},
        "stack": {"dir": str(tmp_path), "project": "mov", "services": []},
        "remote": {},
        "webhook_url": "",
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def test_every_run_and_drill_adds_its_status_to_the_history_the_report_reads(config: Path, tmp_path: Path) -> None:
    started = datetime.now(UTC).replace(microsecond=0).timestamp()
    assert backup.main(["--config", str(config), "run"]) == 0
    broken = json.loads(config.read_text())
    (tmp_path / "broken.db").write_bytes(os.urandom(4096))
    broken["sources"].append({"name": "broken", "kind": "sqlite", "path": str(tmp_path / "broken.db")})
    broken_config = tmp_path / "broken.json"
    broken_config.write_text(json.dumps(broken))
    assert backup.main(["--config", str(broken_config), "run"]) == 1
    assert backup.main(["--config", str(config), "drill", "--from", "local"]) == 0

    path = history_file(load_config(str(config)))
    assert path == tmp_path / "state" / "history.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    last = json.loads((tmp_path / "state" / "status.json").read_text())
    drill = json.loads((tmp_path / "state" / "drill.json").read_text())
    assert [json.loads(line) for line in lines[1:]] == [
        {"kind": "backup", "status": last},
        {"kind": "drill", "status": drill},
    ]

    history = parse_history(lines)
    assert history.unreadable == 0
    ok, failed = history.backups
    assert (ok.result, failed.result, failed.snapshot) == ("ok", "failed", None)
    assert ok.snapshot is not None and ok.size_bytes is not None and ok.size_bytes > 0
    assert "sqlite backup of" in failed.error and ok.time_s >= started
    (run,) = history.drills
    assert (run.result, run.origin, run.snapshot) == ("ok", "local", ok.snapshot)


def _report_job(*extra: str) -> tuple[list[str], dict[str, str]]:
    """The weekly job's `docker compose run` mounts (host:container[:ro]) and environment."""
    command = resolved("mov_report_command", *extra)
    words = shlex.split(command[command.index("docker compose") :])
    mounts = [words[i + 1] for i, w in enumerate(words) if w == "-v"]
    env = dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "-e")
    return mounts, env


def test_the_weekly_job_reads_the_history_mov_backup_writes(config: Path) -> None:
    mounts, env = _report_job()
    status_file = Path(resolved("backup_status_file"))
    (mount,) = [m for m in mounts if m.startswith(f"{status_file.parent}:")]
    _, inside, mode = mount.split(":")
    assert mode == "ro"
    # mov-backup's own name for the file, beside the status file the platform gives it.
    written = history_file(replace(load_config(str(config)), status_file=status_file))
    assert env["MOV_ANALYTICS_REPORT__BACKUP_HISTORY_FILE"] == f"{inside}/{written.name}"


@pytest.mark.parametrize("enabled", [True, False])
def test_the_weekly_job_reads_the_infrastructure_bucket_its_token_may_read(enabled: bool) -> None:
    extra = ("-e", json.dumps({"mov_infra_metrics_enabled": enabled}))
    _, env = _report_job(*extra)
    (token,) = [t for t in resolved("influxdb_tokens", *extra) if t["name"] == "report"]
    readable = {p["bucket"] for p in token["permissions"] if p["action"] == "read"}
    bucket = env["MOV_ANALYTICS_REPORT__INFRA_BUCKET"]
    assert (bucket in readable) if enabled else (bucket == "" and resolved("mov_infra_metrics_bucket") not in readable)
    assert bool(bucket) == enabled
