"""playbooks/notify.yml (the deploy workflow's failure message) posts to the env's webhook, or says there is none."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import yaml
from conftest import REPO, ansible_env

sys.path.append(str(REPO / "tests" / "e2e"))
import check_platform as cp


def _inventory(tmp_path: Path, webhook_url: str) -> Path:
    inventory = tmp_path / "staging"
    inventory.mkdir()
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "mov_env": "staging",
        "mov_alert_contacts": {"webhook_url": webhook_url, "emails": []},
    }
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"mov": {"hosts": {"mov-staging-1": host}}}))
    return inventory


def _notify(inventory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory),
            str(REPO / "playbooks" / "notify.yml"),
            "-e",
            "notify_kind=deploy_failed",
            "-e",
            "notify_message='deploy of abc123 to staging failed'",
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_posts_the_message_to_the_webhook(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "calls.jsonl"
    ready = threading.Event()
    threading.Thread(target=cp.serve, args=(port, out, ready, 60.0), daemon=True).start()
    assert ready.wait(5)
    result = _notify(_inventory(tmp_path, f"http://127.0.0.1:{port}/hook"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    assert calls == [
        {"kind": "deploy_failed", "subject": "mov/staging", "message": "deploy of abc123 to staging failed"}
    ]


def test_without_a_webhook_it_says_nobody_was_notified(tmp_path: Path) -> None:
    result = _notify(_inventory(tmp_path, ""))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "webhook_url is empty for staging: nobody was notified" in result.stdout
