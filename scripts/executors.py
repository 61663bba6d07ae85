"""The two ways ansible-playbook can run the deploy, as the environment it starts with (docs/operations/deploy.md).

`plain` is Ansible's own linear strategy; `mitogen` is Mitogen for Ansible's `mitogen_linear`, found through
ansible.cfg's strategy_plugins (plugins/strategy/mitogen_linear.py). Each sets the strategy explicitly, so an
ANSIBLE_STRATEGY the caller exported cannot turn one into the other.
"""

from __future__ import annotations

from typing import Literal

Executor = Literal["plain", "mitogen"]

EXECUTORS: dict[Executor, dict[str, str]] = {
    "plain": {"ANSIBLE_STRATEGY": "linear"},
    "mitogen": {"ANSIBLE_STRATEGY": "mitogen_linear"},
}


# docs/operations/deploy.md, "Fast path": a setting only the worker or Grafana reads (a threshold), deployed without
# the other roles: `ansible-playbook site.yml ... --tags` these.
FAST_PATH_TAGS = "grafana_configure,stack_configure,stack_run"


def executor_env(executor: Executor) -> dict[str, str]:
    """The environment variables that select `executor`."""
    return dict(EXECUTORS[executor])
