"""Chaos: concurrent clients against one real `rlsci serve-rewards` on 127.0.0.1 while its plug-in
raises, hangs, crashes its process and returns objects the server cannot unpickle, and deeply
nested samples and text/plain bodies arrive. Afterwards every request got an answer, every item
is attributed to its cause, /metrics agrees with what the clients saw, and the server still
grades correctly. Bounded: ~70 pooled items, 4 hangs of 2 s, 4 crashes (~20 s in all)."""

from __future__ import annotations

import collections
import json
import random
import re
import textwrap
import threading
import time

import httpx

PLUGIN = textwrap.dedent(
    """
    import os, time

    class Opaque:  # defined here: the server process cannot unpickle it
        pass

    def chaos(response, sample):
        from rewards.base import RewardResult

        kind, _, value = response.partition(":")
        if kind == "raise":
            raise ValueError("chaos raise")
        if kind == "hang":
            time.sleep(60)
        if kind == "crash":
            os._exit(3)
        if kind == "object":
            return RewardResult(score=0.5, pred=Opaque(), info={"o": Opaque()})
        return float(value)
    """
)
# kind of item -> how many in the whole run, and which /metrics error kind it must count as
PLAN = {"ok": 40, "raise": 10, "object": 8, "deep": 5, "hang": 4, "crash": 4}
ERROR_KIND = {"raise": "exception", "hang": "timeout", "crash": "crash", "deep": "internal"}
DEEP = '{"k": ' * 600 + "{}" + "}" * 600  # pickling this raises RecursionError
CLIENTS = 6


def item(kind: str, k: int) -> dict:
    response = f"ok:{k}" if kind in ("ok", "deep") else kind
    return {"response": response, "sample": {"meta": "__DEEP__"} if kind == "deep" else {}}


def expected(kind: str, k: int, index: int) -> tuple[float, str | None]:
    """(score, start of the error) for one item."""
    return {
        "ok": (float(k), None),
        "object": (0.5, None),
        "raise": (0.0, "ValueError: chaos raise"),
        "hang": (0.0, "timeout after 2s"),
        "crash": (0.0, "worker crashed (exit code 3)"),
        "deep": (0.0, f"item {index} cannot be sent to a worker: RecursionError"),
    }[kind]


def requests_per_client(seed: int = 0) -> list[list[tuple[str, list[tuple[str, int]]]]]:
    """For each client, its requests: ("chaos", [(kind, k), ...]) | ("mcq", []) | ("text", [])."""
    rng = random.Random(seed)
    kinds = [kind for kind, n in PLAN.items() for _ in range(n)]
    rng.shuffle(kinds)
    pooled, k = [], 0
    while kinds:
        size = rng.randint(1, 5)
        pooled.append(("chaos", [(kind, k + i) for i, kind in enumerate(kinds[:size])]))
        k, kinds = k + size, kinds[size:]
    plans: list[list] = [[("mcq", []), ("text", [])] for _ in range(CLIENTS)]
    for i, request in enumerate(pooled):
        plans[i % CLIENTS].append(request)
    for plan in plans:
        rng.shuffle(plan)
    return plans


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{label_text}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


MCQ = {
    "response": "The answer is C.\nAnswer: C",
    "sample": {"options": {"A": "1", "B": "2", "C": "3"}, "answer": "C"},
}


def send(http: httpx.Client, url: str, name: str, items: list[tuple[str, int]]) -> httpx.Response:
    if name == "text":  # a web page's no-preflight POST
        return http.post(f"{url}/v1/grade", content=json.dumps({"reward": "mcq", "items": [MCQ]}),
                         headers={"Content-Type": "text/plain"})  # fmt: skip
    rows = [MCQ] if name == "mcq" else [item(kind, k) for kind, k in items]
    body = json.dumps({"reward": name, "items": rows}).replace('"__DEEP__"', DEEP)
    return http.post(f"{url}/v1/grade", content=body, headers={"Content-Type": "application/json"})


def test_chaos(tmp_path, server_processes):
    plugin = tmp_path / "chaos.py"
    plugin.write_text(PLUGIN)
    args = ["--reward", f"chaos={plugin}:chaos", "--workers", "2", "reward.timeout_s=2"]
    proc, url = server_processes.serve(args)
    try:
        before = httpx.get(f"{url}/metrics").text
        plans = requests_per_client()
        answers: list[list] = [[] for _ in plans]

        def client(c: int) -> None:
            with httpx.Client(timeout=120) as http:
                for name, items in plans[c]:
                    try:
                        answers[c].append((name, items, send(http, url, name, items)))
                    except Exception as exc:  # noqa: BLE001 -- an unanswered request, checked below
                        answers[c].append((name, items, exc))

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert not any(t.is_alive() for t in threads)

        # every request got an answer, every item its own result
        seen: collections.Counter[str] = collections.Counter()
        statuses: collections.Counter[int] = collections.Counter()
        for c, plan in enumerate(plans):
            assert len(answers[c]) == len(plan)
            for name, items, response in answers[c]:
                assert isinstance(response, httpx.Response), f"client {c}: {name} {items}: {response!r}"
                statuses[response.status_code] += 1
                if name == "text":
                    assert response.status_code == 415
                    continue
                assert response.status_code == 200, response.text
                results = response.json()["results"]
                if name == "mcq":
                    assert results[0]["correct"] is True
                    continue
                assert len(results) == len(items)
                for index, ((kind, k), result) in enumerate(zip(items, results, strict=True)):
                    score, error = expected(kind, k, index)
                    assert result["score"] == score, (kind, k, result)
                    assert (result["error"] or "").startswith(error or ""), (kind, k, result)
                    assert (result["error"] is None) == (error is None), (kind, k, result)
                    seen[kind] += 1
        assert seen == collections.Counter(PLAN)

        # /metrics agrees with what the clients saw
        after = httpx.get(f"{url}/metrics").text

        def delta(name: str, **labels: str) -> float:
            return metric(after, name, **labels) - metric(before, name, **labels)

        assert delta("rlsci_reward_items_total", reward="chaos") == sum(PLAN.values())
        assert delta("rlsci_reward_items_total", reward="mcq") == CLIENTS
        for kind, metric_kind in ERROR_KIND.items():
            assert delta("rlsci_reward_item_errors_total", kind=metric_kind) == PLAN[kind], kind
        assert delta("rlsci_reward_worker_restarts_total") == PLAN["hang"] + PLAN["crash"]
        for status, n in statuses.items():
            assert delta("rlsci_reward_requests_total", endpoint="/v1/grade", status=str(status)) == n

        # and it still grades correctly, with every worker back
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/healthz").json()["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.05)
        health = httpx.get(f"{url}/healthz").json()
        assert (health["status"], health["workers_alive"]) == ("ok", 2)
        again = httpx.post(
            f"{url}/v1/grade", json={"reward": "chaos", "items": [item("ok", 7), item("ok", 8)]}
        )
        assert [r["score"] for r in again.json()["results"]] == [7.0, 8.0]
        assert httpx.post(f"{url}/v1/grade", json={"reward": "mcq", "items": [MCQ]}).json()["results"][0][
            "correct"
        ]
    finally:
        server_processes.stop(proc)
