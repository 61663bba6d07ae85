"""`python3 mov-host-tools.pyz <tool> [ARGS]`: run one of the host tools (the installed commands do this)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib import import_module

# Each tool's module; its main(argv) returns the exit code.
TOOLS = {
    "movctl": "mov_host.movctl",
    "mov-backup": "mov_host.backup",
    "mov-status-page": "mov_host.status_page",
    "mov-cleanup": "mov_host.cleanup",
    "mov-cron-run": "mov_host.cron_run",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in TOOLS:
        print(f"usage: mov-host-tools {{{','.join(TOOLS)}}} [ARGS]", file=sys.stderr)
        return 2
    tool: Callable[[list[str]], int] = import_module(TOOLS[args[0]]).main
    return tool(args[1:])


if __name__ == "__main__":
    sys.exit(main())
