"""mov-cleanup (mov_host.cleanup) on the controller: its configuration, which files age out, and the whole run with a
stand-in for movctl's cleanup (called in-process, it returns movctl's document). The real run, movctl and Docker
included, is in the site scenario (scenarios/site/test_platform.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from mov_host import cleanup as tool
from mov_host.movctl import cleanup as movctl_cleanup
from mov_host.movctl.config import MovctlError

DAY = 86400


def movctl_config(tmp_path: Path) -> Path:
    """A movctl configuration for the stand-in to be handed (movctl reads it before its cleanup runs)."""
    path = tmp_path / "movctl.json"
    path.write_text(json.dumps({"stack": {"dir": str(tmp_path), "services": ["mosquitto", "analytics"]}}))
    return path


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
def test_bad_configurations_are_refused(raw: Any, message: str) -> None:
    with pytest.raises(tool.ConfigError, match=message):
        tool.config_from_dict(raw)


def test_old_files_are_regular_matching_and_past_their_age(tmp_path: Path) -> None:
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


def test_a_whole_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    reports = tmp_path / "out"
    old = aged(reports / "report-old.html", 400, now)
    recent = aged(reports / "report-new.html", 1, now)
    seen: list[tuple[str, bool]] = []
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

    def run_cleanup(cfg: Any, dry_run: bool) -> Any:
        seen.append((cfg.stack_dir, dry_run))
        return answer

    monkeypatch.setattr(movctl_cleanup, "run_cleanup", run_cleanup)
    config = tmp_path / "cleanup.json"
    config.write_text(
        json.dumps(
            {
                "movctl": "/usr/local/bin/movctl",
                "movctl_config": str(movctl_config(tmp_path)),
                "old_files": [
                    {"path": str(reports), "pattern": "report-*", "max_age_days": 365},
                    {"path": str(tmp_path / "missing"), "pattern": "*", "max_age_days": 1},
                ],
            }
        )
    )

    assert tool.main(["--config", str(config), "--dry-run"]) == 0
    assert seen == [(str(tmp_path), True)]
    assert old.exists() and "would remove 1: report-old.html" in capsys.readouterr().out

    assert tool.main(["--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert seen[1:] == [(str(tmp_path), False)]
    assert "images removed: mov/analytics:0.0.9" in out and "containers removed: mov-analytics-run-1" in out
    assert "skipped, no such directory" in out and out.rstrip().endswith("cleanup ok")
    assert not old.exists() and recent.exists()


def test_a_failing_movctl_fails_the_run_but_files_still_age_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    old = aged(tmp_path / "out" / "report-old.html", 400, now)

    def run_cleanup(cfg: Any, dry_run: bool) -> Any:
        raise MovctlError("docker image ls failed")

    monkeypatch.setattr(movctl_cleanup, "run_cleanup", run_cleanup)
    config = tmp_path / "cleanup.json"
    config.write_text(
        json.dumps(
            {
                "movctl_config": str(movctl_config(tmp_path)),
                "old_files": [{"path": str(tmp_path / "out"), "pattern": "report-*", "max_age_days": 30}],
            }
        )
    )
    assert tool.main(["--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "FAILED: movctl cleanup exited 1: docker image ls failed" in captured.out
    assert "1 step(s) failed" in captured.err
    assert not old.exists()


def test_a_removal_movctl_could_not_do_fails_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = {
        "ok": False,
        "dry_run": False,
        "kept_releases": [],
        "current_release": "",
        "containers": [],
        "images": ["mov/analytics:0.0.9"],
        "kept_images": [],
        "removed_containers": [],
        "removed_images": [],
        "failures": ["image mov/analytics:0.0.9: image is being used by running container"],
    }
    monkeypatch.setattr(movctl_cleanup, "run_cleanup", lambda cfg, dry_run: answer)
    config = tmp_path / "cleanup.json"
    config.write_text(json.dumps({"movctl_config": str(movctl_config(tmp_path))}))
    assert tool.main(["--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "releases kept none recorded (current -)" in out and "images removed: none" in out
    assert "FAILED: image mov/analytics:0.0.9: image is being used by running container" in out


def test_movctl_not_installed_fails_the_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # No movctl configuration: movctl's own error and exit code (3, not installed), as its command gave them.
    config = tmp_path / "cleanup.json"
    config.write_text(json.dumps({"movctl_config": str(tmp_path / "none.json")}))
    assert tool.main(["--config", str(config)]) == 1
    assert "FAILED: movctl cleanup exited 3: the platform is not installed here" in capsys.readouterr().out


def test_configuration_check_and_a_missing_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
