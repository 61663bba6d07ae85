"""The e2e job's assertions (tests/e2e/check_platform.py) judge right: the parts that need no real image, here."""

from __future__ import annotations

import json
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import REPO

sys.path.append(str(REPO / "tests" / "e2e"))
import check_platform as cp

# InfluxDB's annotated CSV for `|> group() |> count()` over two tables, as /api/v2/query returns it.
COUNT_CSV = (
    "#group,false,false,true,true,false\r\n#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,long\r\n"
    "#default,_result,,,,\r\n,result,table,_start,_stop,_value\r\n"
    ",,0,1970-01-01T00:00:00Z,2026-11-26T13:00:00Z,12\r\n\r\n"
    "#group,false,false,true,true,false\r\n#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,long\r\n"
    "#default,_result,,,,\r\n,result,table,_start,_stop,_value\r\n"
    ",,1,1970-01-01T00:00:00Z,2026-11-26T13:00:00Z,8\r\n\r\n"
)


def test_flux_values_of_every_table() -> None:
    assert cp.flux_column(COUNT_CSV) == ["12", "8"]
    assert cp.flux_column(COUNT_CSV, "_stop") == ["2026-11-26T13:00:00Z"] * 2
    assert cp.flux_column("") == []
    assert cp.flux_column(COUNT_CSV, "missing") == []


def test_only_the_workers_critical_alert_for_the_device_counts() -> None:
    lines = [
        json.dumps({"kind": "critico", "subject": "industria_abc/sensor_002", "message": "other device"}),
        json.dumps({"receiver": "mov-webhook", "status": "firing", "alerts": []}),  # Grafana's
        json.dumps({"kind": "recovery", "subject": "industria_abc/sensor_001"}),
        "not json",
    ]
    assert cp.critical_alerts(lines, "industria_abc/sensor_001") == []
    lines.append(json.dumps({"kind": "critico", "subject": "industria_abc/sensor_001", "message": "36.5"}))
    assert len(cp.critical_alerts(lines, "industria_abc/sensor_001")) == 1


@pytest.mark.parametrize(
    ("line", "is_error"),
    [
        ("2026-11-26T13:00:00Z E! [inputs.mqtt_consumer] Error in plugin: parsing JSON: invalid character", True),
        ("2026-11-26T13:00:00Z E! [parsers.json_v2] Invalid path", True),
        ("2026-11-26T13:00:00Z E! [outputs.influxdb_v2] When writing to [http://influxdb:8086]: 401", False),
        ("2026-11-26T13:00:00Z I! Loaded inputs: mqtt_consumer", False),
        ("2026-11-26T13:00:00Z W! [inputs.mqtt_consumer] parse warning that is not an error", False),
    ],
)
def test_telegraf_parse_errors(line: str, is_error: bool) -> None:
    assert cp.telegraf_parse_errors(line) == ([line] if is_error else [])


def test_readings_cross_the_critical_threshold_where_asked() -> None:
    device = {"client": "industria_abc", "name": "sensor_001", "site": "sala", "type": "temperatura"}
    rows = cp.readings(device, datetime(2026, 11, 26, 13, 0, 0, tzinfo=UTC), 10, critical_at=(5, 6))
    temps = [r["fields"]["temperatura_c"] for r in rows]
    assert [i for i, t in enumerate(temps) if t > 35] == [5, 6]
    assert rows[0]["timestamp"] == "2026-11-26T13:00:00Z" and rows[9]["timestamp"] == "2026-11-26T13:00:09Z"
    assert rows[0]["tags"] == {
        "dispositivo": "sensor_001",
        "cliente": "industria_abc",
        "localizacao": "sala",
        "tipo": "temperatura",
    }


def test_report_fails_on_any_failed_check_and_on_no_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cp.Report().summary() == 1
    report = cp.Report()
    report.check("a", True)
    assert report.summary() == 0
    report.check("b", False, "why")
    assert report.summary() == 1
    assert "FAIL b: why" in capsys.readouterr().out


