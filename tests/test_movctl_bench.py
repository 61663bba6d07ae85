"""movctl bench's host side without the platform: its caps and refusals, the temporary accounts (their hash checked
by a real Mosquitto), docker stats' parsing and the table. The whole command runs in the site scenario (the
InfluxDB double) and in the e2e job (InfluxDB and Grafana themselves)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mov_host.movctl import bench, bench_accounts, bench_probes, bench_report, services
from mov_host.movctl.config import EXIT_USAGE, MovctlError, bench_from_dict, config_from_dict
from mov_render import resolved

BENCH = {"field": "temperatura_c", "values": [20, 32.5]}


def args(**given: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"devices": None, "rate": None, "duration": None, **given})


def test_the_configurations_caps_bound_the_command_line() -> None:
    cfg = bench_from_dict({**BENCH, "max_devices": 10, "max_rate": 100, "max_duration_s": 30}, "/opt/mov")
    assert bench.choose(args(), cfg) == (5, 50.0, 10.0)
    assert bench.choose(args(devices=10, rate=100, duration=30), cfg) == (10, 100, 30)
    with pytest.raises(MovctlError) as caught:
        bench.choose(args(devices=11, rate=101, duration=31), cfg)
    assert caught.value.code == EXIT_USAGE
    for name in ("bench.max_devices", "bench.max_rate", "bench.max_duration_s"):
        assert name in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client": "a/b"}, "bench.client"),
        ({"devices": 50}, "bench.devices"),
        ({"duration_s": 600}, "bench.duration_s"),
        ({"values": [1]}, "bench: missing or invalid"),
    ],
)
def test_a_bad_bench_section_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(MovctlError, match=message):
        bench_from_dict({**BENCH, **change}, "/opt/mov")


def test_it_refuses_while_the_backup_lock_is_held_or_a_deploy_marker_is_fresh(tmp_path: Path) -> None:
    lock, marker = tmp_path / "mov-backup.lock", tmp_path / "mov-deploy.json"
    cfg = bench_from_dict({**BENCH, "backup_lock_file": str(lock), "deploy_marker": str(marker)}, "/opt/mov")
    assert bench.refusal(cfg) == ""
    lock.touch()
    assert bench.refusal(cfg) == ""  # the file alone is no backup: only a held lock is
    # One process that takes the lock and holds it, with no child: flock(1) forks its command, and a child forked
    # before flock closed the lock's descriptor kept the lock a moment after flock itself was killed.
    hold = (
        "import fcntl, sys, time; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); print(flush=True); "
        "time.sleep(30)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(lock)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"\n"  # the lock is held from here
        assert "a backup, restore or drill runs" in bench.refusal(cfg)
    finally:
        holder.kill()
        holder.wait()
    assert bench.refusal(cfg) == ""
    marker.write_text("{}")
    assert "a deploy runs" in bench.refusal(cfg)
    assert bench.refusal(cfg, now=time.time() + cfg.deploy_marker_max_age_s + 1) == ""  # an interrupted deploy's


def test_only_the_bench_clients_entries_are_added_and_taken_out() -> None:
    original = "industria_abc/sensor_001:$7$101$a$b\nmovbenchmark/x:$7$101$c$d\nverify:$7$101$e$f\n"
    stale = original + "movbench/d07:$7$101$g$h\n"
    clean = bench_accounts.without_client(stale, "movbench")
    assert clean == original
    added = bench_accounts.with_accounts(clean, [bench_accounts.Account("movbench/d01", "pw")])
    assert added.startswith(original) and added.count("\n") == 4
    assert bench_accounts.without_client(added, "movbench") == original


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
def test_mosquitto_accepts_the_hash_and_refuses_a_wrong_password(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text(bench_accounts.with_accounts("", [bench_accounts.Account("movbench/d01", "s3cret-pw")]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous false", f"password_file {passwd}"]
    conf.write_text("\n".join(lines + (["user root"] if os.geteuid() == 0 else [])) + "\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)

        def publish(password: str) -> int:
            argv = ["mosquitto_pub", "-p", str(port), "-u", "movbench/d01", "-P", password, "-t", "t", "-m", "1"]
            return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode

        assert publish("s3cret-pw") == 0
        assert publish("wrong") != 0
    finally:
        broker.kill()
        broker.wait()


def test_docker_stats_rows_of_the_project_only() -> None:
    lines = "\n".join(
        [
            '{"Name":"mov-mosquitto-1","CPUPerc":"1.50%","MemUsage":"12.5MiB / 1GiB"}',
            '{"Name":"mov-analytics-1","CPUPerc":"20.25%","MemUsage":"1.5GiB / 4GiB"}',
            '{"Name":"other-x-1","CPUPerc":"99%","MemUsage":"1MiB / 1GiB"}',
            '{"Name":"mov-broken-1","CPUPerc":"--","MemUsage":"-- / --"}',
            "not json",
        ]
    )
    assert bench_probes.parse_stats(lines, "mov-") == {
        "mosquitto": (1.5, 12.5 * 2**20),
        "analytics": (20.25, 1.5 * 2**30),
    }
    assert bench_probes.size_bytes("0B") == 0 and bench_probes.size_bytes("3kB") == 3000
    assert bench_probes.size_bytes("lots") is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench_probes.percentile(values, 50) == 50 and bench_probes.percentile(values, 99) == 99
    assert bench_probes.percentile([7.0], 99) == 7 and bench_probes.percentile([], 50) is None


def test_the_table_shows_each_figure_and_what_was_not_measured() -> None:
    doc = {
        "devices": 3,
        "rate_per_s": 30.0,
        "duration_s": 8.0,
        "broker": "mov.example:8883",
        "mqtt": {
            "ok": True,
            "published": 240,
            "acked": 240,
            "failed": 0,
            "throughput_per_s": 29.9,
            "puback_ms": {"p50": 1.2, "p99": 4.5},
            "status_latency_ms": {"p50": 180.0, "p99": 420.0, "samples": 8, "missing": 0, "error": ""},
        },
        "influxdb_write": {"p50_ms": 3.0, "p99_ms": 9.0, "samples": 16, "failed": 0, "errors": []},
        "containers": {"mosquitto": {"cpu_mean_pct": 1.0, "cpu_max_pct": 2.0, "mem_max_mib": 8.0, "samples": 5}},
        "deleted_from": ["mov_dados", "mov_status"],
        "results_file": "/var/lib/mov/bench/bench-x.json",
    }
    table = bench_report.render_bench(doc)
    assert "240/240 acknowledged, 0 failed, 29.9 readings/s" in table
    assert "180.0 ms" in table and "420.0 ms" in table
    assert "Grafana /api/health" in table and "not deployed here" in table
    assert "mov_dados, mov_status" in table
    failed = bench_report.render_bench({**doc, "mqtt": {"ok": False, "error": "the broker refused"}})
    assert "FAILED: the broker refused" in failed


def test_the_tree_configures_the_bench_the_worker_and_the_broker_alike() -> None:
    """One client name for the bench's devices, the worker's transient clients and the broker's reserved ones; the
    bench's values from mov_thresholds (one below the first status threshold, one between it and the alert one)."""
    thresholds = {"pressao_bar": {"alerta": 8, "critico": 10}, "temperatura_c": {"alerta": 30, "critico": 35}}
    tree = ("-e", json.dumps({"mov_thresholds": thresholds}))
    assert resolved("movctl_bench_field", *tree) == "pressao_bar"
    values = resolved("movctl_bench_values", *tree)
    assert values == [-2, 9.0]
    bench = bench_from_dict({"field": "pressao_bar", "values": values}, "/opt/mov")
    assert bench.values == (-2.0, 9.0)
    assert resolved("movctl_bench_client") == "movbench"
    assert resolved("stack_analytics_config_overrides")["transient_clients"] == ["movbench"]
    assert resolved("mosquitto_reserved_clients") == ["movbench"]


