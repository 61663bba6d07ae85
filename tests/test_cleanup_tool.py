"""mov-cleanup (roles/cleanup) on the controller: its configuration, which files age out, and the whole run with a
stand-in movctl (a script printing movctl's JSON). The real run, movctl and Docker included, is in molecule/stack."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from host_script import load_script

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "roles" / "cleanup" / "files" / "mov-cleanup.py"
DAY = 86400


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_script("mov_cleanup", TOOL)


def aged(path: Path, days: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_symlink():
        path.write_text("x")
    os.utime(path, (now - days * DAY, now - days * DAY), follow_symlinks=False)
    return path


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"old_files": [{"path": "reports", "pattern": "report-*", "max_age_days": 30}]}, "absolute"),
        ({"old_files": [{"path": "/", "pattern": "report-*", "max_age_days": 30}]}, "other than /"),
        ({"old_files": [{"path": "/srv/r", "pattern": "../report-*", "max_age_days": 30}]}, "no /"),
        ({"old_files": [{"path": "/srv/r", "pattern": "report-*", "max_age_days": 0}]}, "at least 1"),
        ({"old_files": [{"path": "/srv/r", "pattern": "report-*"}]}, "max_age_days"),
        ([], "JSON object"),
    ],
)
def test_bad_configurations_are_refused(tool: ModuleType, raw: Any, message: str) -> None:
    with pytest.raises(tool.ConfigError, match=message):
        tool.config_from_dict(raw)


def test_old_files_are_regular_matching_and_past_their_age(tool: ModuleType, tmp_path: Path) -> None:
    now = time.time()
    root = tmp_path / "out"
    old = aged(root / "report-2019-01-06.html", 400, now)
    nested = aged(root / "2019" / "report-2019-01-13.pdf", 366, now)
    aged(root / "report-recent.html", 10, now)
    aged(root / "notes.txt", 400, now)
    target = aged(tmp_path / "release.json", 400, now)
    (root / "report-link.json").symlink_to(target)
    aged(root / "report-link.json", 400, now)
    (root / "report-dir").mkdir()
    os.utime(root / "report-dir", (now - 400 * DAY, now - 400 * DAY))
    rule = tool.AgeRule(str(root), "report-*", 365)
    assert sorted(tool.old_files(rule, now)) == sorted([old, nested])


def test_a_whole_run(tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    reports = tmp_path / "out"
    old = aged(reports / "report-old.html", 400, now)
    recent = aged(reports / "report-new.html", 1, now)
    seen = tmp_path / "movctl-args"
    movctl = tmp_path / "movctl"
    answer = {
        "ok": True,
        "dry_run": False,
        "kept_releases": ["r1"],
        "current_release": "r1",
        "containers": ["mov-analytics-run-1"],
        "images": ["mov/analytics:0.0.9"],
        "removed_containers": ["mov-analytics-run-1"],
        "removed_images": ["mov/analytics:0.0.9"],
        "failures": [],
    }
    movctl.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(seen)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"print({json.dumps(json.dumps(answer))})\n"
    )
    movctl.chmod(0o755)
    config = tmp_path / "cleanup.json"
    config.write_text(
        json.dumps(
            {
                "movctl": str(movctl),
                "old_files": [
                    {"path": str(reports), "pattern": "report-*", "max_age_days": 365},
                    {"path": str(tmp_path / "missing"), "pattern": "*", "max_age_days": 1},
                ],
            }
        )
    )

    assert tool.main(["--config", str(config), "--dry-run"]) == 0
    assert seen.read_text() == "cleanup --json --dry-run"
    assert old.exists() and "would remove 1: report-old.html" in capsys.readouterr().out

    assert tool.main(["--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert seen.read_text() == "cleanup --json"
    assert "images removed: mov/analytics:0.0.9" in out and "containers removed: mov-analytics-run-1" in out
    assert "skipped, no such directory" in out and out.rstrip().endswith("cleanup ok")
    assert not old.exists() and recent.exists()


def test_a_failing_movctl_fails_the_run_but_files_still_age_out(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    old = aged(tmp_path / "out" / "report-old.html", 400, now)
    movctl = tmp_path / "movctl"
    movctl.write_text('#!/bin/sh\necho \'{"ok": false, "error": "docker image ls failed", "exit_code": 1}\'\nexit 1\n')
    movctl.chmod(0o755)
    config = tmp_path / "cleanup.json"
    config.write_text(
        json.dumps(
            {
                "movctl": str(movctl),
                "old_files": [{"path": str(tmp_path / "out"), "pattern": "report-*", "max_age_days": 30}],
            }
        )
    )
    assert tool.main(["--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "FAILED: movctl cleanup exited 1: docker image ls failed" in captured.out
    assert "1 step(s) failed" in captured.err
    assert not old.exists()


def test_configuration_check_and_a_missing_configuration(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cleanup.json"
    config.write_text(
        json.dumps(
            {
                "movctl": "/usr/local/bin/movctl",
                "old_files": [{"path": "/srv/r", "pattern": "report-*", "max_age_days": "365"}],
            }
        )
    )
    assert tool.main(["--config", str(config), "--check-config"]) == 0
    assert "1 rule(s)" in capsys.readouterr().out
    assert tool.main(["--config", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err
