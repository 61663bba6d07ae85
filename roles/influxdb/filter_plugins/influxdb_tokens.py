"""Filters for InfluxDB 2's least-privilege tokens (permissions from the spec, what to create or replace), bucket
retention and Flux tasks.

A token of the spec is identified by its description "mov:<name>", or "mov:<name>@<rotation>" once it has been
rotated (influxdb_token_rotations: scripts/platform_secrets.py --rotate influxdb_token/<name> writes a new rotation
id). An existing active authorization with that description and exactly the wanted permissions is kept (its value
is reused); one with other permissions or an older rotation is replaced: a new one is created and the old one is
deleted only after its consumer has been given the new one. InfluxDB generates the value of a new token (the v2 API
takes none: influxdata/influxdb v2.7.11 authorization/http_server.go, postAuthorizationRequest). A task of
influxdb_tasks is identified by its description "mov:<name>".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

DESCRIPTION_PREFIX = "mov:"
# Token names match roles/influxdb's _influxdb_name_pattern, which has no "@".
ROTATION_SEPARATOR = "@"
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def influxdb_duration_seconds(duration: str) -> int:
    """Seconds in an InfluxDB duration ("30d", "1h30m"); 0 means forever."""
    text = str(duration).strip()
    if text in ("", "0"):
        return 0
    parts = re.findall(r"([0-9]+)(ns|us|ms|s|m|h|d|w)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not an InfluxDB duration: {duration!r}")
    return int(sum(int(n) * _UNITS[u] for n, u in parts))


def influxdb_description(token: Mapping[str, Any], rotations: Mapping[str, str] | None = None) -> str:
    rotation = str((rotations or {}).get(str(token["name"])) or "")
    return DESCRIPTION_PREFIX + str(token["name"]) + (ROTATION_SEPARATOR + rotation if rotation else "")


def _is_of(authorization: Mapping[str, Any], name: str) -> bool:
    """Whether an authorization is one of the token `name`'s, of any rotation."""
    description = str(authorization.get("description", ""))
    own = DESCRIPTION_PREFIX + name
    return description == own or description.startswith(own + ROTATION_SEPARATOR)


def influxdb_permissions(token: Mapping[str, Any], org_id: str, bucket_ids: Mapping[str, str]) -> list[dict[str, Any]]:
    """The API permissions of one token of the spec: each {action, bucket} on that bucket only."""
    permissions = []
    for permission in token["permissions"]:
        bucket = permission["bucket"]
        if bucket not in bucket_ids:
            raise ValueError(f"influxdb_tokens: {token['name']}: bucket {bucket!r} does not exist")
        if permission["action"] not in ("read", "write"):
            raise ValueError(f"influxdb_tokens: {token['name']}: action must be read or write")
        permissions.append(
            {"action": permission["action"], "resource": {"type": "buckets", "id": bucket_ids[bucket], "orgID": org_id}}
        )
    return permissions


def _normalise(permissions: Sequence[Mapping[str, Any]]) -> set[tuple[str, str, str | None, str | None]]:
    return {
        (str(p["action"]), str(p["resource"]["type"]), p["resource"].get("id"), p["resource"].get("orgID"))
        for p in permissions
    }


