#!/usr/bin/env python3
"""The platform's config tree (the ``mov_*`` variables of group_vars/all/services.yml): checks and derivations.

Used by scripts/platform_secrets.py (which secrets the tree needs) and by the first play of playbooks/services.yml and
playbooks/render.yml (``--tree-json``), so a wrong input stops the run before anything is rendered, with the
variable's name and the reason.

    python3 scripts/config_tree.py --tree-json '{"mov_devices": [...], ...}'
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

# A topic level: no MQTT wildcard (+ #), no level separator (/), no spaces, no control characters.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DOMAIN_PATTERN = re.compile(rf"^(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}$")
# An environment's name: its inventory directory (inventories/<name>); `local` is the VPS in a box.
ENV_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DURATION_PATTERN = re.compile(r"^(0|([0-9]+(ns|us|ms|s|m|h|d|w))+)$")
MIN_OUTAGE_TOLERANCE_S = 600

# The tree's variables this module reads (the playbooks pass exactly these).
TREE_KEYS = (
    "mov_env",
    "mov_domain",
    "mov_devices",
    "mov_device_publish_interval_s",
    "mov_mqtt_service_users",
    "mov_thresholds",
    "mov_alert_for",
    "mov_alert_contacts",
    "mov_smtp",
    "mov_influxdb_retention",
    "mov_influxdb_history_retention",
    "mov_influxdb_history_every",
    "mov_influxdb_history_lookback",
    "mov_telegraf_interval_s",
    "mov_telegraf_outage_tolerance_s",
    "mov_dev_override",
    "mov_dev_loop",
    # Every gateway of the inventory's group `edge`: {host, site, devices} (group_vars/all/gateways.yml).
    "mov_edge_gateways",
)
# A gateway's account on the central broker is <this><site> (group_vars/all/gateways.yml, mov_edge_account_prefix).
EDGE_ACCOUNT_PREFIX = "gw_"
# The environments that may turn the development override on (debug ports, services on localhost, anonymous
# Grafana) or the developer loop (the worker runs mounted source under a debugger): the VPS in a box only, never
# staging or prod.
DEV_OVERRIDE_ENVS = ("local",)

# Secrets that do not depend on the tree's lists (the MQTT passwords do: one per account).
FIXED_SECRETS = (
    "influxdb_admin_password",
    "influxdb_admin_token",
    "grafana_admin_password",
    "backup_password",
    "backup_salt",
    # The full status page's login (user `status`; nginx keeps only its hash: group_vars/all/edge.yml).
    "status_page_password",
)


def _why_bad_name(value: object) -> str | None:
    if not isinstance(value, str) or value == "":
        return f"must be a non-empty string, got {value!r}"
    for char, what in (("/", "'/'"), ("+", "'+'"), ("#", "'#'"), (" ", "a space")):
        if char in value:
            return f"{value!r} contains {what} (not allowed in an MQTT topic level or username part)"
    if not NAME_PATTERN.match(value):
        return f"{value!r} must match {NAME_PATTERN.pattern}"
    return None


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def device_username(device: Mapping[str, Any]) -> str:
    """A device's MQTT username: "<client>/<name>", so the ACL pattern mov/dados/%u/# is its own subtree."""
    return f"{device['client']}/{device['name']}"


