"""The backup section from mov-backup's history (report_data.history_lines): every backup and drill of the week,
the days without a successful backup, a failed or missing drill, and a history that is missing or unreadable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import report_data as data

from mov_analytics.report.backups import (
    BackupRun,
    BackupSection,
    DrillRun,
    backup_section,
    days,
    parse_history,
    read_backup_section,
)

AT = data.WEEK_START + 2.5 * 3600  # 02:30 UTC on the week's first day
GIB = 1024 * 1024 * 1024


def _section(drill: str | None = "failed") -> BackupSection:
    return backup_section(parse_history(data.history_lines(drill)), start_s=data.WEEK_START, end_s=data.WEEK_END)


def test_every_backup_of_the_week_with_its_result_size_and_upload() -> None:
    section = _section()
    assert [b.time_s for b in section.backups] == [AT + day * data.DAY for day in (0, 1, 2, 3, 5, 6)]
    assert section.backups[0] == BackupRun(
        time_s=AT,
        result="ok",
        snapshot="20261116T023000Z",
        size_bytes=int(1.5 * GIB),
        new_bytes=20 * 1024 * 1024,
        uploaded_objects=12,
        offsite="ok",
        error="",
    )
    failed = section.backups[2]
    assert (failed.result, failed.snapshot, failed.uploaded_objects) == ("failed", None, None)
    assert failed.error == "sqlite backup of grafana.db: disk I/O error"


def test_a_day_without_a_successful_backup_and_a_failed_drill_need_attention() -> None:
    section = _section("failed")
    assert section.attention == (
        "no successful backup on 2026-11-18",  # its only run failed
        "no successful backup on 2026-11-20",  # no run at all
        "the restore drill failed on 2026-11-22",
    )
    assert section.drills == (
        DrillRun(
            time_s=data.WEEK_START + 6 * data.DAY + 4.5 * 3600,
            result="failed",
            origin="remote",
            snapshot="20261122T023000Z",
            error="restored copy differs from production: influxdb",
        ),
    )


def test_a_passed_drill_is_no_finding_and_no_drill_is_one() -> None:
    assert "the restore drill" not in " ".join(_section("ok").attention)
    assert [d.result for d in _section("ok").drills] == ["ok"]
    assert _section(None).drills == ()
    assert _section(None).attention[-1] == "no restore drill ran"


def test_a_clean_week_needs_no_attention() -> None:
    lines = [json.dumps(data.backup_entry(AT + day * data.DAY)) for day in range(7)]
    lines.append(json.dumps(data.drill_entry(AT + 2 * 3600)))
    section = backup_section(parse_history(lines), start_s=data.WEEK_START, end_s=data.WEEK_END)
    assert section.attention == () and len(section.backups) == 7


def test_lines_that_are_not_entries_are_counted_and_skipped() -> None:
    history = parse_history([*data.history_lines(), "", '{"kind": "backup", "status": {"result": "ok"}}', "[]"])
    assert history.unreadable == 4  # "not json {", an unknown kind, a backup without a time, a list
    assert len(history.backups) == 8 and len(history.drills) == 2


def test_the_week_has_seven_utc_days() -> None:
    assert days(data.WEEK_START, data.WEEK_END) == [f"2026-11-{d}" for d in range(16, 23)]
    assert days(data.WEEK_START + 1, data.WEEK_START + data.DAY + 1) == ["2026-11-17"]


def test_the_history_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(data.history_lines()) + "\n", encoding="utf-8")
    section = read_backup_section(str(path), start_s=data.WEEK_START, end_s=data.WEEK_END)
    assert section == _section()
    assert section.unreadable == 2


def test_a_missing_history_is_no_backup_record(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    section = read_backup_section(str(path), start_s=data.WEEK_START, end_s=data.WEEK_END)
    assert section.note.startswith(f"No backup record: {path} does not exist")
    assert section.attention == ("no backup record",) and section.backups == ()


@pytest.mark.parametrize("kind", ["directory", "unset"])
def test_an_unreadable_or_unset_history_is_said_not_raised(tmp_path: Path, kind: str) -> None:
    path = str(tmp_path) if kind == "directory" else ""
    section = read_backup_section(path, start_s=data.WEEK_START, end_s=data.WEEK_END)
    if kind == "directory":
        assert section.note.startswith(f"No backup record: {tmp_path}: ")
        assert section.attention == ("no backup record",)
    else:
        assert section.note == "Backups are not part of this report (no report.backup_history_file)."
        assert section.attention == ()
