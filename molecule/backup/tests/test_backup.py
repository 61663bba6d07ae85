"""Behaviour of the backup role: snapshots, the encrypted off-site copy, restore, retention, failures.

The tests run in this file's order on one box: backups first, then restore, damage and failures.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

VARS = yaml.safe_load((Path(__file__).resolve().parent.parent / "vars" / "backup.yml").read_text())
TOOL = "/usr/local/bin/mov-backup"
CONFIG = "/etc/mov-backup/config.json"
RCLONE_CONF = "/etc/mov-backup/rclone.conf"
RCLONE = f"rclone --config {RCLONE_CONF}"
BACKUPS = "/var/backups/mov"
OFFSITE = "/srv/offsite"
STATUS = "/var/lib/mov-backup/status.json"
GRAFANA_DB = "/opt/mov/grafana/data/grafana.db"
PERSISTENCE = "/opt/mov/mosquitto/data/mosquitto.db"
PASSWD = "/opt/mov/mosquitto/config/passwd"
FILES = [
    PERSISTENCE,
    PASSWD,
    "/opt/mov/mosquitto/config/acl",
    "/opt/mov/mosquitto/config/mosquitto.conf",
    "/opt/mov/grafana/provisioning/datasources/influxdb.yaml",
    "/opt/mov/releases/20260102T000000Z-bbbbbbbb/release.json",
]
CANARIES = [
    "CANARY-MQTT-PERSIST",
    "CANARY-PASSWD",
    "CANARY-ACL",
    "CANARY-CONF",
    "CANARY-DASH",
    "CANARY-DATASOURCE",
    "CANARY-RELEASE",
    VARS["backup_crypt_password"],
]
MANIFEST = "manifest.json"
PLAIN_NAMES = ["mosquitto", "grafana", "passwd", "manifest", "provisioning", "release", "data", "2026"]


def _run(host, command: str) -> Any:  # type: ignore[no-untyped-def]
    return host.run(f"{TOOL} --config {CONFIG} {command}")


def _ids(host, remote: bool = False) -> list[str]:  # type: ignore[no-untyped-def]
    return str(host.check_output(f"{TOOL} --config {CONFIG} list{' --remote' if remote else ''}")).split()


def _sums(host) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = host.check_output("sha256sum " + " ".join(FILES))
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def _rows(host) -> int:  # type: ignore[no-untyped-def]
    return int(
        host.check_output(f"""python3 -c 'import sqlite3; print(sqlite3.connect("{GRAFANA_DB}")
.execute("SELECT count(*) FROM dashboard WHERE title LIKE \\"CANARY-DASH-%\\"").fetchone()[0])'""")
    )