def test_wait_until_gives_the_last_answer_when_time_is_up() -> None:
    answers = iter([(False, "1"), (False, "2"), (True, "3")])
    assert cp.wait_until(lambda: next(answers), timeout=5, interval=0) == (True, "3")
    assert cp.wait_until(lambda: (False, "never"), timeout=0, interval=0) == (False, "never")


def test_the_history_counted_ends_before_the_window_the_task_completed_last() -> None:
    """The history task, run at 14:00:00, writes the window 13:00-14:00 with the time 13:00: counts taken at 14:20
    stop before 13:00, so that run (late or not) and the one at 15:00 change nothing in what they compare."""
    hour = cp.timedelta(hours=1)
    assert cp.history_stop(datetime(2026, 12, 7, 14, 20, 5, tzinfo=UTC), hour) == "2026-12-07T13:00:00Z"
    assert cp.history_stop(datetime(2026, 12, 7, 14, 0, 0, tzinfo=UTC), hour) == "2026-12-07T13:00:00Z"
    assert cp.history_stop(datetime(2026, 12, 7, 0, 59, 59, tzinfo=UTC), hour) == "2026-12-06T23:00:00Z"


def test_receiver_records_each_post(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "alerts.jsonl"
    ready = threading.Event()
    thread = threading.Thread(target=cp.serve, args=(port, out, ready, 10.0), daemon=True)
    thread.start()
    assert ready.wait(5)
    for body in ({"kind": "critico", "subject": "a/b"}, {"kind": "recovery", "subject": "a/b"}):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/alert",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    assert len(cp.critical_alerts(lines, "a/b")) == 1


# --- publish(): a device's TLS publish against a real mosquitto on loopback (the e2e job's broker is the image's) ---


def _wait_listening(port: int, timeout_s: float) -> None:
    """Until something accepts connections on 127.0.0.1:port (a server the test started), or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)


def _sh(*args: str, cwd: Path) -> None:
    subprocess.run(list(args), cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """mosquitto with TLS on a free loopback port; a device account; the ACL lets it write its own subtree only."""
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto is not installed (apt-get install mosquitto; .ci/run installs it)")
    d = tmp_path_factory.mktemp("broker")
    for name in ("ca", "other-ca"):
        _sh(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    _sh(
        "openssl",
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _sh(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
        cwd=d,
    )
    _sh("mosquitto_passwd", "-c", "-b", "passwd", "industria_abc/sensor_001", "device-password", cwd=d)
    (d / "acl").write_text("pattern write mov/dados/%u/#\npattern read mov/dados/%u/#\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    (d / "mosquitto.conf").write_text(
        f"user root\nper_listener_settings false\nallow_anonymous false\npassword_file {d}/passwd\nacl_file {d}/acl\n"
        f"listener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    )
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_listening(port, 10)
        yield port, d / "ca.pem", d / "other-ca.pem"
    finally:
        broker.terminate()
        broker.wait(10)


DEVICE = {"client": "industria_abc", "name": "sensor_001", "site": "sala", "type": "temperatura"}


def test_publish_as_a_device_over_tls(tls_broker: tuple[int, Path, Path]) -> None:
    port, ca, _ = tls_broker
    rows = cp.readings(DEVICE, datetime.now(UTC), 3, critical_at=(1,))
    cp.publish(
        "localhost", port, ca, "industria_abc/sensor_001", "device-password", "mov/dados/industria_abc/sensor_001", rows
    )


def test_publish_sends_a_mapping_as_json_and_a_string_as_it_is(tls_broker: tuple[int, Path, Path]) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    port, ca, _ = tls_broker
    topic = "mov/dados/industria_abc/sensor_001/estado"
    received: list[bytes] = []
    subscribed = threading.Event()
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="listener", protocol=mqtt.MQTTv5)
    listener.username_pw_set("industria_abc/sensor_001", "device-password")
    listener.tls_set_context(ssl.create_default_context(cafile=str(ca)))
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.on_message = lambda _c, _u, message: received.append(bytes(message.payload))
    listener.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
    listener.connect("localhost", port)
    listener.loop_start()
    try:
        assert subscribed.wait(10)
        cp.publish(
            "localhost", port, ca, "industria_abc/sensor_001", "device-password", topic, ["36000 seconds", {"v": 1}]
        )
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.disconnect()
        listener.loop_stop()
    assert received == [b"36000 seconds", b'{"v": 1}']


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"topic": "mov/dados/industria_abc/sensor_002"}, "the broker refused a message"),
        ({"password": "wrong"}, "the broker did not accept industria_abc/sensor_001"),
        ({"ca": "other"}, "CERTIFICATE_VERIFY_FAILED"),
    ],
    ids=["acl", "password", "certificate"],
)
def test_publish_fails_when_the_broker_refuses(
    tls_broker: tuple[int, Path, Path], change: dict[str, str], expected: str
) -> None:
    port, ca, other_ca = tls_broker
    # The ACL's refusal has its own type: the gateway check expects it for another plant's topic.
    with pytest.raises(cp.PublishRefused if "topic" in change else Exception, match=expected):
        cp.publish(
            "localhost",
            port,
            other_ca if change.get("ca") else ca,
            "industria_abc/sensor_001",
            change.get("password", "device-password"),
            change.get("topic", "mov/dados/industria_abc/sensor_001"),
            cp.readings(DEVICE, datetime.now(UTC), 1, critical_at=()),
        )


def test_only_grafanas_firing_alert_of_the_rule_for_the_device_counts() -> None:
    def body(status: str, alertname: str, device: str) -> str:
        return json.dumps(
            {
                "receiver": "mov-contacts",
                "status": status,
                "alerts": [
                    {
                        "status": status,
                        "labels": {"alertname": alertname, "dispositivo": device, "grafana_folder": "MOV"},
                    }
                ],
            }
        )

    lines = [
        json.dumps({"kind": "critico", "subject": "industria_abc/sensor_001"}),  # the worker's
        body("resolved", "Temperatura crítica", "sensor_001"),
        body("firing", "Disco quase cheio", "sensor_001"),
        body("firing", "Temperatura crítica", "sensor_002"),
        "not json",
    ]
    assert cp.grafana_alerts(lines, "Temperatura crítica", "sensor_001") == []
    lines.append(body("firing", "Temperatura crítica", "sensor_001"))
    assert len(cp.grafana_alerts(lines, "Temperatura crítica", "sensor_001")) == 1


def test_rule_health_reads_every_group() -> None:
    evaluated = "2026-12-06T02:00:00Z"
    answer = {
        "status": "success",
        "data": {
            "groups": [
                {
                    "name": "mov-temperatura",
                    "rules": [
                        {"name": "Temperatura crítica", "health": "ok", "lastError": "", "lastEvaluation": evaluated},
                        {"name": "Container reiniciando", "health": "ok", "lastEvaluation": "0001-01-01T00:00:00Z"},
                    ],
                },
                {
                    "name": "mov-infraestrutura",
                    "rules": [
                        {
                            "name": "Disco quase cheio",
                            "health": "error",
                            "lastError": "input data must be a wide series",
                            "lastEvaluation": evaluated,
                        }
                    ],
                },
            ]
        },
    }
    assert cp.rule_health(answer) == {
        "Temperatura crítica": ("ok", ""),
        "Container reiniciando": ("not evaluated", ""),
        "Disco quase cheio": ("error", "input data must be a wide series"),
    }
    assert cp.rule_health({}) == {}


def test_firing_needs_an_alerting_alert_of_the_rule_with_the_labels() -> None:
    def answer(state: str, labels: dict[str, str]) -> dict[str, object]:
        alert = {"labels": {"alertname": "Container parado", **labels}, "state": state}
        rules = [{"name": "Container parado", "state": "firing", "alerts": [alert]}, {"name": "Backup atrasado"}]
        return {"data": {"groups": [{"name": "mov-plataforma", "rules": rules}]}}

    stopped = {"container_name": "mov-analytics-1"}
    assert cp.firing(answer("Alerting", stopped), "Container parado", stopped)
    assert cp.firing(answer("Alerting (NoData)", stopped), "Container parado", {})
    assert not cp.firing(answer("Pending", stopped), "Container parado", stopped)
    assert not cp.firing(answer("Normal", stopped), "Container parado", stopped)
    assert not cp.firing(answer("Alerting", {"container_name": "mov-grafana-1"}), "Container parado", stopped)
    assert not cp.firing(answer("Alerting", stopped), "Backup atrasado", {})
    assert not cp.firing({}, "Container parado", {})


def test_a_panels_flux_gets_the_dashboard_variables_grafana_would_fill_in() -> None:
    query = (
        'from(bucket: "mov_infra")\n  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)"
    )
    assert cp.panel_flux(query) == (
        'from(bucket: "mov_infra")\n  |> range(start: -1h, stop: now())\n'
        "  |> aggregateWindow(every: 1m, fn: mean, createEmpty: false)"
    )
    assert "v." not in cp.panel_flux(query, "-6h", "5m")


def test_pdf_text_reads_back_what_the_reports_writer_put_on_the_page() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=9)
    pdf.multi_cell(0, 5, "industria_abc / sensor_001 (temperatura)", new_x="LMARGIN", new_y="NEXT")
    for cell in ("temperatura_c", "10", "22.00", "36.50"):
        pdf.cell(20, 5, cell, border=1)
    text = cp.pdf_text(bytes(pdf.output())).split("\n")
    assert "industria_abc / sensor_001 (temperatura)" in text
    cells = ["temperatura_c", "10", "22.00", "36.50"]
    assert [t for t in text if t in cells] == cells
    assert cp.pdf_text(b"%PDF-1.4 no streams") == ""


# --- the mail relay (smtp-receive) and check_mail: real SMTP over loopback, as the e2e job runs them ------------------


@pytest.fixture
def mail_relay(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """`check_platform.py smtp-receive` as the job starts it: (port, its output, the certificate to trust)."""
    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-addext", "keyUsage=critical,digitalSignature,keyCertSign", "-addext", "extendedKeyUsage=serverAuth"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "relay.password").write_text("relay-pw\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "mails.jsonl"
    relay = subprocess.Popen(
        [
            *(sys.executable, str(REPO / "tests/e2e/check_platform.py"), "smtp-receive", "--port", str(port)),
            *("--out", str(out), "--cert", str(cert), "--key", str(key), "--user", "mov-e2e"),
            *("--password-file", str(tmp_path / "relay.password")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, 15)
        yield port, out, cert
    finally:
        relay.kill()
        relay.wait(10)


def test_the_mail_relay_takes_mail_only_over_starttls_with_its_login_and_check_mail_judges_it(
    mail_relay: tuple[int, Path, Path],
) -> None:
    port, out, cert = mail_relay
    message = EmailMessage()
    message["Subject"], message["From"] = "MOV weekly report 2026-11-16 to 2026-11-22", "mov@mov.localhost"
    message["To"] = "ops@mov.test, oncall@mov.test"
    message.set_content("Attached: report-2026-11-22.html, report-2026-11-22.pdf.")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="report-2026-11-22.pdf")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused):  # 530: STARTTLS first
            smtp.send_message(message)
        smtp.starttls(context=ssl.create_default_context(cafile=str(cert)))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("mov-e2e", "wrong")
        smtp.login("mov-e2e", "relay-pw")
        smtp.send_message(message)
    recipients = ["ops@mov.test", "oncall@mov.test"]
    report = cp.Report()
    assert cp.check_mail(
        report,
        out,
        "the report",
        ["MOV weekly report", "to 2026-11-22"],
        recipients,
        5,
        "Attached:",
        ["report-2026-11-22.pdf"],
    )
    (record,) = cp.mail_inbox.messages(out.read_text().splitlines(), ["weekly"])
    assert (record["tls"], record["login"], record["envelope_from"]) == (True, "mov-e2e", "mov@mov.localhost")
    # What the checks refuse: another recipient list, a missing attachment, a subject not sent.
    assert not cp.check_mail(report, out, "wrong recipients", ["weekly"], recipients[:1], 0)
    assert not cp.check_mail(report, out, "no attachment asked", ["weekly"], recipients, 0)
    assert not cp.check_mail(report, out, "not sent", ["[FIRING:"], recipients, 0)
    assert (report.passed, report.failed) == (1, 3)


def test_all_value_is_the_variables_custom_all_or_nothing() -> None:
    variables = [{"name": "planta", "allValue": ".*"}, {"name": "cliente", "includeAll": True}]
    dashboard = {"templating": {"list": variables}}
    assert cp.all_value(dashboard, "planta") == ".*"
    assert cp.all_value(dashboard, "cliente") == ""
    assert cp.all_value(dashboard, "dispositivo") == ""


# --- an edge gateway's path (check_platform.py gateway, dashboard-plants) ---------------------------------------------

READING_COLUMNS = ("_time", "_value", "_field", "_measurement", "cliente", "dispositivo", "localizacao", "tipo")


def _flux_csv(*tables: list[dict[str, str]]) -> str:
    """/api/v2/query's annotated CSV for these tables, each with its own columns (a tag its series lacks is no column),
    separated as InfluxDB separates tables of different schemas."""
    parts = []
    for index, rows in enumerate(tables):
        columns = list(rows[0])
        parts.append(
            "#datatype,string,long," + ",".join("string" for _ in columns) + "\r\n"
            "#default,_result,," + "," * (len(columns) - 1) + "\r\n"
            ",result,table,"
            + ",".join(columns)
            + "\r\n"
            + "".join(f",,{index}," + ",".join(row[c] for c in columns) + "\r\n" for row in rows)
        )
    return "\r\n".join(parts) + "\r\n"


def _stored(reading: dict[str, object], **tags: str) -> dict[str, str]:
    """A reading as InfluxDB returns its temperatura_c point, with `tags` over the payload's."""
    payload_tags = reading["tags"]
    fields = reading["fields"]
    assert isinstance(payload_tags, dict) and isinstance(fields, dict)
    row = {
        "_time": str(reading["timestamp"]),
        "_value": str(fields["temperatura_c"]),
        "_field": "temperatura_c",
        "_measurement": "mov_leituras",
        **payload_tags,
        **tags,
    }
    return {key: value for key, value in row.items() if value != ""}


GATEWAY_DEVICE = {"client": "mov_verify", "name": "e2e_planta", "site": "e2e_gateway", "type": "temperatura"}


def test_flux_rows_keep_each_tables_own_columns() -> None:
    sent = cp.readings(GATEWAY_DEVICE, datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC), 2, critical_at=())
    text = _flux_csv([_stored(sent[0], planta="fabrica_e2e")], [_stored(sent[1])])
    rows = cp.flux_rows(text)
    assert [row.get("planta") for row in rows] == ["fabrica_e2e", None]
    assert [row["_value"] for row in rows] == ["22.0", "22.1"]
    assert cp.flux_column(text, "planta") == ["fabrica_e2e"]


