"""The host's scheduled jobs as the config tree declares them, read through Ansible's own variable resolution for
the local env: the cron role's list (backup, restore drill, report) and the inputs of the roles that own their job
(cleanup, status_page: installed with the tool, through the cron role's `jobs` entry point)."""

from __future__ import annotations

from mov_render import resolved


def test_backup_drill_and_report_are_the_cron_roles() -> None:
    jobs = {job["name"]: job for job in resolved("cron_jobs")}
    assert jobs["backup"]["command"] == "/usr/local/bin/mov-backup run"
    assert jobs["restore-drill"]["command"] == "/usr/local/bin/mov-backup drill"
    assert jobs["restore-drill"]["schedule"] == "30 4 * * 0"
    # Owned by the roles that install their tools, never scheduled before the tool exists.
    assert "cleanup" not in jobs and "status-page" not in jobs


def test_cleanup_inputs() -> None:
    assert resolved("cleanup_schedule") == "15 4 * * *"
    assert resolved("cleanup_enabled") is True
    assert resolved("cleanup_old_files") == [
        {"path": "/opt/mov/report/out", "pattern": "report-*", "max_age_days": 365}
    ]
    protected = resolved("cleanup_protected_paths")
    assert {"/opt/mov/releases", "/var/lib/docker", "/var/backups/mov"} <= set(protected)


def test_cleanup_can_be_switched_off_and_tuned() -> None:
    assert resolved("cleanup_enabled", "-e", '{"mov_cleanup_enabled": false}') is False
    assert resolved("cleanup_old_files", "-e", '{"mov_cleanup_report_days": 90}')[0]["max_age_days"] == 90
