"""Analytics worker throughput benchmark (a benchmark, not a test).

    python bench/analytics_throughput.py --duration 10 --json [--write-readings]

Starts its own Mosquitto on a loopback port and the InfluxDB write-API *test double* in this process, then:

1. Fill: a separate publisher process publishes the platform's payload (QoS 1) for ``--duration`` seconds
   into two persistent sessions that are offline: the raw counter's and the worker's, then one *end marker*:
   the first reading of a device of its own. Consumers are measured while draining that backlog (N readings,
   marker included), so the publisher never competes with them for the 2 cores.
2. Raw ceiling: a paho subscriber process (QoS 1, same client settings as the worker) that only counts;
   rate = N / (CONNACK -> N-th message).
3. Worker end to end: ``python -m mov_analytics`` in its production configuration (``write_readings`` off, its
   default: Telegraf writes the readings; the worker writes a status point per status change) drains the same
   N; rate = N / (its "mqtt connected" log time -> the end marker's status point acknowledged by the double).
   The session delivers in order and the writer is FIFO, so that point arriving means every reading before it
   was processed and its points written. It covers receive, parse/validate, rules, status points, batching
   and HTTP writes. ``--write-readings`` measures the worker writing one more point per reading instead.
4. Latency: the publisher sends at a fixed ``--rate`` (1,000/s) to the live worker for ``--duration`` seconds,
   each payload stamped with its publish time (epoch ns); latency = arrival at the double of the point that
   reading produced - that stamp. In the production configuration the readings alternate 31/25 C per device,
   so each one changes its device's status (alerta <-> normal, no alerts) and yields a status point stamped
   with the reading's time; with ``--write-readings``, the reading points are timed.

Phases 1-3 run ``--rounds`` times (default 3) and the best round of each consumer counts: other load on the
machine only ever slows a round down. ``ratio`` = best worker rate / best raw rate.
``lost`` = readings published (all rounds and phase 4) that the worker's own counters do not show processed
(``readings_processed_total`` - ``readings_stale_total`` - ``readings_duplicate_total``, scraped from its metrics
port) + points that should have reached the double and did not: the status points an independent model of the
default rule expects for the fill readings (plus the marker's), one status point per latency reading, and with
``--write-readings`` one reading point per reading.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "analytics" / "tests"))

import paho.mqtt.client as mqtt  # noqa: E402
import yaml  # noqa: E402
from influx_write_double import InfluxWriteDouble  # noqa: E402
from mosquitto_runner import Mosquitto, free_port  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

RAW_CLIENT_ID = "bench-raw-counter"
WORKER_CLIENT_ID = "bench-mov-analytics"
TOPIC_FILTER = "mov/dados/#"


DEVICES = 100


def wave_temperature(seq: int) -> float:
    """A slow wave from 20.0 to 34.9 C: each device crosses into alerta and back now and then, as real rooms
    do, instead of changing status on every reading."""
    return 20.0 + (seq // 1000 % 150) / 10.0


def flip_temperature(seq: int) -> float:
    """31 and 25 C in turn for each device (devices take turns): every reading is a status change
    (alerta <-> normal, no alert), so every reading yields a status point through the write path."""
    return 31.0 if seq // DEVICES % 2 == 0 else 25.0


PATTERNS = {"wave": wave_temperature, "flip": flip_temperature}


def payload(seq: int, device: str, stamp_ns: int, pattern: str = "wave") -> bytes:
    doc = {
        "timestamp": stamp_ns,
        "tags": {
            "dispositivo": device,
            "localizacao": "sala_servidores",
            "tipo": "temperatura",
            "cliente": "industria_abc",
        },
        "fields": {"temperatura_c": PATTERNS[pattern](seq), "umidade": 45.2, "pressao": 1013.25},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def expected_wave_status_points(n: int) -> int:
    """Status points the worker must write for the first ``n`` wave readings under the default rule (alerta
    above 30, critico above 35, each left 0.5 below its threshold), the first reading of a device being a
    change too. An independent model of the rule, so that a status point that goes missing counts as lost."""
    thresholds = (float("-inf"), 30.0, 35.0)
    points = 0
    for device in range(min(n, DEVICES)):
        level = -1
        for seq in range(device, n, DEVICES):
            t = wave_temperature(seq)
            entered = 2 if t > thresholds[2] else 1 if t > thresholds[1] else 0
            new = entered if entered >= level else level
            while new > 0 and t <= thresholds[new] - 0.5:
                new -= 1
            if new != level:
                points += 1
                level = new
    return points


# -- roles run as separate processes -----------------------------------------------------------------------
def role_publish(port: int, seconds: float, rate: float, prefix: str, *, pattern: str, end_marker: bool) -> None:
    """Publish for ``seconds`` (as fast as possible when rate == 0); print how many were acknowledged.

    With ``end_marker``, one more reading follows for the device ``<prefix>end``: its first reading, so the
    worker writes a status point for it, and as the session delivers in order, that point reaching the write
    endpoint means every reading before it was processed (the points of all of them written: FIFO).
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    devices = [f"{prefix}{i:03d}" for i in range(DEVICES)]
    sent, last_ns = 0, 0
    started = time.monotonic()
    infos = []
    while True:
        now = time.monotonic()
        if now - started >= seconds:
            break
        if rate > 0:
            due = started + sent / rate
            if due > now:
                time.sleep(due - now)
        stamp = max(time.time_ns(), last_ns + 1)  # unique per reading: points never collide in a series
        last_ns = stamp
        device = devices[sent % len(devices)]
        infos.append(
            client.publish(f"mov/dados/industria_abc/{device}/telemetria", payload(sent, device, stamp, pattern), qos=1)
        )
        sent += 1
        if rate == 0 and len(infos) >= 5000:  # keep paho's outgoing queue bounded
            infos[-1].wait_for_publish(30)
            infos = [i for i in infos if not i.is_published()]
    seconds_publishing = time.monotonic() - started
    readings = sent
    if end_marker:
        device = f"{prefix}end"
        stamp = max(time.time_ns(), last_ns + 1)
        infos.append(client.publish(f"mov/dados/industria_abc/{device}/telemetria", payload(0, device, stamp), qos=1))
        sent += 1
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"published": sent, "readings": readings, "seconds": seconds_publishing}))


