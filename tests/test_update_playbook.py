"""playbooks/update.yml runs its steps in the safe order: preflight, what changes, the pre-update backup, the
deploy (which verifies and rolls back by itself), the final verify. The behaviour on a running platform is
exercised on the local box (see bench/results.md's update figures); this pins the order without one."""

from __future__ import annotations

import os
import subprocess

from mov_render import REPO


def listed_tasks() -> list[str]:
    result = subprocess.run(
        ["ansible-playbook", "playbooks/update.yml", "-i", "inventories/local", "--list-tasks"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )
    return [line.strip().split("\t")[0] for line in result.stdout.splitlines() if line.startswith("      ")]


def test_the_backup_comes_after_the_preflight_and_before_the_deploy() -> None:
    tasks = listed_tasks()
    order = [
        "Check the free disk space",
        "Stop when the platform was never deployed",
        "Show what changes",
        "Take the pre-update backup",
        "Remember the pre-update snapshot",
        "Run the stack role",
        "Verify the compose stack",
    ]
    positions = [tasks.index(name) for name in order]
    assert positions == sorted(positions), list(zip(order, positions, strict=True))
