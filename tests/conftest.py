"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest
import ray


@pytest.fixture(scope="module")
def ray_cluster(request):
    """A local Ray cluster for one test module, sized by the module's ``RAY_RESOURCES`` (ray.init
    keyword arguments, e.g. ``{"num_cpus": 6, "num_gpus": 4}``: Ray only counts logical GPUs)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")  # Ray 2.60 turns token authentication on by default
        ray.init(**request.module.RAY_RESOURCES, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


@pytest.fixture
def ray_head():
    """A Ray head started with `ray start --head` on 127.0.0.1, as on a cluster; yields its dashboard
    address (http://127.0.0.1:PORT) once the job agent answers.

    Every port is a free one: the defaults (dashboard agent 52365, metrics, runtime-env agent) collide
    with any other Ray cluster on the machine, e.g. a test module's `ray_cluster`, and then the job agent
    never comes up ("No available agent"). The head runs in a process group of its own, stopped by
    signalling that group: `ray stop` would stop every Ray cluster on the machine."""
    import contextlib
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    import httpx


    ray_cmd = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    names = ("port", "dashboard-port", "node-manager-port", "object-manager-port", "runtime-env-agent-port",
             "dashboard-agent-grpc-port", "dashboard-agent-listen-port", "metrics-export-port", "ray-client-server-port")
    with contextlib.ExitStack() as held:  # every socket stays bound until all are chosen: distinct ports
        sockets = [held.enter_context(socket.socket()) for _ in names]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        ports = {name: sock.getsockname()[1] for name, sock in zip(names, sockets, strict=True)}
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's unix socket paths must fit 107 bytes
    head = subprocess.Popen([ray_cmd, "start", "--head", "--node-ip-address=127.0.0.1", "--num-cpus=4",
                             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--temp-dir={temp}",
                             *(f"--{name}={port}" for name, port in ports.items())],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        assert head.wait(timeout=180) == 0, head.stdout.read()
        deadline = time.monotonic() + 180  # the job agent comes up a few seconds after `ray start` returns
        while True:
            with contextlib.suppress(httpx.HTTPError):  # the agent's own HTTP server, which runs the jobs
                agent = f"http://127.0.0.1:{ports['dashboard-agent-listen-port']}/api/healthz"
                if httpx.get(agent, timeout=10).status_code == 200:
                    break
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                                 for p in sorted(temp.glob("session_latest/logs/dashboard_agent*")))
                pytest.fail(f"the job agent of the Ray head at {address} did not come up in 180 s\n{logs}")
            time.sleep(2)
        yield address
    finally:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, sig)
            time.sleep(wait)
        shutil.rmtree(temp, ignore_errors=True)
