"""What the world sees of a box: a prober container on a network the test creates, knocking on the box's ports.

The network has a non-private subnet (198.18.0.0/15, the benchmarking range): a prober on 172.x would be let in by
the private-source whitelists some firewall fixes use, and would lie. Every port is tried at once, so a run costs
one connect timeout however many ports are closed. Shared by the firewall scenario's verifier and the site scenario.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PROBER_IMAGE = os.environ.get("MOV_BOX_IMAGE", "mov/box:trixie")
CONNECT_TIMEOUT_S = 2

PROBE_SCRIPT = """
import socket, sys
from concurrent.futures import ThreadPoolExecutor
address, timeout = sys.argv[1], float(sys.argv[2])
def knock(port):
    s = socket.socket(); s.settimeout(timeout)
    try:
        s.connect((address, port)); return f"{port} open"
    except OSError as exc:
        return f"{port} closed {type(exc).__name__}"
    finally:
        s.close()
ports = [int(p) for p in sys.argv[3:]]
with ThreadPoolExecutor(max_workers=max(1, len(ports))) as pool:
    print("\\n".join(pool.map(knock, ports)))
"""


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


@dataclass(frozen=True)
class Prober:
    network: str
    subnet: str
    box_address: str
    box: str

    @contextmanager
    def attached(self) -> Iterator[Prober]:
        """The probe network, with the box on it at box_address, for the time of the block."""
        self.detach()
        docker("network", "create", "--subnet", self.subnet, self.network)
        docker("network", "connect", "--ip", self.box_address, self.network, self.box)
        try:
            yield self
        finally:
            self.detach()

    def detach(self) -> None:
        docker("network", "disconnect", "-f", self.network, self.box, check=False)
        docker("network", "rm", self.network, check=False)

    def probe(self, *ports: int) -> dict[int, bool]:
        """Whether each port of the box accepts a TCP connection from the prober."""
        out = docker(
            "run",
            "--rm",
            "--network",
            self.network,
            PROBER_IMAGE,
            "python3",
            "-c",
            PROBE_SCRIPT,
            self.box_address,
            str(CONNECT_TIMEOUT_S),
            *map(str, ports),
        ).stdout
        result = {int(line.split()[0]): line.split()[1] == "open" for line in out.splitlines()}
        assert set(result) == set(ports), out
        return result
