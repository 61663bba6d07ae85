"""The report's reads from InfluxDB: Flux text, and FluxRecords mapped to plain records.

Readings: measurement ``influxdb.readings_measurement`` (Telegraf's ``mov_leituras``) in ``report.readings_bucket``.
Status changes: measurement ``influxdb.status_measurement`` in ``influxdb.bucket`` (where the worker writes them),
fields ``status``/``change``/``previous`` pivoted into one row per point, heartbeats (``change=false``) left out.
Records are streamed (``query_stream``): a week of 5 s readings is far more than the container's memory would
hold as FluxRecord objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from influxdb_client.client.flux_table import FluxRecord, FluxTable
from influxdb_client.client.influxdb_client import InfluxDBClient

from ..config import Config
from .records import Device, Sample, StatusPoint

TAGS = ("localizacao", "cliente", "dispositivo", "tipo")


class QueryError(Exception):
    """InfluxDB did not answer the report's query (unreachable, refused the token, bad request)."""


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


def records_of(tables: Iterable[FluxTable]) -> Iterator[FluxRecord]:
    for table in tables:
        yield from table.records


class InfluxSource:
    """The two queries against the worker's InfluxDB settings (url, org, token, CA, timeout)."""

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
            raise QueryError(f"{type(exc).__name__}: {exc}") from None

    def readings(self, start: datetime, stop: datetime) -> Iterator[Sample]:
        c = self._cfg
        flux = readings_flux(c.report.readings_bucket, c.influxdb.readings_measurement, c.report.fields, start, stop)
        return samples_from_records(self._stream(flux))

    def statuses(self, start: datetime, stop: datetime) -> Iterator[StatusPoint]:
        flux = status_flux(self._cfg.influxdb.bucket, self._cfg.influxdb.status_measurement, start, stop)
        return statuses_from_records(self._stream(flux))

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