def gateways(tree: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [g for g in tree.get("mov_edge_gateways") or [] if isinstance(g, Mapping)]


def mqtt_usernames(tree: Mapping[str, Any]) -> list[str]:
    """Every MQTT account: the central broker's services and devices, each gateway's and its devices'."""
    services = [str(u["name"]) for u in tree.get("mov_mqtt_service_users") or []]
    devices = [device_username(d) for d in tree.get("mov_devices") or []]
    edge = [EDGE_ACCOUNT_PREFIX + str(g.get("site")) for g in gateways(tree)]
    edge_devices = [device_username(d) for g in gateways(tree) for d in g.get("devices") or []]
    return services + devices + edge + edge_devices


def required_secrets(tree: Mapping[str, Any]) -> list[str]:
    """Every secret name the tree needs: "mqtt/<username>" per MQTT account, then the fixed ones."""
    return [f"mqtt/{name}" for name in mqtt_usernames(tree)] + list(FIXED_SECRETS)


def _check_device_list(devices: object, where: str, errors: list[str]) -> None:
    if not isinstance(devices, list) or not devices:
        errors.append(f"{where}: must be a non-empty list of devices, got {devices!r}")
        return
    for index, device in enumerate(devices):
        item = f"{where}[{index}]"
        if not isinstance(device, Mapping):
            errors.append(f"{item}: must be a mapping with name, client, site, type, got {device!r}")
            continue
        for key in ("name", "client", "site", "type"):
            why = _why_bad_name(device.get(key))
            if why:
                errors.append(f"{item}.{key}: {why}")
        extra = sorted(set(device) - {"name", "client", "site", "type"})
        if extra:
            errors.append(f"{item}: unknown keys {', '.join(extra)} (allowed: name, client, site, type)")


def _check_devices(tree: Mapping[str, Any], errors: list[str]) -> None:
    _check_device_list(tree.get("mov_devices"), "mov_devices", errors)
    # A device's username is the same on every broker: unique across the central VPS and every gateway.
    listed = [("mov_devices", d) for d in tree.get("mov_devices") or [] if isinstance(d, Mapping)]
    listed += [
        (f"{g.get('host')}: mov_edge_devices", d)
        for g in gateways(tree)
        for d in g.get("devices") or []
        if isinstance(d, Mapping)
    ]
    pairs = Counter((d.get("client"), d.get("name")) for _, d in listed)
    for (client, name), count in sorted(pairs.items(), key=str):
        if count > 1:
            where = " / ".join(sorted({w for w, d in listed if (d.get("client"), d.get("name")) == (client, name)}))
            errors.append(f"{where}: duplicate device {name!r} of client {client!r} ({count} entries)")


def _check_gateways(tree: Mapping[str, Any], errors: list[str]) -> None:
    listed = tree.get("mov_edge_gateways") or []
    if not isinstance(listed, list):
        errors.append(f"mov_edge_gateways: must be a list, got {listed!r}")
        return
    clients = {d.get("client") for d in tree.get("mov_devices") or [] if isinstance(d, Mapping)}
    for gateway in gateways(tree):
        host = gateway.get("host", "?")
        why = _why_bad_name(gateway.get("site"))
        if why:
            errors.append(f"{host}: mov_edge_site: {why}")
        _check_device_list(gateway.get("devices"), f"{host}: mov_edge_devices", errors)
        if EDGE_ACCOUNT_PREFIX + str(gateway.get("site")) in clients:
            errors.append(
                f"{host}: mov_edge_site: the account {EDGE_ACCOUNT_PREFIX}{gateway.get('site')} is also a device "
                "client name; it would be allowed to publish as that client's devices"
            )
    sites = Counter(g.get("site") for g in gateways(tree))
    for site, count in sorted(sites.items(), key=str):
        if count > 1:
            hosts = ", ".join(str(g.get("host")) for g in gateways(tree) if g.get("site") == site)
            errors.append(f"mov_edge_site: {site!r} is the site of {count} gateways ({hosts}); each plant has one")


def _check_service_users(tree: Mapping[str, Any], errors: list[str]) -> None:
    users = tree.get("mov_mqtt_service_users")
    if not isinstance(users, list):
        errors.append(f"mov_mqtt_service_users: must be a list, got {users!r}")
        return
    clients = {d.get("client") for d in tree.get("mov_devices") or [] if isinstance(d, Mapping)}
    names = []
    for index, user in enumerate(users):
        where = f"mov_mqtt_service_users[{index}]"
        if not isinstance(user, Mapping):
            errors.append(f"{where}: must be a mapping with name, read, write, got {user!r}")
            continue
        why = _why_bad_name(user.get("name"))
        if why:
            errors.append(f"{where}.name: {why}")
        names.append(user.get("name"))
        if user.get("name") in clients:
            errors.append(
                f"{where}.name: {user.get('name')!r} is also a device client name; it would be allowed to "
                "publish as that client's devices (pattern mov/dados/%u/#)"
            )
        for key in ("read", "write"):
            topics = user.get(key, [])
            if not isinstance(topics, list) or not all(isinstance(t, str) and t and " " not in t for t in topics):
                errors.append(f"{where}.{key}: must be a list of topic filters without spaces, got {topics!r}")
    for name, count in Counter(names).items():
        if count > 1:
            errors.append(f"mov_mqtt_service_users: duplicate name {name!r}")


THRESHOLD_FIELD = re.compile(r"[a-z][a-z0-9_]{0,27}")


def _check_thresholds(tree: Mapping[str, Any], errors: list[str]) -> None:
    thresholds = tree.get("mov_thresholds")
    if not isinstance(thresholds, Mapping) or "temperatura_c" not in thresholds:
        errors.append(f"mov_thresholds: must be a mapping with at least temperatura_c, got {thresholds!r}")
        return
    for field, levels in thresholds.items():
        # A reading's field name, and part of its Grafana rule's uid: mov-critico-<field>, at most 40 characters of
        # [a-zA-Z0-9_-] (grafana/grafana v11.3.1 pkg/util/shortid_generator.go, IsShortUIDTooLong, IsValidShortUID).
        if not isinstance(field, str) or not THRESHOLD_FIELD.fullmatch(field):
            errors.append(
                f"mov_thresholds.{field}: a field name must be lower case letters, digits and _, starting with a "
                "letter, at most 28 characters"
            )
        if not isinstance(levels, Mapping):
            errors.append(f"mov_thresholds.{field}: must be a mapping with alerta and critico, got {levels!r}")
            continue
        for level in ("alerta", "critico"):
            value = levels.get(level)
            if not _is_number(value):
                errors.append(f"mov_thresholds.{field}.{level}: must be a number, got {value!r}")
        if (
            _is_number(levels.get("alerta"))
            and _is_number(levels.get("critico"))
            and not (levels["alerta"] < levels["critico"])
        ):
            errors.append(
                f"mov_thresholds.{field}: alerta ({levels['alerta']}) must be below critico ({levels['critico']})"
            )


def _check_scalars(tree: Mapping[str, Any], errors: list[str]) -> None:
    domain = tree.get("mov_domain")
    if domain in (None, ""):
        errors.append("mov_domain: missing; set the platform's public DNS name (e.g. mov.example.com)")
    elif not isinstance(domain, str) or not DOMAIN_PATTERN.match(domain):
        errors.append(f"mov_domain: {domain!r} is not a DNS name")
    env = tree.get("mov_env")
    if not isinstance(env, str) or not ENV_PATTERN.match(env):
        errors.append(
            f"mov_env: must be an environment name such as local, staging or prod ({ENV_PATTERN.pattern}), got {env!r}"
        )
    for key in ("mov_device_publish_interval_s", "mov_telegraf_interval_s"):
        value = tree.get(key)
        if not _is_number(value) or value <= 0:
            errors.append(f"{key}: must be a positive number of seconds, got {value!r}")
    outage = tree.get("mov_telegraf_outage_tolerance_s")
    if not _is_number(outage) or outage < MIN_OUTAGE_TOLERANCE_S:
        errors.append(f"mov_telegraf_outage_tolerance_s: must be a number >= {MIN_OUTAGE_TOLERANCE_S}, got {outage!r}")
    for key in ("mov_influxdb_retention", "mov_alert_for"):
        value = tree.get(key)
        if not isinstance(value, str) or not DURATION_PATTERN.match(value):
            errors.append(f"{key}: must be a duration such as 30d or 1m, got {value!r}")
    contacts = tree.get("mov_alert_contacts")
    if not isinstance(contacts, Mapping):
        errors.append(f"mov_alert_contacts: must be a mapping with webhook_url and emails, got {contacts!r}")
    else:
        url = contacts.get("webhook_url", "")
        if not isinstance(url, str) or (url and not re.match(r"^https?://\S+$", url)):
            errors.append(f"mov_alert_contacts.webhook_url: must be empty or an http(s) URL, got {url!r}")
        emails = contacts.get("emails", [])
        if not isinstance(emails, list) or not all(isinstance(e, str) and re.match(r"^\S+@\S+$", e) for e in emails):
            errors.append(f"mov_alert_contacts.emails: must be a list of e-mail addresses, got {emails!r}")


# The history's window and look-back: one unit each, which Flux's date.truncate and aggregateWindow take alike; its
# retention whole days or weeks (or 0), which Grafana's time range reads too.
HISTORY_WINDOW_PATTERN = re.compile(r"^([1-9][0-9]*)(m|h|d)$")
HISTORY_RETENTION_PATTERN = re.compile(r"^(0|[1-9][0-9]*(d|w))$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(duration: str) -> int:
    """Whole seconds in a duration ("30d", "1h30m"); 0 (forever) is 0, and so is anything below a second."""
    return sum(int(n) * _SECONDS.get(u, 0) for n, u in re.findall(r"([0-9]+)(ns|us|ms|s|m|h|d|w)", duration))


def _check_history(tree: Mapping[str, Any], errors: list[str]) -> None:
    windows: dict[str, int] = {}
    for key in ("mov_influxdb_history_every", "mov_influxdb_history_lookback"):
        value = tree.get(key)
        if isinstance(value, str) and HISTORY_WINDOW_PATTERN.match(value):
            windows[key] = _seconds(value)
        else:
            errors.append(f"{key}: must be a whole number of minutes, hours or days such as 1h or 6h, got {value!r}")
    every, lookback = windows.get("mov_influxdb_history_every"), windows.get("mov_influxdb_history_lookback")
    if every and lookback and lookback % every:
        errors.append(
            f"mov_influxdb_history_lookback: must be a whole number of windows (mov_influxdb_history_every, "
            f"{tree.get('mov_influxdb_history_every')}), got {tree.get('mov_influxdb_history_lookback')!r}"
        )
    retention, raw = tree.get("mov_influxdb_history_retention"), tree.get("mov_influxdb_retention")
    if not isinstance(retention, str) or not HISTORY_RETENTION_PATTERN.match(retention):
        errors.append(f"mov_influxdb_history_retention: must be 0 (forever) or whole days or weeks, got {retention!r}")
    elif (
        retention != "0"
        and isinstance(raw, str)
        and DURATION_PATTERN.match(raw)
        and (raw == "0" or _seconds(retention) <= _seconds(raw))
    ):
        errors.append(
            f"mov_influxdb_history_retention: must be longer than the readings' (mov_influxdb_retention, {raw}), "
            f"got {retention}"
        )


def _check_smtp(tree: Mapping[str, Any], errors: list[str]) -> None:
    smtp = tree.get("mov_smtp", {})
    if not isinstance(smtp, Mapping):
        errors.append(f"mov_smtp: must be a mapping with host, port, user, from_address, got {smtp!r}")
        return
    host, port, sender = smtp.get("host", ""), smtp.get("port", 587), smtp.get("from_address", "")
    if not isinstance(host, str) or (host and not DOMAIN_PATTERN.match(host)):
        errors.append(f"mov_smtp.host: must be empty or a host name, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        errors.append(f"mov_smtp.port: must be a TCP port number, got {port!r}")
    starttls, user = smtp.get("starttls", True), smtp.get("user", "")
    if not isinstance(starttls, bool):
        errors.append(f"mov_smtp.starttls: must be true or false, got {starttls!r}")
    elif not starttls and user:
        # Grafana's mailer (Go's net/smtp PlainAuth) refuses to log in before TLS; the worker would send it in clear.
        errors.append(
            f"mov_smtp.user: a relay without STARTTLS (mov_smtp.starttls: false) takes no login, got {user!r}; "
            "turn STARTTLS on or use a relay that needs no login"
        )
    # A templated value ("mov@{{ mov_domain }}") is checked once Ansible has rendered it (the playbooks pass
    # rendered values); scripts reading the YAML directly see the template.
    rendered = isinstance(sender, str) and "{{" not in sender
    if host and rendered and not re.match(r"^[^@\s]+@[^@\s]+$", sender):
        errors.append(f"mov_smtp.from_address: must be an e-mail address, got {sender!r}")
    contacts = tree.get("mov_alert_contacts")
    emails = contacts.get("emails") if isinstance(contacts, Mapping) else None
    if emails and not host:
        errors.append(
            "mov_smtp.host: alert e-mails (mov_alert_contacts.emails) need a mail relay; "
            "set mov_smtp.host (and vault_mov_smtp_password) or remove the e-mail contacts"
        )


def _check_dev_override(tree: Mapping[str, Any], errors: list[str]) -> None:
    env = tree.get("mov_env")
    for key, what in (
        ("mov_dev_override", "the development override (debug ports, services on localhost, anonymous Grafana)"),
        ("mov_dev_loop", "the developer loop (the worker runs mounted source under a debugger that runs any code)"),
    ):
        value = tree.get(key, False)
        if not isinstance(value, bool):
            errors.append(f"{key}: must be true or false, got {value!r}")
        elif value and env not in DEV_OVERRIDE_ENVS:
            errors.append(
                f"{key}: {what} is for {', '.join(DEV_OVERRIDE_ENVS)} only, and the env is {env!r}; remove it from "
                f"inventories/{env}/group_vars/mov/"
            )


def validate(tree: Mapping[str, Any]) -> list[str]:
    """Every problem of the tree, each naming its variable and the reason; empty when the tree is good."""
    errors: list[str] = []
    _check_scalars(tree, errors)
    _check_devices(tree, errors)
    _check_service_users(tree, errors)
    _check_gateways(tree, errors)
    _check_thresholds(tree, errors)
    _check_smtp(tree, errors)
    _check_history(tree, errors)
    _check_dev_override(tree, errors)
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree-json", required=True, help="the tree's variables as one JSON object")
    args = parser.parse_args(argv)
    tree = json.loads(args.tree_json)
    errors = validate(tree)
    for error in errors:
        print(f"config tree: {error}", file=sys.stderr)
    if errors:
        return 1
    print(f"config tree: ok ({len(tree.get('mov_devices') or [])} devices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