def influxdb_token_plan(
    existing: Sequence[Mapping[str, Any]],
    tokens: Sequence[Mapping[str, Any]],
    org_id: str,
    bucket_ids: Mapping[str, str],
    rotations: Mapping[str, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """{"keep": [...], "create": [...], "delete": [...]}: the API calls that make the tokens match the spec.

    keep:   {name, id}; create: {name, body} (the POST /api/v2/authorizations body); delete: {name, id}, every
    other authorization of the token (an older rotation, other permissions, a duplicate), to be deleted once the
    consumer has the kept or created one.
    """
    plan: dict[str, list[dict[str, Any]]] = {"keep": [], "create": [], "delete": []}
    for token in tokens:
        description = influxdb_description(token, rotations)
        wanted = influxdb_permissions(token, org_id, bucket_ids)
        matches = [a for a in existing if _is_of(a, str(token["name"])) and a.get("orgID") == org_id]
        good = [
            a
            for a in matches
            if a.get("description") == description
            and a.get("status") == "active"
            and _normalise(a.get("permissions", [])) == _normalise(wanted)
        ]
        if good:
            plan["keep"].append({"name": token["name"], "id": good[0]["id"]})
            stale = [a for a in matches if a is not good[0]]
        else:
            plan["create"].append(
                {
                    "name": token["name"],
                    "body": {"orgID": org_id, "description": description, "status": "active", "permissions": wanted},
                }
            )
            stale = matches
        plan["delete"].extend({"name": token["name"], "id": a["id"]} for a in stale)
    return plan


def influxdb_retention_updates(
    existing: Sequence[Mapping[str, Any]], wanted: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The buckets of `wanted` ({name, retention}) that exist with another retention: {name, id, body}, where body
    is the PATCH /api/v2/buckets/{id} document. A bucket's expiry is its first "expire" rule (none: forever).

    The rule is always sent: an empty list changes nothing on PATCH, so forever is everySeconds 0. The shard group
    duration 0 lets InfluxDB pick the new retention's default; a shorter retention than the current shard groups
    is refused otherwise (influxdata/influxdb v2.7.11 tenant/http_server_bucket.go, v1/services/meta/data.go).
    """
    by_name = {str(b["name"]): b for b in existing}
    updates = []
    for bucket in wanted:
        current = by_name.get(str(bucket["name"]))
        if current is None:
            continue
        seconds = influxdb_duration_seconds(bucket["retention"])
        expiry = [r for r in current.get("retentionRules") or [] if r.get("type") == "expire"]
        now = int(expiry[0].get("everySeconds", 0)) if expiry else 0
        if now != seconds:
            rule = {"type": "expire", "everySeconds": seconds, "shardGroupDurationSeconds": 0}
            updates.append({"name": current["name"], "id": current["id"], "body": {"retentionRules": [rule]}})
    return updates


def influxdb_task_plan(
    existing: Sequence[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]], org_id: str
) -> dict[str, list[dict[str, Any]]]:
    """{"create": [...], "patch": [...], "delete": [...]}: the API calls that make the org's tasks match `tasks`
    ({name, flux}); tasks without a "mov:" description are someone else's and left alone.

    create: {name, body} (the POST /api/v2/tasks body); patch: {name, id, body} (PATCH /api/v2/tasks/{id}: the flux
    when it differs, status active when it is not); delete: {name, id}: a duplicate, or a task the spec no longer lists.
    InfluxDB stores the flux as it was sent (influxdata/influxdb v2.7.11 kv/task.go createTask, updateTask: a PATCH
    with no option fields keeps the text), so comparing the strings is enough.
    """
    plan: dict[str, list[dict[str, Any]]] = {"create": [], "patch": [], "delete": []}
    ours = [
        t for t in existing if str(t.get("description", "")).startswith(DESCRIPTION_PREFIX) and t.get("orgID") == org_id
    ]
    wanted = {influxdb_description(task): task for task in tasks}
    kept: set[str] = set()
    for current in ours:
        description = str(current["description"])
        task = wanted.get(description)
        if task is None or description in kept:
            plan["delete"].append({"name": description.removeprefix(DESCRIPTION_PREFIX), "id": current["id"]})
            continue
        kept.add(description)
        body = {"flux": task["flux"]} if current.get("flux") != task["flux"] else {}
        if current.get("status") != "active":
            body["status"] = "active"
        if body:
            plan["patch"].append({"name": task["name"], "id": current["id"], "body": body})
    for description, task in wanted.items():
        if description not in kept:
            plan["create"].append(
                {
                    "name": task["name"],
                    "body": {"orgID": org_id, "description": description, "status": "active", "flux": task["flux"]},
                }
            )
    return plan


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "influxdb_duration_seconds": influxdb_duration_seconds,
            "influxdb_description": influxdb_description,
            "influxdb_permissions": influxdb_permissions,
            "influxdb_token_plan": influxdb_token_plan,
            "influxdb_retention_updates": influxdb_retention_updates,
            "influxdb_task_plan": influxdb_task_plan,
        }
