"""Reward functions by name: built-ins, your own functions, and entry points of other packages.

A reward is named by a spec string:

    "mcq" | "mcq_strict" | "mcq_text" | "format" | "reference"   a built-in (the BUILTINS table below)
    "my_pkg.rewards:my_reward"                      a function in an importable module
    "path/to/file.py:my_reward"                     a function in a Python file (loaded on its own:
                                                    it cannot import files next to it)
    "my_reward"                                     an entry point in group "rlsci.rewards" of an
                                                    installed distribution

A reward function is `fn(response: str, sample: Sample) -> RewardResult | float`. A function
whose parameters are named like verl's `compute_score(data_source, solution_str, ground_truth,
extra_info=None)` is adapted: it is called with data_source = sample.source, solution_str =
the response, ground_truth = sample.answer, extra_info = sample.to_dict(), and its float, or
dict with "score" (and optional "acc", "pred"; other keys go to `info`), becomes a RewardResult.

The configured reward (`build_reward(cfg)`) is one function or a weighted sum of terms:
    score = Σ_i w_i · s_i; correct, pred, extracted_by, format_ok come from the first term;
    info = first term's info + {"terms": {spec: s_i}}; errors of all terms are joined.

    fn = build_reward(RewardConfig(terms=[RewardTerm("mcq_strict", 1.0), RewardTerm("format", 0.1)]))
    result = safe_grade(fn, response, sample)   # never raises
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import math
import numbers
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards import builtin
from rewards.base import RewardFn, RewardResult, Sample, as_result
from rewards.config import RewardConfig

ENTRY_POINT_GROUP = "rlsci.rewards"
VERL_PARAMS = ("data_source", "solution_str", "ground_truth")

# name -> factory RewardConfig -> RewardFn (an explicit table: nothing else is a built-in)
BUILTINS: dict[str, Callable[[RewardConfig], RewardFn]] = {
    "mcq": builtin.mcq,
    "mcq_strict": builtin.mcq_strict,
    "mcq_text": builtin.mcq_text,
    "format": builtin.format_only,
    "reference": builtin.reference,
}


@dataclass(frozen=True)
class NamedReward:
    """A reward function with the spec it was loaded from (the name in error messages)."""

    name: str
    fn: Callable[..., Any]

    def __call__(self, response: str, sample: Sample) -> RewardResult | float:
        return self.fn(response, sample)


@dataclass(frozen=True)
class VerlReward:
    """A verl-style `compute_score(data_source, solution_str, ground_truth, extra_info=None)`
    seen as a reward function (see the module docstring)."""

    name: str
    fn: Callable[..., Any]
    pass_extra_info: bool  # False when the function has no extra_info parameter

    def __call__(self, response: str, sample: Sample) -> RewardResult:
        kwargs: dict[str, Any] = {
            "data_source": sample.source,
            "solution_str": response,
            "ground_truth": sample.answer,
        }
        if self.pass_extra_info:
            kwargs["extra_info"] = sample.to_dict()
        return verl_result(self.fn(**kwargs))


def verl_result(value: Any) -> RewardResult:
    """verl's return value (a number, or a dict with "score" and optional "acc", "pred") -> RewardResult."""
    if not isinstance(value, Mapping):
        return as_result(value)
    if "score" not in value:
        raise ValueError(f"a verl-style reward returned a dict without 'score' (keys: {sorted(value)})")
    acc, pred = value.get("acc"), value.get("pred")
    return RewardResult(
        score=float(value["score"]),
        correct=None if acc is None else bool(acc),
        pred=None if pred is None else str(pred),
        info={k: v for k, v in value.items() if k not in ("score", "acc", "pred")},
    )


@dataclass(frozen=True)
class WeightedReward:
    """Σ_i w_i · s_i over terms (key, weight, fn); the other fields come from the first term."""

    terms: tuple[tuple[str, float, RewardFn], ...]

    @property
    def name(self) -> str:
        return " + ".join(f"{weight:g}*{key}" for key, weight, _ in self.terms)

    def __call__(self, response: str, sample: Sample) -> RewardResult:
        graded = [(key, weight, as_result(fn(response, sample))) for key, weight, fn in self.terms]
        first = graded[0][2]
        return RewardResult(
            score=sum(weight * result.score for _, weight, result in graded),
            correct=first.correct,
            pred=first.pred,
            extracted_by=first.extracted_by,
            format_ok=first.format_ok,
            error="; ".join(f"{key}: {result.error}" for key, _, result in graded if result.error) or None,
            info={**first.info, "terms": {key: result.score for key, _, result in graded}},
        )


