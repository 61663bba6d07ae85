"""The MOV platform's host tools, one package: movctl, mov-backup, mov-status-page, mov-cleanup, mov-cron-run.

The controller builds it into one zipapp (scripts/host_tools.py); the host_tools role installs that and a thin
command per tool (`/usr/local/bin/<tool>`, running `python3 <zipapp> <tool> ARGS`). The tools call each other
in-process and share typed records for the JSON documents they write and read.
"""

# The oldest Python the package runs on (pyproject.toml's requires-python); the preflight checks the host's.
MIN_PYTHON = (3, 11)
