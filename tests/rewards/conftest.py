"""Fixtures shared by tests/rewards: real `rlsci serve-rewards` processes on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pytest


class ServerProcesses:
    """Starts `rlsci serve-rewards` processes; stops any still running when the session ends.
    Each process writes its stderr to a temporary file (not a pipe that a long run could fill)."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    @staticmethod
    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def start(self, args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        """`rlsci serve-rewards ARGS --port PORT`, without waiting for it to come up."""
        cmd = [sys.executable, "-m", "rlsci.cli", "serve-rewards", "--port", str(port), *args]
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env or os.environ.copy())
        proc.log = log
        self.running.append(proc)
        return proc

    @staticmethod
    def log(proc: subprocess.Popen) -> str:
        proc.log.seek(0)
        return proc.log.read().decode(errors="replace")

    def wait_healthy(self, proc: subprocess.Popen, url: str, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {self.log(proc)}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server at {url} not healthy after {limit_s}s: {self.log(proc)}")

    def serve(self, args: list[str]) -> tuple[subprocess.Popen, str]:
        """Start a server on a free port and wait for /healthz -> (process, base url)."""
        port = self.free_port()
        proc = self.start(args, port)
        url = f"http://127.0.0.1:{port}"
        self.wait_healthy(proc, url)
        return proc, url

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.log.close()
        self.running.remove(proc)


@pytest.fixture(scope="session")
def server_processes():
    processes = ServerProcesses()
    yield processes
    for proc in list(processes.running):
        processes.stop(proc)
