"""Mitogen for Ansible's `mitogen_linear` strategy, reached through ansible.cfg's strategy_plugins.

Selected with ANSIBLE_STRATEGY=mitogen_linear (docs/operations/deploy.md). Mitogen's own plugin directory lies in
site-packages, a different path on every controller; this name re-exports its class instead.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # type: ignore[import-untyped]

__all__ = ["StrategyModule"]
