"""OpenRLHF's remote-reward protocol on a real `rlsci serve-rewards` (POST /openrlhf/v1/reward):
payloads shaped as OpenRLHF posts them (openrlhf/utils/agent.py, `_fetch_rewards_via_http`:
{"query", "prompts", "labels"}, query = prompt + response decoded with special tokens), the
rewards in order, bad bodies, and the token sent the only way OpenRLHF can (the url's userinfo)."""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap

import aiohttp
import httpx
import pytest
import requests

from rewards.openrlhf_compat import parse_openrlhf_request
from rewards.server_request import RequestError

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LETTERS = "ABCDEFGHIJ"
OPTIONS = {k: f"{i + 1} m" for i, k in enumerate(LETTERS)}  # 10 options, A-J

USER_FUNCTIONS = textwrap.dedent(
    """
    def echo(response, sample):
        # 1.0 iff the server recovered exactly the response the label says was generated
        return 1.0 if response == sample.meta["expect"] else 0.0
    """
)


def chat_prompt(question: str, options: dict[str, str]) -> str:
    """A prompt as OpenRLHF renders it (chat template applied, options as "A. text" lines)."""
    lines = "\n".join(f"{k}. {v}" for k, v in options.items())
    return (
        f"<|im_start|>user\n{question}\n{lines}\nThink step by step, then finish with 'Answer: X'.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_processes):
    root = tmp_path_factory.mktemp("openrlhf")
    funcs = root / "user_rewards.py"
    funcs.write_text(USER_FUNCTIONS)
    config = root / "server.yaml"
    config.write_text(
        f"reward:\n  fn: mcq_strict\n  server:\n    workers: 1\n    max_batch: 16\n    token: {TOKEN}\n"
    )
    proc, url = server_processes.serve(["--config", str(config), "--reward", f"echo={funcs}:echo"])
    yield url
    server_processes.stop(proc)


def post(url: str, body, path: str = "/openrlhf/v1/reward", headers=AUTH) -> httpx.Response:
    return httpx.post(url + path, json=body, headers=headers, timeout=30)


def test_openrlhf_payload_rewards_in_order(server):
    prompt = chat_prompt("Which length is 3 m?", OPTIONS)
    items = [  # (label, response with its special tokens, expected reward, pred)
        ("C", "3 m is option C.\nAnswer: C<|im_end|>", 1.0, "C"),
        (json.dumps({"answer": "J", "options": OPTIONS}), "Answer: J<|im_end|><|endoftext|>", 1.0, "J"),
        ("C", "Answer: D<|im_end|>", 0.0, "D"),  # wrong letter
        ("J", "I am not sure which one.<|im_end|>", 0.0, None),  # no answer at all
        (" B ", "Answer: B", 1.0, "B"),  # no special token at the end; label with spaces
    ]
    body = {
        "query": ["<s>" + prompt + response for _, response, _, _ in items],  # a BOS before the prompt
        "prompts": [prompt] * len(items),
        "labels": [label for label, _, _, _ in items],
    }
    response = post(server, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = [reward for _, _, reward, _ in items]
    assert answer["rewards"] == expected, f"rewards in item order: {answer}"
    assert answer["scores"] == expected
    assert answer["extra_logs"]["correct"] == expected
    assert answer["extra_logs"]["answered"] == [0.0 if p is None else 1.0 for *_, p in items]
    assert answer["extra_logs"]["grading_error"] == [0.0] * len(items)
    assert all(isinstance(v, float) for values in answer["extra_logs"].values() for v in values), (
        "OpenRLHF turns every extra_logs list into a tensor: numbers only"
    )
    assert answer["info"]["pred"] == [p for *_, p in items]
    assert answer["info"]["extracted_by"][0] == "answer_line"


def test_options_come_from_the_label_before_the_prompt_and_a_letter_outside_them_is_an_item_error(server):
    prompt = chat_prompt("Pick one.", {"A": "x", "B": "y"})  # the prompt lists A and B only
    body = {
        "query": [prompt + "Answer: E", prompt + "Answer: E", prompt + "Answer: B"],
        "prompts": [prompt] * 3,
        "labels": [json.dumps({"answer": "E", "options": list("vwxyz")}), "E", "B"],
    }
    answer = post(server, body).json()
    assert answer["rewards"] == [1.0, 0.0, 1.0], answer
    assert answer["extra_logs"]["grading_error"] == [0.0, 1.0, 0.0]
    assert "'E' is not among the sample.options letters AB" in answer["info"]["error"][1]


def test_named_reward_in_the_path_and_a_pooled_user_function_sees_the_exact_response(server):
    prompt = chat_prompt("Q?", OPTIONS)
    lenient = "The correct answer is B, because 2 m is longer."
    body = {"query": [prompt + lenient + "<|im_end|>"], "prompts": [prompt], "labels": ["B"]}
    assert post(server, body, "/openrlhf/v1/reward/mcq").json()["rewards"] == [1.0]
    assert post(server, body).json()["rewards"] == [0.0], "the default reward is mcq_strict"

    expect = ["Answer: A", "  two spaces\nAnswer: C  ", ""]
    body = {
        "query": [prompt + e + "<|im_end|><|pad|><|pad|>" for e in expect],
        "prompts": [prompt] * 3,
        "labels": [json.dumps({"answer": "A", "expect": e.rstrip()}) for e in expect],
    }
    response = post(server, body, "/openrlhf/v1/reward/echo")
    assert response.status_code == 200, response.text
    assert response.json()["rewards"] == [1.0, 1.0, 1.0], response.json()["info"]


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        (b"{not json", 400, "malformed JSON"),
        ([1, 2], 422, "body: expected a JSON object"),
        ({"query": ["x"], "prompts": ["x"]}, 422, "labels: missing"),
        ({"query": "x", "prompts": ["x"], "labels": ["A"]}, 422, "query: expected a list"),
        ({"query": ["xA"], "prompts": ["x"], "labels": [3]}, 422, "labels[0]: expected a string"),
        ({"query": ["a", "b"], "prompts": ["a"], "labels": ["A", "B"]}, 422, "one entry per item"),
        (
            {"query": ["other text"], "prompts": ["A. x\nB. y\n"], "labels": ["A"]},
            422,
            "query[0]: does not contain",
        ),
        ({"query": ["Q? Answer: A"], "prompts": ["Q?"], "labels": ["A"]}, 422, "labels[0]: no options"),
        (
            {"query": ["A. x\nB. y\n"] * 17, "prompts": ["A. x\nB. y\n"] * 17, "labels": ["A"] * 17},
            413,
            "max_batch=16",
        ),
        ({"query": ["p"], "prompts": ["p"], "labels": ['{"answer": ']}, 422, "labels[0]: starts with '{'"),
    ],
)
def test_malformed_bodies_are_4xx_naming_the_field(server, body, status, names):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        server + "/openrlhf/v1/reward", content=data, headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert names in response.json()["detail"]


