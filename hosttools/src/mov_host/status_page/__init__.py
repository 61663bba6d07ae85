"""mov-status-page: the platform's status page (the command's help: mov_host.status_page.cli)."""

from mov_host.status_page.cli import main

__all__ = ["main"]
