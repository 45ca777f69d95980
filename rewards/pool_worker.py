"""The worker side of `rewards.pool.RewardPool`: the body of one worker process, and the plain
data that crosses the pipe.

Only plain data crosses the process boundary, so that nothing a plug-in returns can break the
parent: items go to the worker as pickled bytes, one blob per item (the parent pickles them,
so a sample that does not pickle costs only its own item), and each result comes back as a
tuple of str / float / bool / None plus an `info` made of JSON-like values (`plain_result`).
A value in `info` that is not plain (an instance of a class defined in the plug-in file, which
the parent could not even unpickle) becomes its repr(); nesting deeper than INFO_DEPTH levels
is cut.

Protocol (parent -> worker):
    ("grade", chunk_id, name, [item blob, ...])   grade a chunk, one result message per item
    ("cancel", chunk_id)                          stop that chunk before its next item
    None                                          exit
Protocol (worker -> parent):
    ("ready", {file: sha1}) once, or ("load_error", message) and exit; the files are those
        defining the functions of "module:function" specs and entry points (`code_fingerprint`):
        the parent refuses a replacement worker that finds them changed
    ("result", plain result) per item, in order
    ("cancelled", chunk_id) when a chunk was stopped by "cancel" (the results before it were sent)
"""

from __future__ import annotations

import hashlib
import inspect
import math
import numbers
import pickle
import signal
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path

from rewards.base import RewardResult
from rewards.config import RewardConfig
from rewards.registry import build_reward, load_fn, safe_grade

INFO_DEPTH = 16  # levels of nesting kept in a result's info
REPR_CHARS = 200  # longest repr() kept for a value of info that is not plain data

# A plain result: (score, correct, pred, extracted_by, format_ok, error, info)
PlainResult = tuple[float, bool | None, str | None, str | None, bool, str | None, dict]


def build(spec: str | RewardConfig, cfg: RewardConfig, sources: Mapping[str, str]):
    """The reward function of `spec`, with plug-in files executed from `sources` (read once by
    the parent at start) rather than from disk."""
    if isinstance(spec, RewardConfig):
        return build_reward(spec, sources=sources)
    return load_fn(spec, cfg, sources=sources)


def worker_main(
    conn: Connection, rewards: dict[str, str | RewardConfig], cfg: RewardConfig, sources: dict[str, str]
) -> None:
    """Body of one worker process: build every function, then grade chunks until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fns = {}
    for name, spec in rewards.items():
        try:
            fns[name] = build(spec, cfg, sources)
        except BaseException as exc:  # noqa: BLE001 -- any failure to build is reported, not raised
            conn.send(("load_error", f"reward {name!r}: {type(exc).__name__}: {exc}"))
            return
    conn.send(("ready", code_fingerprint(list(fns.values()), sources)))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        if message is None:
            return
        if message[0] != "grade":  # a "cancel" for a chunk that has finished already
            continue
        _, chunk_id, name, blobs = message
        for blob in blobs:
            if conn.poll():  # between items, only "cancel" (or None) can be waiting
                stop = conn.recv()
                if stop is None:
                    return
                if stop == ("cancel", chunk_id):
                    conn.send(("cancelled", chunk_id))
                    break
            conn.send(("result", grade_blob(fns[name], blob)))


def code_fingerprint(fns: list, sources: Mapping[str, str]) -> dict[str, str]:
    """{file: sha1 of its bytes} of the files defining `fns` (through the registry's wrappers),
    except plug-in files held in `sources` (pinned already) and the built-ins of this package."""
    own = Path(__file__).resolve().parent
    fingerprint = {}
    pending = list(fns)
    while pending:
        fn = pending.pop()
        pending += [term[2] for term in getattr(fn, "terms", ())]  # WeightedReward
        inner = getattr(fn, "fn", None)
        if inner is None:
            continue
        try:
            path = Path(inspect.getsourcefile(inner) or "").resolve()
        except TypeError:  # a C function: no file to watch
            continue
        if path.is_file() and str(path) not in sources and own not in path.parents:
            fingerprint[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return fingerprint


def grade_blob(fn, blob: bytes) -> PlainResult:
    """Unpickle one (response, sample) item, grade it, and return the result as plain data."""
    try:
        response, sample = pickle.loads(blob)
    except BaseException as exc:  # noqa: BLE001 -- e.g. RecursionError on a deeply nested sample
        return error_result(f"item could not be read in the worker: {type(exc).__name__}: {exc}")
    result = safe_grade(fn, response, sample)
    try:
        return plain_result(result)
    except Exception as exc:  # noqa: BLE001 -- e.g. a pred whose __str__ raises
        return error_result(
            f"the reward returned a result that is not plain data: {type(exc).__name__}: {exc}"
        )


def error_result(error: str) -> PlainResult:
    return (0.0, None, None, None, False, error, {})


def plain_result(result: RewardResult) -> PlainResult:
    """`result` as a tuple of plain values (see the module docstring); raises if a field cannot
    be converted (safe_grade has checked already that the score is a finite number)."""
    return (
        float(result.score),
        None if result.correct is None else bool(result.correct),
        _text(result.pred),
        _text(result.extracted_by),
        bool(result.format_ok),
        _text(result.error),
        plain_info(result.info if isinstance(result.info, Mapping) else {"info": result.info}),
    )


def from_plain(row: PlainResult) -> RewardResult:
    score, correct, pred, extracted_by, format_ok, error, info = row
    return RewardResult(score, correct, pred, extracted_by, format_ok, error, info)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def plain_info(value: Mapping, depth: int = 0) -> dict:
    return {str(k): _plain(v, depth + 1) for k, v in value.items()}


def _plain(value: object, depth: int) -> object:
    if value is None or type(value) in (str, bool, int):
        return value
    for base in (bool, int, str):  # a subclass (an enum, say) as its base type: it unpickles anywhere
        if isinstance(value, base):
            return base(value)
    if isinstance(value, numbers.Real):  # float, numpy scalars and the like
        number = float(value)
        return number if math.isfinite(number) else repr(number)
    if depth >= INFO_DEPTH:
        return f"<nested deeper than {INFO_DEPTH} levels>"
    if isinstance(value, Mapping):
        return plain_info(value, depth)
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    return repr(value)[:REPR_CHARS]
