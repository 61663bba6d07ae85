"""Backup benchmark (a benchmark, not a test): the real mov-backup against restic and `tar | zstd -1`.

    python3 bench/backup.py --size-mb 200 --json

Generates about N MB of platform-shaped data in a scratch directory:

* InfluxDB's part as `influx backup` leaves it: shard archives (.tar.gz, incompressible) and a bolt file,
* a Grafana-like SQLite database of JSON dashboards and annotations (compressible),
* a Mosquitto persistence file (queued MQTT readings: JSON payloads, partly compressible),
* a few hundred small config files (provisioning, dashboards, releases).

Then, with mov-backup itself (the host tools' package, hosttools/src/mov_host, imported, not copied) and an
rclone crypt remote over the `local` backend in the scratch directory (needs `rclone`, `zstd` and `restic` on this
machine: apt-get install rclone zstd restic):

1. full: `run` with no previous snapshot: snapshot, zstd where it pays, manifest, upload, cryptcheck of what it
   sent;
2. incremental: `run` again with nothing changed (hard links to the previous snapshot, the manifest uploaded
   and cryptchecked);
3. reference: `tar -c | zstd -1 -T1` of the same data to a file (no checksums, no encryption, no upload);
4. restic, the tool an operator would otherwise pick (Debian's package), on the same data: `restic backup` to a
   local repository (a password file, its cache in the scratch directory), `restic backup` again with nothing
   changed, and `restic restore latest` to an empty directory;
5. restore: the data wiped, restored from the off-site copy, every file compared with the original by sha256
   (the SQLite database by the sha256 of its SQL dump: the backup API rewrites two header counters); restic's
   restore is compared the same way.

InfluxDB's part is generated as files under a `tree` source (no InfluxDB here), so the run measures the same
storage path the `influx backup` output takes. `full_over_tar_zstd` = tar_zstd_s / full_s (>= 0.5: the full
backup takes at most twice the plain archive); `incremental_over_full` = incremental_s / full_s (<= 0.10).
Against restic, ours divided by restic's (wall clock): `full_over_restic` (target <= 0.8), `unchanged_over_restic`
(<= 0.5) and `restore_over_restic`; `cpu_*_over_restic` the same with CPU seconds. Each step starts after a
`sync`, so neither tool pays for the other's dirty pages.
Next to each wall-clock figure: the CPU seconds (user + sys of this process, its threads and its waited-for
children: rclone, tar, zstd, restic), their ratios and the 1-minute load average before and after, since the wall clock
of a shared machine says as much about the other work as about the backup. The last line printed is one JSON
object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
# The host tools' package is not installed in .venv (pytest finds it through its pythonpath setting).
sys.path.insert(0, str(REPO / "hosttools" / "src"))
import dev  # noqa: E402

MB = 1 << 20


def reading(rng: random.Random, i: int) -> bytes:
    return json.dumps(
        {
            "dispositivo": f"sensor_{i % 50:03d}",
            "cliente": "industria_abc",
            "localizacao": "sala",
            "tipo": "temperatura",
            "valor": round(rng.uniform(18, 40), 2),
            "timestamp": 1_764_000_000 + i,
        }
    ).encode()


def generate(root: Path, size_mb: int, seed: int = 8) -> None:
    rng = random.Random(seed)
    total = size_mb * MB
    influx = root / "influxdb"
    influx.mkdir(parents=True)
    shard = 8 * MB
    for i in range(max(1, int(total * 0.55) // shard)):
        (influx / f"20261126T020000Z.s{i + 1}.tar.gz").write_bytes(os.urandom(shard))
    (influx / "20261126T020000Z.bolt.gz").write_bytes(os.urandom(MB))
    (influx / "20261126T020000Z.manifest").write_text(json.dumps({"files": i + 2}))

    grafana = root / "grafana"
    (grafana / "provisioning" / "dashboards").mkdir(parents=True)
    db = sqlite3.connect(grafana / "grafana.db")
    db.execute("CREATE TABLE dashboard (id INTEGER PRIMARY KEY, uid TEXT, title TEXT, data TEXT)")
    db.execute("CREATE TABLE annotation (id INTEGER PRIMARY KEY, epoch INTEGER, text TEXT)")
    panel = {"type": "timeseries", "targets": [{"query": 'from(bucket: "mov_dados") |> range(start: -1h)'}]}
    dashboards = max(1, int(total * 0.25) // 40_000)
    db.executemany(
        "INSERT INTO dashboard (uid, title, data) VALUES (?, ?, ?)",
        [
            (
                f"uid-{i}",
                f"Sala {i}",
                json.dumps({"panels": [panel | {"id": p, "title": f"p{p}-{rng.random()}"} for p in range(120)]}),
            )
            for i in range(dashboards)
        ],
    )
    annotations = [
        (1_764_000_000 + i, f"alerta sensor_{i % 50:03d} {rng.uniform(30, 40):.2f} C") for i in range(20_000)
    ]
    db.executemany("INSERT INTO annotation (epoch, text) VALUES (?, ?)", annotations)
    db.commit()
    db.close()

    mosquitto = root / "mosquitto"
    (mosquitto / "data").mkdir(parents=True)
    (mosquitto / "config").mkdir()
    with (mosquitto / "data" / "mosquitto.db").open("wb") as out:
        written, i = 0, 0
        while written < total * 0.15:
            payload = os.urandom(16) + reading(rng, i)  # message ids and headers are not compressible
            out.write(payload)
            written += len(payload)
            i += 1
    configs = root / "configs"
    for i in range(300):
        path = configs / f"part{i % 10}" / f"file{i}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"key_{k}: value {rng.randint(0, 10**6)}\n" for k in range(60)))
    (mosquitto / "config" / "mosquitto.conf").write_text("listener 1883\npersistence true\n" * 20)
    for i in range(20):
        (grafana / "provisioning" / "dashboards" / f"d{i}.json").write_text(json.dumps(panel) * 50)


def config(scratch: Path, data: Path) -> Path:
    remote = scratch / "offsite"
    obscure = {}
    for key, secret in (("password", "bench-password-0123456789"), ("password2", "bench-salt-0123456789")):
        obscure[key] = (
            subprocess.run(["rclone", "obscure", "-"], input=secret.encode(), capture_output=True, check=True)
            .stdout.decode()
            .strip()
        )
    rclone_conf = scratch / "rclone.conf"
    rclone_conf.write_text(
        f"[bench-backend]\ntype = local\n\n[bench-crypt]\ntype = crypt\n"
        f"remote = bench-backend:{remote}\npassword = {obscure['password']}\n"
        f"password2 = {obscure['password2']}\n"
    )
    rclone_conf.chmod(0o600)
    cfg = {
        "backup_dir": str(scratch / "backups"),
        "status_file": str(scratch / "status.json"),
        "env": "bench",
        "sources": [
            {"name": "mosquitto-data", "kind": "tree", "path": str(data / "mosquitto" / "data"), "data": True},
            {"name": "mosquitto-config", "kind": "tree", "path": str(data / "mosquitto" / "config")},
            {"name": "grafana-db", "kind": "sqlite", "path": str(data / "grafana" / "grafana.db"), "data": True},
            {"name": "grafana-provisioning", "kind": "tree", "path": str(data / "grafana" / "provisioning")},
            {"name": "influxdb-files", "kind": "tree", "path": str(data / "influxdb"), "data": True},
            {"name": "configs", "kind": "tree", "path": str(data / "configs")},
        ],
        "retention": {"daily": 7, "weekly": 4, "monthly": 6, "last": 5},
        "stack": {"dir": str(scratch), "project": "bench", "services": []},
        "remote": {
            "target": "bench-crypt:",
            "rclone_config": str(rclone_conf),
            "retention": {"daily": 7, "weekly": 4, "monthly": 6, "last": 5},
        },
        "webhook_url": "",
    }
    path = scratch / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def fingerprints(data: Path) -> dict[str, str]:
    prints = {}
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        if path.suffix == ".db" and path.parent.name == "grafana":
            db = sqlite3.connect(path)
            prints[str(path.relative_to(data))] = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
            db.close()
        else:
            prints[str(path.relative_to(data))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return prints


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and of its children waited for (rclone, tar, zstd)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(mov_backup: Callable[[Sequence[str]], int], argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one mov-backup command."""
    subprocess.run(["sync"], check=True)
    started, cpu = time.monotonic(), cpu_seconds()
    code = mov_backup(argv)
    elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu
    if code != 0:
        raise SystemExit(f"mov-backup {' '.join(argv)} failed with exit {code}")
    return elapsed, cpu


