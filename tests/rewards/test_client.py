"""RewardClient / AsyncRewardClient against a real server process: chunking keeps order,
retries cover a server that starts late and 5xx answers, 4xx fail at once with the server's
message, and the last failure raises a clear RewardServerError (never silent zeros)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from rewards.base import Sample
from rewards.client import AsyncRewardClient, RewardClient, RewardServerError
from rewards.config import RewardConfig
from rewards.registry import load_fn

LETTERS = "ABCDEFGHIJ"


@pytest.fixture(scope="module")
def url(server_processes):
    proc, address = server_processes.serve([])  # built-ins only, no token
    yield address
    server_processes.stop(proc)


def mcq_items(n: int) -> list[tuple[str, Sample]]:
    """Item i answers LETTERS[i % 10] and its gold is LETTERS[(i // 3) % 10]."""
    return [
        (
            f"Reasoning about item {i}.\nAnswer: {LETTERS[i % 10]}",
            Sample(id=str(i), options={k: f"opt {k}" for k in LETTERS}, answer=LETTERS[(i // 3) % 10]),
        )
        for i in range(n)
    ]


class FlakyProxy:
    """An HTTP proxy in front of the real server: after the first `skip` requests, the next
    `failures` requests get `fail_status` with `fail_body` (or nothing at all when `delay_s`
    exceeds the client's timeout), the others are forwarded. Counts the requests it receives
    (`wait_for_requests`)."""

    def __init__(
        self,
        upstream: str,
        failures: int,
        fail_status: int = 503,
        delay_s: float = 0.0,
        fail_body: bytes = b'{"detail": "injected failure"}',
        port: int = 0,
        skip: int = 0,
    ):
        self.upstream, self.failures, self.fail_status, self.delay_s = (
            upstream,
            failures,
            fail_status,
            delay_s,
        )
        self.fail_body, self.skip = fail_body, skip
        self.requests = 0
        self.arrived = threading.Condition()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 -- the name http.server dispatches to
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.arrived:
                    proxy.requests += 1
                    proxy.arrived.notify_all()
                time.sleep(proxy.delay_s)
                if proxy.skip < proxy.requests <= proxy.skip + proxy.failures:
                    status, content = proxy.fail_status, proxy.fail_body
                else:
                    headers = {"Content-Type": self.headers.get("Content-Type", "")}
                    answer = httpx.post(
                        f"{proxy.upstream}{self.path}", content=body, headers=headers, timeout=30
                    )
                    status, content = answer.status_code, answer.content
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def wait_for_requests(self, n: int, limit_s: float = 60.0) -> int:
        """The request count once it reaches n: a client that timed out may return before the
        proxy's handler thread has counted its request on a busy machine."""
        with self.arrived:
            self.arrived.wait_for(lambda: self.requests >= n, timeout=limit_s)
            return self.requests

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_chunked_results_match_in_process_grading_in_order(url):
    items = mcq_items(50)
    mcq = load_fn("mcq", RewardConfig())
    expected = [mcq(response, sample) for response, sample in items]
    with RewardClient(url, max_batch=7, concurrency=3) as client:  # 8 chunks, 3 in flight
        results = client.grade("mcq", items)
    assert [(r.score, r.correct, r.pred) for r in results] == [(e.score, e.correct, e.pred) for e in expected]
    assert sum(r.correct for r in results) > 0 and sum(not r.correct for r in results) > 0


def test_async_client_list_and_health(url):
    async def main():
        async with AsyncRewardClient(url, max_batch=16) as client:
            results = await client.grade("mcq", mcq_items(40))
            return results, await client.list_rewards(), await client.health()

    results, rewards, health = asyncio.run(main())
    assert [r.pred for r in results] == [LETTERS[i % 10] for i in range(40)]
    assert {"mcq", "mcq_strict", "default"} <= {row["name"] for row in rewards}
    assert health["status"] == "ok"


def test_sync_client_works_inside_a_running_event_loop(url):
    # as in a Ray async actor or a notebook: a loop is running on this thread
    async def inside_loop():
        with RewardClient(url) as client:
            return client.grade("mcq", mcq_items(3))

    assert [r.pred for r in asyncio.run(inside_loop())] == ["A", "B", "C"]


def test_retries_until_a_late_server_comes_up(url):
    # Event-driven, no deadline: the port first holds a listener that drops the client's first
    # connection; only then is it closed (later attempts are refused) and a proxy to the real
    # server bound on the same port. The client must get through on a retry.
    gate = socket.create_server(("127.0.0.1", 0))
    port = gate.getsockname()[1]
    late: dict[str, FlakyProxy] = {}

    def come_up_after_the_first_attempt():
        conn, _ = gate.accept()
        conn.close()  # the first attempt: "server disconnected without sending a response"
        gate.close()
        late["proxy"] = FlakyProxy(url, failures=0, port=port)

    opener = threading.Thread(target=come_up_after_the_first_attempt)
    opener.start()
    try:
        # 0.05 + 0.1 + ... s between up to 9 attempts: binding a local socket takes far less
        with RewardClient(f"http://127.0.0.1:{port}", retries=8, backoff_s=0.05) as client:
            results = client.grade("mcq", mcq_items(4))
        assert [r.pred for r in results] == ["A", "B", "C", "D"]
        opener.join()
        assert late["proxy"].requests == 1  # the dropped attempt never reached it
    finally:
        opener.join(timeout=5)
        gate.close()
        if "proxy" in late:
            late["proxy"].close()


def test_5xx_is_retried(url):
    proxy = FlakyProxy(url, failures=2)
    try:
        with RewardClient(proxy.url, retries=3, backoff_s=0.01) as client:
            results = client.grade("mcq", mcq_items(5))
        assert [r.pred for r in results] == list("ABCDE")
        assert proxy.requests == 3  # two 503s, then the forwarded request
    finally:
        proxy.close()


def test_clear_error_after_the_last_retry(url, server_processes):
    proxy = FlakyProxy(url, failures=100, fail_status=502)
    try:
        with RewardClient(proxy.url, retries=2, backoff_s=0.01) as client:
            with pytest.raises(
                RewardServerError, match=r"failed after 3 attempts; last error: HTTP 502: injected failure"
            ):
                client.grade("mcq", mcq_items(2))
        assert proxy.requests == 3
    finally:
        proxy.close()
    with RewardClient(
        f"http://127.0.0.1:{server_processes.free_port()}", retries=1, backoff_s=0.01
    ) as client:
        with pytest.raises(RewardServerError, match=r"failed after 2 attempts; last error: ConnectError"):
            client.grade("mcq", mcq_items(2))


def test_timeouts_are_explicit_and_retried(url):
    proxy = FlakyProxy(url, failures=0, delay_s=1.0)
    try:
        with RewardClient(proxy.url, timeout_s=0.2, retries=1, backoff_s=0.01) as client:
            with pytest.raises(RewardServerError, match="failed after 2 attempts; last error: ReadTimeout"):
                client.grade("mcq", mcq_items(1))
        assert proxy.wait_for_requests(2) == 2
    finally:
        proxy.close()


def test_4xx_is_not_retried_and_carries_the_server_message(url):
    proxy = FlakyProxy(url, failures=0)
    try:
        with RewardClient(proxy.url, retries=3, backoff_s=0.01) as client:
            with pytest.raises(RewardServerError, match="unknown reward 'nope'") as info:
                client.grade("nope", mcq_items(1))
        assert info.value.status == 404
        assert proxy.requests == 1
    finally:
        proxy.close()


def test_a_200_without_results_is_an_error_not_zeros(url):
    # a proxy or a wrong server answers 200 with some other JSON: an error, never empty results
    proxy = FlakyProxy(url, failures=1, fail_status=200)
    try:
        with RewardClient(proxy.url, retries=3, backoff_s=0.01) as client:
            with pytest.raises(RewardServerError, match="answered something that is not a list of results"):
                client.grade("mcq", mcq_items(2))
        assert proxy.requests == 1
    finally:
        proxy.close()


RESULT = {"correct": True, "pred": "A", "extracted_by": "answer_line", "format_ok": True, "error": None}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"results": [{"score": NaN, %s}]}', "score must be a finite number, got nan"),
        (b'{"results": [{"score": Infinity, %s}]}', "score must be a finite number, got inf"),
        (b'{"results": [{"score": "1.0", %s}]}', "score must be a finite number, got '1.0'"),
        (b'{"results": [{"score": true, %s}]}', "score must be a finite number, got True"),
        (b'{"results": [{"score": 1.0, %s, "correct": "yes"}]}', "correct must be a bool or null, got 'yes'"),
        (b'{"results": [{"score": 1.0}]}', "a result lacks correct, pred, extracted_by, format_ok, error"),
        (b'{"results": {"score": 1.0}}', "not a list of results: dict"),
    ],
)
def test_a_malformed_result_is_a_protocol_error_not_a_reward(url, body, problem):
    fields = json.dumps(RESULT)[1:-1].encode()  # the other fields, valid
    proxy = FlakyProxy(url, failures=1, fail_status=200, fail_body=body.replace(b"%s", fields))
    try:
        with RewardClient(proxy.url, retries=3, backoff_s=0.01) as client:
            with pytest.raises(RewardServerError) as info:
                client.grade("mcq", mcq_items(1))
        assert problem in str(info.value)
        assert proxy.requests == 1  # not retried: the same server would answer the same
    finally:
        proxy.close()


def test_a_malformed_result_is_named_by_its_item_in_the_call(url):
    # 5 items in chunks of 2: the third chunk holds item 4, whose score is text
    good = {"score": 0.0, **RESULT}
    body = json.dumps({"results": [{**good, "score": "high"}]}).encode()
    proxy = FlakyProxy(url, failures=1, fail_status=200, fail_body=body, skip=2)  # items 0-3 pass
    try:
        with RewardClient(proxy.url, max_batch=2, concurrency=1, retries=0) as client:
            with pytest.raises(RewardServerError, match="invalid result for item 4: score must be a finite"):
                client.grade("mcq", mcq_items(5))
    finally:
        proxy.close()


@pytest.mark.parametrize("address", ["127.0.0.1:8711", "localhost:8711", "ftp://127.0.0.1:8711", ""])
def test_a_url_without_an_http_scheme_fails_at_once(address):
    with pytest.raises(ValueError, match=f"the url must start with http:// or https://, got {address!r}"):
        RewardClient(address, retries=5)