def role_raw(port: int, expect: int, register_only: bool) -> None:
    """Count messages from the persistent session until ``expect`` arrived; print the rate."""
    state = {"count": 0, "connected_at": 0.0, "done_at": 0.0, "cpu_at_connect": 0.0, "cpu_at_done": 0.0}
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=RAW_CLIENT_ID, clean_session=False, protocol=MQTTProtocolVersion.MQTTv311
    )

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        state["connected_at"] = time.time()
        state["cpu_at_connect"] = time.process_time()
        c.subscribe(TOPIC_FILTER, qos=1)
        if register_only:
            c.disconnect()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        state["count"] += 1
        if state["count"] >= expect:
            state["done_at"] = time.time()
            state["cpu_at_done"] = time.process_time()
            c.disconnect()

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_forever()
    elapsed = state["done_at"] - state["connected_at"]
    print(
        json.dumps(
            {
                "count": state["count"],
                "seconds": elapsed,
                "cpu_us_per_msg": (state["cpu_at_done"] - state["cpu_at_connect"]) / max(state["count"], 1) * 1e6,
                "msgs_per_s": state["count"] / elapsed if elapsed > 0 else 0.0,
            }
        )
    )


# -- orchestration --------------------------------------------------------------------------------------------
def run_role(*args: str, timeout: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def start_worker(
    workdir: Path, broker_port: int, double: InfluxWriteDouble, args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], int, Path]:
    metrics_port = free_port()
    cfg = {
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "client_id": WORKER_CLIENT_ID},
        "influxdb": {
            "url": double.url,
            "token": double.token,
            "batch_size": args.batch_size,
            "flush_interval_ms": args.flush_interval_ms,
            "buffer_max_points": 2_000_000,
            "write_readings": args.write_readings,
            "gzip": args.gzip,
        },
        "heartbeat_interval_s": 0,
        "http": {"host": "127.0.0.1", "port": metrics_port},
        "log_level": "INFO",
    }
    config = workdir / "worker.yaml"
    config.write_text(yaml.safe_dump(cfg))
    log = workdir / f"worker-{time.time_ns()}.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mov_analytics", "--config", str(config)], stdout=handle, stderr=handle
        )
    return proc, metrics_port, log


