"""Wrong cleanup settings fail at the cleanup role's preflight, naming the variable; above all a rule for old
files that would reach the releases, the services' data or the backups."""

from __future__ import annotations

import pytest
from conftest import PreflightRunner

REPORTS = {"path": "/opt/mov/report/out", "pattern": "report-*", "max_age_days": 365}
PROTECTED = ["/opt/mov/releases", "/opt/mov/mosquitto", "/var/backups/mov", "/var/lib/docker"]


def test_the_platforms_rule_passes(role_preflight: PreflightRunner) -> None:
    result = role_preflight("cleanup", {"cleanup_old_files": [REPORTS], "cleanup_protected_paths": PROTECTED})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"cleanup_old_files": [{**REPORTS, "path": "/opt/mov/releases/"}]},
            "cleanup_old_files: /opt/mov/releases/ reaches /opt/mov/releases",
        ),
        ({"cleanup_old_files": [{**REPORTS, "path": "/opt/mov"}]}, "cleanup_old_files: /opt/mov reaches"),
        ({"cleanup_old_files": [{**REPORTS, "pattern": "../*"}]}, "cleanup_old_files[0] (/opt/mov/report/out)"),
        ({"cleanup_schedule": "15 4 * *"}, "cleanup_schedule (15 4 * *) must be five cron fields"),
    ],
    ids=["into-releases", "above-releases", "pattern", "schedule"],
)
def test_bad_input_fails_at_preflight_naming_the_variable(
    role_preflight: PreflightRunner, variables: dict[str, object], expected: str
) -> None:
    result = role_preflight("cleanup", {"cleanup_protected_paths": PROTECTED, **variables})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert expected in " ".join(output.split()), output