def test_a_gateways_readings_count_only_when_stored_with_its_plant_and_the_payloads_tags() -> None:
    sent = cp.readings(GATEWAY_DEVICE, datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC), 3, critical_at=())
    as_telegraf_stores_them = [_stored(reading, planta="fabrica_e2e") for reading in sent]
    ok, detail = cp.plant_readings_stored(cp.flux_rows(_flux_csv(as_telegraf_stores_them)), sent, "fabrica_e2e")
    assert ok, detail
    # A point of another instant (an earlier test's reading) changes nothing.
    earlier = cp.readings(GATEWAY_DEVICE, datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC), 1, critical_at=())
    rows = cp.flux_rows(_flux_csv([*as_telegraf_stores_them, _stored(earlier[0], planta="fabrica_e2e")]))
    assert cp.plant_readings_stored(rows, sent, "fabrica_e2e")[0]
    # What fails: one not stored yet; stored without the plant (the topic not parsed); under another plant or device.
    partial = cp.flux_rows(_flux_csv(as_telegraf_stores_them[:2]))
    assert cp.plant_readings_stored(partial, sent, "fabrica_e2e") == (
        False,
        "2 of 3 stored; missing at ['2026-12-07 10:00:02+00:00']",
    )
    unparsed = cp.flux_rows(_flux_csv([_stored(reading) for reading in sent]))
    ok, detail = cp.plant_readings_stored(unparsed, sent, "fabrica_e2e")
    assert not ok and "'planta': ''" in detail
    for wrong in ({"planta": "other_site"}, {"planta": "fabrica_e2e", "dispositivo": "e2e_outro"}):
        rows = cp.flux_rows(_flux_csv(as_telegraf_stores_them, [_stored(sent[1], **wrong)]))
        assert not cp.plant_readings_stored(rows, sent, "fabrica_e2e")[0], wrong


