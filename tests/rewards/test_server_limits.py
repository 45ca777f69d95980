"""The reward server's limits, as users run it (real `rlsci serve-rewards` processes on loopback):
start-up refusals, the token from a file, slow headers, hung-up clients, requests in flight,
SIGTERM with work still running, and the graded tail of long responses."""

from __future__ import annotations

import signal
import socket
import textwrap
import threading
import time

import httpx
import pytest

from rewards.base import Sample
from rewards.mcq import grade_mcq
from rewards.server_request import graded_tail

BLOCKING = textwrap.dedent(
    """
    import pathlib, time

    def blocks(response, sample):
        # response: a folder; says "started" there, then waits (30 s at most) for "release"
        folder = pathlib.Path(response)
        (folder / "started").touch()
        for _ in range(600):
            if (folder / "release").exists():
                return 0.75
            time.sleep(0.05)
        return -1.0
    """
)


def mcq_item(said: str) -> dict:
    return {
        "response": f"Answer: {said}",
        "sample": {"options": {"A": "a", "B": "b", "C": "c"}, "answer": "C"},
    }


def post(url: str, reward: str, items: list[dict], timeout: float = 30.0) -> httpx.Response:
    return httpx.post(f"{url}/v1/grade", json={"reward": reward, "items": items}, timeout=timeout)


