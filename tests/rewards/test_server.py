"""The reward server as users run it: a real `rlsci serve-rewards` process on a free loopback
port, exercised over HTTP (good requests, bad requests, auth, failing user functions, metrics)."""

from __future__ import annotations

import json
import os
import re
import textwrap
import threading
import time

import httpx
import pytest

from rewards.config import RewardConfig, RewardServerConfig
from rewards.server import check_server_config
from rewards.server_request import RequestError, parse_grade_request

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_AUTH = AUTH | {"Content-Type": "application/json"}
LETTERS = "ABCDEFGHIJ"

USER_FUNCTIONS = textwrap.dedent(
    """
    import os
    import time

    def raises(response, sample):
        raise ValueError("this reward always fails")

    def sleeps(response, sample):
        if response == "hang":
            time.sleep(60)
        return 0.5

    def crashes(response, sample):
        os._exit(3)

    def blocks_until_released(response, sample):
        # response: a folder; says "started" there, then waits (30 s at most) for "release"
        import pathlib
        folder = pathlib.Path(response)
        (folder / "started").touch()
        for _ in range(600):
            if (folder / "release").exists():
                return 0.75
            time.sleep(0.05)
        raise TimeoutError("never released")

    class Opaque:  # defined here: the server process cannot unpickle it
        def __repr__(self):
            return "<Opaque>"

    def returns_objects(response, sample):
        from rewards.base import RewardResult

        return RewardResult(score=0.25, pred=Opaque(), info={"obj": Opaque()})
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_processes):
    """A server with a weighted default reward (mcq + a raising user term) and three user
    functions, 1 s per-item timeout, small limits, and a token."""
    root = tmp_path_factory.mktemp("server")
    funcs = root / "user_rewards.py"
    funcs.write_text(USER_FUNCTIONS)
    config = root / "server.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            reward:
              terms:
                - {{fn: mcq, weight: 1.0}}
                - {{fn: "{funcs}:raises", weight: 0.5}}
              timeout_s: 1.0
              server:
                workers: 2
                max_batch: 64
                max_body_bytes: 100000
                token: {TOKEN}
            """
        )
    )
    extra = ["--reward", f"sleepy={funcs}:sleeps", "--reward", f"crashy={funcs}:crashes",
             "--reward", f"objects={funcs}:returns_objects"]  # fmt: skip
    proc, url = server_processes.serve(["--config", str(config), *extra])
    yield {"url": url, "raises": f"{funcs}:raises"}
    server_processes.stop(proc)


def grade(url: str, reward: str, items: list[dict], headers=AUTH) -> httpx.Response:
    return httpx.post(f"{url}/v1/grade", json={"reward": reward, "items": items}, headers=headers, timeout=30)


def mcq_item(said: str, gold: str = "C") -> dict:
    return {
        "response": f"Let me think step by step. The answer is {said}.\nAnswer: {said}",
        "sample": {"options": {k: f"option {k}" for k in LETTERS}, "answer": gold, "domain": "physics"},
    }


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{label_text}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def get_metrics(url: str) -> str:
    response = httpx.get(f"{url}/metrics", headers=AUTH)
    assert response.status_code == 200
    return response.text


# ---------------------------------------------------------------------- good requests
def test_grade_mcq_in_item_order(server):
    said = ["C", "A", "C", "J", "B"]
    response = grade(server["url"], "mcq", [mcq_item(s) for s in said])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["pred"] for r in results] == said
    assert [r["correct"] for r in results] == [s == "C" for s in said]
    assert [r["score"] for r in results] == [1.0 if s == "C" else 0.0 for s in said]
    assert set(results[0]) == {"score", "correct", "pred", "extracted_by", "format_ok", "error"}


def test_default_is_the_configured_weighted_reward(server):
    # default = 1.0 * mcq + 0.5 * raises; the raising term makes the item an error (score 0)
    results = grade(server["url"], "default", [mcq_item("C")]).json()["results"]
    assert results[0]["score"] == 0.0
    assert "this reward always fails" in results[0]["error"]