def _gateway_row(field: str, value: str, plant: str = "fabrica_e2e", metrica: str = "") -> dict[str, str]:
    row = {"_time": "2026-12-07T10:00:00Z", "_value": value, "_field": field, "_measurement": "mov_gateway"}
    return {**row, "planta": plant, **({"metrica": metrica} if metrica else {})}


def test_a_gateways_heartbeat_and_state_count_when_both_are_stored_for_its_plant() -> None:
    heartbeat = [_gateway_row("uptime", "36000 seconds")]
    state = [_gateway_row("value", "1", metrica="estado")]
    ok, detail = cp.gateway_state_stored(cp.flux_rows(_flux_csv(heartbeat, state)), "fabrica_e2e", "36000 seconds")
    assert ok, detail
    # Either alone, another heartbeat (an earlier run's, or the payload's last word only), or another plant: not yet.
    for tables in (
        [heartbeat],
        [state],
        [[_gateway_row("uptime", "35990 seconds")], state],
        [[_gateway_row("uptime", "seconds")], state],
        [[_gateway_row("uptime", "36000 seconds", plant="other_site")], state],
        [heartbeat, [_gateway_row("value", "0", metrica="estado")]],
    ):
        assert not cp.gateway_state_stored(cp.flux_rows(_flux_csv(*tables)), "fabrica_e2e", "36000 seconds")[0]