def wait_for(path, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"{path} never appeared"


@pytest.fixture
def blocking(tmp_path):
    """A plug-in file with `blocks`, and folders a0.. for its items (all released at the end)."""
    path = tmp_path / "blocking.py"
    path.write_text(BLOCKING)
    folders = [tmp_path / f"a{i}" for i in range(4)]
    for folder in folders:
        folder.mkdir()
    yield f"{path}:blocks", folders
    for folder in folders:
        (folder / "release").touch()


# ---------------------------------------------------------------------- start-up
def test_port_out_of_range_is_refused(server_processes):
    # 70000 used to bind 70000 mod 65536 = 4464 while the log said 70000
    proc = server_processes.start([], 70000)
    assert proc.wait(timeout=60) == 2
    assert "--port: expected an integer in 1..65535, got 70000" in server_processes.log(proc)
    server_processes.stop(proc)


def test_token_from_a_file(server_processes, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    proc, url = server_processes.serve(["--token-file", str(token_file)])
    try:
        item = [mcq_item("C")]
        assert post(url, "mcq", item).status_code == 401
        headers = {"Authorization": "Bearer from-a-file"}
        answer = httpx.post(f"{url}/v1/grade", json={"reward": "mcq", "items": item}, headers=headers)
        assert answer.status_code == 200 and answer.json()["results"][0]["correct"] is True
    finally:
        server_processes.stop(proc)
    missing = server_processes.start(["--token-file", str(tmp_path / "nope")], server_processes.free_port())
    assert missing.wait(timeout=60) == 2
    assert f"--token-file {tmp_path / 'nope'}: cannot read it" in server_processes.log(missing)
    server_processes.stop(missing)


# ---------------------------------------------------------------------- connections and requests
def test_a_connection_with_unfinished_headers_is_closed(server_processes):
    proc, url = server_processes.serve(["reward.server.header_timeout_s=1"])
    try:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/grade HTTP/1.1\r\nHost: x\r\n")  # never finished
            sock.settimeout(20)  # margin: the server closes it after ~1 s
            assert sock.recv(1024) == b""  # closed by the server (a timeout here raises)
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        server_processes.stop(proc)


def test_a_client_that_hangs_up_cancels_its_queued_items(server_processes, blocking):
    spec, folders = blocking
    args = ["--reward", f"blocks={spec}", "--workers", "1", "reward.timeout_s=60"]
    proc, url = server_processes.serve(args)
    try:
        items = [{"response": str(f), "sample": {}} for f in folders[:3]]
        outcome: list[str] = []

        def give_up_after_2s() -> None:
            try:
                outcome.append(str(post(url, "blocks", items, timeout=2.0).status_code))
            except httpx.ReadTimeout:
                outcome.append("gave up")

        hung_up = threading.Thread(target=give_up_after_2s)
        hung_up.start()
        wait_for(folders[0] / "started")
        hung_up.join(timeout=30)
        assert outcome == ["gave up"]  # a0 still blocks
        deadline = time.monotonic() + 30  # the server records the hang-up (499) once it cancelled
        gone = 'rlsci_reward_requests_total{endpoint="/v1/grade",status="499"} 1'
        while gone not in httpx.get(f"{url}/metrics").text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone in httpx.get(f"{url}/metrics").text
        (folders[0] / "release").touch()
        (folders[3] / "release").touch()
        # a1 and a2 would block 30 s each: this answer comes first only if they were dropped
        answer = post(url, "blocks", [{"response": str(folders[3]), "sample": {}}], timeout=25.0)
        assert answer.status_code == 200 and answer.json()["results"][0]["score"] == 0.75
        assert not (folders[1] / "started").exists()
    finally:
        for folder in folders:
            (folder / "release").touch()
        server_processes.stop(proc)


def test_requests_past_the_in_flight_limit_wait(server_processes, blocking):
    spec, folders = blocking
    args = ["--reward", f"blocks={spec}", "reward.server.max_concurrent_requests=1", "reward.timeout_s=60"]
    proc, url = server_processes.serve(args)
    try:
        first: dict[str, httpx.Response] = {}
        second: dict[str, httpx.Response] = {}
        blocked = [{"response": str(folders[0]), "sample": {}}]
        t1 = threading.Thread(target=lambda: first.update(answer=post(url, "blocks", blocked)))
        t1.start()
        wait_for(folders[0] / "started")
        t2 = threading.Thread(target=lambda: second.update(answer=post(url, "mcq", [mcq_item("C")])))
        t2.start()
        t2.join(timeout=3)  # a server without the limit answers this built-in grade at once
        assert "answer" not in second  # it waits for the first request's slot
        assert httpx.get(f"{url}/healthz").status_code == 200  # other endpoints are not held
        (folders[0] / "release").touch()
        t1.join(timeout=30)
        t2.join(timeout=30)
        assert first["answer"].json()["results"][0]["score"] == 0.75
        assert second["answer"].json()["results"][0]["correct"] is True
    finally:
        server_processes.stop(proc)


def test_no_worker_running_is_503_until_one_starts_again(server_processes, tmp_path):
    # the plug-in refuses to load while "broken" exists: after its worker crashes, no worker runs
    broken = tmp_path / "broken"
    plugin = tmp_path / "flaky.py"
    plugin.write_text(
        f"import os, pathlib\nif pathlib.Path({str(broken)!r}).exists():\n    raise RuntimeError('broken for now')\n"
        "def score(response, sample):\n    if response == 'crash':\n        os._exit(1)\n    return 1.0\n"
    )
    proc, url = server_processes.serve(["--reward", f"flaky={plugin}:score", "--workers", "1"])
    try:
        broken.touch()
        crashed = post(url, "flaky", [{"response": "crash", "sample": {}}])
        assert crashed.json()["results"][0]["error"] == "worker crashed (exit code 1)"
        deadline = time.monotonic() + 30  # backoff 0.5, 1, 2, 4 s: then a request surely finds no worker
        while "retrying in 4s" not in str(httpx.get(f"{url}/healthz").json()) and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = post(url, "flaky", [{"response": "x", "sample": {}}])
        assert refused.status_code == 503, refused.text  # clients retry a 503: never a silent zero
        assert "broken for now" in refused.json()["detail"] and refused.headers["Retry-After"] == "1"
        broken.unlink()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/healthz").json()["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert post(url, "flaky", [{"response": "x", "sample": {}}]).json()["results"][0]["score"] == 1.0
    finally:
        server_processes.stop(proc)


def test_sigterm_does_not_wait_for_hanging_work(server_processes, blocking):
    spec, folders = blocking
    args = ["--reward", f"blocks={spec}", "reward.timeout_s=60", "reward.server.shutdown_timeout_s=1"]
    proc, url = server_processes.serve(args)
    answers: list = []

    def call() -> None:
        try:
            answers.append(
                post(url, "blocks", [{"response": str(folders[0]), "sample": {}}], 60.0).status_code
            )
        except httpx.TransportError as exc:
            answers.append(type(exc).__name__)

    thread = threading.Thread(target=call)
    thread.start()
    wait_for(folders[0] / "started")
    proc.send_signal(signal.SIGTERM)
    # margin: the item would block 30 s; the server gives running requests 1 s, then stops
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM), server_processes.log(proc)  # uvicorn re-raises it
    thread.join(timeout=30)
    assert len(answers) == 1  # the client got an answer or a closed connection, not silence
    server_processes.stop(proc)


# ---------------------------------------------------------------------- the graded tail
SAMPLE = Sample(options={"A": "a", "B": "b", "C": "c", "D": "d"}, answer="C")


def test_graded_tail_keeps_the_grade_of_a_long_response():
    response = "Let me think. " * 100_000 + "The answer is B... wait, no.\nAnswer: C"
    tail = graded_tail(response, 4096)
    assert len(tail) == 4096
    full, cut = grade_mcq(response, SAMPLE, mode="lenient"), grade_mcq(tail, SAMPLE, mode="lenient")
    assert (
        (cut.pred, cut.correct, cut.format_ok)
        == (full.pred, full.correct, full.format_ok)
        == ("C", True, True)
    )


def test_graded_tail_keeps_reasoning_left_open_unanswered():
    # "<think>" opened at the start and never closed: truncated reasoning, no prediction, even
    # when the cut leaves only an answer line of the reasoning
    response = "<think>" + "hmm " * 50_000 + "Answer: C"
    assert grade_mcq(graded_tail(response, 4096), SAMPLE).pred is None
    closed = "<think>" + "hmm " * 50_000 + "</think>Answer: C"
    assert grade_mcq(graded_tail(closed, 4096), SAMPLE).pred == "C"
    assert graded_tail("short", 4096) == "short"