def is_builtin(spec: str) -> bool:
    return spec in BUILTINS


def load_fn(spec: str, cfg: RewardConfig, sources: Mapping[str, str] | None = None) -> RewardFn:
    """Resolve a spec (see the module docstring) into a reward function.

    `sources` ({absolute file path: source text}, from `read_sources`) is executed instead of
    reading a plug-in file that it holds, so that a process started later runs the same code.
    Raises ImportError when a module, file or entry point cannot be imported, ValueError when
    the name is unknown or the object is not a usable reward function; both name the spec.
    """
    spec = spec.strip()
    if not spec:
        raise ValueError(
            "reward spec is empty: give a built-in name, 'module:function' or 'file.py:function'"
        )
    if spec in BUILTINS:
        return NamedReward(spec, BUILTINS[spec](cfg))
    if ":" in spec:
        target, _, attr = spec.rpartition(":")
        if not attr or not target:
            raise ValueError(f"reward {spec!r}: expected 'module:function' or 'path/to/file.py:function'")
        module = (
            _import_file(spec, target, sources or {}) if _is_path(target) else _import_module(spec, target)
        )
        return _adapt(spec, _get_attr(spec, module, attr))
    points = _entry_points()
    if spec not in points:
        raise ValueError(_unknown_name_message(spec, sorted(points)))
    if len(points[spec]) > 1:
        values = ", ".join(repr(ep.value) for ep in points[spec])
        raise ValueError(
            f"reward {spec!r}: several entry points in group {ENTRY_POINT_GROUP!r} have this name ({values})"
        )
    (point,) = points[spec]
    try:
        obj = point.load()
    except Exception as exc:
        raise ImportError(
            f"reward {spec!r}: entry point {point.value!r} failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    return _adapt(spec, obj)


def build_reward(cfg: RewardConfig, sources: Mapping[str, str] | None = None) -> RewardFn:
    """The configured reward: `cfg.fn`, or the weighted sum of `cfg.terms` (module docstring).
    Its results are always RewardResults. `sources`: as for `load_fn`."""
    if cfg.fn is not None and cfg.terms:
        raise ValueError("reward.fn and reward.terms are both set: give one function or a weighted list")
    terms, seen = [], {}
    for i, term in enumerate(cfg.resolved_terms()):
        weight = float(term.weight)
        if not math.isfinite(weight):
            raise ValueError(f"reward.terms[{i}].weight must be a finite number, got {term.weight!r}")
        seen[term.fn] = seen.get(term.fn, 0) + 1
        key = term.fn if seen[term.fn] == 1 else f"{term.fn}#{seen[term.fn]}"
        terms.append((key, weight, load_fn(term.fn, cfg, sources)))
    return WeightedReward(tuple(terms))


def read_sources(specs: list[str]) -> dict[str, str]:
    """{absolute path: source text} of the plug-in files named by `specs` ("file.py:fn"), read
    now, for `load_fn(..., sources=)`. A file that cannot be read is left out (loading it then
    fails with the usual message)."""
    sources = {}
    for spec in specs:
        target = spec.strip().rpartition(":")[0]
        if target and _is_path(target):
            path = Path(target).expanduser().resolve()
            try:
                sources[str(path)] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    return sources


def safe_grade(fn: RewardFn, response: str, sample: Sample) -> RewardResult:
    """fn(response, sample) as a RewardResult; never raises. An exception, a return value that
    is not a reward, or a score that is not a finite number becomes score 0.0, correct None and
    `error` set."""
    try:
        result = as_result(fn(response, sample))
    except Exception as exc:
        return RewardResult(
            score=0.0, correct=None, error=f"{type(exc).__name__}: {exc} (reward {reward_name(fn)})"
        )
    if not isinstance(result.score, numbers.Real):
        return RewardResult(
            score=0.0,
            correct=None,
            error=f"score {result.score!r} is not a number (reward {reward_name(fn)})",
        )
    if not math.isfinite(result.score):
        return RewardResult(
            score=0.0, correct=None, error=f"non-finite score {result.score} (reward {reward_name(fn)})"
        )
    return result


def reward_name(fn: RewardFn) -> str:
    """The spec a reward was loaded from, else its function name."""
    return str(getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__)


def list_rewards() -> list[dict[str, str]]:
    """[{"name", "kind": "builtin" | "entry_point", "doc": first docstring line}], built-ins first.
    An entry point that fails to load is listed with the error as its doc."""
    rows = [
        {"name": name, "kind": "builtin", "doc": _first_line(factory)} for name, factory in BUILTINS.items()
    ]
    for name, points in sorted(_entry_points().items()):
        for point in points:
            try:
                doc = _first_line(point.load())
            except Exception as exc:
                doc = f"(fails to load: {type(exc).__name__}: {exc})"
            if name in BUILTINS:
                doc = f"(shadowed by the built-in {name!r}) {doc}"
            rows.append({"name": name, "kind": "entry_point", "doc": doc})
    return rows


# ----------------------------------------------------------------------------- helpers


def _entry_points() -> dict[str, list[importlib.metadata.EntryPoint]]:
    points: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        points.setdefault(point.name, []).append(point)
    return points


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _unknown_name_message(spec: str, entry_names: list[str]) -> str:
    known = list(BUILTINS) + entry_names
    close = difflib.get_close_matches(spec, known, n=3, cutoff=0.6)
    parts = [f"unknown reward {spec!r}."]
    if close:
        parts.append("Did you mean " + " or ".join(repr(c) for c in close) + "?")
    if "." in spec:
        module, _, attr = spec.rpartition(".")
        parts.append(f"A function in a module is written with a colon: '{module}:{attr}'.")
    parts.append(f"Built-ins: {', '.join(BUILTINS)}.")
    if entry_names:
        parts.append(f"Entry points ({ENTRY_POINT_GROUP}): {', '.join(entry_names)}.")
    parts.append("A custom function is given as 'module:function' or 'path/to/file.py:function'.")
    return " ".join(parts)


def _import_module(spec: str, name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = (
            f"module {name!r} is not importable"
            if exc.name == name
            else f"module {name!r} imports {exc.name!r}, which is missing"
        )
        raise ImportError(f"reward {spec!r}: {missing}") from exc
    except Exception as exc:
        raise ImportError(
            f"reward {spec!r}: importing module {name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _import_file(spec: str, target: str, sources: Mapping[str, str]) -> Any:
    """Execute a .py file as a fresh module named after its absolute path (its text from
    `sources` when held there, else read now)."""
    path = Path(target).expanduser().resolve()
    source = sources.get(str(path))
    if source is None and not path.is_file():
        raise ImportError(f"reward {spec!r}: file not found: {path}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"rlsci_reward_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"reward {spec!r}: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        if source is None:
            module_spec.loader.exec_module(module)
        else:
            exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 -- the plug-in, as read at start
    except Exception as exc:
        del sys.modules[module_name]
        raise ImportError(f"reward {spec!r}: executing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _get_attr(spec: str, module: Any, attr: str) -> Any:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            where = getattr(module, "__file__", None) or module.__name__
            raise ValueError(f"reward {spec!r}: {where} has no attribute {attr!r}.{hint}")
        obj = getattr(obj, part)
    return obj


def _adapt(spec: str, obj: Any) -> RewardFn:
    """Check that obj can be called as a reward (or as verl's compute_score) and wrap it."""
    if inspect.isclass(obj):
        raise ValueError(
            f"reward {spec!r}: found the class {obj.__name__}; give a function fn(response, sample)"
        )
    if not callable(obj):
        raise ValueError(
            f"reward {spec!r}: found {type(obj).__name__} {obj!r:.40}, not a function fn(response, sample)"
        )
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # some C callables carry no signature: nothing to check
        return NamedReward(spec, obj)
    params = signature.parameters
    if all(name in params for name in VERL_PARAMS):
        takes_extra = "extra_info" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        return VerlReward(spec, obj, pass_extra_info=takes_extra)
    try:
        signature.bind("", Sample())
    except TypeError as exc:
        raise ValueError(
            f"reward {spec!r}: the signature {signature} does not fit fn(response: str, sample: Sample) "
            f"-> RewardResult | float, nor verl's compute_score(data_source, solution_str, ground_truth, "
            f"extra_info=None) ({exc})"
        ) from exc
    return NamedReward(spec, obj)