def test_the_plant_scheme_is_read_from_the_gateways_vars(tmp_path: Path) -> None:
    path = tmp_path / "gateways.yml"
    path.write_text(
        "mov_mqtt_topic_plants: mov/fabricas\nmov_edge_account_prefix: edge_\nmov_edge_state_topic: ponte\n"
        "mov_edge_state_measurement: mov_ponte\nmov_edge_sites: \"{{ mov_edge_gateways | map(attribute='site') }}\"\n"
    )
    scheme = cp.PlantScheme.load(path)
    assert scheme.account("sul") == "edge_sul"
    assert scheme.central("sul", "mov/dados/c/d") == "mov/fabricas/sul/mov/dados/c/d"
    assert scheme.state("sul", "uptime") == "mov/fabricas/sul/ponte/uptime"
    assert scheme.measurement == "mov_ponte"
    path.write_text(path.read_text().replace("mov/fabricas", '"{{ mov_plants }}"'))
    with pytest.raises(ValueError, match="mov_mqtt_topic_plants"):
        cp.PlantScheme.load(path)


def test_an_accounts_login_follows_its_rotated_username() -> None:
    secrets = {
        "mqtt": {"verify": "pw-1", "gw_sul": "pw-2"},
        "mqtt_usernames": {"verify": "verify@20261207T100000Z-ab12"},
    }
    assert cp.mqtt_login(secrets, "verify") == ("verify@20261207T100000Z-ab12", "pw-1")
    assert cp.mqtt_login(secrets, "gw_sul") == ("gw_sul", "pw-2")
    assert cp.mqtt_login({"mqtt": {"gw_sul": "pw-2"}}, "gw_sul") == ("gw_sul", "pw-2")
