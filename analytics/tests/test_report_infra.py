"""The infrastructure section on generated container states and resource totals with known answers
(report_data.py), and what it says when the metrics are off, missing or empty."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import report_data as data

from mov_analytics.report.cli import read_infra
from mov_analytics.report.infra import ContainerReport, InfraSection, Spread, infra_section, restarts
from mov_analytics.report.query import BucketNotFound, QueryError
from mov_analytics.report.records import ContainerPoint, UsageTotals

MIB = data.MIB


def _section() -> InfraSection:
    return infra_section(data.container_points(), data.usage_totals(), bucket=data.INFRA_BUCKET)


def _container(section: InfraSection, name: str) -> ContainerReport:
    return next(c for c in section.containers if c.name == name)


def test_each_container_has_its_status_at_the_end_of_the_week_and_its_restarts() -> None:
    section = _section()
    assert [(c.name, c.status, c.restarts, c.recreated) for c in section.containers] == [
        ("mov-analytics-1", "running", 2, 0),  # restarted twice by its policy
        ("mov-grafana-1", "exited", 0, 0),  # stopped on day 2
        ("mov-influxdb-1", "running", 2, 1),  # recreated: its new container's 1, then one more
        ("mov-mosquitto-1", "running", 0, 0),
        ("mov-telegraf-1", "running", 1, 0),  # a restart by hand set the count back to 0: not counted
    ]
    assert _container(section, "mov-grafana-1").last_seen_s == data.WEEK_END - 5


def test_one_off_containers_are_counted_not_listed() -> None:
    section = _section()
    assert section.one_off_containers == 1
    assert not any("-run-" in c.name or c.name.startswith("0123456789ab_") for c in section.containers)


def test_cpu_and_memory_per_container_and_for_the_host() -> None:
    section = _section()
    assert _container(section, "mov-analytics-1").cpu == Spread(2.5, 40.0)
    assert _container(section, "mov-analytics-1").memory == Spread(50 * MIB, 80 * MIB)
    # The samples of the container compose renamed while recreating it are mov-influxdb-1's.
    assert _container(section, "mov-influxdb-1").cpu == Spread(100 / 40, 9.0)
    assert _container(section, "mov-grafana-1").cpu is None
    assert section.host_cpu == Spread(12.5, 97.0)
    assert section.host_memory == Spread(41.0, 63.0)
    assert [(d.path, d.maximum, d.latest) for d in section.disks] == [("/", 71.25, 70.5), ("/boot", 30.0, 29.0)]


def _point(t: float, cid: str, count: int) -> ContainerPoint:
    return ContainerPoint(t, "c", cid, count, "running")


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([], (0, 0)),
        ([_point(0, "a", 5)], (0, 0)),  # restarts before the week are not the week's
        ([_point(0, "a", 5), _point(1, "a", 5), _point(2, "a", 7)], (2, 0)),
        # Recreated, the new one seen first at 0 then restarted: one restart, one recreation.
        ([_point(0, "a", 5), _point(1, "b", 0), _point(2, "b", 1)], (1, 1)),
        # Recreated twice, in an order the query does not sort.
        ([_point(2, "c", 0), _point(0, "a", 1), _point(1, "b", 3)], (3, 2)),
        # A restart by hand: 4 -> 0 (none), then 0 -> 2.
        ([_point(0, "a", 4), _point(1, "a", 0), _point(2, "a", 2)], (2, 0)),
    ],
)
def test_restarts_are_the_counters_rises_with_recreations_apart(
    points: list[ContainerPoint], expected: tuple[int, int]
) -> None:
    assert restarts(points) == expected


def test_a_week_without_metrics_says_so() -> None:
    section = infra_section([], [UsageTotals("host_cpu", "", 0, 0.0, 0.0, 0.0)], bucket="mov_infra")
    assert section.note == "No infrastructure metrics in mov_infra for the week."
    assert section.containers == () and section.host_cpu is None


class _Source:
    """Stands in for InfluxSource's infrastructure reads."""

    def __init__(self, error: QueryError | None = None) -> None:
        self.error = error
        self.buckets: list[str] = []

    def container_states(self, bucket: str, start: datetime, stop: datetime) -> Iterator[ContainerPoint]:
        self.buckets.append(bucket)
        if self.error is not None:
            raise self.error
        return iter(data.container_points())

    def usage(self, bucket: str, start: datetime, stop: datetime) -> Iterator[UsageTotals]:
        return iter(data.usage_totals())


WEEK = (datetime.fromtimestamp(data.WEEK_START, UTC), datetime.fromtimestamp(data.WEEK_END, UTC))


def _read(bucket: str, source: _Source) -> InfraSection:
    return read_infra(bucket, source, *WEEK)  # type: ignore[arg-type]


def test_metrics_off_is_said_without_a_query() -> None:
    source = _Source()
    section = _read("", source)
    assert section.note.startswith("Infrastructure metrics are off") and source.buckets == []


def test_a_bucket_influxdb_does_not_have_is_said_not_raised() -> None:
    missing = BucketNotFound('failed to initialize execute state: could not find bucket "mov_infra"')
    section = _read("mov_infra", _Source(missing))
    assert section.note.startswith(
        "The infrastructure bucket mov_infra could not be read (failed to initialize execute state: could not find"
        ' bucket "mov_infra"): metrics off, or not readable'
    )
    assert section.containers == ()


def test_other_query_errors_still_fail_the_report() -> None:
    with pytest.raises(QueryError, match="refused"):
        _read("mov_infra", _Source(QueryError("connection refused")))
