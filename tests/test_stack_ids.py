"""The stack's service ids: the preflight's clash check against the host's accounts and groups, and the users a
release's compose file runs its services as (what a rollback hands InfluxDB's volumes back to)."""

from __future__ import annotations

from typing import Any

import yaml
from conftest import filter_plugin

IDS = filter_plugin("stack", "stack_ids")
SERVICES = ["mosquitto", "influxdb", "analytics"]
UIDS = {
    "mosquitto": {"uid": 1883, "gid": 1883},
    "influxdb": {"uid": 8086, "gid": 8086},
    "analytics": {"uid": 9108, "gid": 9108},
}
# getent facts of a fresh Debian host after the first run: root, the admin (1000), systemd-journal (999).
PASSWD = {"root": ["x", "0", "0", "root", "/root", "/bin/bash"], "movadmin": ["x", "1000", "1000", "", "/home", ""]}
GROUP = {"root": ["x", "0", ""], "movadmin": ["x", "1000", ""], "systemd-journal": ["x", "999", ""]}


def clashes(uids: dict[str, Any]) -> list[str]:
    result: list[str] = IDS.stack_id_clashes(uids, SERVICES, PASSWD, GROUP)
    return result


def test_own_ids_pass() -> None:
    assert clashes(UIDS) == []


def test_the_admins_uid_and_the_journals_gid_are_refused_by_name() -> None:
    uids = UIDS | {"influxdb": {"uid": 1000, "gid": 1000}, "analytics": {"uid": 9108, "gid": 999}}
    assert clashes(uids) == [
        "influxdb's uid 1000 is the host's account movadmin",
        "influxdb's gid 1000 is the host's group movadmin",
        "analytics's gid 999 is the host's group systemd-journal",
    ]


def test_two_services_sharing_a_uid_are_refused() -> None:
    uids = UIDS | {"analytics": {"uid": 1883, "gid": 9108}}
    assert clashes(uids) == ["analytics's uid 1883 is mosquitto's too"]


def test_a_service_without_ids_is_named() -> None:
    assert clashes({k: v for k, v in UIDS.items() if k != "analytics"}) == [
        "stack_uids has no uid and gid for analytics"
    ]


def test_a_releases_compose_users_are_read_as_numbers() -> None:
    compose = yaml.safe_load(
        """
services:
  influxdb: {user: "1000:1000"}
  mosquitto: {user: "1883"}
  grafana: {user: grafana}
  nginx: {}
"""
    )
    assert IDS.stack_compose_users(compose["services"]) == {
        "influxdb": {"uid": 1000, "gid": 1000},
        "mosquitto": {"uid": 1883, "gid": 1883},
    }