def restic_step(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one restic command (its CPU: the waited-for child's rusage)."""
    subprocess.run(["sync"], check=True)
    started, cpu = time.monotonic(), cpu_seconds()
    result = subprocess.run(["restic", *argv], env=env, capture_output=True, check=False)
    elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu
    if result.returncode != 0:
        raise SystemExit(f"restic {argv[0]} failed with exit {result.returncode}: {result.stderr.decode().strip()}")
    return elapsed, cpu


def restic_env(scratch: Path) -> dict[str, str]:
    password = scratch / "restic-password"
    password.write_text("bench-restic-password-0123456789\n")
    password.chmod(0o600)
    return dict(
        os.environ,
        RESTIC_REPOSITORY=str(scratch / "restic-repo"),
        RESTIC_PASSWORD_FILE=str(password),
        RESTIC_CACHE_DIR=str(scratch / "restic-cache"),
    )


def restic_version() -> str:
    out = subprocess.run(["restic", "version"], capture_output=True, check=True).stdout.decode()
    return out.split()[1] if out.startswith("restic ") else out.strip()


def main() -> int:
    # From the repository's .venv, where the backup tool's zstandard is (the system python has none).
    dev.ensure_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="only the JSON line on stdout (logs to stderr)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    for binary in ("rclone", "zstd", "tar", "restic"):
        if shutil.which(binary) is None:
            raise SystemExit(f"needs {binary} (apt-get install rclone zstd restic): restic is the reference")
    # Imported only now, inside .venv: the package needs zstandard.
    from mov_host.backup import main as mov_backup

    scratch = Path(tempfile.mkdtemp(prefix="mov-bench-backup-"))
    real_stdout = sys.stdout
    if args.json:
        sys.stdout = sys.stderr
    try:
        data = scratch / "data"
        generate(data, args.size_mb)
        size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        cfg = str(config(scratch, data))
        before = fingerprints(data)

        load_before = os.getloadavg()[0]
        full_s, full_cpu = timed(mov_backup, ["--config", cfg, "run"])
        time.sleep(1.1)  # a new snapshot id (one per second)
        incremental_s, incremental_cpu = timed(mov_backup, ["--config", cfg, "run"])

        subprocess.run(["sync"], check=True)
        started, cpu = time.monotonic(), cpu_seconds()
        with (scratch / "reference.tar.zst").open("wb") as out:
            tar = subprocess.Popen(["tar", "-C", str(data), "-cf", "-", "."], stdout=subprocess.PIPE)
            zstd = subprocess.run(["zstd", "-1", "-T1", "-q", "-c"], stdin=tar.stdout, stdout=out, check=True)
            assert tar.stdout is not None
            tar.stdout.close()
            if tar.wait() != 0 or zstd.returncode != 0:
                raise SystemExit("tar | zstd failed")
        tar_zstd_s, tar_zstd_cpu = time.monotonic() - started, cpu_seconds() - cpu
        reference_bytes = (scratch / "reference.tar.zst").stat().st_size

        restic = restic_env(scratch)
        restic_step(["init", "-q"], restic)
        restic_full_s, restic_full_cpu = restic_step(["backup", "-q", str(data)], restic)
        restic_unchanged_s, restic_unchanged_cpu = restic_step(["backup", "-q", str(data)], restic)
        restic_target = scratch / "restic-restore"
        restic_restore_s, restic_restore_cpu = restic_step(
            ["restore", "-q", "latest", "--target", str(restic_target)], restic
        )
        restic_identical = fingerprints(restic_target / data.relative_to(data.anchor)) == before
        restic_bytes = sum(p.stat().st_size for p in (scratch / "restic-repo").rglob("*") if p.is_file())
        load_after = os.getloadavg()[0]

        for part in ("mosquitto/data", "grafana/grafana.db", "influxdb", "configs"):
            target = data / part
            if target.is_dir():
                for child in target.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            else:
                target.unlink()
        restore_s, restore_cpu = timed(mov_backup, ["--config", cfg, "restore", "--from", "remote", "--force"])
        identical = fingerprints(data) == before
        snapshot = sorted((scratch / "backups").glob("2*"))[-1]
        stored = sum(p.stat().st_size for p in snapshot.rglob("*") if p.is_file())
    finally:
        sys.stdout = real_stdout
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "size_mb": round(size / MB, 1),
        "full_s": round(full_s, 2),
        "incremental_s": round(incremental_s, 2),
        "tar_zstd_s": round(tar_zstd_s, 2),
        "restore_s": round(restore_s, 2),
        "full_cpu_s": round(full_cpu, 2),
        "incremental_cpu_s": round(incremental_cpu, 2),
        "tar_zstd_cpu_s": round(tar_zstd_cpu, 2),
        "cpu_full_over_tar_zstd": round(tar_zstd_cpu / full_cpu, 3),
        "cpu_incremental_over_full": round(incremental_cpu / full_cpu, 3),
        "load_1m": [round(load_before, 2), round(load_after, 2)],
        "stored_mb": round(stored / MB, 1),
        "tar_zstd_mb": round(reference_bytes / MB, 1),
        "full_over_tar_zstd": round(tar_zstd_s / full_s, 3),
        "incremental_over_full": round(incremental_s / full_s, 3),
        "restore_identical": identical,
        "restic_version": restic_version(),
        "restic_full_s": round(restic_full_s, 2),
        "restic_unchanged_s": round(restic_unchanged_s, 2),
        "restic_restore_s": round(restic_restore_s, 2),
        "restic_full_cpu_s": round(restic_full_cpu, 2),
        "restic_unchanged_cpu_s": round(restic_unchanged_cpu, 2),
        "restic_restore_cpu_s": round(restic_restore_cpu, 2),
        "restic_mb": round(restic_bytes / MB, 1),
        "restic_restore_identical": restic_identical,
        "restore_cpu_s": round(restore_cpu, 2),
        "full_over_restic": round(full_s / restic_full_s, 3),
        "unchanged_over_restic": round(incremental_s / restic_unchanged_s, 3),
        "restore_over_restic": round(restore_s / restic_restore_s, 3),
        "cpu_full_over_restic": round(full_cpu / restic_full_cpu, 3),
        "cpu_unchanged_over_restic": round(incremental_cpu / restic_unchanged_cpu, 3),
        "cpu_restore_over_restic": round(restore_cpu / restic_restore_cpu, 3),
    }
    if not args.json:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    print(json.dumps(result))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