def test_the_load_generators_latencies_become_percentiles_and_counts() -> None:
    load = {
        "ok": True,
        "acked": 4,
        "puback_ms": [4.0, 1.0, 3.0, 2.0],
        "status_latency_ms": {"values": [1000.0, 1020.0], "missing": 1, "error": ""},
    }
    summary = bench.summarise(load)
    assert summary["puback_ms"] == {"p50": 2.0, "p99": 4.0}
    assert summary["status_latency_ms"] == {"p50": 1000.0, "p99": 1020.0, "samples": 2, "missing": 1, "error": ""}
    assert bench.summarise({"ok": False, "error": "refused"}) == {"ok": False, "error": "refused"}


def test_a_failed_run_still_deletes_its_points_and_reports_its_own_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "admin.token"
    token.write_text("admin-token\n")
    influx = {
        "url": "http://127.0.0.1:1",
        "org": "o",
        "readings_bucket": "mov_dados",
        "status_bucket": "mov_status",
        "status_measurement": "mov_status",
        "admin_token_file": str(token),
        "read_token_file": str(token),
    }
    cfg_bench = bench_from_dict({**BENCH, "influxdb": influx}, "/opt/mov")
    deleted: list[tuple[str, str]] = []
    states = [
        services.ServiceState("analytics", "running", "healthy", image="mov/analytics:1"),
        services.ServiceState("mosquitto", "running", "healthy"),
    ]
    monkeypatch.setattr(bench, "read_states", lambda cfg: states)
    monkeypatch.setattr(bench, "temporary_accounts", lambda *a: contextlib.nullcontext([]))
    monkeypatch.setattr(bench, "StatsSampler", lambda project: mock_sampler())
    monkeypatch.setattr(bench, "timed", lambda *a: {})

    def failing_generator(*args: object) -> dict[str, Any]:
        raise MovctlError("the load generator failed (exit 1): boom")

    def record_delete(influx: Any, token: str, client: str, *window: object) -> list[str]:
        deleted.append((token, client))
        raise MovctlError("deleting failed as well")

    monkeypatch.setattr(bench, "run_generator", failing_generator)
    monkeypatch.setattr(bench, "delete_points", record_delete)
    with pytest.raises(MovctlError, match="boom"):
        bench.measure(config_from_dict({"stack": {"dir": "/opt/mov", "services": ["analytics"]}}), cfg_bench, 2, 10, 1)
    assert deleted == [("admin-token", "movbench")]


def mock_sampler() -> Any:
    sampler = argparse.Namespace(usage={})
    sampler.start = sampler.stop = lambda: None
    return sampler
