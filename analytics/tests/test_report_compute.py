"""The report's numbers on generated readings with known answers (see report_data.py)."""

from __future__ import annotations

import pytest
import report_data as data

from mov_analytics.report.compute import (
    DeviceReport,
    Gap,
    Report,
    Threshold,
    build_report,
    count_alerts,
    find_gaps,
    seconds_beyond,
)
from mov_analytics.report.records import StatusPoint


def _report() -> Report:
    return build_report(
        data.samples(),
        data.statuses(),
        data.RULES,
        start_s=data.START,
        end_s=data.END,
        publish_interval_s=data.INTERVAL,
        gap_factor=data.GAP_FACTOR,
    )


def _device(report: Report, name: str) -> DeviceReport:
    return next(d for d in report.devices if d.device.dispositivo == name)


def _beyond(device: DeviceReport, field: str) -> dict[str, float]:
    stats = next(s for s in device.fields if s.field == field)
    return {t.level: seconds for t, seconds in stats.beyond}


def test_min_mean_max_per_field() -> None:
    a = _device(_report(), "sensor_001")
    temperature = next(s for s in a.fields if s.field == "temperatura_c")
    values = [v for _, v in data.a_temperatures()]
    assert temperature.count == 1320
    assert temperature.minimum == 20.0
    assert temperature.maximum == 36.0  # the 99 outside the window is not counted
    assert sum(values) == 30626.0
    assert temperature.mean == pytest.approx(30626.0 / 1320, rel=1e-12)
    humidity = next(s for s in a.fields if s.field == "umidade")
    assert (humidity.count, humidity.minimum, humidity.mean, humidity.maximum) == (1320, 60.0, 60.0, 60.0)
    assert humidity.beyond == ()  # no rule for umidade


def test_time_above_each_threshold_is_time_weighted_and_never_spans_a_gap() -> None:
    report = _report()
    assert _beyond(_device(report, "sensor_001"), "temperatura_c") == {"alerta": 855.0, "critico": 355.0}
    # The site-specific rule (20/21) applies to sensor_002 at linha: all 1320 readings x 5 s.
    assert _beyond(_device(report, "sensor_002"), "temperatura_c") == {"alerta": 6600.0, "critico": 6600.0}


def test_planted_gaps_are_found_with_start_and_end() -> None:
    report = _report()
    assert report.gap_limit_s == 15.0
    assert _device(report, "sensor_001").gaps == (Gap(data.START + 1795, data.START + 2400),)
    assert _device(report, "sensor_001").gaps[0].seconds == 605.0
    assert _device(report, "sensor_002").gaps == (Gap(data.START, data.START + 600),)


def test_alerts_raised_are_counted_from_status_changes() -> None:
    report = _report()
    assert _device(report, "sensor_001").alerts == {"alerta": 1, "critico": 2}
    assert _device(report, "sensor_002").alerts == {"alerta": 0, "critico": 0}


def test_devices_grouped_by_site_in_order() -> None:
    report = _report()
    assert [(site, [d.device.dispositivo for d in devices]) for site, devices in report.sites()] == [
        ("linha", ["sensor_002"]),
        ("sala", ["sensor_001"]),
    ]
    assert _device(report, "sensor_001").readings == 1320


def test_a_device_with_status_changes_only_is_one_whole_window_gap() -> None:
    point = StatusPoint(data.START + 10, data.A, "critico", None)
    report = build_report(
        [],
        [point],
        data.RULES,
        start_s=data.START,
        end_s=data.END,
        publish_interval_s=data.INTERVAL,
        gap_factor=data.GAP_FACTOR,
    )
    (device,) = report.devices
    assert device.fields == ()
    assert device.gaps == (Gap(data.START, data.END),)
    assert device.alerts == {"alerta": 0, "critico": 1}


def test_seconds_beyond_below_direction_and_window_end() -> None:
    low = Threshold("alerta", 5.0, "below")
    # 4 at t=0 holds 10 s to t=10; 6 at 10 is not below; 3 at 20 holds until the window's end at 22.
    assert (
        seconds_beyond([0.0, 10.0, 20.0], [4.0, 6.0, 3.0], low, end_s=22.0, publish_interval_s=5.0, gap_limit_s=15.0)
        == 12.0
    )
    # A value exactly on the threshold is not beyond it.
    assert seconds_beyond([0.0, 5.0], [5.0, 5.0], low, end_s=100.0, publish_interval_s=5.0, gap_limit_s=15.0) == 0.0


def test_find_gaps_limits_are_strict() -> None:
    # 15 s apart is not a gap at a 15 s limit; 15.5 s is.
    assert find_gaps([0.0, 15.0, 30.5], start_s=0.0, end_s=40.0, gap_limit_s=15.0) == [Gap(15.0, 30.5)]
    assert find_gaps([], start_s=0.0, end_s=10.0, gap_limit_s=15.0) == []


def test_count_alerts_only_counts_escalations() -> None:
    points = [
        StatusPoint(1.0, data.A, "critico", "alerta"),
        StatusPoint(2.0, data.A, "alerta", "critico"),
        StatusPoint(3.0, data.A, "normal", "alerta"),
        StatusPoint(4.0, data.A, "alerta", None),
    ]
    assert count_alerts(points) == {"alerta": 1, "critico": 1}
