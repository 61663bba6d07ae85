"""mov-backup's off-site copy with the real rclone (Debian's) on the controller: crypt over the `local` backend, or
over a test double of S3 that corrupts what it stores (tests/s3_double.py).

- an upload the backend corrupts fails the run through rclone's own check, and leaves no off-site snapshot;
- a run's cryptcheck covers what it uploaded only and fails the run on an object damaged after its upload; an
  object a failed run left off-site is uploaded again;
- the drill reads back every manifest and a rotating slice of the objects, names a damaged one and keeps its
  slice until it passes, with the full restore comparison still made.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mov_host import backup
from mov_host.backup import snapshot, upload
from mov_host.backup.files import read_manifest, snapshot_ids
from mov_host.backup.process import run_command
from mov_host.backup.readback import slice_of
from s3_double import S3Double

RCLONE = shutil.which("rclone")
pytestmark = pytest.mark.skipif(RCLONE is None, reason="no rclone (apt-get install rclone)")


def _obscure(secret: str) -> str:
    assert RCLONE is not None
    return subprocess.run([RCLONE, "obscure", "-"], input=secret, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A small platform (a persistence file, a config tree, an SQLite database) and a config whose off-site remote
    is crypt over `local` (tmp_path/offsite); `backend` swaps what crypt wraps."""
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)  # this machine's; rclone's S3 client refuses it over http
    data = tmp_path / "platform"
    (data / "data").mkdir(parents=True)
    (data / "data" / "mosquitto.db").write_bytes(os.urandom(40_000))
    (data / "config").mkdir()
    for i in range(3):
        (data / "config" / f"part{i}.conf").write_text(f"listener {1883 + i}\n" * 200)
    db = sqlite3.connect(data / "grafana.db")
    db.execute("CREATE TABLE dashboard (id INTEGER PRIMARY KEY, uid TEXT)")
    db.executemany("INSERT INTO dashboard (uid) VALUES (?)", [(f"d{i}",) for i in range(50)])
    db.commit()
    db.close()
    password, salt = _obscure("offsite-test-password-0123"), _obscure("offsite-test-salt-0123")
    rclone_conf = tmp_path / "rclone.conf"
    config = {
        "backup_dir": str(tmp_path / "backups"),
        "status_file": str(tmp_path / "status" / "status.json"),
        "sources": [
            {"name": "mosquitto-data", "kind": "tree", "path": str(data / "data"), "data": True},
            {"name": "config", "kind": "tree", "path": str(data / "config")},
            {"name": "grafana-db", "kind": "sqlite", "path": str(data / "grafana.db"), "data": True},
        ],
        "retention": {"daily": 7, "weekly": 4, "monthly": 6, "last": 10},
        "stack": {"dir": str(tmp_path), "project": "mov", "services": []},
        "remote": {"target": "crypt:", "rclone_config": str(rclone_conf)},
        "webhook_url": "",
        "drill_readback_weeks": 2,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))

    def backend(section: str, where: str) -> None:
        """crypt over the rclone remote `backend` (its config section), at `where` in it."""
        rclone_conf.write_text(
            f"{section}\n[crypt]\ntype = crypt\nremote = backend:{where}\npassword = {password}\npassword2 = {salt}\n"
        )

    backend("[backend]\ntype = local\n", str(tmp_path / "offsite"))
    return {
        "data": data,
        "config": str(path),
        "backups": tmp_path / "backups",
        "status": tmp_path / "status",
        "offsite": tmp_path / "offsite",
        "rclone_conf": rclone_conf,
        "backend": backend,
        "tmp": tmp_path,
    }


def _rclone(site: dict[str, Any], *args: str, stdin: bytes | None = None) -> str:
    assert RCLONE is not None
    result = subprocess.run(
        [RCLONE, "--config", str(site["rclone_conf"]), *args], input=stdin, capture_output=True, check=True
    )
    return result.stdout.decode()


def _status(site: dict[str, Any], name: str = "status.json") -> dict[str, Any]:
    return dict(json.loads((site["status"] / name).read_text()))


@pytest.fixture
def s3() -> Iterator[S3Double]:
    double = S3Double()
    yield double
    double.stop()


def test_an_upload_the_backend_corrupts_fails_the_run_and_leaves_no_offsite_snapshot(
    site: dict[str, Any], s3: S3Double, capsys: pytest.CaptureFixture[str]
) -> None:
    site["backend"](s3.rclone_section("backend"), "offsite")
    s3.bucket.flip = True
    assert backup.main(["--config", site["config"], "run"]) == 1
    status = _status(site)
    assert status["result"] == "failed" and status["offsite"] == "failed"
    # rclone's own check (crypt's put): the ciphertext's MD5 against the ETag of what the backend stored.
    assert "rclone copy (off-site upload) failed" in status["error"]
    assert "corrupted on transfer: md5 crypted hash differ" in status["error"]
    assert s3.bucket.objects == {}  # rclone removed what it found corrupted, the tool the pending manifest
    capsys.readouterr()
    assert backup.main(["--config", site["config"], "list", "--remote"]) == 0
    assert capsys.readouterr().out == ""  # no off-site snapshot
    # The same double storing what it is sent: the same run passes.
    s3.bucket.flip = False
    assert backup.main(["--config", site["config"], "run"]) == 0
    assert _status(site)["offsite"] == "ok"


