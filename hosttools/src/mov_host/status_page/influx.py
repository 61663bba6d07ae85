"""What the status page asks InfluxDB (read-only token): the last reading per site and the readings the broker
dropped. A failure is said in a fixed vocabulary; no answer or error text from InfluxDB reaches the page."""

from __future__ import annotations

import csv
import io
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TypedDict

from mov_host.status_page.config import Config

NOT_COLLECTED = "not collected: the infrastructure metrics are off"


class SiteReading(TypedDict):
    site: str
    time: str  # RFC 3339, as InfluxDB answers


class Readings(TypedDict):
    """The last reading per site; available is false where InfluxDB is not among this host's services."""

    available: bool
    sites: list[SiteReading]
    error: str


class Gateways(TypedDict):
    """Each gateway's last heartbeat ("site" is its plant); collected is false without gateways, InfluxDB or the
    infrastructure metrics on this host (error then says which)."""

    collected: bool
    heartbeats: list[SiteReading]
    error: str


class Dropped(TypedDict):
    """The readings the broker dropped in the window; count is None when it could not be read or is not collected."""

    collected: bool
    count: int | None
    error: str


def flux_string(text: str) -> str:
    """A Flux string literal: backslash, double quote and ``${`` escaped. Not json.dumps: Flux refuses its \\uXXXX
    escapes (libflux parser/strconv.rs) and would interpolate ``${``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def flux_last_per_site(cfg: Config) -> str:
    """The last reading's time per site. `last()` straight after the filter is pushed down to storage, so one row
    per series reaches the rest of the query instead of every point of the lookback, every minute
    (influxdb v2.7.11 query/stdlib/influxdata/influxdb/rules.go, PushDownBareAggregateRule)."""
    bucket = flux_string(cfg.influxdb_bucket)
    tag = flux_string(cfg.influxdb_site_tag)
    return (
        f"from(bucket: {bucket}) |> range(start: -{int(cfg.influxdb_lookback_hours)}h)"
        f" |> filter(fn: (r) => exists r[{tag}]) |> last()"
        f' |> keep(columns: ["_time", {tag}]) |> group(columns: [{tag}]) |> max(column: "_time")'
    )


def flux_last_heartbeat(cfg: Config) -> str:
    """The last heartbeat's time per gateway's plant: Grafana's offline rule reads the same points
    (roles/grafana/vars/main.yml, `_grafana_gateway_query`), with the page's lookback; `last()` is pushed down as
    above."""
    bucket = flux_string(cfg.influxdb_infra_bucket)
    measurement = flux_string(cfg.gateway_measurement)
    return (
        f"from(bucket: {bucket}) |> range(start: -{int(cfg.influxdb_lookback_hours)}h)"
        f' |> filter(fn: (r) => r._measurement == {measurement} and r._field == "uptime") |> last()'
        ' |> keep(columns: ["_time", "planta"]) |> group(columns: ["planta"]) |> max(column: "_time")'
    )


def flux_dropped(cfg: Config) -> str:
    """The readings the broker dropped in the last `dropped_window_hours`: the Grafana rule's query
    (roles/grafana/vars/main.yml, `_grafana_dropped_query`) over the page's window instead of the rule's 10 minutes.
    The counter only grows while the broker runs and starts again at 0 with it, hence the non-negative differences
    summed; tests/test_status_page.py keeps the two queries the same."""
    bucket = flux_string(cfg.influxdb_infra_bucket)
    return (
        f"from(bucket: {bucket}) |> range(start: -{int(cfg.dropped_window_hours)}h)"
        ' |> filter(fn: (r) => r._measurement == "mosquitto_broker" and r._field == "value")'
        ' |> group(columns: ["_measurement"]) |> sort(columns: ["_time"])'
        " |> difference(nonNegative: true) |> cumulativeSum() |> last()"
        ' |> keep(columns: ["_time", "_value", "_measurement"])'
    )


def flux_rows(text: str) -> list[dict[str, str]]:
    """The rows of InfluxDB's annotated CSV, by column name; tables repeat their header after a blank line."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for record in csv.reader(io.StringIO(text)):
        if not record or all(not cell for cell in record):
            header = None
            continue
        if record[0].startswith("#"):
            continue
        if header is None:
            header = record
            continue
        rows.append(dict(zip(header, record, strict=False)))
    return rows


