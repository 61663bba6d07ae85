"""stack_id_clashes: why the services' uids and gids are not each their own, as messages (empty when they are);
stack_compose_users: the uid and gid a compose file runs each service as.

A container's uid and gid are the host's (no user namespace): a service running as a host account's uid, or with a
host group's gid, holds that account's or group's rights on whatever it reaches (a bind mount, an escape), and two
services sharing one can read each other's files. `passwd` and `group` are Ansible's getent facts (name -> [x,
uid, gid, ...] and name -> [x, gid, members]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def stack_id_clashes(
    uids: Mapping[str, Mapping[str, int | str]],
    services: Sequence[str],
    passwd: Mapping[str, Sequence[str]],
    group: Mapping[str, Sequence[str]],
) -> list[str]:
    accounts = {str(fields[1]): name for name, fields in passwd.items() if len(fields) > 1}
    groups = {str(fields[1]): name for name, fields in group.items() if len(fields) > 1}
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for service in services:
        ids = uids.get(service)
        if ids is None:
            problems.append(f"stack_uids has no uid and gid for {service}")
            continue
        for kind in ("uid", "gid"):
            value = str(ids[kind])
            where = f"{service}'s {kind} {value}"
            if (kind, value) in seen:
                problems.append(f"{where} is {seen[(kind, value)]}'s too")
            seen.setdefault((kind, value), service)
            taken = (accounts if kind == "uid" else groups).get(value)
            if taken is not None:
                problems.append(f"{where} is the host's {'account' if kind == 'uid' else 'group'} {taken}")
    return problems


def stack_compose_users(services: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, int]]:
    """service -> {uid, gid} from a compose file's `user: "uid[:gid]"` (numeric; a gid defaults to the uid, as
    Docker's does not, but the stack always writes both); services without a numeric user are left out."""
    users: dict[str, dict[str, int]] = {}
    for name, service in services.items():
        uid, _, gid = str(service.get("user", "")).partition(":")
        if uid.isdigit() and (gid == "" or gid.isdigit()):
            users[name] = {"uid": int(uid), "gid": int(gid or uid)}
    return users


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"stack_id_clashes": stack_id_clashes, "stack_compose_users": stack_compose_users}