def test_list_rewards_and_health(server):
    names = {row["name"] for row in httpx.get(f"{server['url']}/v1/rewards", headers=AUTH).json()["rewards"]}
    assert {
        "mcq",
        "mcq_strict",
        "format",
        "reference",
        "default",
        "sleepy",
        "crashy",
        server["raises"],
    } <= names
    health = httpx.get(f"{server['url']}/healthz").json()
    assert health["status"] == "ok" and health["workers"] == 2


def test_concurrent_clients_get_their_own_answers(server):
    failures: list[str] = []

    def client(k: int) -> None:
        with httpx.Client(headers=AUTH, timeout=30) as http:
            for rep in range(5):
                said = [LETTERS[(k + rep + i) % 10] for i in range(32)]
                payload = {"reward": "mcq", "items": [mcq_item(s) for s in said]}
                try:  # an exception in a thread would not fail the test by itself
                    results = http.post(f"{server['url']}/v1/grade", json=payload).json()["results"]
                except Exception as exc:  # noqa: BLE001 -- reported through `failures`
                    failures.append(f"client {k} request {rep}: {type(exc).__name__}: {exc}")
                    continue
                if [r["pred"] for r in results] != said:
                    failures.append(f"client {k} request {rep}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


# ---------------------------------------------------------------------- bad requests
@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        (b'{"reward": "mcq", "items": [', 400, "malformed JSON"),
        (b"[1, 2]", 422, "body: expected a JSON object"),
        (b'{"reward": "mcq"}', 422, "items: missing"),
        (b'{"reward": "mcq", "items": {"response": "x"}}', 422, "items: expected a list"),
        (b'{"reward": 3, "items": []}', 422, "reward: expected a string"),
    ],
)
def test_bad_bodies_name_the_problem(server, body, status, names):
    response = httpx.post(f"{server['url']}/v1/grade", content=body, headers=JSON_AUTH)
    assert response.status_code == status
    assert names in response.json()["detail"]


def test_bad_items_name_the_field(server):
    items = [mcq_item("A") for _ in range(5)]
    del items[3]["response"]
    response = grade(server["url"], "mcq", items)
    assert response.status_code == 422
    assert response.json()["detail"] == "items[3].response: missing"

    items = [mcq_item("A"), {"response": "x", "sample": {"options": 3, "answer": "A"}}]
    response = grade(server["url"], "mcq", items)
    assert (response.status_code, response.json()["detail"]) == (
        422,
        "items[1].sample.options: expected an object {letter: text} or a list of texts, got number",
    )
    # options as a list of texts, as the data loaders accept them: lettered A, B, ...
    listed = {"response": "Answer: B", "sample": {"options": ["Oxygen", "Nitrogen"], "answer": "B"}}
    response = grade(server["url"], "mcq", [listed])
    assert response.status_code == 200
    assert (response.json()["results"][0]["correct"], response.json()["results"][0]["pred"]) == (True, "B")
    response = grade(server["url"], "mcq", [{"response": 7, "sample": {}}])
    assert response.json()["detail"] == "items[0].response: expected a string, got number"


def test_limits_answer_413_naming_the_setting(server):
    too_many = grade(server["url"], "mcq", [{"response": "x", "sample": {}}] * 65)  # max_batch = 64
    assert too_many.status_code == 413
    assert "max_batch=64" in too_many.json()["detail"]
    big = grade(server["url"], "mcq", [{"response": "x" * 150_000, "sample": {}}])  # max_body = 100 kB
    assert big.status_code == 413
    assert "max_body_bytes=100000" in big.json()["detail"]
    # without a Content-Length header (chunked upload) the limit holds while reading
    body = json.dumps({"reward": "mcq", "items": [{"response": "x" * 150_000, "sample": {}}]}).encode()
    chunked = httpx.post(
        f"{server['url']}/v1/grade",
        content=iter([body[:60_000], body[60_000:]]),
        headers=JSON_AUTH,
        timeout=30,
    )
    assert chunked.status_code == 413
    assert "more than 100000 bytes" in chunked.json()["detail"]


