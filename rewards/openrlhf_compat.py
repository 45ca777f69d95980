"""OpenRLHF's remote-reward protocol, as the reward server answers it (POST /openrlhf/v1/reward).

OpenRLHF (`--remote_rm_url http://host:8711/openrlhf/v1/reward`; read in OpenRLHF's
openrlhf/utils/agent.py `SingleTurnAgentExecutor._fetch_rewards_via_http`, and
openrlhf/utils/remote_rm_utils.py in 0.8) posts, with `Content-Type: application/json` and no
other header,

    {"query": [str], "prompts": [str], "labels": [str]}

query = prompt + response decoded with special tokens kept, label = the dataset's label column
(`--label_key`), and reads back

    {"rewards": [float], "scores": [float], "extra_logs": {key: [number]}}

Here, item by item:
    response   the text of `query` after `prompts[i]` (also when special tokens precede the
               prompt), without the special tokens that end it ("<|im_end|>", "</s>", padding);
               a query that does not contain its prompt is a 422 naming the item
    label      a gold letter ("C"), a reference answer, or a JSON object with `answer`, `options`
               ({letter: text}, its JSON, or a list of texts) and any other Sample fields
    options    from the label; else, for mcq / mcq_strict / format, the prompt's "A. text" lines
    rewards    the reward's score
    scores     1.0 / 0.0 for correct / not (OpenRLHF filters groups on these), the score when the
               reward says nothing about correctness
    extra_logs numbers only, as OpenRLHF turns each list into a tensor: correct, answered (an
               answer was extracted), format_ok, grading_error (1 where grading failed: the score
               is then 0 and `info.error` says why)
    info       per item, for people and logs (OpenRLHF ignores it): pred, extracted_by, error

With a token, OpenRLHF's client sends no Authorization header; put the token in the URL
(`http://rlsci:TOKEN@host:8711/openrlhf/v1/reward`), which both its HTTP clients (requests,
aiohttp) send as `Authorization: Basic`; the server accepts that form on this route only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rewards.base import RewardResult, Sample
from rewards.columns import sample_from_row
from rewards.server_request import RequestError, json_type, load_json_object

FIELDS = ("query", "prompts", "labels")
# special tokens a decoded sequence ends with: <|im_end|>, <|endoftext|>, </s>, <eos>, <pad>, [PAD], ...
TRAILING_SPECIAL = re.compile(
    r"(?:\s*(?:<\|[^<>|\s]{1,40}\|>|</s>|<eos>|<pad>|<end_of_turn>|\[PAD\]|\[SEP\]))+\s*$"
)


def parse_openrlhf_request(body: bytes, max_batch: int, *, needs_options: bool) -> list[tuple[str, Sample]]:
    """Check an OpenRLHF body -> [(response, Sample)] in order. RequestError: 400 malformed
    JSON, 413 more than `max_batch` items, 422 a missing or mistyped field, lists of different
    lengths, a query without its prompt, or (with `needs_options`) an item without options."""
    payload = load_json_object(body)
    lists = {}
    for key in FIELDS:
        if key not in payload:
            raise RequestError(422, f"{key}: missing (expected a list of strings)")
        values = payload[key]
        if not isinstance(values, list):
            raise RequestError(422, f"{key}: expected a list of strings, got {json_type(values)}")
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise RequestError(422, f"{key}[{i}]: expected a string, got {json_type(value)}")
        lists[key] = values
    n = len(lists["query"])
    if any(len(values) != n for values in lists.values()):
        sizes = ", ".join(f"{key}: {len(values)}" for key, values in lists.items())
        raise RequestError(422, f"query, prompts and labels must have one entry per item, got {sizes}")
    if n > max_batch:
        raise RequestError(
            413, f"query: {n} items in one request; the limit is reward.server.max_batch={max_batch}"
        )
    return [
        _item(q, p, label, i, needs_options)
        for i, (q, p, label) in enumerate(zip(lists["query"], lists["prompts"], lists["labels"], strict=True))
    ]


def _item(query: str, prompt: str, label: str, i: int, needs_options: bool) -> tuple[str, Sample]:
    at = query.find(prompt) if prompt else -1
    if at < 0:
        raise RequestError(
            422,
            f"query[{i}]: does not contain prompts[{i}] (the response is the text of query after its prompt)",
        )
    response = TRAILING_SPECIAL.sub("", query[at + len(prompt) :])
    row = _label_row(label, i)
    try:
        return response, sample_from_row(row, prompt, needs_options=needs_options)
    except (TypeError, ValueError) as exc:
        raise RequestError(422, f"labels[{i}]: {exc}") from None


def _label_row(label: str, i: int) -> dict[str, Any]:
    """A label as Sample fields: a JSON object as it is, anything else as the answer."""
    if not label.lstrip().startswith("{"):
        return {"answer": label.strip()}
    try:
        row = json.loads(label)
    except ValueError as exc:
        raise RequestError(422, f"labels[{i}]: starts with '{{' but is not a JSON object: {exc}") from None
    if not isinstance(row, dict):
        raise RequestError(422, f"labels[{i}]: expected a JSON object, got {json_type(row)}")
    if isinstance(row.get("answer"), str):
        row["answer"] = row["answer"].strip()
    return row


def encode_openrlhf(results: list[RewardResult]) -> bytes:
    """The answer OpenRLHF reads (module docstring), in item order."""
    rewards = [float(r.score) for r in results]
    scores = [float(r.score) if r.correct is None else float(bool(r.correct)) for r in results]
    answer = {
        "rewards": rewards,
        "scores": scores,
        "extra_logs": {
            "correct": [float(bool(r.correct)) for r in results],
            "answered": [float(r.pred is not None) for r in results],
            "format_ok": [float(bool(r.format_ok)) for r in results],
            "grading_error": [float(r.error is not None) for r in results],
        },
        "info": {
            "pred": [None if r.pred is None else str(r.pred) for r in results],
            "extracted_by": [None if r.extracted_by is None else str(r.extracted_by) for r in results],
            "error": [None if r.error is None else str(r.error) for r in results],
        },
    }
    return json.dumps(answer).encode()
