"""The load generator `movctl bench` runs in a one-off container of the worker's image (which has the MQTT and
InfluxDB clients the host's python lacks):

    docker run --rm -i --network host ... --entrypoint python3 <analytics image> -m mov_analytics.bench < plan.json

The plan comes on stdin (plan.py); one JSON document of figures goes to stdout (every latency, unsorted). Exit
codes: 0 measured, 1 a device was refused or nothing was acknowledged, 2 a bad plan.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from .load import close_all, connect_all, run_load
from .plan import Plan, PlanError, plan_from_dict
from .probe import ProbeResult, run_probes


def _ms(values: list[float]) -> list[float]:
    return [round(v * 1000, 3) for v in values]


def measure(plan: Plan) -> dict[str, Any]:
    senders = connect_all(plan)
    try:
        refused = {s.device.username: s.refused for s in senders if s.refused}
        if refused:
            return {"ok": False, "error": f"the broker refused: {refused}"}
        probing = plan.probe is not None and len(senders) > 1
        load = senders[1:] if probing else senders
        stop = threading.Event()
        probe_result = ProbeResult()
        prober = None
        if probing and plan.probe is not None:
            probe = plan.probe

            def probe_job() -> None:
                nonlocal probe_result
                probe_result = run_probes(senders[0], plan, probe, stop)

            prober = threading.Thread(target=probe_job, name="probe", daemon=True)
            prober.start()
        elapsed = run_load(load, plan, stop.is_set)
        stop.set()
        if prober is not None:
            prober.join(plan.probe.timeout_s + 15 if plan.probe else 15)
    finally:
        close_all(senders)
    latencies = [x for s in load for x in s.latencies()]
    sent = sum(len(s.sent) for s in load)
    acked = sum(1 for s in load for mid in s.sent if mid in s.acked)
    return {
        "ok": acked > 0,
        "devices": len(senders),
        "published": sent,
        "acked": acked,
        "failed": sum(s.failed for s in load) + (sent - acked),
        "elapsed_s": round(elapsed, 3),
        "throughput_per_s": round(acked / elapsed, 1),
        # Every latency, in ms: movctl bench takes the percentiles (one implementation, on the host).
        "puback_ms": _ms(latencies),
        "status_latency_ms": {
            "values": _ms(probe_result.latencies_s),
            "missing": probe_result.missing,
            "error": probe_result.error if probing else "not measured: no InfluxDB to read status points from",
        },
    }


def main(argv: list[str] | None = None) -> int:
    del argv
    try:
        plan = plan_from_dict(json.load(sys.stdin))
    except (PlanError, ValueError) as exc:
        print(json.dumps({"ok": False, "error": f"bad plan: {exc}"}))
        return 2
    result = measure(plan)
    print(json.dumps(result))
    return 0 if result["ok"] else 1