def test_unknown_reward_content_type_and_token(server):
    prompt = chat_prompt("Q?", OPTIONS)
    body = {"query": [prompt + "Answer: A"], "prompts": [prompt], "labels": ["A"]}
    assert post(server, body, "/openrlhf/v1/reward/nope").status_code == 404
    assert (
        httpx.post(server + "/openrlhf/v1/reward", content=json.dumps(body), headers=AUTH).status_code == 415
    )
    assert post(server, body, headers={}).status_code == 401
    wrong = "Basic " + base64.b64encode(b"rlsci:wrong").decode()
    assert post(server, body, headers={"Authorization": wrong}).status_code == 401
    # Basic is taken on the OpenRLHF route only
    right = "Basic " + base64.b64encode(f"rlsci:{TOKEN}".encode()).decode()
    assert httpx.get(server + "/v1/rewards", headers={"Authorization": right}).status_code == 401


def test_openrlhf_clients_send_the_token_from_the_url(server):
    """OpenRLHF posts with requests (0.8) or aiohttp (later), json= and no headers of its own: a
    url with the token as its password is the way to authenticate (both send it as Basic)."""
    prompt = chat_prompt("Q?", OPTIONS)
    body = {"query": [prompt + "Answer: G<|im_end|>"], "prompts": [prompt], "labels": ["G"]}
    url = server.replace("http://", f"http://rlsci:{TOKEN}@") + "/openrlhf/v1/reward"

    reply = requests.post(url, json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["rewards"] == [1.0]

    async def with_aiohttp() -> tuple[int, dict]:
        async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
            return response.status, await response.json()

    status, answer = asyncio.run(with_aiohttp())
    assert (status, answer["rewards"]) == (200, [1.0])
    assert requests.post(url.replace(TOKEN, "nope"), json=body, timeout=30).status_code == 401
    metrics = httpx.get(server + "/metrics", headers=AUTH).text
    assert 'rlsci_reward_requests_total{endpoint="/openrlhf/v1/reward",status="200"}' in metrics
    assert 'rlsci_reward_requests_total{endpoint="/openrlhf/v1/reward",status="401"}' in metrics


def test_parse_openrlhf_request_recovers_the_response():
    prompt = "Q\nA. x\nB. y\n"
    items = parse_openrlhf_request(
        json.dumps(
            {"query": ["<bos>" + prompt + "Answer: B</s></s>"], "prompts": [prompt], "labels": ["B"]}
        ).encode(),
        8,
        needs_options=True,
    )
    ((response, sample),) = items
    assert response == "Answer: B"
    assert (sample.answer, sample.options) == ("B", {"A": "x", "B": "y"})
    assert parse_openrlhf_request(b'{"query": [], "prompts": [], "labels": []}', 8, needs_options=True) == []
    with pytest.raises(RequestError, match="does not contain"):
        parse_openrlhf_request(b'{"query": ["x"], "prompts": [""], "labels": ["A"]}', 8, needs_options=True)
