#!/usr/bin/env python3
"""The "VPS in a box": a throwaway Debian host with systemd, in a container (13 by default, 12 on demand).

It is the Molecule platform of every role and the target of the ``local``
inventory. No image registry is needed: the image is built with debootstrap and
``docker import``. Where a registry is reachable and ``MOV_BOX_PULL`` names an
image, that image is pulled and tagged instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "trixie"
# The Debian releases a box can be: the ones preflight accepts.
SUITES = ("trixie", "bookworm")
IMAGE = os.environ.get("MOV_BOX_IMAGE", f"mov/box:{SUITE}")
CONTAINER = os.environ.get("MOV_BOX_NAME", "mov-box")
MIRROR = os.environ.get("MOV_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("MOV_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
# A cloud VPS image ships these (sshd included: the site scenario reaches its boxes over SSH, as a VPS is);
# the roles install everything else.
PACKAGES = (
    "python3",
    "sudo",
    "systemd",
    "systemd-sysv",
    "ca-certificates",
    "iproute2",
    "dbus",
    "tzdata",
    "openssh-server",
)
# The image carries the package set it was built with; an image built with another set is rebuilt.
PACKAGES_LABEL = "org.mov.box.packages"

# What a systemd container needs on a host where --privileged is refused (see docs/).
RUN_FLAGS: tuple[str, ...] = (
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "NET_ADMIN",
    "--cap-add",
    "NET_RAW",
    # runc needs it to `docker exec` into an inner container whose process is not root (healthchecks).
    "--cap-add",
    "SYS_PTRACE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "-v",
    "/var/lib/docker",
)

# The developer loop (docs/getting-started.md): the box sees the controller's analytics source, read-only, where the
# local env's worker mounts it from (mov_dev_loop_source_dir, group_vars/all/stack.yml; a test keeps the two equal).
# MOV_DEV_ANALYTICS_SRC names another copy (scenarios/up edits a temporary one, never the developer's tree).
DEV_SOURCE = Path(os.environ.get("MOV_DEV_ANALYTICS_SRC") or REPO / "analytics" / "src")
DEV_SOURCE_IN_BOX = "/opt/mov-dev/analytics-src"

# Units that only make sense on real hardware; masked so the box boots clean.
MASKED_UNITS = (
    "getty@tty1.service",
    "console-getty.service",
    "systemd-remount-fs.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
)


def run(cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(list(cmd), check=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def image_exists(image: str = IMAGE) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def image_current(image: str = IMAGE) -> bool:
    """Whether the image exists and was built with today's PACKAGES."""
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{PACKAGES_LABEL}"}}}}', image],
        capture_output=True,
        text=True,
    )
    return out.returncode == 0 and out.stdout.strip() == ",".join(PACKAGES)


def image_for(suite: str) -> str:
    """The box image of a Debian release: MOV_BOX_IMAGE for the default one, mov/box:<suite> otherwise."""
    return IMAGE if suite == SUITE else f"mov/box:{suite}"


def container_running(name: str = CONTAINER) -> bool:
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "true"


def _prepare_rootfs(root: Path, suite: str) -> None:
    (root / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {suite} main\ndeb {MIRROR} {suite}-updates main\ndeb {SECURITY_MIRROR} {suite}-security main\n"
    )
    # A VPS image's sshd has host keys of its own: generated on each box's first boot, never baked into the image.
    # (Debian's cloud images do it with cloud-init; here a drop-in runs ssh-keygen -A before sshd's config test.)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "host-keys.conf").write_text(
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
    )
    # systemd generates a fresh machine-id on first boot of each container.
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.is_symlink() or dbus_id.exists():
        dbus_id.unlink()
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        if not link.is_symlink():
            link.symlink_to("/dev/null")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for lists in (root / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()


def build(force: bool = False, suite: str = SUITE) -> None:
    """Build the box image of a Debian release unless it is current (or pull it where MOV_BOX_PULL says so)."""
    image = image_for(suite)
    pull = os.environ.get("MOV_BOX_PULL")
    if pull and suite == SUITE:
        if not image_exists(image) or force:
            run(["docker", "pull", pull])
            run(["docker", "tag", pull, image])
        return
    if image_current(image) and not force:
        print(f"{image} exists; reusing it (--force rebuilds)")
        return
    if shutil.which("debootstrap") is None:
        sys.exit("debootstrap is missing: apt-get install debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mov-box-") as tmp:
        root = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                suite,
                str(root),
                MIRROR,
            ]
        )
        _prepare_rootfs(root, suite)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        run(
            [
                "docker",
                "import",
                "--change",
                'CMD ["/lib/systemd/systemd"]',
                "--change",
                "ENV container=docker",
                "--change",
                f"LABEL {PACKAGES_LABEL}={','.join(PACKAGES)}",
                "-",
                image,
            ],
            stdin=tar.stdout,
        )
        if tar.wait() != 0:
            sys.exit("tar of the box root filesystem failed")
    print(f"built {image} in {time.monotonic() - started:.0f}s")


