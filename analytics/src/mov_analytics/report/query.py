"""The report's reads from InfluxDB: Flux text, and FluxRecords mapped to plain records.

Readings: measurement ``influxdb.readings_measurement`` (Telegraf's ``mov_leituras``) in ``report.readings_bucket``.
Status changes: measurement ``influxdb.status_measurement`` in ``influxdb.bucket`` (where the worker writes them),
fields ``status``/``change``/``previous`` pivoted into one row per point, heartbeats (``change=false``) left out.
Infrastructure (``report.infra_bucket``, Telegraf's cpu, mem, disk and docker inputs): each container's states
(first and last point of each id, restart count and status) and, per container, the host and each mount point,
the count, sum, maximum and latest value of the week's samples, reduced in InfluxDB.
Records are streamed (``query_stream``): a week of 5 s readings is far more than the container's memory would
hold as FluxRecord objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from influxdb_client.client.flux_table import FluxRecord, FluxTable
from influxdb_client.client.influxdb_client import InfluxDBClient

from ..config import Config
from .records import ContainerPoint, Device, Sample, StatusPoint, UsageTotals

TAGS = ("localizacao", "cliente", "dispositivo", "tipo")


class QueryError(Exception):
    """InfluxDB did not answer the report's query (unreachable, refused the token, bad request)."""


class BucketNotFound(QueryError):
    """InfluxDB answered 404: no such bucket, or none the token may read (influxdata/influxdb v2.7.11
    query/stdlib/influxdata/influxdb/operators.go, ``LookupBucketID``: codes.NotFound)."""


