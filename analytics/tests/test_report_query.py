"""The report's query layer: the Flux text, FluxTable records mapped to plain records, and the streamed queries
against a stand-in for InfluxDB's /api/v2/query (annotated CSV, as the server answers)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from influxdb_client.client.flux_table import FluxRecord, FluxTable

from mov_analytics.config import from_mapping
from mov_analytics.report.query import (
    InfluxSource,
    QueryError,
    flux_string,
    readings_flux,
    records_of,
    samples_from_records,
    status_flux,
    statuses_from_records,
)
from mov_analytics.report.records import Device, Sample, StatusPoint

START = datetime(2026, 11, 16, tzinfo=UTC)
STOP = START + timedelta(days=7)
SENSOR = Device("sala", "industria_abc", "sensor_001", "temperatura")


def test_readings_flux_text() -> None:
    assert readings_flux("mov_dados", "mov_leituras", ["temperatura_c", "umidade"], START, STOP) == (
        'from(bucket: "mov_dados")\n'
        "  |> range(start: 2026-11-16T00:00:00Z, stop: 2026-11-23T00:00:00Z)\n"
        '  |> filter(fn: (r) => r._measurement == "mov_leituras")\n'
        '  |> filter(fn: (r) => r._field == "temperatura_c" or r._field == "umidade")\n'
        '  |> keep(columns: ["_time", "_field", "_value", "localizacao", "cliente", "dispositivo", "tipo"])\n'
    )


def test_status_flux_text_reads_changes_only() -> None:
    assert status_flux("mov_status", "mov_status", START, STOP) == (
        'from(bucket: "mov_status")\n'
        "  |> range(start: 2026-11-16T00:00:00Z, stop: 2026-11-23T00:00:00Z)\n"
        '  |> filter(fn: (r) => r._measurement == "mov_status")\n'
        '  |> filter(fn: (r) => r._field == "status" or r._field == "change" or r._field == "previous")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        "  |> filter(fn: (r) => r.change == true)\n"
        '  |> keep(columns: ["_time", "status", "previous", "change", "localizacao", "cliente", "dispositivo",'
        ' "tipo"])\n'
        '  |> sort(columns: ["_time"])\n'
    )


def test_flux_strings_are_escaped_and_times_are_utc() -> None:
    assert flux_string('a"b\\c${x}') == '"a\\"b\\\\c\\${x}"'
    local = datetime(2026, 11, 16, 2, 0, tzinfo=timezone(timedelta(hours=1)))
    assert "range(start: 2026-11-16T01:00:00Z" in readings_flux("b", "m", ["f"], local, STOP)
    with pytest.raises(ValueError, match="time zone"):
        readings_flux("b", "m", ["f"], datetime(2026, 11, 16), STOP)


def _table(*rows: dict[str, Any]) -> FluxTable:
    table = FluxTable()
    table.records.extend(FluxRecord(table=0, values=row) for row in rows)
    return table


def test_flux_table_records_map_to_samples() -> None:
    tags = {"cliente": "industria_abc", "dispositivo": "sensor_001", "localizacao": "sala", "tipo": "temperatura"}
    tables = [
        _table(
            {"result": "_result", "table": 0, "_time": START, "_field": "temperatura_c", "_value": 31.5, **tags},
            {
                "result": "_result",
                "table": 0,
                "_time": START + timedelta(seconds=5),
                "_field": "temperatura_c",
                "_value": 32,
                **tags,
            },
        ),
        _table(
            {"result": "_result", "table": 1, "_time": START, "_field": "umidade", "_value": None, **tags},
            {"result": "_result", "table": 1, "_time": START, "_field": "umidade", "_value": "n/a", **tags},
            {
                "result": "_result",
                "table": 1,
                "_time": START,
                "_field": "pressao",
                "_value": 1013.2,
                "cliente": "c",
                "dispositivo": "d",
            },
        ),
    ]
    assert list(samples_from_records(records_of(tables))) == [
        Sample(START.timestamp(), SENSOR, "temperatura_c", 31.5),
        Sample(START.timestamp() + 5, SENSOR, "temperatura_c", 32.0),
        Sample(START.timestamp(), Device("", "c", "d", ""), "pressao", 1013.2),
    ]


def test_flux_table_records_map_to_status_points() -> None:
    tags = {"cliente": "industria_abc", "dispositivo": "sensor_001", "localizacao": "sala", "tipo": "temperatura"}
    table = _table(
        {"_time": START, "status": "alerta", "previous": "normal", "change": True, **tags},
        {"_time": START + timedelta(minutes=1), "status": "critico", "previous": None, "change": True, **tags},
        {"_time": START, "status": None, "change": True, **tags},
    )
    assert list(statuses_from_records(records_of([table]))) == [
        StatusPoint(START.timestamp(), SENSOR, "alerta", "normal"),
        StatusPoint(START.timestamp() + 60, SENSOR, "critico", None),
    ]


_READINGS_CSV = """#datatype,string,long,dateTime:RFC3339,string,double,string,string,string,string
#group,false,false,false,true,false,true,true,true,true
#default,_result,,,,,,,,
,result,table,_time,_field,_value,cliente,dispositivo,localizacao,tipo
,,0,2026-11-16T00:00:00Z,temperatura_c,25.5,industria_abc,sensor_001,sala,temperatura
,,0,2026-11-16T00:00:05Z,temperatura_c,31,industria_abc,sensor_001,sala,temperatura

