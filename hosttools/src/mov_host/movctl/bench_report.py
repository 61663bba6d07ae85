"""`movctl bench`'s short table, from the document it also writes to its results file."""

from __future__ import annotations

from typing import Any

from mov_host.movctl.render import render_table


def _ms(value: object) -> str:
    return "-" if value is None else f"{float(str(value)):.1f} ms"


def _timing_row(name: str, timing: Any) -> list[str]:
    if not isinstance(timing, dict):
        return [name, "-", "-", "not deployed here"]
    note = f"{timing.get('samples', 0)} requests, {timing.get('failed', 0)} failed"
    if timing.get("errors"):
        note += f" ({'; '.join(str(e) for e in timing['errors'])})"
    return [name, _ms(timing.get("p50_ms")), _ms(timing.get("p99_ms")), note]


def render_bench(doc: dict[str, Any]) -> str:
    mqtt = doc.get("mqtt", {})
    head = (
        f"movctl bench: {doc['devices']} devices, {doc['rate_per_s']:g} readings/s for {doc['duration_s']:g}s, "
        f"QoS 1 over TLS to {doc['broker']}"
    )
    if not mqtt.get("ok"):
        return f"{head}\nFAILED: {mqtt.get('error', 'nothing was acknowledged')}\nresults: {doc.get('results_file')}"
    puback = mqtt.get("puback_ms", {})
    status = mqtt.get("status_latency_ms", {})
    status_note = f"{status.get('samples', 0)} probes, {status.get('missing', 0)} missing"
    if status.get("error"):
        status_note += f" ({status['error']})"
    rows = [
        [
            "MQTT publish (PUBACK)",
            _ms(puback.get("p50")),
            _ms(puback.get("p99")),
            f"{mqtt['acked']}/{mqtt['published']} acknowledged, {mqtt['failed']} failed, "
            f"{mqtt['throughput_per_s']:g} readings/s",
        ],
        ["publish to status point", _ms(status.get("p50")), _ms(status.get("p99")), status_note],
        _timing_row("InfluxDB write", doc.get("influxdb_write")),
        _timing_row("Grafana /api/health", doc.get("grafana_health")),
    ]
    containers = [
        [name, f"{c['cpu_mean_pct']:.1f}%", f"{c['cpu_max_pct']:.1f}%", f"{c['mem_max_mib']:.1f} MiB"]
        for name, c in doc.get("containers", {}).items()
    ]
    deleted = ", ".join(doc.get("deleted_from", [])) or "none (no InfluxDB)"
    return "\n".join(
        [
            head,
            render_table(["measure", "p50", "p99", ""], rows),
            "",
            render_table(["container", "cpu mean", "cpu max", "memory max"], containers),
            "",
            f"bench points deleted from: {deleted}",
            f"results: {doc.get('results_file')}",
        ]
    )
