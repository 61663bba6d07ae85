"""The off-site copy's crypt keys rotated (scripts/platform_secrets.py --rotate backup_password, then a deploy): the
new pair writes to a new path, and the old path stays readable with the old pair through its own config. Then the
backend's own credentials rotated (a new key in mov_backup_remote_options, then a deploy), against an S3 double that
checks every request's signature: rclone.conf carries the new key and the remote works with it.

Runs after test_backup.py and test_drill.py (file order), on the off-site snapshots they left; it leaves the box on
the rotated keys and the local backend, which test_space.py's runs then use.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rerun import rerun_converge

SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
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


# The S3 double (tests/s3_double.py) in the box, on loopback, and two keys of it: the one a deploy configured and the
# one the provider issues in its place (revoking the first).
S3_PORT = 9000
S3_DOUBLE = "/root/s3_double.py"
S3_KEYS = "/root/s3-keys.json"
S3_PATH = "offsite/mov"
OLD_S3_KEY = {"access_key_id": "MOVTESTKEYOLD", "secret_access_key": "test-s3-secret-old-0123456789"}
NEW_S3_KEY = {"access_key_id": "MOVTESTKEYNEW", "secret_access_key": "test-s3-secret-new-0123456789"}


def _rotated_keys(host) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The crypt keys after the rotation below: the new pair, and the first one retired today."""
    today = host.check_output("date -u +%F")
    retired = {"id": "", "password": VARS["backup_crypt_password"], "salt": VARS["backup_crypt_salt"], "retired": today}
    return {**NEW_KEYS, "backup_crypt_key_id": "r1", "backup_crypt_retired_keys": [retired]}


def _s3_backend(key: dict[str, str]) -> dict[str, str]:
    """mov_backup_remote_options as an env gives them for an S3 provider, with this key (backup_remote_backend)."""
    return {
        "type": "s3",
        "provider": "Other",
        "endpoint": f"http://127.0.0.1:{S3_PORT}",
        "force_path_style": "true",
        "no_check_bucket": "true",
        **key,
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
    rotated = _rotated_keys(host)
    [retired] = rotated["backup_crypt_retired_keys"]
    result = rerun_converge(SCENARIO, rotated)
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


def _write_s3_key(host, key: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    host.check_output(f"umask 077 && echo {shlex.quote(json.dumps(key))} > {S3_KEYS}")


@pytest.fixture
def s3_double(host) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The S3 double running in the box with the old key; afterwards stopped, and the box converged back to the local
    backend (with the rotated crypt keys, as the test above left it) for test_space.py."""
    source = base64.b64encode((REPO / "tests" / "s3_double.py").read_bytes()).decode()
    host.check_output(f"echo {source} | base64 -d > {S3_DOUBLE}")
    _write_s3_key(host, OLD_S3_KEY)
    host.check_output(
        f"(nohup python3 {S3_DOUBLE} --port {S3_PORT} --credentials {S3_KEYS} >/tmp/s3-double.log 2>&1 "
        "& echo $! > /tmp/s3-double.pid)"
    )
    host.check_output(
        f'for i in $(seq 50); do python3 -c \'import socket; socket.create_connection(("127.0.0.1", '
        f"{S3_PORT}), 1)' 2>/dev/null && exit 0; sleep 0.2; done; exit 1"
    )
    try:
        yield
    finally:
        host.run("kill $(cat /tmp/s3-double.pid)")
        back = rerun_converge(SCENARIO, _rotated_keys(host))
        assert back.returncode == 0, (back.stdout + back.stderr)[-3000:]


def test_new_backend_credentials_are_written_to_rclone_conf_and_used(host, s3_double) -> None:  # type: ignore[no-untyped-def]
    """docs/operations/rotate-secret.md, off-site backend credentials: a new key at the provider, put where
    mov_backup_remote_options reads it, deploy; the next runs use it. rclone keeps an S3 secret in the clear in its
    config (it obscures only its password-type options, as crypt's), so rclone.conf (0600) holds the value itself."""
    rotated = _rotated_keys(host)
    result = rerun_converge(
        SCENARIO, {**rotated, "backup_remote_backend": _s3_backend(OLD_S3_KEY), "backup_remote_path": S3_PATH}
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    run = host.run(f"{TOOL} --config {CONFIG} run")
    assert run.rc == 0, run.stdout + run.stderr
    written = _remote_ids(host, CONFIG)
    assert len(written) == 1

    # The provider issues a new key and revokes the old one: the deployed config is refused from then on.
    _write_s3_key(host, NEW_S3_KEY)
    refused = host.run(f"{TOOL} --config {CONFIG} list --remote")
    assert refused.rc != 0 and "InvalidAccessKeyId" in refused.stderr, refused.stdout + refused.stderr

    result = rerun_converge(
        SCENARIO, {**rotated, "backup_remote_backend": _s3_backend(NEW_S3_KEY), "backup_remote_path": S3_PATH}
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    conf = host.file(RCLONE_CONF)
    assert conf.user == "root" and conf.mode == 0o600
    backend = conf.content_string.split("\n\n", 1)[0]
    assert f"access_key_id = {NEW_S3_KEY['access_key_id']}\n" in backend
    assert f"secret_access_key = {NEW_S3_KEY['secret_access_key']}\n" in backend
    assert not [v for v in OLD_S3_KEY.values() if v in conf.content_string]

    # With the new key: the snapshot the old key wrote is listed, and the next run uploads and checks its copy.
    assert _remote_ids(host, CONFIG) == written
    run = host.run(f"{TOOL} --config {CONFIG} run")
    assert run.rc == 0, run.stdout + run.stderr
    assert len(_remote_ids(host, CONFIG)) == 2
