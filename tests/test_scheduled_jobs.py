"""The host's scheduled jobs as the config tree declares them (group_vars/all: backup, restore drill, report,
cleanup), read through Ansible's own variable resolution for the local env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from mov_render import REPO


def cron_jobs(*extra: str) -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        ["ansible", "-i", "inventories/local", "mov-box", "-c", "local", "-m", "debug", "-a", "var=cron_jobs",
         "-e", f"ansible_python_interpreter={sys.executable}", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
             "ANSIBLE_STDOUT_CALLBACK": "json"},
    )
    # One JSON document among the other callbacks' lines (profile_tasks prints around it).
    start = result.stdout.index("{\n")
    document = json.JSONDecoder().raw_decode(result.stdout[start:])[0]
    jobs = document["plays"][0]["tasks"][0]["hosts"]["mov-box"]["cron_jobs"]
    return {job["name"]: job for job in jobs}


def test_backup_drill_and_cleanup_are_scheduled() -> None:
    jobs = cron_jobs()
    assert jobs["backup"]["command"] == "/usr/local/bin/mov-backup run"
    assert jobs["restore-drill"]["command"] == "/usr/local/bin/mov-backup drill"
    assert jobs["restore-drill"]["schedule"] == "30 4 * * 0"
    cleanup = jobs["cleanup"]
    assert cleanup["state"] == "present" and cleanup["schedule"] == "15 4 * * *"
    assert cleanup["command"].startswith("/usr/local/bin/movctl cleanup; rc=$?;")
    assert "-mtime +365 -delete; exit $rc" in cleanup["command"]


def test_cleanup_can_be_switched_off() -> None:
    assert cron_jobs("-e", "mov_cleanup_enabled=false")["cleanup"]["state"] == "absent"