"""
_STATUS_CSV = """#datatype,string,long,dateTime:RFC3339,string,string,boolean,string,string,string,string
#group,false,false,false,false,false,false,true,true,true,true
#default,_result,,,,,,,,,
,result,table,_time,status,previous,change,cliente,dispositivo,localizacao,tipo
,,0,2026-11-16T00:00:05Z,alerta,normal,true,industria_abc,sensor_001,sala,temperatura

"""


class _FakeInflux(ThreadingHTTPServer):
    queries: list[dict[str, Any]]
    status: int


@pytest.fixture
def influx() -> Iterator[_FakeInflux]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            server: _FakeInflux = self.server  # type: ignore[assignment]
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.queries.append({"path": self.path, "auth": self.headers["Authorization"], **body})
            if server.status != 200:
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"code":"unauthorized","message":"unauthorized access"}')
                return
            answer = _STATUS_CSV if "pivot" in body["query"] else _READINGS_CSV
            self.send_response(200)
            self.send_header("Content-Type", "text/csv; charset=utf-8")
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _FakeInflux(("127.0.0.1", 0), Handler)
    server.queries = []
    server.status = 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _source(server: _FakeInflux) -> InfluxSource:
    cfg = from_mapping(
        {
            "influxdb": {
                "url": f"http://127.0.0.1:{server.server_address[1]}",
                "token": "report-tok",
                "bucket": "mov_status",
            },
            "report": {"readings_bucket": "mov_dados", "fields": ["temperatura_c"]},
        }
    )
    return InfluxSource(cfg)


def test_source_streams_both_queries_with_the_workers_settings(influx: _FakeInflux) -> None:
    source = _source(influx)
    try:
        samples = list(source.readings(START, STOP))
        statuses = list(source.statuses(START, STOP))
    finally:
        source.close()
    assert samples == [
        Sample(START.timestamp(), SENSOR, "temperatura_c", 25.5),
        Sample(START.timestamp() + 5, SENSOR, "temperatura_c", 31.0),
    ]
    assert statuses == [StatusPoint(START.timestamp() + 5, SENSOR, "alerta", "normal")]
    first, second = influx.queries
    assert first["path"].startswith("/api/v2/query?org=mov_industria")
    assert first["auth"] == "Token report-tok"
    assert first["query"] == readings_flux("mov_dados", "mov_leituras", ["temperatura_c"], START, STOP)
    assert second["query"] == status_flux("mov_status", "mov_status", START, STOP)


def test_source_reports_a_refused_token_as_a_query_error(influx: _FakeInflux) -> None:
    influx.status = 401
    source = _source(influx)
    try:
        with pytest.raises(QueryError, match="401"):
            list(source.readings(START, STOP))
    finally:
        source.close()
