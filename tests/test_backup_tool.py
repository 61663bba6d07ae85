"""mov-backup's local logic on the controller: retention, incremental snapshots, restore, refusal, failures.

The off-site path (rclone crypt) is exercised on the box by `molecule test -s backup`.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from host_script import load_script

TOOL = Path(__file__).resolve().parent.parent / "roles" / "backup" / "files" / "mov-backup.py"


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_script("mov_backup", TOOL)


def test_retention_keeps_the_newest_of_each_period(tool: ModuleType) -> None:
    ids = ["20261126T023000Z", "20261126T010000Z", "20261125T023000Z", "20261124T023000Z", "20261123T023000Z",
           "20261122T023000Z", "20261115T023000Z", "20261101T023000Z", "20261015T023000Z", "20260915T023000Z"]
    keep = tool.keep_set(ids, tool.Retention(daily=3, weekly=2, monthly=2))
    assert sorted(keep) == ["20261015T023000Z", "20261122T023000Z", "20261124T023000Z", "20261125T023000Z",
                            "20261126T023000Z"]
    assert tool.keep_set(ids, tool.Retention(0, 0, 0)) == {"20261126T023000Z"}  # never nothing
    assert len(tool.keep_set(ids, tool.Retention(0, 0, 0, last=4))) == 4


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
        "backup_dir": str(tmp_path / "backups"), "status_file": str(tmp_path / "status.json"),
        "sources": [
            {"name": "mosquitto-data", "kind": "tree", "path": str(data / "mosquitto" / "data"), "data": True},
            {"name": "mosquitto-config", "kind": "tree", "path": str(data / "mosquitto" / "config")},
            {"name": "grafana-db", "kind": "sqlite", "path": str(data / "grafana.db"), "data": True},
            {"name": "absent", "kind": "file", "path": str(data / "not-there.ini")},
        ],
        "retention": {"daily": 7, "weekly": 4, "monthly": 6, "last": 10},
        "stack": {"dir": str(tmp_path), "project": "mov", "services": ["mosquitto", "influxdb"]},
        "remote": {}, "webhook_url": "",
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
    tool: ModuleType, platform: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data, config, backups = platform["data"], platform["config"], platform["backups"]
    assert tool.main(["--config", config, "run"]) == 0
    out = capsys.readouterr().out
    assert "absent: " in out and "skipped" in out
    assert "influxdb: in the stack's services but" in out  # no compose project yet: skipped, said so
    os.utime(data / "mosquitto" / "config" / "passwd", ns=(1, 1))  # a change rsync's quick check would see
    (data / "mosquitto" / "config" / "passwd").write_text("verify:$7$101$other\n")
    first = tool.snapshot_ids(backups)[0]
    (backups / first).rename(backups / "20200101T000000Z")  # a second snapshot id without waiting a second
    assert tool.main(["--config", config, "run"]) == 0
    old, new = tool.snapshot_ids(backups)
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
    assert tool.main(["--config", config, "restore"]) == 0
    assert {p: _sha(p) for p in sums} == sums
    assert _rows(data / "grafana.db") == 300


def test_restore_refuses_non_empty_data_without_force(
    tool: ModuleType, platform: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main(["--config", platform["config"], "run"]) == 0
    persistence = platform["data"] / "mosquitto" / "data" / "mosquitto.db"
    persistence.write_bytes(b"newer data")
    assert tool.main(["--config", platform["config"], "restore"]) == 1
    err = capsys.readouterr().err
    assert "refusing to overwrite data that is not empty" in err and "restore_force=true" in err
    assert persistence.read_bytes() == b"newer data"
    assert tool.main(["--config", platform["config"], "restore", "--force"]) == 0
    assert persistence.read_bytes() != b"newer data"


def test_a_damaged_local_snapshot_is_named_and_not_restored(
    tool: ModuleType, platform: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main(["--config", platform["config"], "run"]) == 0
    snapshot = platform["backups"] / tool.snapshot_ids(platform["backups"])[-1]
    stored = snapshot / "data/mosquitto-data/mosquitto.db"
    damaged = bytearray(stored.read_bytes())
    damaged[100] ^= 1
    stored.write_bytes(bytes(damaged))
    assert tool.main(["--config", platform["config"], "restore", "--force"]) == 1
    assert "data/mosquitto-data/mosquitto.db (sha256 differs from the manifest)" in capsys.readouterr().err


def test_a_failed_run_leaves_no_snapshot(tool: ModuleType, platform: dict[str, Any]) -> None:
    config = json.loads(Path(platform["config"]).read_text())
    broken = platform["tmp"] / "broken.db"
    broken.write_bytes(os.urandom(4096))
    config["sources"].append({"name": "broken", "kind": "sqlite", "path": str(broken)})
    path = platform["tmp"] / "broken.json"
    path.write_text(json.dumps(config))
    assert tool.main(["--config", str(path), "run"]) == 1
    assert tool.snapshot_ids(platform["backups"]) == []
    assert list(platform["backups"].glob(".partial-*")) == []
    status = json.loads(Path(platform["tmp"] / "status.json").read_text())
    assert status["result"] == "failed" and "sqlite backup of" in status["error"]


def test_an_untouched_sqlite_database_is_not_copied_again(
    tool: ModuleType, platform: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, config, backups = platform["data"], platform["config"], platform["backups"]
    assert tool.main(["--config", config, "run"]) == 0
    # Just written: its ctime is too close to the look the snapshot took to vouch for it (racily clean).
    first = tool.snapshot_ids(backups)[0]
    entry = next(e for e in tool.read_manifest(backups / first)["files"] if e["rel"] == "grafana.db")
    assert not tool.sqlite_unchanged(entry, tool.sqlite_signature(data / "grafana.db"))
    monkeypatch.setattr(tool, "RACY_NS", -10**12)  # as if the database had been written long before
    (backups / first).rename(backups / "20200101T000000Z")
    capsys.readouterr()
    assert tool.main(["--config", config, "run"]) == 0
    assert "grafana-db: unchanged since the previous snapshot" in capsys.readouterr().out
    second = tool.snapshot_ids(backups)[-1]
    stored = entry["stored"]
    assert (backups / "20200101T000000Z" / stored).stat().st_ino == (backups / second / stored).stat().st_ino

    db = sqlite3.connect(data / "grafana.db")
    db.execute("INSERT INTO dashboard (title) VALUES ('new')")
    db.commit()
    db.close()
    (backups / second).rename(backups / "20200102T000000Z")
    assert tool.main(["--config", config, "run"]) == 0
    assert "grafana-db: unchanged" not in capsys.readouterr().out
    (data / "grafana.db").unlink()
    assert tool.main(["--config", config, "restore", "--force"]) == 0
    assert _rows(data / "grafana.db") == 301


def test_compression_is_decided_on_the_first_chunk_and_checked_on_the_whole(
    tool: ModuleType, platform: dict[str, Any]
) -> None:
    data, config, backups = platform["data"], platform["config"], platform["backups"]
    config_dir = data / "mosquitto" / "config"
    chunk = tool.CHUNK
    text = b"".join(b"sensor_%03d temperatura %d\n" % (i % 50, i) for i in range(chunk))
    files = {
        "noise.log": os.urandom(3 * chunk),  # no telling extension: the first chunk's zstd block shows no gain
        "late.log": os.urandom(chunk) + text,  # decided on the first chunk: the rest is not even tried
        "mixed.log": text[:chunk] + os.urandom(12 * chunk),  # the head compresses, the whole gains < 10 %
        "text.log": text[: 3 * chunk],
    }
    for name, content in files.items():
        (config_dir / name).write_bytes(content)
    assert tool.main(["--config", config, "run"]) == 0
    snapshot = backups / tool.snapshot_ids(backups)[-1]
    entries = {e["rel"]: e for e in tool.read_manifest(snapshot)["files"]}
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
    assert tool.main(["--config", config, "restore", "--force"]) == 0
    for name, content in files.items():
        assert (config_dir / name).read_bytes() == content


def test_a_write_back_error_fails_the_run_and_leaves_no_snapshot(
    tool: ModuleType, platform: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    class FailingLibc:
        @staticmethod
        def syncfs(fd: int) -> int:
            os.fstat(fd)  # an open descriptor, as the real call needs
            ctypes.set_errno(errno.EIO)
            return -1

    monkeypatch.setattr(tool, "_LIBC", FailingLibc())
    assert tool.main(["--config", platform["config"], "run"]) == 1
    assert tool.snapshot_ids(platform["backups"]) == []
    assert list(platform["backups"].glob(".partial-*")) == []
    status = json.loads(Path(platform["tmp"] / "status.json").read_text())
    assert status["result"] == "failed" and "syncfs" in status["error"] and "Input/output error" in status["error"]
