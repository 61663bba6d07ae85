"""movctl: operate the MOV platform on its host (the command's help: mov_host.movctl.cli). Other tools call its
parts in-process: status.collect_status (the status page), cleanup.run_cleanup (mov-cleanup)."""

from mov_host.movctl.cli import main

__all__ = ["main"]
