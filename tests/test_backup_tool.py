"""mov-backup's local logic on the controller: retention, incremental snapshots, restore, refusal, failures, a full
backup disk (a tmpfs, as root) and alert e-mails (to an aiosmtpd server the test starts).

The off-site path (rclone crypt) is exercised on the box by `molecule test -s backup`.
"""

from __future__ import annotations

import ctypes
import email
import email.message
import errno
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from mov_host import backup
from mov_host.backup import files as backup_files
from mov_host.backup import sqlite as backup_sqlite
from mov_host.backup.config import Retention, load_config
from mov_host.backup.files import CHUNK, read_manifest, snapshot_ids
from mov_host.backup.influx import INFLUX_ADMIN_TOKEN
from mov_host.backup.restore import check_snapshot
from mov_host.backup.retention import expired_once_taken, keep_set
from mov_host.backup.sqlite import sqlite_signature, sqlite_unchanged
from mov_host.backup.status import alert


def test_retention_keeps_the_newest_of_each_period() -> None:
    ids = [
        "20261126T023000Z",
        "20261126T010000Z",
        "20261125T023000Z",
        "20261124T023000Z",
        "20261123T023000Z",
        "20261122T023000Z",
        "20261115T023000Z",
        "20261101T023000Z",
        "20261015T023000Z",
        "20260915T023000Z",
    ]
    keep = keep_set(ids, Retention(daily=3, weekly=2, monthly=2))
    assert sorted(keep) == [
        "20261015T023000Z",
        "20261122T023000Z",
        "20261124T023000Z",
        "20261125T023000Z",
        "20261126T023000Z",
    ]
    assert keep_set(ids, Retention(0, 0, 0)) == {"20261126T023000Z"}  # never nothing
    assert len(keep_set(ids, Retention(0, 0, 0, last=4))) == 4


