"""Configuration: a tree of dataclasses with defaults, loaded from YAML and dotted overrides.

    cfg = load_config("configs/rewards/server.yaml", ["reward.fn=mcq", "run.seed=3"])
    dump_config(cfg, "runs/x/config.yaml")

A YAML file may start with `defaults: [base.yaml, ...]` (paths relative to that file): the bases
are merged first, in order, then the file itself, then the command-line overrides (`a.b.c=value`,
parsed by OmegaConf, so `${run.seed}` interpolations work). Each source is checked on its own
before merging, so an error names the file (or "command line") that holds the bad key:

- an unknown key is an error that suggests the closest valid key,
- a value of the wrong type is an error naming the expected type,
- impossible combinations are reported by each section's `validate() -> list[str]`.

All problems are collected and raised together as one `ConfigError`; code reading the config
never calls `.get("x", default)` — every key exists, with its default, on the dataclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rewards.config import RewardConfig
from rlsci.data.config import DataConfig
from rlsci.data.prompts import PromptConfig


class ConfigError(ValueError):
    """Raised with every problem found in a configuration, each naming key and source."""


@dataclass
class RunConfig:
    name: str = "run"
    dir: str = "runs/${run.name}"  # the run directory (contract with notebooks: DESIGN.md)
    seed: int = 0

    def validate(self) -> list[str]:
        return [] if self.name.strip() else ["run.name must not be empty"]


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)


# ----------------------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None, overrides: typing.Sequence[str] = (), schema: type = Config
) -> Any:
    """Load `path` (with its `defaults:` chain) and `overrides` into a validated `schema` instance."""
    sources: list[tuple[str, dict]] = []
    if path is not None:
        sources.extend(_read_with_defaults(Path(path), chain=()))
    if overrides:
        sources.append(("command line", _parse_overrides(overrides)))

    errors: list[str] = []
    for source, tree in sources:
        _check(tree, schema, prefix="", source=source, errors=errors)
    if errors:
        raise ConfigError(_format_errors(errors))

    origin = _provenance(sources)
    roots = {f.name for f in dataclasses.fields(schema)}
    merged = OmegaConf.merge(OmegaConf.create(_defaults_as_dict(schema)), *(t for _, t in sources))
    try:
        resolved = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as exc:  # ${a.b} naming no key, an unknown resolver, a cycle
        key = getattr(exc, "full_key", "") or "<root>"
        reason = str(exc).splitlines()[0]
        raise ConfigError(
            _format_errors([f"`{key}` cannot be resolved: {reason} [{key} from {_origin_of(key, origin)}]"])
        ) from exc
    cfg = _build(resolved, schema, prefix="", source="merged config", errors=errors)
    if not errors:
        _validate_sections(cfg, errors)
    if errors:  # messages after merging name their keys; append where those keys were set
        raise ConfigError(_format_errors([_with_origin(e, origin, roots) for e in errors]))
    return cfg


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, written by OmegaConf so that it reads back through the same
    loader to equal values (a string such as "1e-3" is quoted; plain PyYAML would not)."""
    return OmegaConf.to_yaml(OmegaConf.create(config_to_dict(cfg)))


def dump_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (what `load_config(path)` reads back to an equal config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_yaml(cfg))
    return path


