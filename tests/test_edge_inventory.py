"""The edge inventory in the config tree (scripts/config_tree.py): each wrong value names its gateway and variable,
and the MQTT accounts (hence the generated secrets) follow the gateways of the inventory."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest
from mov_render import REPO, resolved
from test_config_tree_preflight import DEVICE, _with

sys.path.append(str(REPO / "scripts"))
import config_tree

PLANT_DEVICE = {"name": "caldeira_01", "client": "industria_abc", "site": "linha_1", "type": "temperatura"}


def _gateway(host: str = "gw-sul", site: Any = "fabrica_sul", devices: Any = None) -> dict[str, Any]:
    return {"host": host, "site": site, "devices": [PLANT_DEVICE] if devices is None else devices}


def test_each_gateway_adds_its_account_and_its_devices_accounts() -> None:
    tree = _with(mov_edge_gateways=[_gateway()])
    assert config_tree.validate(tree) == []
    assert config_tree.mqtt_usernames(tree)[-2:] == ["gw_fabrica_sul", "industria_abc/caldeira_01"]
    # Gone from the inventory, gone from the accounts (the central broker's password file follows them).
    assert "gw_fabrica_sul" not in config_tree.mqtt_usernames(_with(mov_edge_gateways=[]))


@pytest.mark.parametrize(
    ("gateways", "error"),
    [
        ([_gateway(site="fabrica sul")], "gw-sul: mov_edge_site: 'fabrica sul' contains a space"),
        ([_gateway(site="a/b")], "gw-sul: mov_edge_site: 'a/b' contains '/'"),
        ([_gateway(devices=[])], "gw-sul: mov_edge_devices: must be a non-empty list"),
        ([_gateway(devices=[{**PLANT_DEVICE, "name": "x+y"}])], "gw-sul: mov_edge_devices[0].name: 'x+y' contains '+'"),
        (
            [_gateway(), _gateway(host="gw-2", devices=[{**PLANT_DEVICE, "name": "c2"}])],
            "mov_edge_site: 'fabrica_sul' is the site of 2 gateways (gw-sul, gw-2)",
        ),
        (
            [_gateway(devices=[DEVICE])],
            "gw-sul: mov_edge_devices / mov_devices: duplicate device 'sensor_001' of client 'industria_abc'",
        ),
    ],
)
def test_a_wrong_gateway_names_its_host_and_variable(gateways: list[dict[str, Any]], error: str) -> None:
    errors = config_tree.validate(_with(mov_edge_gateways=gateways))
    assert any(error in e for e in errors), errors


def test_a_gateway_account_may_not_be_a_central_client() -> None:
    """The central ACL's device pattern would let the account gw_x publish as the central client gw_x's devices."""
    tree = _with(mov_devices=[{**DEVICE, "client": "gw_x"}], mov_edge_gateways=[_gateway(site="x")])
    assert any(
        "gw-sul: mov_edge_site: the account gw_x is also a device client" in e for e in config_tree.validate(tree)
    )


def test_the_central_brokers_queue_holds_the_readings_of_the_devices_behind_the_gateways() -> None:
    """Each consumer's queue on the central broker (docs/data-promise.md) is sized from every device that publishes
    there: 60 devices behind one gateway raise it above the floor, as 60 direct devices would."""
    devices = [{**PLANT_DEVICE, "name": f"forno_{n:02}"} for n in range(60)]
    extra = json.dumps({"mov_edge_gateways": [_gateway(devices=devices)]})
    names = (
        "[mov_mqtt_max_queued_messages,mov_devices,mov_device_publish_interval_s,mov_telegraf_outage_tolerance_s,"
        "mov_mqtt_queue_headroom,mov_mqtt_queue_min_messages]"
    )
    queued, direct, interval, tolerance, headroom, floor = resolved(names, "-e", extra)
    readings_per_s = (len(direct) + len(devices)) / interval
    assert int(queued) == math.ceil(readings_per_s * tolerance * headroom) > floor
