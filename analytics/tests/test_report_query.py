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
    BucketNotFound,
    InfluxSource,
    QueryError,
    container_points_from_records,
    container_states_flux,
    flux_string,
    readings_flux,
    records_of,
    samples_from_records,
    status_flux,
    statuses_from_records,
    usage_flux,
    usage_from_records,
)
from mov_analytics.report.records import ContainerPoint, Device, Sample, StatusPoint, UsageTotals

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


def test_container_states_flux_text_keeps_the_first_and_last_point_of_each_state() -> None:
    assert container_states_flux("mov_infra", START, STOP) == (
        'states = from(bucket: "mov_infra")\n'
        "  |> range(start: 2026-11-16T00:00:00Z, stop: 2026-11-23T00:00:00Z)\n"
        '  |> filter(fn: (r) => r._measurement == "docker_container_status")\n'
        '  |> filter(fn: (r) => r._field == "container_id" or r._field == "restart_count")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> group(columns: ["container_name", "container_id", "restart_count", "container_status"])\n'
        '  |> sort(columns: ["_time"])\n'
        'union(tables: [states |> first(column: "container_id"), states |> last(column: "container_id")])\n'
        '  |> keep(columns: ["_time", "container_name", "container_id", "restart_count", "container_status"])\n'
    )


def test_usage_flux_text_reduces_each_resource_in_influxdb() -> None:
    assert usage_flux("mov_infra", START, STOP) == (
        'from(bucket: "mov_infra")\n'
        "  |> range(start: 2026-11-16T00:00:00Z, stop: 2026-11-23T00:00:00Z)\n"
        '  |> filter(fn: (r) => (r._measurement == "docker_container_cpu" and r._field == "usage_percent"'
        ' and r.cpu == "cpu-total" and r.container_status == "running")\n'
        '      or (r._measurement == "docker_container_mem" and r._field == "usage"'
        ' and r.container_status == "running")\n'
        '      or (r._measurement == "cpu" and r._field == "usage_active" and r.cpu == "cpu-total")\n'
        '      or (r._measurement == "mem" and r._field == "used_percent")\n'
        '      or (r._measurement == "disk" and r._field == "used_percent"))\n'
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
        '  |> keep(columns: ["_measurement", "container_name", "path", "count", "sum", "max", "last"])\n'
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


def test_flux_table_records_map_to_container_points() -> None:
    table = _table(
        {
            "_time": START,
            "container_name": "mov-analytics-1",
            "container_id": "a1",
            "restart_count": 2,
            "container_status": "running",
        },
        {
            "_time": START,
            "container_name": "mov-grafana-1",
            "container_id": "g1",
            "restart_count": None,
            "container_status": "exited",
        },
        {"_time": START, "container_name": None, "container_id": "x", "restart_count": 0, "container_status": "dead"},
    )
    assert list(container_points_from_records(records_of([table]))) == [
        ContainerPoint(START.timestamp(), "mov-analytics-1", "a1", 2, "running")
    ]


def test_flux_table_records_map_to_usage_totals_by_kind_and_subject() -> None:
    def row(measurement: str, **values: object) -> dict[str, Any]:
        return {"_measurement": measurement, "count": 10, "sum": 50.0, "max": 9.0, "last": 4.0, **values}

    table = _table(
        row("docker_container_cpu", container_name="mov-analytics-1", path=None),
        row("docker_container_mem", container_name="mov-analytics-1", sum=5_000_000, max=900_000, last=400_000),
        row("cpu", container_name=None),
        row("mem"),
        row("disk", path="/"),
        row("diskio", name="sda"),  # not a series the report reads
        row("disk", path="/boot", count=None),
    )
    assert list(usage_from_records(records_of([table]))) == [
        UsageTotals("container_cpu", "mov-analytics-1", 10, 50.0, 9.0, 4.0),
        UsageTotals("container_memory", "mov-analytics-1", 10, 5e6, 9e5, 4e5),
        UsageTotals("host_cpu", "", 10, 50.0, 9.0, 4.0),
        UsageTotals("host_memory", "", 10, 50.0, 9.0, 4.0),
        UsageTotals("disk", "/", 10, 50.0, 9.0, 4.0),
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
_CONTAINERS_CSV = """#datatype,string,long,dateTime:RFC3339,string,string,long,string
#group,false,false,false,true,true,true,true
#default,_result,,,,,,
,result,table,_time,container_name,container_id,restart_count,container_status
,,0,2026-11-16T00:00:05Z,mov-analytics-1,a1,0,running
,,1,2026-11-17T00:00:25Z,mov-analytics-1,a1,1,running

"""
_USAGE_CSV = """#datatype,string,long,string,string,string,long,double,double,double
#group,false,false,true,true,true,false,false,false,false
#default,_result,,,,,,,,
,result,table,_measurement,container_name,path,count,sum,max,last
,,0,docker_container_cpu,mov-analytics-1,,100,250,40,1
,,1,disk,,/,60480,4233600,71.25,70.5

"""


class _FakeInflux(ThreadingHTTPServer):
    queries: list[dict[str, Any]]
    status: int
    missing: set[str]  # buckets answered 404, as InfluxDB answers for a bucket it has not (or the token cannot read)


def _answer(query: str) -> str:
    if "docker_container_status" in query:
        return _CONTAINERS_CSV
    if "reduce(" in query:
        return _USAGE_CSV
    return _STATUS_CSV if "pivot" in query else _READINGS_CSV


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
            missing = [b for b in server.missing if f"from(bucket: {flux_string(b)})" in body["query"]]
            if missing:
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                message = f"failed to initialize execute state: could not find bucket {flux_string(missing[0])}"
                self.wfile.write(json.dumps({"code": "not found", "message": message}).encode())
                return
            answer = _answer(body["query"])
            self.send_response(200)
            self.send_header("Content-Type", "text/csv; charset=utf-8")
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _FakeInflux(("127.0.0.1", 0), Handler)
    server.queries = []
    server.status = 200
    server.missing = set()
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


def test_source_streams_the_infrastructure_queries(influx: _FakeInflux) -> None:
    source = _source(influx)
    try:
        points = list(source.container_states("mov_infra", START, STOP))
        totals = list(source.usage("mov_infra", START, STOP))
    finally:
        source.close()
    day = START.timestamp()
    assert points == [
        ContainerPoint(day + 5, "mov-analytics-1", "a1", 0, "running"),
        ContainerPoint(day + 86_425, "mov-analytics-1", "a1", 1, "running"),
    ]
    assert totals == [
        UsageTotals("container_cpu", "mov-analytics-1", 100, 250.0, 40.0, 1.0),
        UsageTotals("disk", "/", 60_480, 4_233_600.0, 71.25, 70.5),
    ]
    assert [q["query"] for q in influx.queries] == [
        container_states_flux("mov_infra", START, STOP),
        usage_flux("mov_infra", START, STOP),
    ]


def test_a_bucket_influxdb_has_not_is_its_own_error(influx: _FakeInflux) -> None:
    influx.missing = {"mov_infra"}
    source = _source(influx)
    try:
        with pytest.raises(BucketNotFound) as error:
            list(source.container_states("mov_infra", START, STOP))
        assert str(error.value) == 'failed to initialize execute state: could not find bucket "mov_infra"'
        assert len(list(source.readings(START, STOP))) == 2  # the other buckets still answer
    finally:
        source.close()
