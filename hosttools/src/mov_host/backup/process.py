"""The commands mov-backup runs (docker compose, rclone, ...): run one, or fail naming it and its error output."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence

from mov_host.backup.config import Config
from mov_host.backup.errors import BackupError


def run_command(argv: Sequence[str], what: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip()
        raise BackupError(f"{what} failed (exit {result.returncode}): {err}")
    return result.stdout.decode(errors="replace")


class Started:
    """A command running in the background while the caller works; its output goes to files (nobody reads a pipe
    meanwhile), read when it is waited for. close() kills it if it still runs."""

    def __init__(self, argv: Sequence[str], what: str) -> None:
        self.what = what
        # Both closed by close().
        self._out = tempfile.TemporaryFile()  # noqa: SIM115
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(list(argv), stdout=self._out, stderr=self._err)

    def result(self) -> tuple[int, str, str]:
        """Its exit code, standard output and error output, once it ended."""
        try:
            code = self._proc.wait()
            self._out.seek(0)
            self._err.seek(0)
            return code, self._out.read().decode(errors="replace"), self._err.read().decode(errors="replace")
        finally:
            self.close()

    def wait(self) -> str:
        """Its output, or BackupError naming it and its error output (as run_command)."""
        code, out, err = self.result()
        if code != 0:
            raise BackupError(f"{self.what} failed (exit {code}): {err.strip()}")
        return out

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._out.close()
        self._err.close()


def compose(cfg: Config, *args: str) -> list[str]:
    return ["docker", "compose", "--project-directory", cfg.stack_dir, "-p", cfg.stack_project, *args]


def service_owner(cfg: Config, service: str) -> tuple[int, int] | None:
    """The numeric uid:gid the compose file runs the service as, or None (the image's own user)."""
    raw = run_command(compose(cfg, "config", "--format", "json"), "docker compose config")
    user = str(json.loads(raw)["services"][service].get("user", ""))
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return None
    return int(uid), int(gid) if gid.isdigit() else int(uid)
