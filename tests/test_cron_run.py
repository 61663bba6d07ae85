"""mov-cron-run (mov_host.cron_run), the cron role's job runner: the log between start and end lines, the last
result as a JobResult, the exit code passed through, a run skipped while the previous one holds the lock. The
installed runner under cron is in molecule/cron."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mov_host import cron_run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    # The lock beside the test's files, not in the host's /run/lock; syslog calls stay the real ones (harmless).
    monkeypatch.setattr(cron_run, "LOCK_DIR", str(tmp_path))
    logs, state = tmp_path / "log", tmp_path / "state"
    logs.mkdir()
    state.mkdir()
    return logs, state


def run(name: str, logs: Path, state: Path, *command: str) -> int:
    return cron_run.main(["--name", name, "--log-dir", str(logs), "--state-dir", str(state), "--", *command])


def test_a_run_is_logged_and_its_result_recorded(dirs: tuple[Path, Path]) -> None:
    logs, state = dirs
    assert run("report", logs, state, "echo", "hello;", "echo", "oops", ">&2") == 0
    log = (logs / "report.log").read_text().splitlines()
    assert log[0].startswith("=== ") and log[0].endswith(" start")
    assert log[1:3] == ["hello", "oops"]
    assert log[3].endswith(" end, exit code 0")
    result = json.loads((state / "report.json").read_text())
    assert set(result) == set(cron_run.JobResult.__annotations__)
    assert (result["name"], result["exit_code"], result["result"]) == ("report", 0, "ok")
    assert cron_run.job_result_path(str(state), "report") == state / "report.json"


def test_a_failure_passes_its_exit_code_through(dirs: tuple[Path, Path]) -> None:
    logs, state = dirs
    assert run("backup", logs, state, "exit 7") == 7
    result = json.loads((state / "backup.json").read_text())
    assert (result["exit_code"], result["result"]) == (7, "failed")
    assert (logs / "backup.log").read_text().rstrip().endswith("end, exit code 7")


def test_a_run_is_skipped_while_the_previous_one_holds_the_lock(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    logs, state = dirs
    with open(tmp_path / "mov-cron-drill.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run("drill", logs, state, "touch", str(tmp_path / "ran")) == 0
    assert not (tmp_path / "ran").exists() and not (state / "drill.json").exists()
    assert "skipped: the previous run still holds the lock" in (logs / "drill.log").read_text()


def test_no_command_is_a_usage_error(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    logs, state = dirs
    with pytest.raises(SystemExit) as exit_info:
        run("report", logs, state)
    assert exit_info.value.code == 2
    assert "usage: mov-cron-run" in capsys.readouterr().err


def test_the_tool_runs_through_the_package_dispatcher(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "hosttools" / "src")}
    argv = [sys.executable, "-m", "mov_host", "mov-cron-run", "--name", "job", "--no-lock"]
    argv += ["--log-dir", str(tmp_path), "--state-dir", str(tmp_path), "--", "exit 3"]
    assert subprocess.run(argv, env=env, timeout=60, check=False).returncode == 3
    assert json.loads((tmp_path / "job.json").read_text())["result"] == "failed"
