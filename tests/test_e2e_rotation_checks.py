"""The e2e job's rotation checks (tests/e2e/check_rotation.py) judge right: the parts that need no real image."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import yaml
from conftest import REPO
from mov_analytics.config import DEFAULT_RULES
from mov_analytics.parsing import Reading
from mov_analytics.rules import RulesEngine

sys.path.append(str(REPO / "tests" / "e2e"))
import check_rotation as cr

START = datetime(2026, 12, 7, 1, 0, 0, tzinfo=UTC)


def stamps(*seconds: int) -> list[str]:
    return [(START + timedelta(seconds=s)).strftime(cr.STAMP) for s in seconds]


def test_the_publishers_values_change_the_workers_status_at_every_reading() -> None:
    """The premise of the worker's count: through the worker's own rules (the job's thresholds are its defaults,
    alerta 30 and critico 35 °C), each alternating reading is a status change and none is critical (no alert)."""
    engine = RulesEngine(DEFAULT_RULES)
    changes = []
    for i in range(8):
        value = cr.alternating_value(i, 22.0, 32.5)
        time_ns = int((START + timedelta(seconds=i)).timestamp() * 1e9)
        outcome = engine.evaluate(
            Reading(time_ns, "industria_abc", "sensor_002", "linha", "temperatura", {"temperatura_c": value})
        )
        changes.append(outcome.change.status if outcome.change else None)
    assert changes == ["alerta", "normal"] * 4


def test_a_reading_must_change_the_status_only_when_the_one_before_it_was_taken() -> None:
    assert cr.changing_readings(stamps(0, 1, 2, 3)) == stamps(1, 2, 3)
    # Second 3 refused: 4 follows 2, the same value, so it need not change anything; 5 must again.
    assert cr.changing_readings(stamps(0, 1, 2, 4, 5)) == stamps(1, 2, 5)
    assert cr.changing_readings([]) == []


def test_influxdbs_times_compare_with_the_publishers_seconds() -> None:
    assert cr.normal_stamp("2026-12-07T01:00:05Z") == "2026-12-07T01:00:05Z"
    assert cr.normal_stamp("2026-12-07T01:00:05.000000001Z") == "2026-12-07T01:00:05Z"


def test_the_worker_count_fails_on_a_missing_status_point_or_one_at_no_reading() -> None:
    acked = stamps(0, 1, 2, 3)
    ok, detail = cr.status_points_judged(acked, [], stamps(0, 1, 2, 3))
    assert ok, detail
    # The first reading's point may be missing (the device may have been at that level already).
    assert cr.status_points_judged(acked, [], stamps(1, 2, 3))[0]
    ok, detail = cr.status_points_judged(acked, [], stamps(0, 1, 3))
    assert not ok and "missing: ['2026-12-07T01:00:02Z']" in detail
    ok, detail = cr.status_points_judged(acked, [], stamps(0, 1, 2, 3, 9))
    assert not ok and "at no reading: ['2026-12-07T01:00:09Z']" in detail
    # A reading the broker did not acknowledge may still have arrived: its point is no finding.
    refused = [f"{stamps(4)[0]} RuntimeError('no PUBACK')"]
    assert cr.status_points_judged(acked, refused, stamps(0, 1, 2, 3, 4))[0]
    assert not cr.status_points_judged([], [], [])[0]


def test_the_token_file_is_where_the_influxdb_role_writes_each_service_token() -> None:
    services = yaml.safe_load((REPO / "group_vars/all/services.yml").read_text())["influxdb_tokens"]
    files = {t["name"]: t["file"].replace("{{ mov_platform_dir }}", "/opt/mov") for t in services}
    for service in ("telegraf", "analytics", "grafana"):
        assert cr.token_file(service) == files[service]
