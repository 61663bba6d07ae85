"""The controller's half of mov_host_state: the fingerprint of the deploy's inputs, then the module on the host.

The fingerprint covers the files named by `inputs` (the roles, playbooks, host tools' source, config tree and
inventory: any edit there makes the next deploy a full one), the run's extra vars (`-e`, as loaded, without the
`ansible_*` connection settings such as the README's first-run `-e ansible_user=root`), `facts` (what the roles
read of the host that no file on it shows) and the ansible-core version.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ansible import context
from ansible.errors import AnsibleActionFail
from ansible.module_utils.ansible_release import __version__ as ansible_version
from ansible.plugins.action import ActionBase
from ansible.utils.vars import load_extra_vars

SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


def _files(top: Path) -> Iterable[Path]:
    if top.is_file():
        yield top
        return
    for current, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        yield from (Path(current) / name for name in sorted(files) if not name.endswith(".pyc"))


def fingerprint(inputs: list[str], extra_vars: dict[str, Any], facts: object) -> str:
    sha = hashlib.sha256(f"ansible-core {ansible_version}\n".encode())
    for top in sorted(Path(p).resolve() for p in inputs):
        if not top.exists():
            sha.update(f"absent {top}\n".encode())
            continue
        for path in _files(top):
            sha.update(f"file {path.relative_to(top)}\n".encode())
            sha.update(hashlib.sha256(path.read_bytes()).digest())
    settings = {k: v for k, v in extra_vars.items() if not k.startswith("ansible_")}
    sha.update(json.dumps([settings, facts], sort_keys=True, default=str).encode())
    return sha.hexdigest()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(
        {"state", "path", "inputs", "facts", "roots", "exclude", "volatile_suffixes", "commands", "ignore_lines"}
    )

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = dict(self._task.args)
        inputs = args.pop("inputs", None)
        if not isinstance(inputs, list) or not inputs:
            raise AnsibleActionFail("mov_host_state: inputs must be a non-empty list of paths on the controller")
        extra_vars = dict(load_extra_vars(self._loader)) if context.CLIARGS.get("extra_vars") else {}
        args["fingerprint"] = fingerprint([str(p) for p in inputs], extra_vars, args.pop("facts", {}))
        result.update(self._execute_module(module_name="mov_host_state_digest", module_args=args, task_vars=task_vars))
        return result
