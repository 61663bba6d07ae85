"""A full backup disk: the run refuses before writing, says why, alerts by e-mail, and the next run after space
is freed succeeds, off-site copy included. The backup directory is a small tmpfs mounted in the box."""

from __future__ import annotations

import email
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

VARS = yaml.safe_load((Path(__file__).resolve().parent.parent / "vars" / "backup.yml").read_text())
TOOL = "/usr/local/bin/mov-backup"
CONFIG = "/etc/mov-backup/config.json"
SMALL = "/mnt/mov-backup-small"
SPACE_CONFIG = "/tmp/space-config.json"
MAILDIR = "/tmp/mov-mail"


@pytest.fixture
def small_disk(host) -> Any:  # type: ignore[no-untyped-def]
    """A 3 MiB tmpfs as the backup directory, a config using it, and the alert e-mail's SMTP server."""
    host.check_output(f"mkdir -p {SMALL} && mount -t tmpfs -o size=3m,mode=0700 tmpfs {SMALL}")
    config = json.loads(host.file(CONFIG).content_string)
    config.update(backup_dir=SMALL, status_file="/tmp/space-status.json", min_free_bytes=0)
    config["remote"]["target"] = "mov-offsite:space"
    host.check_output(f"echo {shlex.quote(json.dumps(config))} > {SPACE_CONFIG}")
    port = VARS["backup_smtp"]["port"]
    host.check_output(
        f"rm -rf {MAILDIR}; (nohup python3 -m aiosmtpd -n -l 127.0.0.1:{port} "
        f"-c aiosmtpd.handlers.Mailbox {MAILDIR} >/tmp/aiosmtpd.log 2>&1 & echo $! > /tmp/aiosmtpd.pid)"
    )
    host.check_output(
        f'for i in $(seq 50); do python3 -c \'import socket; socket.create_connection(("127.0.0.1", '
        f"{port}), 1)' 2>/dev/null && exit 0; sleep 0.2; done; exit 1"
    )
    try:
        yield SMALL
    finally:
        host.run("kill $(cat /tmp/aiosmtpd.pid)")
        host.run(f"umount {SMALL}")


def _mails(host) -> list[email.message.Message]:  # type: ignore[no-untyped-def]
    names = host.run(f"ls {MAILDIR}/new").stdout.split()
    return [email.message_from_string(host.file(f"{MAILDIR}/new/{n}").content_string) for n in names]


def test_the_smtp_password_file_is_root_only(host) -> None:  # type: ignore[no-untyped-def]
    secret = host.file("/etc/mov-backup/smtp-password")
    assert secret.user == "root" and secret.mode == 0o600
    assert secret.content_string.strip() == VARS["backup_smtp_password"]
    assert VARS["backup_smtp_password"] not in host.file(CONFIG).content_string


def test_a_full_backup_disk_refuses_alerts_by_email_and_recovers(host, small_disk) -> None:  # type: ignore[no-untyped-def]
    # Leave 100 KiB: less than the persistence file alone (300 KB).
    host.check_output(f"head -c $(( $(df --output=avail -B1 {SMALL} | tail -1) - 102400 )) /dev/zero > {SMALL}/filler")
    full = host.run(f"{TOOL} --config {SPACE_CONFIG} run")
    assert full.rc == 1
    assert f"backup FAILED: not enough space on {SMALL}: this run needs up to" in full.stdout
    assert "Nothing was written" in full.stdout
    assert host.run(f"ls -d {SMALL}/2* {SMALL}/.partial-*").rc != 0
    [mail] = _mails(host)
    assert mail["To"] == "ops@example.test" and mail["Subject"].startswith("[mov/molecule] backup failed on ")
    assert "not enough space" in mail.get_payload()

    host.check_output(f"rm {SMALL}/filler")
    freed = host.run(f"{TOOL} --config {SPACE_CONFIG} run")
    assert freed.rc == 0, freed.stdout + freed.stderr
    local = host.check_output(f"{TOOL} --config {SPACE_CONFIG} list").split()
    assert len(local) == 1
    assert host.check_output(f"{TOOL} --config {SPACE_CONFIG} list --remote").split() == local
    status = json.loads(host.file("/tmp/space-status.json").content_string)
    assert status["result"] == "ok" and status["offsite"] == "ok"
    assert len(_mails(host)) == 1
