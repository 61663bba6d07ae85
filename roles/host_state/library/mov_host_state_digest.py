#!/usr/bin/python
"""Whether the host is as the last full deploy left it: compares a digest of the host's state with the stamp
that deploy wrote, or writes the stamp (roles/host_state).

Hand-written: no module in ansible-core or the collections digests many trees and commands in one call, which is
the point (one round trip instead of one per file).
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: mov_host_state_digest
short_description: Digest the host's state and compare it with, or record it as, the last full deploy's
description:
  - Hashes the content, mode and owner of every file, directory and link under I(roots) (to I(depth); metadata only
    where I(content) is false) and the output of I(commands), in one call.
  - With I(state=check), returns C(converged) true when the stamp holds the same I(fingerprint) and the same digest,
    and otherwise a C(reason) naming what differs. With I(state=record), writes the stamp (0600); never a change.
options:
  state: {type: str, choices: [check, record], default: check, description: Compare or record.}
  path: {type: path, required: true, description: The stamp file.}
  fingerprint: {type: str, required: true, description: The controller's digest of the deploy's inputs.}
  roots:
    type: list
    elements: dict
    required: true
    description: Each C(path), C(depth) (-1 for the whole tree) and C(content) (hash file contents, or not).
  exclude: {type: list, elements: path, default: [], description: Paths left out, with what is under them.}
  volatile_suffixes:
    type: list
    elements: str
    default: []
    description: Regular expressions; a name matching one is left out where I(content) is false (rotated logs).
  commands: {type: list, elements: list, default: [], description: Argument lists whose output is part of the state.}
  ignore_lines:
    type: list
    elements: str
    default: []
    description: Regular expressions; a line of a command's output that matches one is left out (login sessions).
"""

import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

VERSION = 1
SHOWN = 5  # paths named in a reason


def _meta(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):o}:{st.st_uid}:{st.st_gid}"


def _file_digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _entry(path: str, content: bool) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "l:" + str(Path(path).readlink())
    if stat.S_ISDIR(st.st_mode):
        return "d:" + _meta(st)
    if stat.S_ISREG(st.st_mode):
        return "f:" + _meta(st) + (":" + _file_digest(path) if content else "")
    return "o:" + _meta(st)  # sockets, fifos: their presence and mode


def walk(root: dict[str, Any], exclude: set[str], volatile: list[re.Pattern[str]]) -> dict[str, str]:
    """Every entry under root['path'], to root['depth'] levels below it (-1: all), as path -> its digest."""
    try:  # ~user/...: a user the deploy has not created yet has no such tree
        expanded = Path(str(root["path"])).expanduser()
    except RuntimeError:
        return {str(root["path"]): "absent"}
    top, depth, content = (
        os.path.normpath(expanded),
        int(root.get("depth", -1)),
        bool(root["content"]),
    )
    found = _entry(top, content)
    state = {top: found if found is not None else "absent"}
    if found is None or not found.startswith("d:") or depth == 0:
        return state
    for current, dirs, files in os.walk(top):
        level = 0 if current == top else os.path.relpath(current, top).count(os.sep) + 1
        dirs[:] = sorted(d for d in dirs if f"{current}/{d}" not in exclude)
        for name in sorted(files) + dirs:
            path = f"{current}/{name}"
            if path in exclude or (not content and any(p.search(name) for p in volatile)):
                continue
            entry = _entry(path, content)
            if entry is not None:
                state[path] = entry
        if 0 <= depth <= level + 1:
            dirs[:] = []
    return state


def host_state(module: AnsibleModule) -> dict[str, str]:
    exclude = {os.path.normpath(p) for p in module.params["exclude"]}
    volatile = [re.compile(p) for p in module.params["volatile_suffixes"]]
    ignored = [re.compile(p) for p in module.params["ignore_lines"]]
    state: dict[str, str] = {}
    for root in module.params["roots"]:
        state.update(walk(root, exclude, volatile))
    for argv in module.params["commands"]:
        try:
            rc, out, err = module.run_command([str(a) for a in argv], handle_exceptions=False)
        except OSError as error:  # not installed yet (ufw before the first deploy): that is the state
            rc, out, err = 127, "", error.strerror or str(error)
        kept = "\n".join(line for line in out.splitlines() if not any(p.search(line) for p in ignored))
        digest = hashlib.sha256(f"{rc}\n{kept}\n{err}".encode()).hexdigest()
        state["$ " + " ".join(str(a) for a in argv)] = digest
    return state


def differences(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def write_stamp(path: str, stamp: dict[str, Any]) -> None:
    directory = Path(path).parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".host-state.")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(stamp, handle, sort_keys=True)
        tmp.chmod(0o600)
        tmp.replace(path)
    except BaseException:
        tmp.unlink()
        raise


def read_stamp(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as handle:
            stamp = json.load(handle)
    except (FileNotFoundError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("version") == VERSION else None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["check", "record"], "default": "check"},
            "path": {"type": "path", "required": True},
            "fingerprint": {"type": "str", "required": True},
            "roots": {"type": "list", "elements": "dict", "required": True},
            "exclude": {"type": "list", "elements": "path", "default": []},
            "volatile_suffixes": {"type": "list", "elements": "str", "default": []},
            "commands": {"type": "list", "elements": "list", "default": []},
            "ignore_lines": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    path, fingerprint = module.params["path"], module.params["fingerprint"]
    state = host_state(module)
    if module.params["state"] == "record":
        if not module.check_mode:
            write_stamp(path, {"version": VERSION, "fingerprint": fingerprint, "state": state})
        module.exit_json(changed=False, converged=True, reason="recorded", entries=len(state))
        return
    stamp = read_stamp(path)
    module.exit_json(changed=False, entries=len(state), **verdict(stamp, fingerprint, state))


def verdict(stamp: dict[str, Any] | None, fingerprint: str, state: dict[str, str]) -> dict[str, Any]:
    """converged, and the reason: the first difference between the stamp and now."""
    if stamp is None:
        return {"converged": False, "reason": "no stamp of a full deploy on this host"}
    if stamp["fingerprint"] != fingerprint:
        return {"converged": False, "reason": "the deploy's inputs changed"}
    changed = differences(stamp["state"], state)
    if changed:
        shown = ", ".join(changed[:SHOWN]) + (f" and {len(changed) - SHOWN} more" if len(changed) > SHOWN else "")
        return {"converged": False, "reason": f"the host changed since: {shown}"}
    return {"converged": True, "reason": "as the last full deploy left it"}


if __name__ == "__main__":
    main()