def _cryptchecks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """rclone behind a shim that records, for each cryptcheck, the files of the directory it checks."""
    log = tmp_path / "cryptchecks.log"
    shim = tmp_path / "bin" / "rclone"
    shim.parent.mkdir()
    shim.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do [ "$arg" = cryptcheck ] && check=1; done\n'
        'if [ -n "$check" ]; then\n'
        '  eval "staged=\\${$(($# - 1))}"\n'
        f'  (cd "$staged" && find . -type f | sort | tr "\\n" " "; echo) >> {log}\n'
        "fi\n"
        f'exec {RCLONE} "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}:{os.environ['PATH']}")
    return log


def test_a_run_checks_what_it_uploads_and_uploads_again_an_object_no_snapshot_holds(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _cryptchecks(site["tmp"], monkeypatch)
    assert backup.main(["--config", site["config"], "run"]) == 0
    first = snapshot_ids(site["backups"])[-1]
    # A new persistence file, and its object off-site cut short, as a run killed during the upload leaves it
    # (the local backend writes in place): in the listing, in no complete snapshot.
    content = os.urandom(60_000)
    (site["data"] / "data" / "mosquitto.db").write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()  # stored as it is: random bytes do not shrink
    _rclone(site, "rcat", f"crypt:objects/{digest[:2]}/{digest}", stdin=content[:10_000])

    assert backup.main(["--config", site["config"], "run"]) == 0
    second = snapshot_ids(site["backups"])[-1]
    assert _status(site)["uploaded_objects"] == 1
    checks = log.read_text().splitlines()
    assert len(checks) == 2
    assert len(checks[0].split()) == len(read_manifest(site["backups"] / first)["files"]) + 1
    # The second run's cryptcheck: the one object it sent (again) and its manifest, nothing it did not send.
    assert sorted(checks[1].split()) == [f"./objects/{digest[:2]}/{digest}", f"./snapshots/{second}.json.pending"]
    # The object off-site is whole: the snapshot restores from there.
    (site["data"] / "data" / "mosquitto.db").unlink()
    assert backup.main(["--config", site["config"], "restore", "--from", "remote", "--force"]) == 0
    assert (site["data"] / "data" / "mosquitto.db").read_bytes() == content


def test_an_object_damaged_after_its_upload_fails_the_run_and_is_sent_again(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    content = (site["data"] / "data" / "mosquitto.db").read_bytes()
    digest = hashlib.sha256(content).hexdigest()  # stored as it is: random bytes do not shrink
    name = f"objects/{digest[:2]}/{digest}"

    def damage_before_check(argv: list[str], what: str, stdin: bytes | None = None) -> str:
        if what.startswith("rclone cryptcheck"):
            _flip_offsite(site, name)  # the copy and its own check passed; the backend's copy rots after it
        return run_command(argv, what, stdin)

    monkeypatch.setattr(upload, "run_command", damage_before_check)
    assert backup.main(["--config", site["config"], "run"]) == 1
    status = _status(site)
    assert status["result"] == "failed" and status["offsite"] == "failed"
    assert "rclone cryptcheck (off-site upload) failed" in status["error"]
    assert name in status["error"]  # rclone names the object whose hash differs
    capsys.readouterr()
    assert backup.main(["--config", site["config"], "list", "--remote"]) == 0
    assert capsys.readouterr().out == ""  # the pending manifest was removed: no off-site snapshot

    monkeypatch.setattr(upload, "run_command", run_command)
    assert backup.main(["--config", site["config"], "run"]) == 0
    assert _status(site)["offsite"] == "ok"
    # The damaged object is in no complete snapshot: sent again, and whole off-site.
    assert _rclone(site, "hashsum", "sha256", "--download", f"crypt:{name}").split()[0] == digest


def _offsite_manifests(site: dict[str, Any]) -> list[str]:
    """The names under snapshots/ off-site, pending ones too."""
    assert RCLONE is not None
    listing = subprocess.run(
        [RCLONE, "--config", str(site["rclone_conf"]), "lsf", "crypt:snapshots"], capture_output=True, check=False
    )
    return listing.stdout.decode().split()


def test_a_snapshot_failing_after_its_upload_started_leaves_no_offsite_snapshot(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The upload starts once the snapshot's files and manifest are written; its syncfs comes after. It fails
    # once the pending manifest is off-site.
    def failing_sync(fd: int, path: Path) -> None:
        deadline = time.monotonic() + 20
        while not _offsite_manifests(site) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _offsite_manifests(site), "the upload did not start before the snapshot's sync"
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr(snapshot, "sync_filesystem", failing_sync)
    assert backup.main(["--config", site["config"], "run"]) == 1
    assert "Input/output error" in _status(site)["error"]
    assert snapshot_ids(site["backups"]) == []
    capsys.readouterr()
    assert backup.main(["--config", site["config"], "list", "--remote"]) == 0
    assert capsys.readouterr().out == ""
    assert _offsite_manifests(site) == []  # the copy stopped, its pending manifest removed off-site
    assert not list(site["backups"].glob("mov-upload-*"))  # the staging removed


def test_a_remote_that_cannot_be_listed_fails_the_run_and_keeps_the_local_snapshot(site: dict[str, Any]) -> None:
    site["offsite"].write_text("not a directory\n")  # crypt over `local` at a file: no listing, no upload
    assert backup.main(["--config", site["config"], "run"]) == 1
    status = _status(site)
    assert status["offsite"] == "failed" and "rclone" in status["error"]
    assert status["snapshot"] is not None and snapshot_ids(site["backups"]) == [status["snapshot"]]


def _flip_offsite(site: dict[str, Any], name: str) -> None:
    """One byte of an object's ciphertext on the backend changed (its encrypted path from rclone cryptdecode)."""
    encrypted = _rclone(site, "cryptdecode", "--reverse", "crypt:", name).strip().split("\t")[-1].strip()
    path = site["offsite"] / encrypted
    damaged = bytearray(path.read_bytes())
    damaged[-5] ^= 0x01
    path.write_bytes(bytes(damaged))


def test_the_drill_reads_back_a_rotating_slice_and_names_a_damaged_object(site: dict[str, Any]) -> None:
    config = site["config"]
    objects: set[str] = set()
    for _ in range(4):  # four persistence files, each in one snapshot only
        (site["data"] / "data" / "mosquitto.db").write_bytes(os.urandom(30_000))
        assert backup.main(["--config", config, "run"]) == 0
        manifest = read_manifest(site["backups"] / snapshot_ids(site["backups"])[-1])
        objects |= {f"{e['stored_sha256'][:2]}/{e['stored_sha256']}" for e in manifest["files"]}
    latest = {f"{e['stored_sha256'][:2]}/{e['stored_sha256']}" for e in manifest["files"]}
    older = objects - latest

    read = []
    for expected_slice in (0, 1, 0):
        assert backup.main(["--config", config, "drill"]) == 0
        drill = _status(site, "drill.json")
        readback = drill["readback"]
        assert readback["ok"] and readback["slice"] == expected_slice and readback["of"] == 2
        assert readback["manifests"] == 4  # every manifest, every drill
        read.append(readback["objects"])
        assert drill["checks"] and all(c["ok"] for c in drill["checks"])
    # Two drills read every object the latest snapshot (downloaded whole by the drill) does not hold.
    assert read[0] + read[1] == len(older) and read[2] == read[0]
    assert read[0] == sum(1 for o in older if slice_of(o, 2) == 0)

    victim = sorted(older)[0]
    _flip_offsite(site, f"objects/{victim}")
    target = slice_of(victim, 2)
    if target == 0:  # the cursor is at slice 1 now, which passes; the next drill reads slice 0
        assert backup.main(["--config", config, "drill"]) == 0
        assert _status(site, "drill.json")["readback"]["slice"] == 1
    for _ in range(2):  # a failed read-back keeps its slice: the next drill reads it again
        assert backup.main(["--config", config, "drill"]) == 1
        drill = _status(site, "drill.json")
        assert drill["result"] == "failed" and drill["readback"]["slice"] == target
        assert not drill["readback"]["ok"] and len(drill["readback"]["damaged"]) == 1
        assert f"objects/{victim}" in drill["error"] and "does not download or decrypt" in drill["error"]
        assert "off-site read-back" in drill["error"]
        # The full restore comparison is still made (the latest snapshot is sound).
        assert drill["checks"] and all(c["ok"] for c in drill["checks"])
    assert json.loads((site["status"] / "drill-readback.json").read_text())["next_slice"] == target


def test_the_readback_weeks_must_be_a_positive_number(site: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = json.loads(Path(site["config"]).read_text()) | {"drill_readback_weeks": 0}
    Path(site["config"]).write_text(json.dumps(config))
    assert backup.main(["--config", site["config"], "check-config"]) == 1
    assert "drill_readback_weeks: expected an integer >= 1, got 0" in capsys.readouterr().err