def wait_connected(log: Path, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in log.read_text().splitlines():
            if '"mqtt connected"' in text:
                return float(json.loads(text)["ts"])
        time.sleep(0.02)
    raise TimeoutError(f"worker did not connect:\n{log.read_text()[-2000:]}")


class PointWatch:
    """Points arriving at the double from now on, scanned once each (cheap to poll while a worker drains).

    ``status[device]`` / ``readings[device]``: {timestamp ns: first arrival} of mov_status / mov_leituras points.
    """

    def __init__(self, double: InfluxWriteDouble) -> None:
        self.double = double
        with double._lock:
            self._seen = len(double.raw_batches)
        self.status: dict[str, dict[int, float]] = {}
        self.readings: dict[str, dict[int, float]] = {}

    def poll(self) -> None:
        with self.double._lock:
            batches = self.double.raw_batches[self._seen :]
            self._seen += len(batches)
        for arrived, lines in batches:
            for text in lines:
                if text.startswith("mov_status,"):
                    into = self.status
                elif text.startswith("mov_leituras,"):
                    into = self.readings
                else:
                    continue
                device = text.split(",dispositivo=", 1)[1].split(",", 1)[0]
                into.setdefault(device, {}).setdefault(int(text.rsplit(" ", 1)[1]), arrived)

    def wait(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if done(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def count(self, kind: str, prefix: str) -> int:
        table = self.status if kind == "status" else self.readings
        return sum(len(points) for device, points in table.items() if device.startswith(prefix))

    def arrivals(self, kind: str, prefix: str) -> dict[int, float]:
        table = self.status if kind == "status" else self.readings
        return {ts: at for device, points in table.items() if device.startswith(prefix) for ts, at in points.items()}


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


def worker_counters(port: int) -> dict[str, float]:
    """The worker's own counters from its /metrics, summed over labels, by name without the prefix."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return out
    for row in text.splitlines():
        if row.startswith("mov_analytics_") and not row.startswith("#"):
            name = row.split("{", 1)[0].split(" ", 1)[0].removeprefix("mov_analytics_")
            out[name] = out.get(name, 0.0) + float(row.rsplit(" ", 1)[1])
    return out


def unaccounted(counters: dict[str, float], published: int) -> int:
    """Readings published that the worker did not count as processed. Stale readings (older than the late window)
    and duplicates (a QoS 1 redelivery, counted again by readings_processed_total) are taken out, so a redelivery
    cannot hide a reading that never arrived."""
    fresh = (
        counters.get("readings_processed_total", 0.0)
        - counters.get("readings_stale_total", 0.0)
        - counters.get("readings_duplicate_total", 0.0)
    )
    return max(0, published - int(fresh))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing per phase")
    parser.add_argument("--rounds", type=int, default=3, help="fill/drain rounds; the best round counts")
    parser.add_argument("--rate", type=float, default=1000.0, help="readings/s for the latency phase")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--flush-interval-ms", type=int, default=20)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument(
        "--write-readings",
        action="store_true",
        help="run the worker with influxdb.write_readings: true (one point per reading; off by "
        "default, as in production, where Telegraf writes the readings)",
    )
    parser.add_argument("--json", action="store_true", help="end with the JSON summary line (always printed)")
    parser.add_argument("--role", choices=("publish", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--register-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="dev", help=argparse.SUPPRESS)
    parser.add_argument("--pattern", choices=sorted(PATTERNS), default="wave", help=argparse.SUPPRESS)
    parser.add_argument("--end-marker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "publish":
        role_publish(args.port, args.duration, args.rate, args.prefix, pattern=args.pattern, end_marker=args.end_marker)
        return 0
    if args.role == "raw":
        role_raw(args.port, args.expect, args.register_only)
        return 0

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="mov-bench-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto(workdir / "mosquitto", persistence=False)
        broker.start()
        double = InfluxWriteDouble(token="bench-token", parse=False)  # a test double's token
        port = str(broker.port)
        try:
            # Register both persistent sessions, then leave them offline while the backlog is published.
            run_role("--role", "raw", "--port", port, "--register-only", timeout=30)
            worker, metrics_port, log = start_worker(workdir, broker.port, double, args)
            wait_connected(log, 30)
            stop_worker(worker)

            raw_rates, worker_rates, lost = [], [], 0
            for round_no in range(args.rounds):
                prefix = f"r{round_no}fill"
                fill = run_role(
                    "--role",
                    "publish",
                    "--port",
                    port,
                    "--duration",
                    str(args.duration),
                    "--rate",
                    "0",
                    "--prefix",
                    prefix,
                    "--end-marker",
                    timeout=args.duration + 120,
                )
                n, readings = int(fill["published"]), int(fill["readings"])  # n = readings + the end marker
                raw = run_role("--role", "raw", "--port", port, "--expect", str(n), timeout=600)
                raw_rates.append(raw["msgs_per_s"])
                watch = PointWatch(double)
                worker, metrics_port, log = start_worker(workdir, broker.port, double, args)
                connected_at = wait_connected(log, 30)
                cpu_before = cpu_seconds(worker.pid)
                end_device = f"{prefix}end"
                drained = watch.wait(lambda w, d=end_device: d in w.status, timeout=600)
                worker_cpu_us = (cpu_seconds(worker.pid) - cpu_before) / n * 1e6
                counters = worker_counters(metrics_port)
                if unaccounted(counters, n):  # the counter is bumped just after the point is queued
                    time.sleep(0.5)
                    counters = worker_counters(metrics_port)
                stop_worker(worker)
                watch.poll()
                worker_seconds = min(watch.status[end_device].values()) - connected_at if drained else 0.0
                worker_rates.append(n / worker_seconds if worker_seconds > 0 else 0.0)
                not_processed = unaccounted(counters, n)
                status_expected = expected_wave_status_points(readings) + 1
                status_got = watch.count("status", prefix)
                missing = max(0, status_expected - status_got)
                if args.write_readings:
                    missing += max(0, n - watch.count("readings", prefix))
                lost += not_processed + missing
                say(
                    f"round {round_no + 1}/{args.rounds}: {n} readings queued ({readings / fill['seconds']:.0f}/s); "
                    f"raw paho counter {raw_rates[-1]:.0f} msgs/s ({raw['seconds']:.2f}s); worker end to end "
                    f"{worker_rates[-1]:.0f} msgs/s ({worker_seconds:.2f}s; processed "
                    f"{counters.get('readings_processed_total', float('nan')):.0f}, rejected "
                    f"{counters.get('readings_rejected_total', float('nan')):.0f}, status points "
                    f"{status_got}/{status_expected}"
                    + (f", reading points {watch.count('readings', prefix)}/{n}" if args.write_readings else "")
                    + f"); CPU per reading: raw {raw['cpu_us_per_msg']:.1f} us, worker {worker_cpu_us:.1f} us"
                )
                if status_got > status_expected:
                    say(f"  note: {status_got - status_expected} more status points than the rule model expects")
            # Best of the rounds for both: other load on the machine only ever makes a round slower.
            raw_best, worker_rate = max(raw_rates), max(worker_rates)
            say(
                f"best of {args.rounds}: raw {raw_best:.0f} msgs/s, worker {worker_rate:.0f} msgs/s "
                f"(medians {statistics.median(raw_rates):.0f} / {statistics.median(worker_rates):.0f})"
            )

            # Latency on points that go through the write path: one reading point per reading with
            # write_readings; otherwise readings that each change the device's status (flip pattern), so each
            # yields one status point, stamped with the reading's time.
            kind, pattern = ("readings", "wave") if args.write_readings else ("status", "flip")
            watch = PointWatch(double)
            worker, metrics_port, log = start_worker(workdir, broker.port, double, args)
            wait_connected(log, 30)
            say(
                f"latency: {args.rate:.0f} readings/s for {args.duration:.0f}s to the live worker "
                f"({kind} points, {pattern} pattern)..."
            )
            lat = run_role(
                "--role",
                "publish",
                "--port",
                port,
                "--duration",
                str(args.duration),
                "--rate",
                str(args.rate),
                "--prefix",
                "lat",
                "--pattern",
                pattern,
                timeout=args.duration + 120,
            )
            m = int(lat["published"])
            watch.wait(lambda w: w.count(kind, "lat") >= m, timeout=60)
            arrivals = watch.arrivals(kind, "lat")
            latencies_ms = sorted((arrived - ts / 1e9) * 1000 for ts, arrived in arrivals.items())
            counters = worker_counters(metrics_port)
            if unaccounted(counters, m):
                time.sleep(0.5)
                counters = worker_counters(metrics_port)
            exit_code = stop_worker(worker)
            lost += unaccounted(counters, m) + max(0, m - len(arrivals))
            p50 = statistics.median(latencies_ms) if latencies_ms else float("nan")
            p99 = latencies_ms[min(len(latencies_ms) - 1, int(len(latencies_ms) * 0.99))] if latencies_ms else 0.0
            say(
                f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies_ms, default=0):.1f} ms "
                f"over {len(latencies_ms)} of {m} readings; worker processed "
                f"{counters.get('readings_processed_total', float('nan')):.0f}, "
                f"SIGTERM exit code {exit_code}"
            )
            say(
                f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                f"load average {os.getloadavg()[0]:.2f}; "
                f"write_readings={args.write_readings} batch_size={args.batch_size} "
                f"flush_interval_ms={args.flush_interval_ms} gzip={args.gzip}"
            )
        finally:
            double.close()
            broker.stop()
    ratio = worker_rate / raw_best if raw_best else 0.0
    summary = {
        "msgs_per_s": round(worker_rate, 1),
        "raw_msgs_per_s": round(raw_best, 1),
        "ratio": round(ratio, 3),
        "lost": lost,
        "p99_ms": round(p99, 2),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
