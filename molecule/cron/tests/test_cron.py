"""Behaviour of the cron role: jobs installed as declared, run, logged, results recorded."""

from __future__ import annotations

import json
import time

import pytest

RUNNER = "/usr/local/bin/mov-cron-run"


def test_cron_daemon_runs(host) -> None:  # type: ignore[no-untyped-def]
    cron = host.service("cron")
    assert cron.is_running
    assert cron.is_enabled


def test_no_mail_daemon_came_with_cron(host) -> None:  # type: ignore[no-untyped-def]
    """cron's recommended MTA (exim4 on Debian) is left out: no package on the box provides one."""
    provides = host.check_output("dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Provides}\\n'").splitlines()
    mtas = [line for line in provides if line.startswith("ii") and "mail-transport-agent" in line]
    assert mtas == []


def test_jobs_are_installed_with_their_schedules(host) -> None:  # type: ignore[no-untyped-def]
    root = host.check_output("crontab -l -u root")
    assert "#Ansible: mov: nightly-example\n30 2 * * * " + RUNNER in root
    assert "#Ansible: mov: weekly-example\n@weekly " + RUNNER in root
    assert "--no-lock" in root.split("mov: weekly-example")[1].splitlines()[1]
    nobody = host.check_output("crontab -l -u nobody")
    assert "#Ansible: mov: verify-fails\n* * * * * " + RUNNER in nobody


def _state(host, name: str) -> dict[str, object] | None:  # type: ignore[no-untyped-def]
    content = host.file(f"/var/lib/mov-cron/{name}.json").content_string.strip()
    return json.loads(content) if content else None


@pytest.fixture(scope="module")
def after_a_minute(host) -> None:  # type: ignore[no-untyped-def]
    """Wait (at most ~2.5 minutes) until cron has run both every-minute jobs."""
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if _state(host, "verify-mark") and _state(host, "verify-fails"):
            return
        time.sleep(3)
    pytest.fail("cron did not run the every-minute jobs within 150 s")


def test_a_job_runs_and_leaves_its_mark(host, after_a_minute) -> None:  # type: ignore[no-untyped-def]
    # The command holds a '%' (special in crontab) and shell syntax: both reach the shell intact.
    marks = host.file("/tmp/mov-cron-mark").content_string.split()
    assert marks and all(m.isdigit() for m in marks)
    state = _state(host, "verify-mark")
    assert state is not None
    assert state["exit_code"] == 0 and state["result"] == "ok"
    log = host.file("/var/log/mov-cron/verify-mark.log").content_string
    assert "marked" in log and "end, exit code 0" in log


def test_a_failing_job_is_visible(host, after_a_minute) -> None:  # type: ignore[no-untyped-def]
    state = _state(host, "verify-fails")
    assert state is not None
    assert state["exit_code"] == 3 and state["result"] == "failed"
    log = host.file("/var/log/mov-cron/verify-fails.log")
    assert log.user == "nobody"
    assert "about to fail" in log.content_string
    journal = host.check_output("journalctl --no-pager -t 'mov-cron[verify-fails]' -p err")
    assert "failed with exit code 3" in journal


def test_runs_never_overlap(host) -> None:  # type: ignore[no-untyped-def]
    """A second run while the first holds the lock is skipped, not run twice."""
    args = "--name overlap --log-dir /tmp --state-dir /tmp"
    host.check_output(f"{RUNNER} {args} -- 'sleep 3; echo first-done' >/dev/null 2>&1 &")
    time.sleep(1)
    second = host.run(f"{RUNNER} {args} -- echo second-ran")
    assert second.rc == 0
    time.sleep(3)
    log = host.file("/tmp/overlap.log").content_string
    assert "skipped: the previous run still holds the lock" in log
    assert "second-ran" not in log
    assert "first-done" in log
