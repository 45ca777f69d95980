"""What the reward server reads and writes: the /v1/grade body, checked field by field, and
the JSON answer. Pure functions, no web framework (tested without a server).

    parse_grade_request(body, max_batch) -> (reward name, [(response, Sample)])   or RequestError
    load_json_object(body) -> dict                                                or RequestError
    encode_results([RewardResult]) -> bytes
    graded_tail(response, max_chars) -> the end of a long response, as the built-in graders see it
"""

from __future__ import annotations

import json
import string
from typing import Any

from rewards.base import RewardResult, Sample
from rewards.mcq import after_reasoning

TEXT_FIELDS = ("id", "question", "answer", "domain", "subdomain", "source")  # string or null


class RequestError(Exception):
    """A bad request: `status` (400, 404, 413, 415, 422, 503) and a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_content_type(value: str | None) -> None:
    """Only JSON is graded: a text/plain POST (which a web page may send anywhere without a
    preflight) is refused before its body is read."""
    media_type = (value or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise RequestError(415, f"Content-Type: expected application/json, got {value or 'none'!r}")


def parse_grade_request(body: bytes, max_batch: int) -> tuple[str, list[tuple[str, Sample]]]:
    """Parse and check a /v1/grade body -> (reward name, [(response, Sample)]).

    Raises RequestError: 400 for malformed JSON, 413 for more than `max_batch` items, 422 for
    a missing or mistyped field, named by its path (e.g. "items[3].sample.options")."""
    payload = load_json_object(body)
    reward = payload.get("reward", "default")
    if not isinstance(reward, str):
        raise RequestError(422, f"reward: expected a string, got {json_type(reward)}")
    if "items" not in payload:
        raise RequestError(422, "items: missing (expected a list of {response, sample})")
    items = payload["items"]
    if not isinstance(items, list):
        raise RequestError(422, f"items: expected a list, got {json_type(items)}")
    if len(items) > max_batch:
        raise RequestError(
            413, f"items: {len(items)} items in one request; the limit is reward.server.max_batch={max_batch}"
        )
    return reward, [_parse_item(item, i) for i, item in enumerate(items)]


def load_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; RequestError 400 for malformed JSON, 422 for another type."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"malformed JSON body: {exc}") from None
    except RecursionError:  # "[[[[...": a few kB of nesting exhaust the parser's stack
        raise RequestError(400, "malformed JSON body: nested too deeply") from None
    if not isinstance(payload, dict):
        raise RequestError(422, f"body: expected a JSON object, got {json_type(payload)}")
    return payload


def _parse_item(item: Any, i: int) -> tuple[str, Sample]:
    if not isinstance(item, dict):
        raise RequestError(422, f"items[{i}]: expected an object {{response, sample}}, got {json_type(item)}")
    if "response" not in item:
        raise RequestError(422, f"items[{i}].response: missing")
    response = item["response"]
    if not isinstance(response, str):
        raise RequestError(422, f"items[{i}].response: expected a string, got {json_type(response)}")
    if "sample" not in item:
        raise RequestError(422, f"items[{i}].sample: missing")
    sample = item["sample"]
    if not isinstance(sample, dict):
        raise RequestError(422, f"items[{i}].sample: expected an object, got {json_type(sample)}")
    _check_sample_types(sample, f"items[{i}].sample")
    try:
        return response, Sample.from_dict(sample)
    except (TypeError, ValueError) as exc:
        raise RequestError(422, f"items[{i}].sample: {exc}") from None


def lettered_options(options: Any) -> Any:
    """Options given as a list of texts (["1 m", "2 m"], as MMLU's `choices` and rlsci's loaders
    accept) -> {"A": "1 m", "B": "2 m"}; anything else is returned unchanged for the checks."""
    if isinstance(options, list) and len(options) <= 26 and all(isinstance(t, str) for t in options):
        return dict(zip(string.ascii_uppercase, options, strict=False))
    return options


def _check_sample_types(sample: dict, where: str) -> None:
    """422 for a Sample field of the wrong JSON type (instead of coercing it to text). Options
    given as a list of texts are lettered A, B, ... in place first."""
    if "options" in sample:
        sample["options"] = lettered_options(sample["options"])
    for key in ("options", "meta"):
        if sample.get(key) is not None and not isinstance(sample[key], dict):
            expected = "an object {letter: text} or a list of texts" if key == "options" else "an object"
            raise RequestError(422, f"{where}.{key}: expected {expected}, got {json_type(sample[key])}")
    for letter, text in (sample.get("options") or {}).items():
        if not isinstance(text, str):
            raise RequestError(422, f"{where}.options.{letter}: expected a string, got {json_type(text)}")
    for key in TEXT_FIELDS:
        value = sample.get(key)
        if value is not None and not isinstance(value, str):
            raise RequestError(422, f"{where}.{key}: expected a string or null, got {json_type(value)}")


def json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def graded_tail(response: str, max_chars: int) -> str:
    """The last `max_chars` characters of `response`, which is all the built-in graders need
    (the last commitment wins; only the end is graded). Reasoning left open at the end stays
    open: when the cut removed the last `<think>`, one is put back in front."""
    if len(response) <= max_chars:
        return response
    tail = response[-max_chars:]
    if after_reasoning(response) is None and after_reasoning(tail) is not None:
        return "<think>" + tail
    return tail


def encode_results(results: list[RewardResult]) -> bytes:
    rows = [
        {
            "score": float(r.score),
            "correct": None if r.correct is None else bool(r.correct),
            "pred": None if r.pred is None else str(r.pred),
            "extracted_by": None if r.extracted_by is None else str(r.extracted_by),
            "format_ok": bool(r.format_ok),
            "error": None if r.error is None else str(r.error),
        }
        for r in results
    ]
    return json.dumps({"results": rows}).encode()
