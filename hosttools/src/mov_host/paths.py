"""Where the host tools find each other's files when their configuration does not say: one definition each.

The Ansible roles write every one of these into the tools' configuration files; these defaults are what a tool
falls back on, and two tools reading the same file must fall back on the same path.
"""

from __future__ import annotations

# movctl's configuration (roles/movctl); MOVCTL_CONFIG in the environment overrides it, for movctl run in-process
# by another tool as for movctl on the command line.
MOVCTL_CONFIG = "/etc/mov/movctl.json"
MOVCTL_CONFIG_ENV = "MOVCTL_CONFIG"
# The installed commands (roles/host_tools).
MOVCTL = "/usr/local/bin/movctl"
BACKUP_TOOL = "/usr/local/bin/mov-backup"
# mov-backup's last result, and its restore drill's beside it (roles/backup): read by movctl and the status page.
BACKUP_STATUS_FILE = "/var/lib/mov-backup/status.json"
DRILL_STATUS_FILE = "/var/lib/mov-backup/drill.json"
# Every run's and drill's result, one JSON line each, beside them: the status page finds the last successful backup.
BACKUP_HISTORY_FILE = "/var/lib/mov-backup/history.jsonl"
# mov-backup's lock (flock), held while a run, a restore or a drill works; movctl bench refuses while it is held.
BACKUP_LOCK_FILE = "/run/lock/mov-backup.lock"
# Written by the stack role when a deploy starts and removed when it ends (roles/stack stack_deploy_marker).
DEPLOY_MARKER = "/run/mov-deploy.json"