@pytest.fixture
def platform(tmp_path: Path) -> dict[str, Any]:
    data = tmp_path / "platform"
    (data / "mosquitto" / "data").mkdir(parents=True)
    (data / "mosquitto" / "data" / "mosquitto.db").write_bytes(os.urandom(50_000))
    (data / "mosquitto" / "config").mkdir()
    (data / "mosquitto" / "config" / "passwd").write_text("verify:$7$101$hash\n")
    (data / "mosquitto" / "config" / "mosquitto.conf").write_text("listener 1883\n" * 500)
    db = sqlite3.connect(data / "grafana.db")
    db.execute("CREATE TABLE dashboard (id INTEGER PRIMARY KEY, title TEXT)")
    db.executemany("INSERT INTO dashboard (title) VALUES (?)", [(f"d{i}",) for i in range(300)])
    db.commit()
    db.close()
    config = {
        "backup_dir": str(tmp_path / "backups"),
        "status_file": str(tmp_path / "status.json"),
        "sources": [
            {"name": "mosquitto-data", "kind": "tree", "path": str(data / "mosquitto" / "data"), "data": True},
            {"name": "mosquitto-config", "kind": "tree", "path": str(data / "mosquitto" / "config")},
            {"name": "grafana-db", "kind": "sqlite", "path": str(data / "grafana.db"), "data": True},
            {"name": "absent", "kind": "file", "path": str(data / "not-there.ini")},
        ],
        "retention": {"daily": 7, "weekly": 4, "monthly": 6, "last": 10},
        "stack": {"dir": str(tmp_path), "project": "mov", "services": ["mosquitto", "influxdb"]},
        "remote": {},
        "webhook_url": "",
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return {"data": data, "config": str(path), "backups": tmp_path / "backups", "tmp": tmp_path}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM dashboard").fetchone()[0])
    finally:
        db.close()


def test_snapshots_are_incremental_and_restore_byte_for_byte(
    platform: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data, config, backups = platform["data"], platform["config"], platform["backups"]
    assert backup.main(["--config", config, "run"]) == 0
    out = capsys.readouterr().out
    assert "absent: " in out and "skipped" in out
    assert "influxdb: in the stack's services but" in out  # no compose project yet: skipped, said so
    os.utime(data / "mosquitto" / "config" / "passwd", ns=(1, 1))  # a change rsync's quick check would see
    (data / "mosquitto" / "config" / "passwd").write_text("verify:$7$101$other\n")
    first = snapshot_ids(backups)[0]
    (backups / first).rename(backups / "20200101T000000Z")  # a second snapshot id without waiting a second
    assert backup.main(["--config", config, "run"]) == 0
    old, new = snapshot_ids(backups)
    manifest = json.loads((backups / new / "manifest.json").read_text())
    entries = {e["rel"]: e for e in manifest["files"]}
    assert entries["mosquitto.conf"]["zstd"] and not entries["mosquitto.db"]["zstd"]

    def inode(snapshot: str, stored: str) -> int:
        return int((backups / snapshot / stored).stat().st_ino)

    for rel in ("mosquitto.db", "mosquitto.conf", "grafana.db"):
        assert inode(old, entries[rel]["stored"]) == inode(new, entries[rel]["stored"]), rel
    assert inode(old, "data/mosquitto-config/passwd") != inode(new, "data/mosquitto-config/passwd")
    status = json.loads(Path(platform["tmp"] / "status.json").read_text())
    assert status["result"] == "ok" and status["new_bytes"] < 100

    files = (data / "mosquitto" / "data" / "mosquitto.db", data / "mosquitto" / "config" / "passwd")
    sums = {p: _sha(p) for p in files}
    (data / "mosquitto" / "data" / "mosquitto.db").unlink()
    (data / "grafana.db").unlink()
    (data / "mosquitto" / "config" / "passwd").write_text("clobbered\n")
    assert backup.main(["--config", config, "restore"]) == 0
    assert {p: _sha(p) for p in sums} == sums
    assert _rows(data / "grafana.db") == 300


def test_restore_refuses_non_empty_data_without_force(
    platform: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert backup.main(["--config", platform["config"], "run"]) == 0
    persistence = platform["data"] / "mosquitto" / "data" / "mosquitto.db"
    persistence.write_bytes(b"newer data")
    assert backup.main(["--config", platform["config"], "restore"]) == 1
    err = capsys.readouterr().err
    assert "refusing to overwrite data that is not empty" in err and "restore_force=true" in err
    assert persistence.read_bytes() == b"newer data"
    assert backup.main(["--config", platform["config"], "restore", "--force"]) == 0
    assert persistence.read_bytes() != b"newer data"


def test_a_damaged_local_snapshot_is_named_and_not_restored(
    platform: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert backup.main(["--config", platform["config"], "run"]) == 0
    snapshot = platform["backups"] / snapshot_ids(platform["backups"])[-1]
    stored = snapshot / "data/mosquitto-data/mosquitto.db"
    damaged = bytearray(stored.read_bytes())
    damaged[100] ^= 1
    stored.write_bytes(bytes(damaged))
    assert backup.main(["--config", platform["config"], "restore", "--force"]) == 1
    assert "data/mosquitto-data/mosquitto.db (sha256 differs from the manifest)" in capsys.readouterr().err


def test_a_failed_run_leaves_no_snapshot(platform: dict[str, Any]) -> None:
    config = json.loads(Path(platform["config"]).read_text())
    broken = platform["tmp"] / "broken.db"
    broken.write_bytes(os.urandom(4096))
    config["sources"].append({"name": "broken", "kind": "sqlite", "path": str(broken)})
    path = platform["tmp"] / "broken.json"
    path.write_text(json.dumps(config))
    assert backup.main(["--config", str(path), "run"]) == 1
    assert snapshot_ids(platform["backups"]) == []
    assert list(platform["backups"].glob(".partial-*")) == []
    status = json.loads(Path(platform["tmp"] / "status.json").read_text())
    assert status["result"] == "failed" and "sqlite backup of" in status["error"]


def test_an_untouched_sqlite_database_is_not_copied_again(
    platform: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, config, backups = platform["data"], platform["config"], platform["backups"]
    assert backup.main(["--config", config, "run"]) == 0
    # Just written: its ctime is too close to the look the snapshot took to vouch for it (racily clean).
    first = snapshot_ids(backups)[0]
    entry = next(e for e in read_manifest(backups / first)["files"] if e["rel"] == "grafana.db")
    assert not sqlite_unchanged(entry, sqlite_signature(data / "grafana.db"))
    monkeypatch.setattr(backup_sqlite, "RACY_NS", -(10**12))  # as if the database had been written long before
    (backups / first).rename(backups / "20200101T000000Z")
    capsys.readouterr()
    assert backup.main(["--config", config, "run"]) == 0
    assert "grafana-db: unchanged since the previous snapshot" in capsys.readouterr().out
    second = snapshot_ids(backups)[-1]
    stored = entry["stored"]
    assert (backups / "20200101T000000Z" / stored).stat().st_ino == (backups / second / stored).stat().st_ino

    db = sqlite3.connect(data / "grafana.db")
    db.execute("INSERT INTO dashboard (title) VALUES ('new')")
    db.commit()
    db.close()
    (backups / second).rename(backups / "20200102T000000Z")
    assert backup.main(["--config", config, "run"]) == 0
    assert "grafana-db: unchanged" not in capsys.readouterr().out
    (data / "grafana.db").unlink()
    assert backup.main(["--config", config, "restore", "--force"]) == 0
    assert _rows(data / "grafana.db") == 301


def test_compression_is_decided_on_the_first_chunk_and_checked_on_the_whole(platform: dict[str, Any]) -> None:
    data, config, backups = platform["data"], platform["config"], platform["backups"]
    config_dir = data / "mosquitto" / "config"
    chunk = CHUNK
    text = b"".join(b"sensor_%03d temperatura %d\n" % (i % 50, i) for i in range(chunk))
    files = {
        "noise.log": os.urandom(3 * chunk),  # no telling extension: the first chunk's zstd block shows no gain
        "late.log": os.urandom(chunk) + text,  # decided on the first chunk: the rest is not even tried
        "mixed.log": text[:chunk] + os.urandom(12 * chunk),  # the head compresses, the whole gains < 10 %
        "text.log": text[: 3 * chunk],
    }
    for name, content in files.items():
        (config_dir / name).write_bytes(content)
    assert backup.main(["--config", config, "run"]) == 0
    snapshot = backups / snapshot_ids(backups)[-1]
    entries = {e["rel"]: e for e in read_manifest(snapshot)["files"]}
    assert not any(entries[name]["zstd"] for name in ("noise.log", "late.log", "mixed.log"))
    assert entries["text.log"]["zstd"] and entries["text.log"]["stored"].endswith("text.log.zst")
    stored = {p.name for p in (snapshot / "data" / "mosquitto-config").iterdir()}
    assert {"noise.log", "late.log", "mixed.log", "text.log.zst"} <= stored
    assert not {"noise.log.zst", "late.log.zst", "mixed.log.zst", "text.log"} & stored  # no attempt left behind
    for name, content in files.items():
        entry = entries[name]
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["stored_sha256"] == hashlib.sha256((snapshot / entry["stored"]).read_bytes()).hexdigest()
        (config_dir / name).write_bytes(b"changed")
    assert backup.main(["--config", config, "restore", "--force"]) == 0
    for name, content in files.items():
        assert (config_dir / name).read_bytes() == content


def test_a_write_back_error_fails_the_run_and_leaves_no_snapshot(
    platform: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    class FailingLibc:
        @staticmethod
        def syncfs(fd: int) -> int:
            os.fstat(fd)  # an open descriptor, as the real call needs
            ctypes.set_errno(errno.EIO)
            return -1

    monkeypatch.setattr(backup_files, "_LIBC", FailingLibc())
    assert backup.main(["--config", platform["config"], "run"]) == 1
    assert snapshot_ids(platform["backups"]) == []
    assert list(platform["backups"].glob(".partial-*")) == []
    status = json.loads(Path(platform["tmp"] / "status.json").read_text())
    assert status["result"] == "failed" and "syncfs" in status["error"] and "Input/output error" in status["error"]


# --- a full backup disk, alerts by e-mail ------------------------------------------------------------------


class Inbox:
    """aiosmtpd's handler: every message the test's SMTP server accepted, with the login it was sent under."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.original_content))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"mov-alerts", b"relay-secret"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A plain SMTP server on loopback (a relay on the host: the case where the tool may skip STARTTLS)."""
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def small_disk(platform: dict[str, Any]) -> Iterator[Path]:
    """The backup directory on its own 4 MiB tmpfs, a backup disk that fills up."""
    backups = platform["backups"]
    backups.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(backups)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield backups
    finally:
        subprocess.run(["umount", str(backups)], check=True)


def _configure(platform: dict[str, Any], **changes: Any) -> str:
    config = json.loads(Path(platform["config"]).read_text()) | {"env": "test", "min_free_bytes": 0} | changes
    Path(platform["config"]).write_text(json.dumps(config))
    return str(platform["config"])


def _plain_email(port: int) -> dict[str, Any]:
    return {
        "to": ["ops@example.test"],
        "host": "127.0.0.1",
        "port": port,
        "from": "mov@example.test",
        "starttls": False,
    }


def _fill(disk: Path, leave: int) -> Path:
    """A file that leaves `leave` bytes free on disk."""
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - leave))
    return filler


def _new_persistence(platform: dict[str, Any]) -> None:
    (platform["data"] / "mosquitto" / "data" / "mosquitto.db").write_bytes(os.urandom(1 << 20))


def test_a_full_backup_disk_refuses_alerts_by_email_and_the_next_run_succeeds(
    platform: dict[str, Any],
    small_disk: Path,
    smtp: tuple[Inbox, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    inbox, port = smtp
    config = _configure(platform, email=_plain_email(port))
    _new_persistence(platform)
    filler = _fill(small_disk, 256 << 10)  # 1 MiB of new data, 256 KiB free
    assert backup.main(["--config", config, "run"]) == 1
    out = capsys.readouterr().out
    assert f"backup FAILED: not enough space on {small_disk}: this run needs up to 1." in out
    assert "(no snapshot has expired). Nothing was written" in out
    assert "alert e-mailed to ops@example.test through 127.0.0.1" in out
    assert snapshot_ids(small_disk) == [] and list(small_disk.glob(".partial-*")) == []
    status = json.loads(Path(platform["tmp"] / "status.json").read_text())
    assert status["result"] == "failed" and "not enough space" in status["error"]
    [mail] = inbox.messages
    assert mail["To"] == "ops@example.test" and mail["From"] == "mov@example.test"
    assert mail["Subject"] == f"[mov/test] backup failed on {socket.gethostname()}"
    assert "not enough space" in mail.get_payload()

    filler.unlink()
    assert backup.main(["--config", config, "run"]) == 0
    assert len(snapshot_ids(small_disk)) == 1 and len(inbox.messages) == 1
    status = json.loads(Path(platform["tmp"] / "status.json").read_text())
    assert status["result"] == "ok" and status["space"]["needed_bytes"] > 1 << 20


def test_expired_snapshots_make_room_before_the_run(
    platform: dict[str, Any], small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _configure(platform, retention={"daily": 2, "weekly": 0, "monthly": 0})
    for older in ("20200101T000000Z", "20200102T000000Z"):  # two snapshots, 1 MiB of its own each
        _new_persistence(platform)
        assert backup.main(["--config", config, "run"]) == 0
        (small_disk / snapshot_ids(small_disk)[-1]).rename(small_disk / older)
    _new_persistence(platform)
    _fill(small_disk, 512 << 10)
    capsys.readouterr()
    assert backup.main(["--config", config, "run"]) == 0
    out = capsys.readouterr().out
    assert "removing the 1 snapshot(s) retention drops once this run's exists" in out
    assert "retention: removed local snapshot 20200101T000000Z" in out
    ids = snapshot_ids(small_disk)
    assert ids[0] == "20200102T000000Z" and len(ids) == 2
    check_snapshot(small_disk / ids[-1])


def test_retention_before_a_run_never_drops_the_newest() -> None:
    ids = ["20261124T023000Z", "20261125T023000Z", "20261126T023000Z"]
    daily3 = Retention(daily=3, weekly=0, monthly=0)
    assert expired_once_taken(ids, daily3, "20261127T023000Z") == ["20261124T023000Z"]
    assert keep_set(ids, daily3) == set(ids)  # retention after the run would have found nothing to drop
    # Same day as the newest: retention would drop it once the new one exists, but it is the link base.
    assert expired_once_taken(ids, Retention(1, 0, 0), "20261126T050000Z") == ids[:2]


def test_a_failed_drill_alerts_by_email(platform: dict[str, Any], smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    config = _configure(platform, email=_plain_email(port))
    assert backup.main(["--config", config, "drill", "--from", "local"]) == 1
    [mail] = inbox.messages
    assert mail["Subject"] == f"[mov/test] restore drill failed on {socket.gethostname()}"
    assert "no complete local snapshot" in mail.get_payload()


def test_alert_email_uses_starttls_and_logs_in_with_the_password_file(
    platform: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = tmp_path / "relay.key", tmp_path / "relay.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the tool verifies the relay against the default CAs
    inbox, port = Inbox(), _free_port()
    controller = Controller(
        inbox,
        hostname="localhost",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=inbox.authenticate,
    )
    controller.start()
    try:
        password = tmp_path / "smtp-password"
        password.write_text("relay-secret\n")
        password.chmod(0o600)
        config = _configure(
            platform,
            email={
                "to": ["ops@example.test", "oncall@example.test"],
                "host": "localhost",
                "port": port,
                "user": "mov-alerts",
                "from": "mov@example.test",
                "password_file": str(password),
            },
        )
        cfg = load_config(config)
        assert cfg.email.starttls  # the default
        alert(cfg, "backup on host failed: disk on fire")
    finally:
        controller.stop()
    assert inbox.logins == [(b"mov-alerts", b"relay-secret")]
    [mail] = inbox.messages
    assert mail["To"] == "ops@example.test, oncall@example.test"
    assert "disk on fire" in mail.get_payload()


def test_plain_smtp_is_refused_for_a_relay_elsewhere(
    platform: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _configure(platform, email=_plain_email(25) | {"host": "smtp.example.test"})
    assert backup.main(["--config", config, "check-config"]) == 1
    assert "starttls: false is for a relay on this host only" in capsys.readouterr().err


def test_the_command_runs_the_package_through_its_dispatcher(platform: dict[str, Any]) -> None:
    """On the host, `mov-backup ARGS` is `python3 <zipapp> mov-backup ARGS`: the same output and exit code."""
    env = dict(os.environ, PYTHONPATH=str(Path(backup.__file__).resolve().parents[2]))  # hosttools/src
    argv = [sys.executable, "-m", "mov_host", "mov-backup", "--config", platform["config"]]
    checked = subprocess.run([*argv, "check-config"], capture_output=True, text=True, env=env, check=False)
    assert (checked.returncode, checked.stdout) == (0, f"config ok: 4 sources, backup_dir {platform['backups']}\n")
    refused = subprocess.run([*argv, "--bogus"], capture_output=True, text=True, env=env, check=False)
    assert refused.returncode == 2 and "usage: mov-backup" in refused.stderr


# A test double of `docker compose` (InfluxDB cannot run here): it answers the calls influxdb_backup and the space
# estimate make, writes what `influx backup` would into the directory mounted at /mov-backup, and records each call.
FAKE_DOCKER = r"""#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if "config" in args:
    print(json.dumps({"services": {"influxdb": {"user": "1000:1001"}}}))
elif "run" in args and "influx restore" in args[-1]:
    # What the one-off container would see: every staged file's owner and whether that user can read it.
    source, _, target = args[args.index("--volume") + 1].partition(":")
    files = {name: [os.stat(os.path.join(source, name)).st_uid, os.stat(os.path.join(source, name)).st_mode & 0o400]
             for name in os.listdir(source)}
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
        log.write(json.dumps({"restore_from": source, "uid": os.stat(source).st_uid, "target": target,
                              "files": files}) + "\n")
elif "run" in args:
    source, _, target = args[args.index("--volume") + 1].partition(":")
    st = os.stat(source)
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
        log.write(json.dumps({"staging": source, "uid": st.st_uid, "gid": st.st_gid, "target": target}) + "\n")
    with open(os.path.join(source, "20261206T000000Z.manifest"), "w") as f:
        f.write("{}")
    with open(os.path.join(source, "20261206T000000Z.s1.tar.gz"), "wb") as f:
        f.write(os.urandom(100_000))
elif "du" in args:
    print("2048\t/var/lib/influxdb2")
elif "exec" in args and "influx query" in args[-1]:
    pass  # an empty InfluxDB: no table
elif "exec" in args and "influx write" in args[-1]:
    if os.environ.get("FAKE_INFLUX_WRITE_FAILS"):
        sys.exit("Error: failed to write data: 401 Unauthorized")
else:
    sys.exit("unexpected docker call: " + " ".join(args))
"""


@pytest.fixture
def docker_calls(platform: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    """FAKE_DOCKER first on PATH and the stack deployed; the file where the double records each call."""
    bin_dir, calls = platform["tmp"] / "bin", platform["tmp"] / "docker-calls.jsonl"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(calls))
    (platform["tmp"] / "compose.yaml").write_text("services: {}\n")  # the stack is deployed
    return calls


def test_influx_backup_is_staged_in_the_backup_dir_against_a_docker_double(
    platform: dict[str, Any], docker_calls: Path
) -> None:
    calls = docker_calls
    config = _configure(platform)
    assert backup.main(["--config", config, "run"]) == 0
    logged = [json.loads(line) for line in calls.read_text().splitlines()]
    [run] = [c for c in logged if isinstance(c, list) and "run" in c]
    assert run[run.index("run") : run.index("influxdb")] == [
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "--entrypoint",
        "sh",
        "--volume",
        run[run.index("--volume") + 1],
    ]
    assert run[-2:] == [
        "-c",
        INFLUX_ADMIN_TOKEN + " influx backup --host http://influxdb:8086 /mov-backup",
    ]
    [staged] = [c for c in logged if isinstance(c, dict)]
    assert Path(staged["staging"]).is_relative_to(platform["backups"])  # on the backup disk, not in a container
    assert (staged["uid"], staged["gid"], staged["target"]) == (1000, 1001, "/mov-backup")
    # Nothing is copied into, or staged in, a container's own filesystem.
    assert not any("cp" in c or ":/tmp" in " ".join(c) for c in logged if isinstance(c, list))
    first = json.loads(Path(platform["tmp"] / "status.json").read_text())["space"]["needed_bytes"]
    assert first > 2048 * 1024  # no previous InfluxDB backup: its live data's size (du) counted
    snapshot = platform["backups"] / snapshot_ids(platform["backups"])[-1]
    stored = {e["rel"] for e in check_snapshot(snapshot)["files"] if e["source"] == "influxdb"}
    assert stored == {"20261206T000000Z.manifest", "20261206T000000Z.s1.tar.gz"}

    snapshot.rename(platform["backups"] / "20200101T000000Z")
    assert backup.main(["--config", config, "run"]) == 0
    second = json.loads(Path(platform["tmp"] / "status.json").read_text())["space"]["needed_bytes"]
    assert 100_000 < second < first  # the previous snapshot's InfluxDB part, not du, and no du call
    assert sum(1 for c in logged if isinstance(c, list) and "du" in c) == 1

    # The restore hands the same files to a one-off container, read-only, owned by the service's user (a
    # `docker compose cp` would make them root's, unreadable by InfluxDB's user in a 0700 staging).
    assert backup.main(["--config", config, "restore", "--force"]) == 0
    logged = [json.loads(line) for line in calls.read_text().splitlines()]
    [restore] = [c for c in logged if isinstance(c, list) and "influx restore" in c[-1]]
    assert restore[-1] == (INFLUX_ADMIN_TOKEN + " influx restore --full --host http://influxdb:8086 /mov-backup")
    [seen] = [c for c in logged if isinstance(c, dict) and "restore_from" in c]
    assert seen["target"] == "/mov-backup:ro" and seen["uid"] == 1000
    assert seen["files"] == {"20261206T000000Z.manifest": [1000, 0o400], "20261206T000000Z.s1.tar.gz": [1000, 0o400]}
    assert not any("cp" in c or ("exec" in c and "influx restore" in c[-1]) for c in logged if isinstance(c, list))


def test_each_result_is_written_as_a_point_for_grafanas_alerts_and_a_failed_write_changes_nothing(
    platform: dict[str, Any],
    docker_calls: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a metrics bucket, `mov-backup run` ends with `influx write` of its result in InfluxDB's container (the
    admin token stays there); InfluxDB refusing it is logged, and the run's result and exit code stand."""
    calls = docker_calls
    stack = json.loads(Path(platform["config"]).read_text())["stack"] | {"metrics_bucket": "mov_infra"}
    config = _configure(platform, stack=stack)

    def writes() -> list[list[str]]:
        logged = [json.loads(line) for line in calls.read_text().splitlines()]
        return [c for c in logged if isinstance(c, list) and "influx write" in c[-1]]

    assert backup.main(["--config", config, "run"]) == 0
    status = json.loads((platform["tmp"] / "status.json").read_text())
    [write] = writes()
    assert write[write.index("exec") :][:3] == ["exec", "-T", "influxdb"]
    stamp = int(datetime.fromisoformat(status["time"]).timestamp())
    assert write[-1] == (
        f"{INFLUX_ADMIN_TOKEN} influx write --bucket mov_infra --precision s "
        f"'mov_backup,kind=backup ok=1i,duration_s={status['duration_s']:.3f} {stamp}'"
    )
    monkeypatch.setenv("FAKE_INFLUX_WRITE_FAILS", "1")
    capsys.readouterr()
    assert backup.main(["--config", config, "run"]) == 0
    assert len(writes()) == 2 and json.loads((platform["tmp"] / "status.json").read_text())["result"] == "ok"
    assert "backup result not recorded in mov_infra" in capsys.readouterr().out
    # Without a bucket (no infrastructure metrics), nothing is written.
    _configure(platform, stack=stack | {"metrics_bucket": ""})
    assert backup.main(["--config", config, "run"]) == 0
    assert len(writes()) == 2