def _read_with_defaults(path: Path, chain: tuple[Path, ...]) -> list[tuple[str, dict]]:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{path}: `defaults` form a cycle: {cycle}")
    if not path.is_file():
        where = f" (listed in `defaults` of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    try:  # OmegaConf's YAML loader, as for overrides: "1e-3" is a float, a repeated key an error
        tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(tree).__name__}")
    bases = tree.pop("defaults", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: `defaults` must be a list of file paths, got {bases!r}")
    out: list[tuple[str, dict]] = []
    for base in bases:
        out.extend(_read_with_defaults(path.parent / base, chain=(*chain, path)))
    out.append((str(path), tree))
    return out


def _parse_overrides(overrides: typing.Sequence[str]) -> dict:
    bad = [o for o in overrides if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise ConfigError(f"command line: overrides must look like `a.b.c=value`, got {bad}")
    if any(o.startswith("defaults=") for o in overrides):
        raise ConfigError("command line: `defaults` can only be set in a YAML file")
    return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=False)


def _defaults_as_dict(schema: type) -> dict:
    """Defaults of the tree as plain data (interpolations such as ${run.name} kept)."""
    return dataclasses.asdict(schema())


def _provenance(sources: list[tuple[str, dict]]) -> dict[str, str]:
    """Dotted key path -> the last source that set it (for error messages after merging)."""
    origin: dict[str, str] = {}

    def walk(node: Any, prefix: str, source: str) -> None:
        for key, value in node.items():
            origin[f"{prefix}{key}"] = source
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.", source)

    for source, tree in sources:
        walk(tree, "", source)
    return origin


def _with_origin(message: str, origin: dict[str, str], roots: typing.Collection[str]) -> str:
    """Append where the config keys a message names were set: the source that set the key or
    its nearest parent ("data.ood" for "data.ood[0].name"), else "defaults". A key is a dotted
    name starting with a top-level section in `roots` (so "such.yaml" in a path is none)."""
    found = dict.fromkeys(re.findall(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", message))
    where = [f"{k} from {_origin_of(k, origin)}" for k in found if k.split(".")[0] in roots]
    return f"{message} [{'; '.join(where)}]" if where else message


def _origin_of(key: str, origin: dict[str, str]) -> str:
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in origin:
            return origin[".".join(parts[:n])]
    return "defaults"


def _format_errors(errors: list[str]) -> str:
    return f"invalid configuration ({len(errors)} problem{'s' if len(errors) > 1 else ''}):\n" + "\n".join(f"  - {e}" for e in errors)


def _validate_sections(node: Any, errors: list[str]) -> None:
    """Call `validate()` on every dataclass in the tree (depth first)."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            _validate_sections(getattr(node, f.name), errors)
        check = getattr(node, "validate", None)
        if callable(check):
            errors.extend(check())
    elif isinstance(node, list):
        for item in node:
            _validate_sections(item, errors)


# ----------------------------------------------------------------------------- type checking


def _check(tree: Any, schema: type, prefix: str, source: str, errors: list[str]) -> None:
    """Check one partial source tree against the schema (unknown keys, types); no defaults needed."""
    if not isinstance(tree, dict):
        errors.append(f"{source}: {prefix.rstrip('.') or '<root>'} must be a mapping, got {_show(tree)}")
        return
    hints = typing.get_type_hints(schema)
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if key not in hints:
            close = difflib.get_close_matches(str(key), list(hints), n=1, cutoff=0.6)
            hint = f"; did you mean `{prefix}{close[0]}`?" if close else f"; valid keys: {', '.join(hints)}"
            errors.append(f"{source}: unknown key `{path}`{hint}")
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            _check(value, tp, f"{path}.", source, errors)
        else:
            _coerce(value, tp, path, source, errors, partial=True)


def _build(tree: Any, schema: type, prefix: str, source: str, errors: list[str]) -> Any:
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for f in dataclasses.fields(schema):
        path = f"{prefix}{f.name}"
        if f.name in tree:
            kwargs[f.name] = _coerce(tree[f.name], hints[f.name], path, source, errors, partial=False)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{source}: `{path}` is required ({_type_name(hints[f.name])})")
    unknown = set(tree) - {f.name for f in dataclasses.fields(schema)}
    for key in sorted(unknown):
        errors.append(f"{source}: unknown key `{prefix}{key}`")
    if any(k not in kwargs for k in (f.name for f in dataclasses.fields(schema) if _required(f))):
        return None
    return schema(**kwargs)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _coerce(value: Any, tp: Any, path: str, source: str, errors: list[str], partial: bool) -> Any:
    """Return `value` as type `tp`, or record an error naming `path`, `source` and the expected type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail() -> None:
        errors.append(f"{source}: `{path}` expected {_type_name(tp)}, got {_show(value)}")

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], path, source, errors, partial)
        for a in inner:  # first member that accepts the value without errors
            trial: list[str] = []
            out = _coerce(value, a, path, source, trial, partial)
            if not trial:
                return out
        fail()
        return None
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append(f"{source}: `{path}` must be one of {list(args)}, got {value!r}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail()
            return None
        if partial:
            _check(value, tp, f"{path}.", source, errors)
            return value
        return _build(value, tp, f"{path}.", source, errors)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            fail()
            return None
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{path}[{i}]", source, errors, partial) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            fail()
            return None
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, val_tp, f"{path}.{k}", source, errors, partial) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail()
        return None
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
        return None
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        fail()
        return None
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # `run.name=123` on the command line arrives as an int
        fail()
        return None
    raise TypeError(f"config schema: unsupported annotation {tp!r} at `{path}`")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
