"""`movctl bench`: the deployed platform under a bounded load of temporary devices, measured.

K devices publish readings over TLS at QoS 1 through the real broker, each with its own account and ACL; the load
generator runs in a one-off container of the worker's image (its MQTT and InfluxDB clients; mov_analytics.bench)
on the host's network, so it reaches the broker where devices do. Meanwhile this process samples every
container's CPU and memory and times InfluxDB writes and Grafana's /api/health. Afterwards the devices' accounts
go, and every point they caused (tag cliente=<bench client>, both buckets) is deleted.

Safe on production: the rate, the device count and the duration are capped by the configuration, the values stay
below the alert threshold (a status change, never an alert), and it refuses to start while a backup or a deploy
runs, or while another bench runs.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mov_host.movctl.bench_accounts import Account, temporary_accounts
from mov_host.movctl.bench_probes import StatsSampler, delete_points, grafana_health, influx_writer, percentile, timed
from mov_host.movctl.bench_report import render_bench
from mov_host.movctl.config import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, BenchConfig, Config, MovctlError
from mov_host.movctl.docker import require_stack
from mov_host.movctl.render import emit_json
from mov_host.movctl.services import ServiceState, read_states

LOCK_FILE = "/run/lock/mov-bench.lock"
# How long after the load the generator may take to connect, drain its acknowledgements and finish its probes.
GENERATOR_MARGIN_S = 90


def _lock_held(path: str) -> bool:
    """True when another process holds the flock on `path` (mov-backup's lock while it runs)."""
    if not Path(path).exists():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def refusal(bench: BenchConfig, now: float | None = None) -> str:
    """Why the bench must not start now ('' when it may)."""
    if _lock_held(bench.backup_lock_file):
        return f"a backup, restore or drill runs (mov-backup holds {bench.backup_lock_file}); run the bench after it"
    marker = Path(bench.deploy_marker)
    if marker.exists():
        age = (now or time.time()) - marker.stat().st_mtime
        if age < bench.deploy_marker_max_age_s:
            return (
                f"a deploy runs ({bench.deploy_marker}, written by the stack role {age:.0f}s ago and removed when it "
                "ends); run the bench after it, or remove the file if that deploy was interrupted"
            )
    return ""


def choose(args: argparse.Namespace, bench: BenchConfig) -> tuple[int, float, float]:
    devices = bench.devices if args.devices is None else args.devices
    rate = bench.rate if args.rate is None else args.rate
    duration = bench.duration_s if args.duration is None else args.duration
    problems = []
    if not 1 <= devices <= bench.max_devices:
        problems.append(f"--devices must be 1 to {bench.max_devices} (bench.max_devices), got {devices}")
    if not 0 < rate <= bench.max_rate:
        problems.append(f"--rate must be above 0 and at most {bench.max_rate:g}/s (bench.max_rate), got {rate:g}")
    if not 0 < duration <= bench.max_duration_s:
        problems.append(
            f"--duration must be above 0 and at most {bench.max_duration_s:g}s (bench.max_duration_s), got {duration:g}"
        )
    if problems:
        raise MovctlError("; ".join(problems), EXIT_USAGE)
    return devices, rate, duration


def _running(cfg: Config, *services: str) -> dict[str, ServiceState]:
    """The named services' states (movctl status's), each one required to run."""
    states = {s.service: s for s in read_states(cfg) if s.service in services}
    stopped = [name for name in services if name not in states or states[name].state != "running"]
    if stopped:
        raise MovctlError(f"{', '.join(stopped)} does not run: start the platform first (movctl start)")
    return states


def _token(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise MovctlError(f"cannot read the token file {path}: {exc}") from exc


def plan(cfg: Config, bench: BenchConfig, accounts: list[Account], rate: float, duration: float) -> dict[str, Any]:
    influx = bench.influxdb
    probe = None
    if influx is not None:
        probe = {
            "url": influx.url,
            "org": influx.org,
            "bucket": influx.status_bucket,
            "measurement": influx.status_measurement,
            "token": _token(influx.read_token_file),
            "timeout_s": 10,
        }
    return {
        "host": cfg.mqtt_tls_name,
        "port": cfg.mqtt_tls_port,
        "ca_pem": Path(bench.ca_file).read_text() if bench.ca_file else "",
        "topic": bench.topic,
        "devices": [asdict(a) for a in accounts],
        "field": bench.field,
        "values": list(bench.values),
        "tipo": bench.tipo,
        "localizacao": "movctl-bench",
        "rate": rate,
        "duration_s": duration,
        "probe": probe,
    }


def run_generator(cfg: Config, image: str, document: dict[str, Any], duration: float) -> dict[str, Any]:
    """The load generator in a one-off container; the plan (passwords, token) goes on its stdin only."""
    argv = ["docker", "run", "--rm", "-i", "--network", "host", "--add-host", f"{cfg.mqtt_tls_name}:127.0.0.1"]
    # As locked down as the stack's own containers: no capability, no privilege gain, nothing written, bounded.
    argv += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only", "--memory", "512m"]
    argv += ["--pids-limit", "256", "--label", f"com.docker.compose.project={cfg.project}-bench"]
    argv += ["--entrypoint", "python3"]
    argv += [image, "-m", "mov_analytics.bench"]
    try:
        out = subprocess.run(
            argv, input=json.dumps(document), capture_output=True, text=True, timeout=duration + GENERATOR_MARGIN_S
        )
    except subprocess.TimeoutExpired as exc:
        raise MovctlError(f"the load generator did not finish within {duration + GENERATOR_MARGIN_S:.0f}s") from exc
    try:
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise MovctlError(f"the load generator failed (exit {out.returncode}): {out.stderr.strip()[-800:]}") from None
    return result


def measure(cfg: Config, bench: BenchConfig, devices: int, rate: float, duration: float) -> dict[str, Any]:
    image = _running(cfg, "analytics", "mosquitto")["analytics"].image
    started = datetime.now(UTC)
    sampler = StatsSampler(cfg.project)
    stop = threading.Event()
    timings: dict[str, dict[str, object]] = {}
    jobs: list[tuple[str, Callable[[], int]]] = []
    influx = bench.influxdb
    admin_token = _token(influx.admin_token_file) if influx is not None else ""
    if influx is not None:
        jobs.append(("influxdb_write", influx_writer(influx, admin_token, bench.client)))
    if bench.grafana_health_url:
        jobs.append(("grafana_health", grafana_health(bench.grafana_health_url)))
    count = max(5, int(duration * 2))

    def job(name: str, request: Callable[[], int]) -> None:
        timings[name] = timed(request, count, 0.5, stop)

    def delete() -> list[str]:
        if influx is None:
            return []
        return delete_points(influx, admin_token, bench.client, started - timedelta(minutes=10), datetime.now(UTC))

    threads = [threading.Thread(target=job, args=j, daemon=True) for j in jobs]
    try:
        with temporary_accounts(cfg, bench.client, devices, bench.passwd_file) as accounts:
            document = plan(cfg, bench, accounts, rate, duration)
            sampler.start()
            for thread in threads:
                thread.start()
            try:
                load = run_generator(cfg, image, document, duration)
            finally:
                stop.set()
                sampler.stop()
                for thread in threads:
                    thread.join(30)
    except BaseException:
        # The points a failed run wrote go too; the run's own error is the one reported.
        with contextlib.suppress(MovctlError):
            delete()
        raise
    deleted = delete()
    return {
        "time": started.isoformat(timespec="seconds"),
        "mqtt": summarise(load),
        "env": cfg.env,
        "devices": devices,
        "rate_per_s": rate,
        "duration_s": duration,
        "broker": f"{cfg.mqtt_tls_name}:{cfg.mqtt_tls_port}",
        **timings,
        "containers": {
            name: {
                "cpu_mean_pct": round(sum(u.cpu) / len(u.cpu), 2),
                "cpu_max_pct": round(max(u.cpu), 2),
                "mem_max_mib": round(max(u.mem) / 2**20, 1),
                "samples": len(u.cpu),
            }
            for name, u in sorted(sampler.usage.items())
            if u.cpu
        },
        "deleted_from": deleted,
        "cpus": os.cpu_count(),
    }


def _percentiles(values: Any) -> dict[str, float | None]:
    numbers = [float(v) for v in values] if isinstance(values, list) else []
    return {"p50": percentile(numbers, 50), "p99": percentile(numbers, 99)}


def summarise(load: dict[str, Any]) -> dict[str, Any]:
    """The load generator's answer with its latencies (ms, every one) as p50/p99 and counts."""
    if not load.get("ok"):
        return load
    status = dict(load.get("status_latency_ms", {}))
    values = status.pop("values", [])
    return {
        **load,
        "puback_ms": _percentiles(load.get("puback_ms")),
        "status_latency_ms": {**_percentiles(values), "samples": len(values), **status},
    }


def write_results(results_dir: str, document: dict[str, Any]) -> Path:
    directory = Path(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"bench-{stamp}.json"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(path)
    return path


def cmd_bench(cfg: Config, args: argparse.Namespace) -> int:
    bench = cfg.bench
    if bench is None:
        raise MovctlError("the bench is not configured here (movctl.json has no bench section)", EXIT_USAGE)
    devices, rate, duration = choose(args, bench)
    require_stack(cfg)
    Path(LOCK_FILE).parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as own:
        try:
            fcntl.flock(own, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MovctlError(f"another movctl bench runs (it holds {LOCK_FILE})", EXIT_REFUSED) from None
        why = refusal(bench)
        if why:
            raise MovctlError(f"refused: {why}", EXIT_REFUSED)
        document = measure(cfg, bench, devices, rate, duration)
    path = write_results(bench.results_dir, document)
    document["results_file"] = str(path)
    ok = bool(document["mqtt"].get("ok")) and document["mqtt"].get("failed", 1) == 0
    if args.json:
        emit_json({"ok": ok, **document})
    else:
        print(render_bench(document))
    return EXIT_OK if ok else EXIT_FAILED