def parse_flux_csv(text: str, tag: str) -> list[SiteReading]:
    """The last reading per site's rows as {site, time}."""
    return [
        {"site": values[tag], "time": values["_time"]}
        for values in flux_rows(text)
        if values.get(tag) and values.get("_time")
    ]


def query_influxdb(cfg: Config, flux: str) -> tuple[str, str]:
    """(annotated CSV, "") or ("", the reason it could not be read); the reason never holds the token."""
    try:
        token = Path(cfg.influxdb_token_file).read_text(encoding="utf-8").strip()
    except OSError:
        return "", "no read token yet (the stack deploy writes it)"
    query = urllib.parse.urlencode({"org": cfg.influxdb_org})
    request = urllib.request.Request(
        f"{cfg.influxdb_url.rstrip('/')}/api/v2/query?{query}",
        data=flux.encode(),
        method="POST",
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": "application/vnd.flux",
            "Accept": "application/csv",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.read().decode("utf-8", "replace"), ""
    except urllib.error.HTTPError as exc:
        return "", f"InfluxDB answered HTTP {exc.code}"
    except (OSError, ValueError):
        return "", "InfluxDB did not answer"


def read_readings(cfg: Config) -> Readings:
    """{"available": bool, "sites": [...], "error": str}: the last reading per site, from InfluxDB."""
    if not cfg.influxdb_url:
        return {"available": False, "sites": [], "error": "not available on this host"}
    text, error = query_influxdb(cfg, flux_last_per_site(cfg))
    if error:
        return {"available": True, "sites": [], "error": error}
    sites = sorted(parse_flux_csv(text, cfg.influxdb_site_tag), key=lambda row: row["site"])
    return {"available": True, "sites": sites, "error": ""}


def read_dropped(cfg: Config) -> Dropped:
    """{"collected": bool, "count": int | None, "error": str}: the readings the broker dropped in the window. No row
    is none dropped: Mosquitto publishes the counter only when it changes (eclipse/mosquitto src/sys_tree.c), and
    Grafana's rule reads no data as OK too."""
    if not cfg.influxdb_url:
        return {"collected": False, "count": None, "error": "not available on this host"}
    if not cfg.influxdb_infra_bucket:
        return {"collected": False, "count": None, "error": NOT_COLLECTED}
    text, error = query_influxdb(cfg, flux_dropped(cfg))
    if error:
        return {"collected": True, "count": None, "error": error}
    values = [row["_value"] for row in flux_rows(text) if row.get("_value")]
    try:
        count = max(0, int(float(values[-1]))) if values else 0
    except ValueError:
        return {"collected": True, "count": None, "error": "InfluxDB query failed"}
    return {"collected": True, "count": count, "error": ""}


def read_gateways(cfg: Config) -> Gateways:
    """{"collected": bool, "heartbeats": [...], "error": str}: each gateway's last heartbeat, from InfluxDB."""
    if not cfg.gateways:
        return {"collected": False, "heartbeats": [], "error": ""}
    if not cfg.influxdb_url:
        return {"collected": False, "heartbeats": [], "error": "not available on this host"}
    if not cfg.influxdb_infra_bucket:
        return {"collected": False, "heartbeats": [], "error": NOT_COLLECTED}
    text, error = query_influxdb(cfg, flux_last_heartbeat(cfg))
    if error:
        return {"collected": True, "heartbeats": [], "error": error}
    return {"collected": True, "heartbeats": parse_flux_csv(text, "planta"), "error": ""}