def _manifest(host, snapshot: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    manifest: dict[str, Any] = json.loads(host.file(f"{BACKUPS}/{snapshot}/manifest.json").content_string)
    return manifest


@pytest.fixture(scope="module")
def runs(host) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Two backups: the second after one small change, so it is incremental."""
    first = _run(host, "run")
    assert first.rc == 0, first.stdout + first.stderr
    host.check_output("sleep 1")
    host.check_output(f"echo 'analytics:$7$101$CANARY-PASSWD-NEW' >> {PASSWD}")
    second = _run(host, "run")
    assert second.rc == 0, second.stdout + second.stderr
    ids = _ids(host)
    assert len(ids) == 2
    return {"first": first, "second": second, "ids": ids}


def test_rclone_conf_is_private_and_holds_the_secrets_obscured(host) -> None:  # type: ignore[no-untyped-def]
    conf = host.file(RCLONE_CONF)
    assert conf.user == "root" and conf.mode == 0o600
    content = conf.content_string
    assert VARS["backup_crypt_password"] not in content and VARS["backup_crypt_salt"] not in content
    assert "type = crypt" in content and f"remote = mov-offsite-backend:{OFFSITE}" in content
    obscured = dict(line.split(" = ", 1) for line in content.splitlines() if line.startswith("password"))
    assert host.check_output(f"rclone reveal -- {shlex.quote(obscured['password'])}") == VARS["backup_crypt_password"]
    assert host.check_output(f"rclone reveal -- {shlex.quote(obscured['password2'])}") == VARS["backup_crypt_salt"]


def test_the_daily_backup_runs_through_the_cron_runner(host) -> None:  # type: ignore[no-untyped-def]
    crontab = host.check_output("crontab -l -u root")
    assert "#Ansible: mov: backup\n30 2 * * * /usr/local/bin/mov-cron-run --name backup" in crontab
    assert "/usr/local/bin/mov-backup run" in crontab
    assert "--no-lock" not in crontab


def test_a_run_records_its_status(host, runs) -> None:  # type: ignore[no-untyped-def]
    status = json.loads(host.file(STATUS).content_string)
    assert status["result"] == "ok" and status["offsite"] == "ok"
    assert status["snapshot"] == runs["ids"][-1]
    assert status["size_bytes"] > 300_000 and status["duration_s"] > 0 and status["time"]
    assert host.file(STATUS).mode == 0o644


def test_influxdb_is_skipped_when_not_in_the_stack(host, runs) -> None:  # type: ignore[no-untyped-def]
    assert "influxdb: not in the stack's services (mosquitto, analytics); skipped" in runs["first"].stdout
    assert "influxdb" in _manifest(host, runs["ids"][-1])["skipped"]


def test_the_manifest_holds_every_file_with_its_sha256(host, runs) -> None:  # type: ignore[no-untyped-def]
    snapshot = runs["ids"][-1]
    manifest = _manifest(host, snapshot)
    listed = {(e["source"], e["rel"]) for e in manifest["files"]}
    assert ("mosquitto-data", "mosquitto.db") in listed
    assert ("grafana-db", "grafana.db") in listed
    assert ("release", "20260102T000000Z-bbbbbbbb/release.json") in listed
    assert not any(rel.startswith("20260101T") for _, rel in listed)  # only the current release
    for entry in manifest["files"]:
        stored = f"{BACKUPS}/{snapshot}/{entry['stored']}"
        assert host.check_output(f"sha256sum {stored}").split()[0] == entry["stored_sha256"], stored
    assert host.file(f"{BACKUPS}/{snapshot}").mode == 0o700


def test_files_are_compressed_where_it_pays(host, runs) -> None:  # type: ignore[no-untyped-def]
    stored = {e["rel"]: e for e in _manifest(host, runs["ids"][-1])["files"]}
    assert stored["mosquitto.conf"]["zstd"] and stored["mosquitto.conf"]["stored"].endswith(".zst")
    assert stored["grafana.db"]["zstd"]
    assert not stored["mosquitto.db"]["zstd"]  # random bytes: zstd would not save anything


def test_the_second_snapshot_links_unchanged_files(host, runs) -> None:  # type: ignore[no-untyped-def]
    first, second = runs["ids"]
    old = {e["rel"]: e for e in _manifest(host, first)["files"]}
    new = {e["rel"]: e for e in _manifest(host, second)["files"]}
    for rel in ("mosquitto.db", "mosquitto.conf", "grafana.db", "acl"):
        a = host.file(f"{BACKUPS}/{first}/{old[rel]['stored']}")
        b = host.file(f"{BACKUPS}/{second}/{new[rel]['stored']}")
        assert a.inode == b.inode, rel
    assert (
        host.file(f"{BACKUPS}/{first}/{old['passwd']['stored']}").inode
        != host.file(f"{BACKUPS}/{second}/{new['passwd']['stored']}").inode
    )
    status = json.loads(host.file(STATUS).content_string)
    assert status["new_bytes"] < 1000 < status["size_bytes"]


def test_the_remote_holds_no_plaintext(host, runs) -> None:  # type: ignore[no-untyped-def]
    assert _ids(host, remote=True) == runs["ids"]
    # Each stored file once (the second snapshot added only the changed passwd), and one manifest per snapshot.
    files = host.check_output(f"find {OFFSITE} -type f").splitlines()
    assert len(files) == 7 + 1 + 2, files
    for canary in CANARIES:
        found = host.run(f"grep -r -a -l -F {shlex.quote(canary)} {OFFSITE}")
        assert found.rc == 1, f"{canary} readable off-site in {found.stdout}"
    names = host.check_output(f"find {OFFSITE} -mindepth 1 -printf '%P\\n'").lower()
    for plain in PLAIN_NAMES:
        assert plain not in names, plain


def test_wipe_then_restore_from_the_remote_gives_the_same_files(host, runs) -> None:  # type: ignore[no-untyped-def]
    sums, rows = _sums(host), _rows(host)
    assert rows == 1000
    host.check_output(
        f"rm -rf /opt/mov/mosquitto/data/* {GRAFANA_DB} {GRAFANA_DB}-wal {GRAFANA_DB}-shm {' '.join(FILES[1:])}"
    )
    restored = _run(host, "restore --from remote")
    assert restored.rc == 0, restored.stdout + restored.stderr
    assert _sums(host) == sums
    assert _rows(host) == rows
    assert host.file(PASSWD).mode == 0o600


def test_restore_over_data_is_refused_without_force(host, runs) -> None:  # type: ignore[no-untyped-def]
    host.check_output(f"printf LOCAL-CHANGE >> {PERSISTENCE}")
    changed = host.check_output(f"sha256sum {PERSISTENCE}")
    refused = _run(host, "restore")
    assert refused.rc != 0
    assert "refusing to overwrite data that is not empty" in refused.stderr
    assert PERSISTENCE.rsplit("/", 1)[0] in refused.stderr and "restore_force=true" in refused.stderr
    assert host.check_output(f"sha256sum {PERSISTENCE}") == changed
    forced = _run(host, "restore --force")
    assert forced.rc == 0, forced.stderr
    assert "LOCAL-CHANGE" not in host.check_output(f"tail -c 20 {PERSISTENCE} | tr -dc 'A-Z-'")


def test_a_flipped_byte_off_site_fails_the_restore_naming_the_object(host, runs) -> None:  # type: ignore[no-untyped-def]
    latest = _ids(host, remote=True)[-1]
    digest = next(e["stored_sha256"] for e in _manifest(host, latest)["files"] if e["rel"] == "mosquitto.db")
    plain = f"objects/{digest[:2]}/{digest}"
    victim = host.check_output(f"{RCLONE} cryptdecode --reverse mov-offsite: {plain}").split("\t")[-1].strip()
    assert host.file(f"{OFFSITE}/{victim}").size > 300_000
    flip = (
        'python3 -c \'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=1; '
        f'open(p,"wb").write(b)\' {OFFSITE}/{victim}'
    )
    before = _sums(host)
    host.check_output(flip)
    try:
        broken = _run(host, "restore --from remote --force")
        assert broken.rc != 0
        assert "damaged or unreadable object" in broken.stderr
        assert plain in broken.stderr and victim in broken.stderr
        assert "data/mosquitto-data/mosquitto.db" in broken.stderr
        assert _run(host, "verify --remote").rc != 0
        assert _sums(host) == before  # nothing written
    finally:
        host.check_output(flip)
    assert _run(host, "verify --remote").rc == 0


def test_an_unreachable_remote_fails_the_run_and_keeps_the_last_good_snapshot(host, runs) -> None:  # type: ignore[no-untyped-def]
    good = _ids(host, remote=True)[-1]
    listener = (
        "python3 -c 'import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_POST(self):\n"
        '        body = self.rfile.read(int(self.headers["Content-Length"]))\n'
        '        open("/tmp/webhook.json", "wb").write(body); self.send_response(204); self.end_headers()\n'
        's = http.server.HTTPServer(("127.0.0.1", 8099), H); s.timeout = 60; s.handle_request()\''
    )
    host.check_output(f"rm -f /tmp/webhook.json; ({listener} >/dev/null 2>&1 &); sleep 1")
    host.check_output(f"mv {OFFSITE} {OFFSITE}.away && echo not-a-directory > {OFFSITE}")
    try:
        failed = _run(host, "run")
    finally:
        host.check_output(f"rm -f {OFFSITE} && mv {OFFSITE}.away {OFFSITE}")
    assert failed.rc != 0
    assert "backup FAILED" in failed.stdout and "rclone" in failed.stdout
    status = json.loads(host.file(STATUS).content_string)
    assert status["result"] == "failed" and status["offsite"] == "failed" and "rclone" in status["error"]
    alert = json.loads(host.file("/tmp/webhook.json").content_string)
    assert alert["kind"] == "backup_failed" and alert["subject"] == "mov/molecule"
    assert _ids(host, remote=True)[-1] == good
    assert _run(host, f"verify --remote {good}").rc == 0
    assert _run(host, f"restore --from remote --snapshot {good} --force").rc == 0


def test_a_failed_snapshot_is_never_marked_good(host, runs) -> None:  # type: ignore[no-untyped-def]
    before = _ids(host)
    config = json.loads(host.file(CONFIG).content_string)
    config["sources"].append({"name": "broken-db", "kind": "sqlite", "path": "/tmp/not-a-database.db"})
    host.check_output("head -c 4096 /dev/urandom > /tmp/not-a-database.db")
    host.check_output(f"echo {shlex.quote(json.dumps(config))} > /tmp/broken-config.json")
    result = host.run(f"{TOOL} --config /tmp/broken-config.json run")
    assert result.rc != 0
    assert "sqlite backup of /tmp/not-a-database.db" in result.stdout
    assert _ids(host) == before
    assert host.run(f"ls -d {BACKUPS}/.partial-*").rc != 0


# Dates picked so each rule matters: daily 3, weekly 2 (ISO weeks start on Monday), monthly 2.
FAKE_IDS = [
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
KEPT = ["20261015T023000Z", "20261122T023000Z", "20261124T023000Z", "20261125T023000Z", "20261126T023000Z"]


def _prune_config(host, name: str) -> str:  # type: ignore[no-untyped-def]
    config = json.loads(host.file(CONFIG).content_string)
    retention = {"daily": 3, "weekly": 2, "monthly": 2}
    config.update(backup_dir=f"/tmp/{name}", status_file=f"/tmp/{name}.json", retention=retention)
    config["remote"].update(target=f"mov-offsite:{name}", retention=retention)
    path = f"/tmp/{name}-config.json"
    host.check_output(f"echo {shlex.quote(json.dumps(config))} > {path}")
    return path


def test_local_retention_removes_exactly_the_expired_snapshots(host) -> None:  # type: ignore[no-untyped-def]
    config = _prune_config(host, "prune-local")
    for snapshot in FAKE_IDS:
        directory = f"/tmp/prune-local/{snapshot}"
        host.check_output(f"mkdir -p {directory} && echo '{{}}' > {directory}/{MANIFEST}")
    # A partial snapshot is no snapshot: retention leaves it to the next run's clean-up.
    host.check_output("mkdir -p /tmp/prune-local/.partial-20261126T050000Z")
    host.check_output(f"{TOOL} --config {config} prune")
    assert host.file("/tmp/prune-local/.partial-20261126T050000Z").is_directory
    assert host.check_output(f"{TOOL} --config {config} list").split() == KEPT


def test_off_site_retention_removes_exactly_the_expired_snapshots(host) -> None:  # type: ignore[no-untyped-def]
    config = _prune_config(host, "prune-remote")
    # Each fake snapshot refers to one object of its own, and the newest also to a shared one.
    for snapshot in FAKE_IDS:
        files = [{"stored_sha256": f"{snapshot[:8]}{'0' * 56}"}, {"stored_sha256": "ab" * 32}]
        host.check_output(
            f"echo {shlex.quote(json.dumps({'files': files}))} > /tmp/fake.json && "
            f"{RCLONE} copyto /tmp/fake.json mov-offsite:prune-remote/snapshots/{snapshot}.json"
        )
        host.check_output(
            f"{RCLONE} copyto /tmp/fake.json mov-offsite:prune-remote/objects/{snapshot[:2]}/{snapshot[:8]}{'0' * 56}"
        )
    host.check_output(f"{RCLONE} copyto /tmp/fake.json mov-offsite:prune-remote/objects/ab/{'ab' * 32}")
    # Objects of an upload that never finished (no manifest refers to them) go too.
    host.check_output(f"{RCLONE} copyto /tmp/fake.json mov-offsite:prune-remote/objects/cd/{'cd' * 32}")
    host.check_output(f"{TOOL} --config {config} prune --remote")
    assert host.check_output(f"{TOOL} --config {config} list --remote").split() == KEPT
    objects = host.check_output(f"{RCLONE} lsf -R --files-only mov-offsite:prune-remote/objects").split()
    assert sorted(objects) == sorted({f"{k[:2]}/{k[:8]}{'0' * 56}" for k in KEPT} | {f"ab/{'ab' * 32}"})
    assert len(_ids(host, remote=True)) >= 2  # the real snapshots beside them are untouched
