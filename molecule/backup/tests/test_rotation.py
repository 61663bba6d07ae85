"""The off-site copy's crypt keys rotated (scripts/platform_secrets.py --rotate backup_password, then a deploy): the
new pair writes to a new path, and the old path stays readable with the old pair through its own config.

Runs after test_backup.py and test_drill.py (file order), on the off-site snapshots they left; it leaves the box on
the rotated keys, which test_space.py's runs then use.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml
from rerun import rerun_converge

SCENARIO = Path(__file__).resolve().parent.parent
VARS = yaml.safe_load((SCENARIO / "vars" / "backup.yml").read_text())
TOOL = "/usr/local/bin/mov-backup"
CONFIG = "/etc/mov-backup/config.json"
RETIRED = "/etc/mov-backup/retired-first.json"
RCLONE_CONF = "/etc/mov-backup/rclone.conf"
OFFSITE = VARS["backup_remote_path"]
NEW_KEYS = {
    "backup_crypt_password": "test-crypt-password-rotated-0123",
    "backup_crypt_salt": "test-crypt-salt-rotated-0123456",
}


def _remote_ids(host, config: str) -> list[str]:  # type: ignore[no-untyped-def]
    return str(host.check_output(f"{TOOL} --config {config} list --remote")).split()


def _old_path_files(host) -> str:  # type: ignore[no-untyped-def]
    """Every file under the first key's path, with its checksum, the new key's directory left out."""
    return str(
        host.check_output(
            f"cd {OFFSITE} && find . -path ./keys-r1 -prune -o -type f -print0 | sort -z | xargs -0 sha256sum"
        )
    )


def test_a_key_rotation_writes_a_new_path_and_keeps_the_old_one_readable(host) -> None:  # type: ignore[no-untyped-def]
    written = _remote_ids(host, CONFIG)
    assert written, "the earlier tests left no off-site snapshot"
    old_files = _old_path_files(host)
    today = host.check_output("date -u +%F")
    retired = {"id": "", "password": VARS["backup_crypt_password"], "salt": VARS["backup_crypt_salt"], "retired": today}
    result = rerun_converge(SCENARIO, {**NEW_KEYS, "backup_crypt_key_id": "r1", "backup_crypt_retired_keys": [retired]})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]

    conf = host.file(RCLONE_CONF).content_string
    assert f"[mov-offsite]\ntype = crypt\nremote = mov-offsite-backend:{OFFSITE}/keys-r1\n" in conf
    assert f"[mov-offsite-retired-first]\ntype = crypt\nremote = mov-offsite-backend:{OFFSITE}\n" in conf
    for secret in (*NEW_KEYS.values(), retired["password"], retired["salt"]):
        assert secret not in conf
    obscured = [line.split(" = ", 1)[1] for line in conf.splitlines() if line.startswith("password")]
    revealed = [host.check_output(f"rclone reveal -- {shlex.quote(value)}") for value in obscured]
    assert revealed == [*NEW_KEYS.values(), retired["password"], retired["salt"]]
    config = host.file(RETIRED)
    assert config.user == "root" and config.mode == 0o600

    # The old path, read with the old keys: its snapshots are all listed (names decrypted) and a manifest decrypts.
    assert _remote_ids(host, RETIRED) == written
    manifest = host.check_output(
        f"rclone --config {RCLONE_CONF} cat mov-offsite-retired-first:snapshots/{written[-1]}.json"
    )
    assert json.loads(manifest)["files"]

    # The next run writes with the new keys to the new path only; the old path is left as it was.
    run = host.run(f"{TOOL} --config {CONFIG} run")
    assert run.rc == 0, run.stdout + run.stderr
    assert len(_remote_ids(host, CONFIG)) == 1
    assert _old_path_files(host) == old_files