def ensure_admin_key() -> Path:
    """The local env's admin key pair: throwaway, git-ignored, private half 0600."""
    key = REPO / ".cache" / "local-box" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mov-local-box", "-f", str(key)])
    key.chmod(0o600)
    return key


def create(publish: Sequence[str] = ()) -> None:
    """Start the box (building its image first if needed) and wait for systemd."""
    ensure_admin_key()
    build()
    if container_running():
        print(f"{CONTAINER} is already running")
        return
    subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True)
    ports = [arg for spec in publish for arg in ("-p", spec)]
    if not DEV_SOURCE.is_dir():
        sys.exit(f"{DEV_SOURCE} is not a directory (MOV_DEV_ANALYTICS_SRC: the analytics source the box mounts)")
    mounts = ["-v", f"{DEV_SOURCE.resolve()}:{DEV_SOURCE_IN_BOX}:ro"]
    run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            CONTAINER,
            "--hostname",
            CONTAINER,
            *RUN_FLAGS,
            *ports,
            *mounts,
            IMAGE,
            "/lib/systemd/systemd",
        ]
    )
    wait_for_systemd(CONTAINER)


def wait_for_systemd(name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running"],
            capture_output=True,
            text=True,
        )
        state = out.stdout.strip()
        if state in ("running", "degraded"):
            print(f"{name}: systemd is {state}")
            return
        time.sleep(1)
    sys.exit(f"{name}: systemd did not finish booting in {timeout:.0f}s (state: {state or 'unknown'})")


# Run in the box by `forward`: one TCP connection to the box's 127.0.0.1:argv[1], piped to stdin and stdout.
_RELAY = """
import os, select, socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
while True:
    ready = select.select([0, sock], [], [])[0]
    if 0 in ready:
        data = os.read(0, 65536)
        if not data:
            break
        sock.sendall(data)
    if sock in ready:
        data = sock.recv(65536)
        if not data:
            break
        os.write(1, data)
"""


def _relay(client: socket.socket, port: int) -> None:
    relay = subprocess.Popen(
        ["docker", "exec", "-i", CONTAINER, "python3", "-c", _RELAY, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert relay.stdin is not None and relay.stdout is not None
    to_box, from_box = relay.stdin, relay.stdout

    def upstream() -> None:
        with contextlib.suppress(OSError):  # either side gone: the relay ends
            while data := client.recv(65536):
                to_box.write(data)
                to_box.flush()
            to_box.close()

    threading.Thread(target=upstream, daemon=True).start()
    with contextlib.suppress(OSError):
        while data := os.read(from_box.fileno(), 65536):
            client.sendall(data)
    client.close()
    relay.wait()


def forward(port: int, local_port: int) -> None:
    """Relay this machine's 127.0.0.1:local_port to the box's 127.0.0.1:port (where the stack publishes its
    loopback-only ports, e.g. the developer loop's debugger) through `docker exec`: no SSH tunnel, whose TCP
    forwarding the box's hardened sshd refuses as a real VPS's does."""
    if not container_running():
        sys.exit(f"{CONTAINER} is not running: python3 scripts/dev.py up")
    with socket.create_server(("127.0.0.1", local_port)) as server:
        print(f"127.0.0.1:{local_port} -> {CONTAINER}'s 127.0.0.1:{port} (Ctrl-C stops)", flush=True)
        while True:
            client, _ = server.accept()
            threading.Thread(target=_relay, args=(client, port), daemon=True).start()


def destroy() -> None:
    subprocess.run(["docker", "rm", "-f", "-v", CONTAINER], capture_output=True)
    print(f"{CONTAINER} removed")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build the box image (debootstrap + docker import)")
    p_build.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    p_build.add_argument("--suite", choices=SUITES, default=SUITE, help=f"the Debian release (default {SUITE})")
    p_create = sub.add_parser("create", help="start the box container")
    p_create.add_argument(
        "-p", "--publish", action="append", default=[], help="docker -p spec, repeatable (e.g. 127.0.0.1:8443:443)"
    )
    p_forward = sub.add_parser("forward", help="relay a local port to one on the box's loopback (e.g. 5678)")
    p_forward.add_argument("port", type=int, help="the port on the box's 127.0.0.1")
    p_forward.add_argument("--local-port", type=int, help="this machine's 127.0.0.1 port (default: the same)")
    sub.add_parser("destroy", help="remove the box container and its volumes")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(force=args.force, suite=args.suite)
    elif args.command == "create":
        create(args.publish)
    elif args.command == "forward":
        with contextlib.suppress(KeyboardInterrupt):
            forward(args.port, args.local_port or args.port)
    else:
        destroy()


if __name__ == "__main__":
    main()
