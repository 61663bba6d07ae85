"""mov_ports is the one place a host port is written: a changed port reaches the firewall, the preflight's list of
ports that must be free, the compose file's published ports, nginx's upstreams, the deploy's probe (open and
closed lists), the token step's and the status page's InfluxDB URL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from mov_render import workspace

PORTS = {
    "http": {"port": 80, "by": "nginx", "reach": "public"},
    "https": {"port": 443, "by": "nginx", "reach": "public"},
    "mqtt_tls": {"port": 18883, "by": "mosquitto", "reach": "public"},
    "mqtt_websockets": {"port": 19001, "by": "mosquitto", "reach": "loopback"},
    "grafana": {"port": 13000, "by": "grafana", "reach": "loopback"},
    "influxdb": {"port": 18086, "by": "influxdb", "reach": "loopback"},
    "loki": {"port": 13100, "by": "loki", "reach": "loopback"},
}
EXTRA = json.dumps({"mov_ports": PORTS, "mov_docker_proxy_port": 12375})
CONSUMERS = [
    "firewall_allowed_tcp_ports",
    "firewall_docker_public_tcp_ports",
    "mov_preflight_ports",
    "stack_verify_open_ports",
    "stack_verify_closed_ports",
    "stack_mqtt_tls_port",
    "stack_grafana_port",
    "stack_influxdb_port",
    "stack_mqtt_websockets_port",
    "nginx_grafana_upstream",
    "nginx_mqtt_websockets_upstream",
    "grafana_api_url",
    "status_page_influxdb_url",
    "stack_docker_proxy_port",
    "telegraf_infra_docker_endpoint",
]


def tree_values(env: str, *names: str) -> dict[str, Any]:
    """The env's templated values of these variables, as a play on the host would see them."""
    ws = workspace()
    message = "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}"
    args = ["ansible", "mov", "-i", f"inventories/{env}", "-m", "ansible.builtin.debug", "-a", f"msg={message}"]
    out = ws.run(*args, "-e", EXTRA, "--vault-password-file", str(ws.password_file)).stdout
    # "<host> | SUCCESS => " and the result (the repository's ansible.cfg prints results as YAML).
    result = yaml.safe_load(out.split("=>", 1)[1])
    values: dict[str, Any] = json.loads(result["msg"])
    return values


def test_a_port_changed_in_the_table_reaches_every_consumer(tmp_path: Path) -> None:
    values = tree_values("staging", *CONSUMERS)
    assert sorted(values["firewall_allowed_tcp_ports"]) == [80, 443, 18883]
    assert values["firewall_docker_public_tcp_ports"] == [18883] == values["stack_verify_open_ports"]
    # staging runs the five services, no logs part: Loki's port is not one it binds.
    assert sorted(values["mov_preflight_ports"]) == [80, 443, 13000, 18086, 18883, 19001]
    assert sorted(values["stack_verify_closed_ports"]) == [1883, 9108, 13000, 13100, 18086, 19001]
    assert int(values["stack_mqtt_tls_port"]) == 18883 and int(values["stack_grafana_port"]) == 13000
    assert int(values["stack_influxdb_port"]) == 18086 and int(values["stack_mqtt_websockets_port"]) == 19001
    assert values["nginx_grafana_upstream"] == "127.0.0.1:13000"
    assert values["nginx_mqtt_websockets_upstream"] == "127.0.0.1:19001"
    assert values["grafana_api_url"] == "http://127.0.0.1:13000"
    assert values["status_page_influxdb_url"] == "http://127.0.0.1:18086"
    # The Docker API proxy's port on the compose network: where it listens and where Telegraf asks.
    assert int(values["stack_docker_proxy_port"]) == 12375
    assert values["telegraf_infra_docker_endpoint"] == "tcp://dockerproxy:12375"

    ws = workspace()
    ws.render("staging", tmp_path / "out", "-e", EXTRA, "-e", json.dumps({"render_roles": ["nginx", "stack"]}))
    [host_dir] = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    services = yaml.safe_load((host_dir / "opt/mov/compose.yaml").read_text())["services"]
    assert services["mosquitto"]["ports"] == ["18883:8883", "127.0.0.1:19001:9001"]
    assert services["grafana"]["ports"] == ["127.0.0.1:13000:3000"]
    assert services["influxdb"]["ports"] == ["127.0.0.1:18086:8086"]
    nginx = "\n".join(p.read_text() for p in host_dir.rglob("*.conf") if "nginx" in str(p))
    assert "127.0.0.1:13000" in nginx and "127.0.0.1:19001" in nginx
    assert "127.0.0.1:3000" not in nginx and "127.0.0.1:9001" not in nginx
