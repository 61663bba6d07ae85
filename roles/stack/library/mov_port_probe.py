#!/usr/bin/python
"""The deploy's exposure check from the controller: every port that must answer does, every port that must stay closed
does not, all probed at once in one call (roles/stack, tasks/verify.yml).

Hand-written: ansible.builtin.wait_for probes one port a call, so the check cost one module run per port, and a closed
port behind UFW, which drops the SYN, costs its whole connect timeout; no module in ansible-core or the collections
probes a list of ports.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: mov_port_probe
short_description: Probe a host's TCP ports at once; fail naming each one that answers or not against the list
description:
  - Each port of I(open) must accept a TCP connection within I(timeout) seconds (retried until then, each attempt
    bounded by I(connect_timeout)). Each port of I(closed) must not accept one within I(connect_timeout): refused
    and timed out both count as closed.
  - Every port is probed in a thread of its own, so the call takes about the longest single wait, not their sum.
  - Never a change. Returns C(silent) (the ports of I(open) that did not answer), C(answering) (those of I(closed)
    that did) and C(elapsed), the call's seconds.
options:
  host: {type: str, required: true, description: The address probed.}
  open: {type: list, elements: int, default: [], description: Ports that must answer.}
  closed: {type: list, elements: int, default: [], description: Ports that must not answer.}
  timeout: {type: float, default: 5, description: Seconds an open port has to answer.}
  connect_timeout: {type: float, default: 2, description: Seconds a single connection attempt may take.}
  open_hint: {type: str, default: "", description: Said after each port of I(open) that does not answer.}
  closed_hint: {type: str, default: "", description: Said after each port of I(closed) that answers.}
"""

import socket
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule


def answers(host: str, port: int, connect_timeout: float) -> bool:
    """Whether one TCP connection to host:port is accepted within connect_timeout."""
    try:
        with socket.create_connection((host, port), timeout=connect_timeout):
            return True
    except OSError:  # refused, timed out, unreachable
        return False


def answers_within(host: str, port: int, timeout: float, connect_timeout: float) -> bool:
    """Whether host:port accepts a connection before timeout seconds have passed (a service still starting)."""
    deadline = time.monotonic() + timeout
    while True:
        if answers(host, port, min(connect_timeout, max(deadline - time.monotonic(), 0.1))):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))


def probe(
    host: str, open_ports: list[int], closed_ports: list[int], timeout: float, connect_timeout: float
) -> tuple[list[int], list[int]]:
    """(the ports of open_ports that do not answer, the ports of closed_ports that do), each sorted."""
    jobs = [(port, True) for port in open_ports] + [(port, False) for port in closed_ports]
    if not jobs:
        return [], []
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [
            (
                port,
                must_answer,
                pool.submit(answers_within, host, port, timeout, connect_timeout)
                if must_answer
                else pool.submit(answers, host, port, connect_timeout),
            )
            for port, must_answer in jobs
        ]
        silent = sorted(port for port, must_answer, f in futures if must_answer and not f.result())
        answering = sorted(port for port, must_answer, f in futures if not must_answer and f.result())
    return silent, answering


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "open": {"type": "list", "elements": "int", "default": []},
            "closed": {"type": "list", "elements": "int", "default": []},
            "timeout": {"type": "float", "default": 5},
            "connect_timeout": {"type": "float", "default": 2},
            "open_hint": {"type": "str", "default": ""},
            "closed_hint": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    host = p["host"]
    started = time.monotonic()
    silent, answering = probe(host, p["open"], p["closed"], p["timeout"], p["connect_timeout"])
    result = {
        "changed": False,
        "silent": silent,
        "answering": answering,
        "elapsed": round(time.monotonic() - started, 2),
    }
    problems = [f"{host}:{port} does not answer from the controller; {p['open_hint']}".rstrip("; ") for port in silent]
    problems += [
        f"{host}:{port} answers from the controller but must not; {p['closed_hint']}".rstrip("; ") for port in answering
    ]
    if problems:
        module.fail_json(msg=" ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