def flux_string(text: str) -> str:
    """A Flux string literal: backslash, double quote and ``${`` (interpolation) escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def flux_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a time zone-aware datetime is needed")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def readings_flux(bucket: str, measurement: str, fields: Sequence[str], start: datetime, stop: datetime) -> str:
    field_test = " or ".join(f"r._field == {flux_string(f)}" for f in fields)
    columns = ", ".join(flux_string(c) for c in ("_time", "_field", "_value", *TAGS))
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(start)}, stop: {flux_time(stop)})\n"
        f"  |> filter(fn: (r) => r._measurement == {flux_string(measurement)})\n"
        f"  |> filter(fn: (r) => {field_test})\n"
        f"  |> keep(columns: [{columns}])\n"
    )


def status_flux(bucket: str, measurement: str, start: datetime, stop: datetime) -> str:
    columns = ", ".join(flux_string(c) for c in ("_time", "status", "previous", "change", *TAGS))
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(start)}, stop: {flux_time(stop)})\n"
        f"  |> filter(fn: (r) => r._measurement == {flux_string(measurement)})\n"
        '  |> filter(fn: (r) => r._field == "status" or r._field == "change" or r._field == "previous")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        "  |> filter(fn: (r) => r.change == true)\n"
        f"  |> keep(columns: [{columns}])\n"
        '  |> sort(columns: ["_time"])\n'
    )


# Telegraf 1.32.3's names (influxdata/telegraf, v1.32.3):
# docker_container_status's fields container_id and restart_count, tags container_name and container_status:
# plugins/inputs/docker/docker.go (gatherContainerInspect).
CONTAINER_STATES = ("_time", "container_name", "container_id", "restart_count", "container_status")


def container_states_flux(bucket: str, start: datetime, stop: datetime) -> str:
    """The first and the last point of each (container, id, restart count, status) in the window."""
    columns = ", ".join(flux_string(c) for c in CONTAINER_STATES)
    return (
        f"states = from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(start)}, stop: {flux_time(stop)})\n"
        '  |> filter(fn: (r) => r._measurement == "docker_container_status")\n'
        '  |> filter(fn: (r) => r._field == "container_id" or r._field == "restart_count")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> group(columns: ["container_name", "container_id", "restart_count", "container_status"])\n'
        '  |> sort(columns: ["_time"])\n'
        'union(tables: [states |> first(column: "container_id"), states |> last(column: "container_id")])\n'
        f"  |> keep(columns: [{columns}])\n"
    )


# The series each total is of: the kind the report knows it by, the tag naming its subject, the filter.
# docker_container_cpu usage_percent (tag cpu=cpu-total) and docker_container_mem usage (bytes), both tagged with the
# container's container_status: plugins/inputs/docker/docker.go (parseContainerStats gets gatherContainerInspect's
# tags); cpu usage_active (report_active, tag cpu=cpu-total): plugins/inputs/cpu/cpu.go; mem used_percent:
# plugins/inputs/mem/mem.go; disk used_percent, tag path: plugins/inputs/disk/disk.go.
USAGE_SERIES = {
    "docker_container_cpu": (
        "container_cpu",
        "container_name",
        'r._field == "usage_percent" and r.cpu == "cpu-total" and r.container_status == "running"',
    ),
    "docker_container_mem": (
        "container_memory",
        "container_name",
        'r._field == "usage" and r.container_status == "running"',
    ),
    "cpu": ("host_cpu", "", 'r._field == "usage_active" and r.cpu == "cpu-total"'),
    "mem": ("host_memory", "", 'r._field == "used_percent"'),
    "disk": ("disk", "path", 'r._field == "used_percent"'),
}
USAGE_COLUMNS = ("_measurement", "container_name", "path", "count", "sum", "max", "last")


def usage_flux(bucket: str, start: datetime, stop: datetime) -> str:
    """Per container (while running), for the host and per mount point: count, sum, max and latest value."""
    series = "\n      or ".join(
        f"(r._measurement == {flux_string(name)} and {test})" for name, (_, _, test) in USAGE_SERIES.items()
    )
    columns = ", ".join(flux_string(c) for c in USAGE_COLUMNS)
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(start)}, stop: {flux_time(stop)})\n"
        f"  |> filter(fn: (r) => {series})\n"
        '  |> group(columns: ["_measurement", "container_name", "path"])\n'
        "  |> reduce(\n"
        "      identity: {count: 0, sum: 0.0, max: 0.0, last: 0.0, last_time: time(v: 0)},\n"
        "      fn: (r, accumulator) => {\n"
        "          value = float(v: r._value)\n"
        "          newer = r._time >= accumulator.last_time\n"
        "          return {\n"
        "              count: accumulator.count + 1,\n"
        "              sum: accumulator.sum + value,\n"
        "              max: if accumulator.count == 0 or value > accumulator.max then value else accumulator.max,\n"
        "              last: if newer then value else accumulator.last,\n"
        "              last_time: if newer then r._time else accumulator.last_time,\n"
        "          }\n"
        "      },\n"
        "  )\n"
        f"  |> keep(columns: [{columns}])\n"
    )


def _device(values: dict[str, Any]) -> Device:
    return Device(*(str(values.get(tag) or "") for tag in TAGS))


def _seconds(moment: object) -> float:
    if not isinstance(moment, datetime):
        raise QueryError(f"a record without a time: {moment!r}")
    return moment.timestamp()


def samples_from_records(records: Iterable[FluxRecord]) -> Iterator[Sample]:
    """One Sample per record with a numeric value (anything else is not a reading and is skipped)."""
    for record in records:
        values: dict[str, Any] = record.values
        value = values.get("_value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        yield Sample(_seconds(values.get("_time")), _device(values), str(values.get("_field")), float(value))


def statuses_from_records(records: Iterable[FluxRecord]) -> Iterator[StatusPoint]:
    for record in records:
        values: dict[str, Any] = record.values
        status = values.get("status")
        if not isinstance(status, str):
            continue
        previous = values.get("previous")
        yield StatusPoint(
            _seconds(values.get("_time")),
            _device(values),
            status,
            previous if isinstance(previous, str) and previous else None,
        )


def container_points_from_records(records: Iterable[FluxRecord]) -> Iterator[ContainerPoint]:
    for record in records:
        values: dict[str, Any] = record.values
        name, count = values.get("container_name"), values.get("restart_count")
        if not isinstance(name, str) or not name or isinstance(count, bool) or not isinstance(count, int):
            continue
        yield ContainerPoint(
            _seconds(values.get("_time")),
            name,
            str(values.get("container_id") or ""),
            count,
            str(values.get("container_status") or ""),
        )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def usage_from_records(records: Iterable[FluxRecord]) -> Iterator[UsageTotals]:
    for record in records:
        values: dict[str, Any] = record.values
        series = USAGE_SERIES.get(str(values.get("_measurement")))
        count, total, maximum, latest = (_number(values.get(k)) for k in ("count", "sum", "max", "last"))
        if series is None or count is None or total is None or maximum is None or latest is None:
            continue
        kind, subject_tag, _ = series
        subject = str(values.get(subject_tag) or "") if subject_tag else ""
        yield UsageTotals(kind, subject, int(count), total, maximum, latest)


def records_of(tables: Iterable[FluxTable]) -> Iterator[FluxRecord]:
    for table in tables:
        yield from table.records


def _error_message(body: object) -> str:
    """InfluxDB's own words from an error answer's JSON body ({"code": ..., "message": ...})."""
    try:
        message = json.loads(body if isinstance(body, (str, bytes)) else "")["message"]
    except (ValueError, KeyError, TypeError):
        return "404 Not Found"
    return str(message)


class InfluxSource:
    """The queries against the worker's InfluxDB settings (url, org, token, CA, timeout)."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        influx = cfg.influxdb
        self._client = InfluxDBClient(
            url=influx.url,
            token=influx.token,
            org=influx.org,
            timeout=influx.timeout_ms,
            ssl_ca_cert=influx.ca_file or None,
        )
        self._query_api = self._client.query_api()

    def _stream(self, flux: str) -> Iterator[FluxRecord]:
        try:
            yield from self._query_api.query_stream(flux, org=self._cfg.influxdb.org)
        except Exception as exc:  # the client raises ApiException, urllib3 and socket errors alike
            if getattr(exc, "status", None) == 404:
                raise BucketNotFound(_error_message(getattr(exc, "body", None))) from None
            raise QueryError(f"{type(exc).__name__}: {exc}") from None

    def readings(self, start: datetime, stop: datetime) -> Iterator[Sample]:
        c = self._cfg
        flux = readings_flux(c.report.readings_bucket, c.influxdb.readings_measurement, c.report.fields, start, stop)
        return samples_from_records(self._stream(flux))

    def statuses(self, start: datetime, stop: datetime) -> Iterator[StatusPoint]:
        flux = status_flux(self._cfg.influxdb.bucket, self._cfg.influxdb.status_measurement, start, stop)
        return statuses_from_records(self._stream(flux))

    def container_states(self, bucket: str, start: datetime, stop: datetime) -> Iterator[ContainerPoint]:
        return container_points_from_records(self._stream(container_states_flux(bucket, start, stop)))

    def usage(self, bucket: str, start: datetime, stop: datetime) -> Iterator[UsageTotals]:
        return usage_from_records(self._stream(usage_flux(bucket, start, stop)))

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
