"""Write contract of the InfluxDB sink, against the v2 write-API TEST DOUBLE (not InfluxDB).

Covers batching, retries on 503, an outage (the double goes away; 60 s in production, scaled down here by
config) after which every accepted point is written exactly once, buffer-full drop-oldest counted, and the
401 case with a bounded number of requests.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from influx_write_double import InfluxWriteDouble, parse_line

from mov_analytics.config import InfluxConfig
from mov_analytics.influx import InfluxClientTransport, InfluxWriter, line
from mov_analytics.metrics import Metrics

OUTAGE_S = float(os.environ.get("MOV_TEST_OUTAGE_S", "4"))  # the contract is 60 s; scaled down for CI time


@pytest.fixture
def double() -> Iterator[InfluxWriteDouble]:
    d = InfluxWriteDouble(token="t0ken")
    yield d
    d.close()


def make_writer(double: InfluxWriteDouble, **overrides: object) -> tuple[InfluxWriter, Metrics]:
    cfg = replace(
        InfluxConfig(
            url=double.url,
            token="t0ken",
            batch_size=100,
            flush_interval_ms=50,
            buffer_max_points=10_000,
            retry_initial_ms=50,
            retry_max_ms=400,
            timeout_ms=2000,
            auth_retry_interval_s=60.0,
        ),
        **overrides,  # type: ignore[arg-type]
    )
    metrics = Metrics()
    writer = InfluxWriter(cfg, metrics, InfluxClientTransport(cfg))
    writer.start()
    return writer, metrics


def point(i: int) -> str:
    return line(
        "mov_leituras",
        {"cliente": "abc", "dispositivo": f"s{i % 7}"},
        {"seq": i, "v": i / 10},
        1_705_314_600_000_000_000 + i,
    )


def wait_until(predicate: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def seqs(double: InfluxWriteDouble) -> list[int]:
    return [int(p.field("seq")[:-1]) for p in double.snapshot()]


def test_line_protocol_escaping_round_trips() -> None:
    text = line(
        "my measurement",
        {"dispositivo": "a b,c=d", "localizacao": "sala\\x"},
        {"status": 'say "hi"', "v": 1.5, "n": 3, "ok": True},
        42,
    )
    parsed = parse_line(text)
    assert parsed.measurement == "my measurement"
    assert dict(parsed.tags) == {"dispositivo": "a b,c=d", "localizacao": "sala\\x"}
    assert parsed.field("v") == "1.5" and parsed.field("n") == "3i" and parsed.field("ok") == "true"
    assert parsed.time_ns == 42


def test_batching(double: InfluxWriteDouble) -> None:
    writer, metrics = make_writer(double, batch_size=1000, flush_interval_ms=300)
    for i in range(2500):
        writer.add(point(i))
    assert wait_until(lambda: len(double.snapshot()) == 2500, 10)
    writer.stop(5)
    assert double.batch_sizes == [1000, 1000, 500]
    assert sorted(seqs(double)) == list(range(2500))
    assert metrics.points_written._value.get() == 2500


def test_retries_on_503_then_writes_once(double: InfluxWriteDouble) -> None:
    double.fail_next = 3
    writer, metrics = make_writer(double)
    for i in range(250):
        writer.add(point(i))
    assert wait_until(lambda: len(double.snapshot()) == 250, 10)
    writer.stop(5)
    assert double.statuses[503] == 3
    assert sorted(seqs(double)) == list(range(250)) and double.duplicates() == 0
    assert metrics.write_failures.labels("retryable")._value.get() == 3
    assert writer.last_write_ok


def test_outage_every_accepted_point_written_after_it_none_twice(double: InfluxWriteDouble) -> None:
    # The buffer is sized for the outage: ~500 points/s here, 60 s in the full contract.
    writer, metrics = make_writer(double, batch_size=200, flush_interval_ms=20, buffer_max_points=100_000)
    stop = threading.Event()
    accepted = []

    def produce() -> None:
        i = 0
        while not stop.is_set():
            writer.add(point(i))
            accepted.append(i)
            i += 1
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.3)
    double.go_away()
    time.sleep(0.2)
    assert wait_until(lambda: not writer.last_write_ok, 5), "the writer did not notice the outage"
    time.sleep(OUTAGE_S)
    during = len(accepted)
    double.come_back()
    time.sleep(0.3)
    stop.set()
    producer.join()
    # Catching up takes one request per batch_size points: allow for a slow, shared machine.
    assert wait_until(lambda: len(double.snapshot()) >= len(accepted), 10 + len(accepted) / 1000)
    writer.stop(5)
    assert during > 500, "too few points were accepted during the outage to prove anything"
    assert sorted(seqs(double)) == accepted
    assert double.duplicates() == 0
    assert metrics.points_dropped.labels("buffer_full")._value.get() == 0
    assert writer.last_write_ok


def test_buffer_full_drops_oldest_counted_and_reported(double: InfluxWriteDouble) -> None:
    double.mode = "unavailable"
    overflow_calls: list[int] = []
    cfg = InfluxConfig(
        url=double.url,
        token="t0ken",
        batch_size=10,
        flush_interval_ms=10,
        buffer_max_points=100,
        retry_initial_ms=20,
        retry_max_ms=50,
        timeout_ms=2000,
    )
    metrics = Metrics()
    writer = InfluxWriter(cfg, metrics, InfluxClientTransport(cfg), on_overflow=overflow_calls.append)
    writer.start()
    for i in range(10):
        writer.add(point(i))
    assert wait_until(lambda: double.statuses[503] >= 1, 5)  # first batch (0..9) now in flight
    for i in range(10, 250):
        writer.add(point(i))
    assert writer.pending() == 100
    assert metrics.registry.get_sample_value("mov_analytics_buffer_points") == 100
    # The dashboard's buffer fill is depth over this capacity.
    assert metrics.registry.get_sample_value("mov_analytics_buffer_capacity_points") == 100
    double.mode = "ok"
    assert wait_until(lambda: writer.pending() == 0, 10)
    writer.stop(5)
    written = sorted(seqs(double))
    # The in-flight batch is kept; the oldest *queued* points made room: 11..150 were dropped.
    assert written == list(range(10)) + list(range(160, 250))
    assert metrics.points_dropped.labels("buffer_full")._value.get() == 150
    assert sum(overflow_calls) == 150


def test_401_fails_loudly_without_a_retry_storm(double: InfluxWriteDouble) -> None:
    double.mode = "unauthorized"
    auth_errors: list[str] = []
    cfg = InfluxConfig(
        url=double.url,
        token="t0ken",
        batch_size=10,
        flush_interval_ms=10,
        buffer_max_points=1000,
        retry_initial_ms=10,
        retry_max_ms=20,
        timeout_ms=2000,
        auth_retry_interval_s=1.0,
    )
    metrics = Metrics()
    writer = InfluxWriter(cfg, metrics, InfluxClientTransport(cfg), on_auth_failure=auth_errors.append)
    writer.start()
    started = time.monotonic()
    for i in range(200):
        writer.add(point(i))
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert writer.auth_failed and not writer.last_write_ok
    assert metrics.auth_failed._value.get() == 1
    assert len(auth_errors) == 1
    # One request per auth_retry_interval_s (1 s), not one per batch or per 10 ms back-off.
    assert 1 <= double.requests <= elapsed / cfg.auth_retry_interval_s + 2
    double.mode = "ok"
    assert wait_until(lambda: len(double.snapshot()) == 200, 5)
    assert not writer.auth_failed and writer.last_write_ok
    writer.stop(2)


def test_gzip_bodies_are_accepted(double: InfluxWriteDouble) -> None:
    writer, _ = make_writer(double, gzip=True)
    for i in range(150):
        writer.add(point(i))
    assert wait_until(lambda: len(double.snapshot()) == 150, 10)
    writer.stop(5)


def test_stop_flushes_what_is_buffered(double: InfluxWriteDouble) -> None:
    writer, _ = make_writer(double, batch_size=1000, flush_interval_ms=600_000)
    for i in range(300):
        writer.add(point(i))
    time.sleep(0.2)
    assert double.snapshot() == []
    lost = writer.stop(5)
    assert lost == 0 and len(double.snapshot()) == 300
