"""The reward server as part of a job: `spawn_reward_server` starts `rlsci serve-rewards` on a free
loopback port (a subprocess on the driver's CPUs) and waits until it answers; `RewardService` is the
trainer's handle, which grades through the HTTP client and restarts a server it started if it dies.

    with spawn_reward_server(config_path, log_path=run / "reward_server.log") as server:
        client = RewardClient(server.url)

A server named by `reward.url` is used as it is: if it stops answering, the run stops with an error
naming it. A failed grading call never becomes a step of zero rewards.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from rewards.base import RewardResult, Sample
from rewards.client import RewardClient, RewardServerError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RewardServerProcess:
    """`rlsci serve-rewards --config CONFIG` on 127.0.0.1:PORT, its output appended to `log_path`."""

    def __init__(self, config_path: str | Path | None, log_path: str | Path, overrides: Sequence[str] = (),
                 start_timeout_s: float = 120.0):
        self.config_path = config_path
        self.overrides = list(overrides)
        self.log_path = Path(log_path)
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "rlsci.cli", "serve-rewards", "--host", "127.0.0.1", "--port", str(port)]
        if self.config_path is not None:
            command += ["--config", str(self.config_path)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen([*command, *self.overrides], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the reward server exited with code {self.process.returncode} while starting; "
                                   f"its log: {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the reward server did not answer at {self.url} within "
                                   f"{self.start_timeout_s:.0f} s; its log: {self.log_path}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextlib.contextmanager
def spawn_reward_server(config_path: str | Path | None, log_path: str | Path,
                        overrides: Sequence[str] = ()) -> Iterator[RewardServerProcess]:
    """A started reward server (see RewardServerProcess), stopped on exit."""
    server = RewardServerProcess(config_path, log_path, overrides)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class RewardService:
    """Grades through a reward server: one this run started (`server`, restarted up to `restarts`
    times when it dies) or an external one at `url`."""

    def __init__(self, *, server: RewardServerProcess | None = None, url: str | None = None,
                 token: str | None = None, restarts: int = 2, reward: str = "default"):
        if (server is None) == (url is None):
            raise ValueError("RewardService: give a started server or the url of a running one")
        self.server, self.token, self.reward = server, token, reward
        self.restarts_left = restarts
        self.restarts = 0
        self.client = RewardClient(server.url if server else url, token=token)

    @property
    def url(self) -> str:
        return self.client.url

    def grade(self, items: Sequence[tuple[str, Sample]]) -> list[RewardResult]:
        while True:
            try:
                results = self.client.grade(self.reward, items)
            except (RewardServerError, httpx.TransportError) as exc:
                if self.server is None:
                    raise RuntimeError(f"the reward server at {self.url} failed: {exc}. Check that it is "
                                       "running (reward.url), or leave reward.url unset to start one") from exc
                if self.server.alive() or self.restarts_left == 0:
                    state = "is running" if self.server.alive() else "died and was restarted too often"
                    raise RuntimeError(f"grading failed and the run's reward server {state}: {exc}; "
                                       f"its log: {self.server.log_path}") from exc
                self._restart()
                continue
            if len(results) != len(items):
                raise RuntimeError(f"the reward server returned {len(results)} results for {len(items)} items")
            return results

    def _restart(self) -> None:
        code = self.server.process.returncode if self.server.process else None
        print(f"warning: the reward server died (exit code {code}); restarting it "
              f"(log: {self.server.log_path})", file=sys.stderr, flush=True)
        self.server.stop()
        self.server.start()
        self.restarts_left -= 1
        self.restarts += 1
        self.client.close()
        self.client = RewardClient(self.server.url, token=self.token)

    def close(self) -> None:
        self.client.close()