def test_exactly_max_batch_items_are_graded_and_one_more_is_refused(server):
    # max_batch = 64: the limit itself is allowed (a `>=` in the check would refuse it)
    at_limit = grade(server["url"], "mcq", [mcq_item("C")] * 64)
    assert at_limit.status_code == 200 and len(at_limit.json()["results"]) == 64
    over = grade(server["url"], "mcq", [mcq_item("C")] * 65)
    assert over.status_code == 413 and "65 items" in over.json()["detail"]


def test_only_json_bodies_are_graded(server):
    # a web page can POST text/plain anywhere without a preflight: such a body is never read
    body = json.dumps({"reward": "mcq", "items": [mcq_item("C")]}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = AUTH | ({"Content-Type": content_type} if content_type else {})
        response = httpx.post(f"{server['url']}/v1/grade", content=body, headers=headers)
        assert response.status_code == 415, content_type
        assert "expected application/json" in response.json()["detail"]
    headers = AUTH | {"Content-Type": "Application/JSON; charset=utf-8"}
    response = httpx.post(f"{server['url']}/v1/grade", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["results"][0]["correct"] is True


def test_mistyped_sample_values_are_422_not_coerced(server):
    item = mcq_item("C")
    item["sample"]["options"]["B"] = {"text": "option B"}
    response = grade(server["url"], "mcq", [mcq_item("A"), item])
    assert (response.status_code, response.json()["detail"]) == (
        422,
        "items[1].sample.options.B: expected a string, got object",
    )
    item = mcq_item("C")
    item["sample"]["answer"] = ["C"]
    response = grade(server["url"], "mcq", [item])
    assert (response.status_code, response.json()["detail"]) == (
        422,
        "items[0].sample.answer: expected a string or null, got array",
    )


def test_a_deep_sample_and_plugin_objects_cost_one_item_not_the_pool(server):
    # pickling ~600 nested objects raises RecursionError, and an object of a class from the plug-in
    # file cannot be unpickled by the server: each used to stop the pool's dispatcher for good
    url = server["url"]
    deep = '{"k": ' * 600 + "{}" + "}" * 600
    body = (
        '{"reward": "sleepy", "items": [{"response": "fast", "sample": {}}, '
        f'{{"response": "fast", "sample": {{"meta": {deep}}}}}]}}'
    )
    response = httpx.post(f"{url}/v1/grade", content=body, headers=JSON_AUTH, timeout=30)
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert first["score"] == 0.5 and first["error"] is None
    assert second["score"] == 0.0 and second["error"].startswith(
        "item 1 cannot be sent to a worker: RecursionError"
    )
    objects = grade(url, "objects", [mcq_item("C")])
    assert objects.status_code == 200 and objects.json()["results"][0]["score"] == 0.25
    assert objects.json()["results"][0]["pred"] == "<Opaque>"
    assert grade(url, "sleepy", [{"response": "fast", "sample": {}}]).json()["results"][0]["score"] == 0.5
    health = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "ok" and health["workers_alive"] == 2


def test_unknown_reward_and_import_paths_are_404(server):
    for name in ("nope", "os:system", "rewards.mcq:grade_mcq"):
        response = grade(server["url"], name, [mcq_item("A")])
        assert response.status_code == 404
        assert "unknown reward" in response.json()["detail"] and "'mcq'" in response.json()["detail"]


def test_token_is_required_except_for_healthz(server):
    assert grade(server["url"], "mcq", [mcq_item("A")], headers={}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert grade(server["url"], "mcq", [mcq_item("A")], headers=wrong).status_code == 401
    assert httpx.get(f"{server['url']}/metrics").status_code == 401
    assert httpx.get(f"{server['url']}/v1/rewards", headers=wrong).status_code == 401
    assert httpx.get(f"{server['url']}/healthz").status_code == 200


def test_bearer_scheme_is_matched_in_any_case_and_head_healthz_works(server):
    for scheme in ("bearer", "BEARER", "Bearer"):  # RFC 7235: the scheme is case-insensitive
        headers = {"Authorization": f"{scheme} {TOKEN}"}
        assert grade(server["url"], "mcq", [mcq_item("C")], headers=headers).status_code == 200, scheme
    assert (
        grade(
            server["url"], "mcq", [mcq_item("C")], headers={"Authorization": f"Bearer {TOKEN.upper()}"}
        ).status_code
        == 401
    )
    head = httpx.head(f"{server['url']}/healthz")
    assert head.status_code == 200 and head.content == b""


# ---------------------------------------------------------------------- failing user functions
def test_raising_hanging_and_crashing_functions_are_counted_and_server_keeps_answering(server):
    url = server["url"]
    before = get_metrics(url)

    raised = grade(url, server["raises"], [mcq_item("A")] * 3).json()["results"]
    assert [r["score"] for r in raised] == [0.0, 0.0, 0.0]
    assert all("ValueError: this reward always fails" in r["error"] for r in raised)

    slept = grade(url, "sleepy", [{"response": r, "sample": {}} for r in ("fast", "hang", "fast")])
    assert [r["score"] for r in slept.json()["results"]] == [0.5, 0.0, 0.5]
    assert slept.json()["results"][1]["error"] == "timeout after 1s"

    crashed = grade(url, "crashy", [mcq_item("A")]).json()["results"]
    assert crashed[0]["score"] == 0.0 and crashed[0]["error"].startswith("worker crashed")

    assert grade(url, "mcq", [mcq_item("C")]).json()["results"][0]["correct"] is True
    after = get_metrics(url)
    delta = {
        kind: metric(after, "rlsci_reward_item_errors_total", kind=kind)
        - metric(before, "rlsci_reward_item_errors_total", kind=kind)
        for kind in ("exception", "timeout", "crash", "internal")
    }
    assert delta == {"exception": 3.0, "timeout": 1.0, "crash": 1.0, "internal": 0.0}
    restarts = metric(after, "rlsci_reward_worker_restarts_total") - metric(
        before, "rlsci_reward_worker_restarts_total"
    )
    assert restarts == 2.0  # one for the timeout, one for the crash
    assert (
        metric(after, "rlsci_reward_items_total", reward="sleepy")
        - metric(before, "rlsci_reward_items_total", reward="sleepy")
        == 3.0
    )


def test_metrics_count_requests_by_endpoint_and_status(server):
    url = server["url"]
    before = get_metrics(url)
    grade(url, "mcq", [mcq_item("A")])
    grade(url, "nope", [mcq_item("A")])
    grade(url, "mcq", [mcq_item("A")], headers={})
    after = get_metrics(url)
    for status in ("200", "404", "401"):
        labels = {"endpoint": "/v1/grade", "status": status}
        assert (
            metric(after, "rlsci_reward_requests_total", **labels)
            - metric(before, "rlsci_reward_requests_total", **labels)
            == 1.0
        )
    count = metric(after, "rlsci_reward_request_seconds_count", endpoint="/v1/grade")
    assert count == metric(after, "rlsci_reward_request_seconds_bucket", endpoint="/v1/grade", le="+Inf") > 0
    assert "# TYPE rlsci_reward_request_seconds histogram" in after


def test_a_blocked_user_function_does_not_hold_up_other_requests(tmp_path_factory, server_processes):
    # No timing: the blocked item returns only after the test has received the other answers, so
    # a server that served requests one after another would leave those requests unanswered
    # (httpx gives up after 30 s) and the blocked item would end with "never released".
    root = tmp_path_factory.mktemp("blocking")
    funcs = root / "user_rewards.py"
    funcs.write_text(USER_FUNCTIONS)
    args = ["--reward", f"blocker={funcs}:blocks_until_released", "--reward", f"sleepy={funcs}:sleeps",
            "--workers", "2", "reward.timeout_s=60"]  # fmt: skip
    proc, url = server_processes.serve(args)
    try:
        blocked: dict[str, httpx.Response] = {}
        thread = threading.Thread(
            target=lambda: blocked.update(
                answer=grade(url, "blocker", [{"response": str(root), "sample": {}}])
            )
        )
        thread.start()
        for _ in range(600):  # wait until the user function runs (30 s at most)
            if (root / "started").exists():
                break
            time.sleep(0.05)
        assert (root / "started").exists(), server_processes.log(proc)
        built_in = grade(url, "mcq", [mcq_item("C")])
        pooled = grade(url, "sleepy", [{"response": "fast", "sample": {}}])  # the other worker
        assert built_in.status_code == 200 and built_in.json()["results"][0]["correct"] is True
        assert pooled.status_code == 200 and pooled.json()["results"][0]["score"] == 0.5
        assert "answer" not in blocked  # it cannot answer before the release below
        (root / "release").touch()
        thread.join(timeout=60)
        assert blocked["answer"].json()["results"][0] == {
            "score": 0.75, "correct": None, "pred": None, "extracted_by": None, "format_ok": False, "error": None,
        }  # fmt: skip
    finally:
        server_processes.stop(proc)


# ---------------------------------------------------------------------- refusing to start
def test_non_loopback_without_token_is_refused(server_processes):
    env = {k: v for k, v in os.environ.items() if k != "RLSCI_REWARD_TOKEN"}
    proc = server_processes.start(["--host", "0.0.0.0"], server_processes.free_port(), env=env)
    assert proc.wait(timeout=60) == 2
    assert "refusing to bind '0.0.0.0' without a token" in server_processes.log(proc)
    server_processes.stop(proc)


def test_function_that_cannot_load_stops_the_server_with_its_name(server_processes, tmp_path):
    missing = tmp_path / "missing.py"
    proc = server_processes.start([f"reward.fn={missing}:score"], server_processes.free_port())
    assert proc.wait(timeout=60) == 2
    assert f"file not found: {missing}" in server_processes.log(proc)
    server_processes.stop(proc)


def test_check_server_config():
    check_server_config(RewardConfig())  # 127.0.0.1, no token: fine
    check_server_config(RewardConfig(server=RewardServerConfig(host="0.0.0.0", token="t")))
    check_server_config(RewardConfig(server=RewardServerConfig(host="::1")))
    for host in ("0.0.0.0", "10.1.2.3", "my-host"):
        with pytest.raises(ValueError, match="refusing to bind"):
            check_server_config(RewardConfig(server=RewardServerConfig(host=host)))
    with pytest.raises(ValueError, match="reward.timeout_s"):
        check_server_config(RewardConfig(timeout_s=0))


# ---------------------------------------------------------------------- parsing, without a server
def test_parse_grade_request_defaults_reward_and_builds_samples():
    body = json.dumps({"items": [{"response": "r", "sample": {"answer": "B", "paper_id": "p1"}}]}).encode()
    reward, items = parse_grade_request(body, max_batch=4)
    assert reward == "default"
    ((response, sample),) = items
    assert (response, sample.answer, sample.meta) == ("r", "B", {"paper_id": "p1"})


def test_parse_grade_request_takes_exactly_max_batch_items():
    body = json.dumps({"items": [{"response": "r", "sample": {}}] * 2}).encode()
    assert len(parse_grade_request(body, max_batch=2)[1]) == 2
    with pytest.raises(RequestError, match="3 items in one request"):
        parse_grade_request(
            json.dumps({"items": [{"response": "r", "sample": {}}] * 3}).encode(), max_batch=2
        )


def test_parse_grade_request_errors():
    cases = {
        b'{"items": [{"response": "r"}]}': (422, "items[0].sample: missing"),
        b'{"items": [{"response": "r", "sample": {"meta": 3}}]}': (
            422,
            "items[0].sample.meta: expected an object",
        ),
        b'{"items": [5]}': (422, "items[0]: expected an object"),
        b'{"items": [{}, {}, {}]}': (413, "max_batch=2"),
        b"\xff\xfe": (400, "malformed JSON"),
        b"[" * 50_000 + b"]" * 50_000: (400, "nested too deeply"),  # 100 kB, within max_body_bytes
        b'{"items": [{"response": "r", "sample": {"options": {"A": 1}}}]}': (
            422,
            "items[0].sample.options.A: expected a string, got number",
        ),
        b'{"items": [{"response": "r", "sample": {"id": 7}}]}': (
            422,
            "items[0].sample.id: expected a string",
        ),
    }
    for body, (status, text) in cases.items():
        with pytest.raises(RequestError) as info:
            parse_grade_request(body, max_batch=2)
        assert info.value.status == status and text in info.value.message, body
