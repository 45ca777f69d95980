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
from rlsci.learner import LearnerConfig


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
class ModelConfig:
    """The initial policy. `path` is a Hugging Face model directory or hub id; with `init` set and
    no model at `path`, a tiny random model of that size (rlsci.models) is built there first."""

    path: str = ""  # required by `rlsci train` (a config that only serves rewards leaves it unset)
    init: Literal["none", "micro", "tiny", "small", "base"] = "none"



@dataclass
class RolloutConfig:
    """Rollout workers (Ray actors, one engine each) and how they sample."""

    engine: Literal["hf", "vllm"] = "hf"
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # split: whole GPUs (= tensor_parallel_size); colocate: a fraction
    # sampling (training); top_p / top_k must stay off: they change the behaviour logprobs
    n: int = 8  # samples per prompt: the GRPO group size
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 1024  # response tokens at most
    stop: list[str] = field(default_factory=list)
    # engine settings
    dtype: str = "float32"  # vLLM: auto | float32 | bfloat16 | float16; hf: float32 | bfloat16 | float16
    max_batch_size: int = 256  # hf: rows decoded together
    tensor_parallel_size: int = 1  # vllm
    max_model_len: int | None = None  # vllm; None: the model's
    max_num_seqs: int = 256  # vllm
    gpu_memory_utilization: float = 0.5  # vllm
    kv_cache_memory_bytes: int | None = None  # vllm: a fixed KV cache (CPU runs)
    enable_prefix_caching: bool = True  # vllm
    weight_bucket_bytes: int = 2**28  # learner -> engine weight sync, per bucket

    def validate(self) -> list[str]:
        errors = []
        if self.workers < 1:
            errors.append(f"rollout.workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            errors.append(f"rollout.cpus_per_worker must be > 0 and rollout.gpus_per_worker >= 0, "
                          f"got {self.cpus_per_worker}, {self.gpus_per_worker}")
        if self.n < 2:
            errors.append(f"rollout.n must be >= 2 (GRPO compares the samples of one prompt), got {self.n}")
        if not self.temperature > 0:
            errors.append(f"rollout.temperature must be > 0 for training, got {self.temperature}")
        if self.top_p != 1.0 or self.top_k != -1:
            errors.append(f"rollout.top_p ({self.top_p}) and rollout.top_k ({self.top_k}) must stay off (1.0, -1) "
                          "for training: they change the behaviour logprobs the learner's ratio is taken against")
        if self.max_tokens < 1:
            errors.append(f"rollout.max_tokens must be >= 1, got {self.max_tokens}")
        if self.tensor_parallel_size < 1 or self.max_num_seqs < 1 or self.max_batch_size < 1:
            errors.append("rollout.tensor_parallel_size, rollout.max_num_seqs and rollout.max_batch_size must be >= 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            errors.append(f"rollout.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.weight_bucket_bytes < 1:
            errors.append(f"rollout.weight_bucket_bytes must be >= 1, got {self.weight_bucket_bytes}")
        return errors


@dataclass
class AlgoConfig:
    """GRPO choices (rlsci/algos.py); the loss settings (clip, loss_agg, KL in the loss) are `learner`'s."""

    advantage: Literal["grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline"] = "grpo"
    scale_by_std: bool = True  # grpo: (r - mean) / std; False: r - mean (Dr. GRPO)
    zero_variance_filter: bool = False  # DAPO dynamic sampling: drop groups with equal rewards, refill
    max_refill_rounds: int = 4  # extra generation rounds to refill the batch; then train on what there is
    overlong: Literal["none", "mask", "soft_penalty"] = "none"  # truncated responses: as they are, no
    overlong_cache_len: int = 0  # loss (mask), or DAPO's soft length penalty over the last cache_len tokens
    overlong_penalty: float = 1.0

    def validate(self) -> list[str]:
        errors = []
        if self.max_refill_rounds < 0:
            errors.append(f"algo.max_refill_rounds must be >= 0, got {self.max_refill_rounds}")
        if self.overlong == "soft_penalty" and self.overlong_cache_len < 1:
            errors.append("algo.overlong=soft_penalty needs algo.overlong_cache_len >= 1")
        if self.advantage == "reinforce_pp" and self.zero_variance_filter:
            errors.append("algo.zero_variance_filter drops the groups whose rewards are all equal, the ones only "
                          "reinforce_pp learns from: set it false (or use reinforce_pp_baseline)")
        if self.advantage != "grpo" and not self.scale_by_std:
            errors.append(f"algo.scale_by_std applies to algo.advantage=grpo only; leave it true with {self.advantage}")
        return errors


@dataclass
class TrainEvalConfig:
    """Validation during training (`eval/val/...`, `eval/<label>/...` for data.ood), through the
    rollout workers' current weights."""

    before_training: bool = True  # evaluate at step 0
    temperature: float = 0.0  # 0 = greedy
    max_tokens: int = 1024
    grader: str = "mcq"  # lenient extraction (rewards.mcq) for evaluation
    batch_prompts: int = 256

    def validate(self) -> list[str]:
        errors = []
        if self.temperature < 0 or self.max_tokens < 1 or self.batch_prompts < 1:
            errors.append(f"eval.temperature must be >= 0 and eval.max_tokens, eval.batch_prompts >= 1, got "
                          f"{self.temperature}, {self.max_tokens}, {self.batch_prompts}")
        return errors


SINKS = ("jsonl", "tensorboard", "wandb", "mlflow", "none")


@dataclass
class TrainerConfig:
    """The loop: length, batch, placement, evaluation, checkpoints, logging."""

    total_steps: int = 100
    prompts_per_step: int = 32  # questions per step; x rollout.n samples
    placement: Literal["cpu", "split", "colocate"] = "cpu"
    eval_every: int = 0  # steps between validations (0: before training and at the end only)
    save_every: int = 0  # steps between checkpoints (0: at the end and on SIGTERM/SIGINT only)
    keep_last: int = 2  # checkpoints kept
    resume: str = "auto"  # auto: the latest complete checkpoint of run.dir | never | a checkpoint path
    best_metric: str = "eval/val/acc"  # recorded in best.json (higher is better)
    loggers: list[str] = field(default_factory=lambda: ["jsonl", "tensorboard"])
    wandb_project: str = "rlsci"
    mlflow_tracking_uri: str | None = None
    export_hf: bool = True  # the final policy as a Hugging Face directory, run.dir/hf
    save_rollouts: bool = True  # every step's samples to rollouts/step_XXXXXX.parquet
    logprob_diff_warn: float = 1e-3  # warn when engine and learner logprobs differ more (stale weights)
    reward_restarts: int = 2  # restarts of a reward server this run started, if it dies
    ray_address: str | None = None  # None: the cluster of RAY_ADDRESS / `ray job submit`, else a new local one

    def validate(self) -> list[str]:
        errors = []
        if self.total_steps < 1 or self.prompts_per_step < 1:
            errors.append(f"trainer.total_steps and trainer.prompts_per_step must be >= 1, got "
                          f"{self.total_steps}, {self.prompts_per_step}")
        if self.eval_every < 0 or self.save_every < 0 or self.keep_last < 1:
            errors.append(f"trainer.eval_every and trainer.save_every must be >= 0 and trainer.keep_last >= 1, got "
                          f"{self.eval_every}, {self.save_every}, {self.keep_last}")
        unknown = [s for s in self.loggers if s not in SINKS]
        if unknown:
            errors.append(f"trainer.loggers: unknown {unknown}; expected some of {list(SINKS)}")
        if not self.resume.strip():
            errors.append("trainer.resume must be auto, never or a checkpoint directory")
        return errors


@dataclass
class SftConfig:
    """Supervised warm start (`rlsci sft`, rlsci/sft.py): cross-entropy on the response tokens of
    data.train's questions. The loop, its length, evaluation, checkpoints and logging are the trainer
    section's (trainer.total_steps, eval_every, save_every, ...); the optimizer is the learner's."""

    batch_size: int = 32  # questions per optimizer step
    # what the response says: "answer_line" = 'Answer: B' (free form: 'Answer: <reference>'), the line
    # the graders read; "letter" = 'B' alone (multiple choice only), for tiny models; "option_text" = the
    # gold option's text (' helium'), graded by the lenient grader's option_text rule (multiple choice only;
    # written after a space: the option line's own token): the demo's tiny model learns the content this way
    target: Literal["answer_line", "letter", "option_text"] = "answer_line"
    with_reasoning: bool = False  # the row's reasoning (MegaScience-style data) before the answer line
    # train the end-of-turn token after the target (the model learns to stop); false for one-token answers
    # generated with max_tokens 1 (with it in the loss, a plain loop on the demo's tiny model kept the letter
    # at chance for 500 steps, without it crossed over by 300-700: README, Supervised warm start)
    end_of_turn: bool = True

    def validate(self) -> list[str]:
        errors = []
        if self.batch_size < 1:
            errors.append(f"sft.batch_size must be >= 1, got {self.batch_size}")
        return errors


def _learner_defaults() -> LearnerConfig:
    """The learner section inside a training config: the values it shares with other sections
    follow them (OmegaConf interpolations, resolved at load) unless a config sets them."""
    return LearnerConfig(model_path="${model.path}", temperature="${rollout.temperature}",  # type: ignore[arg-type]
                         total_steps="${trainer.total_steps}", seed="${run.seed}",  # type: ignore[arg-type]
                         norm_len="${rollout.max_tokens}")  # type: ignore[arg-type]


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    learner: LearnerConfig = field(default_factory=_learner_defaults)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    sft: SftConfig = field(default_factory=SftConfig)

    def validate(self) -> list[str]:
        """Rules across sections, checked once here rather than by hand in the parts."""
        errors = []
        if self.learner.temperature != self.rollout.temperature:
            errors.append(f"learner.temperature ({self.learner.temperature}) must equal rollout.temperature "
                          f"({self.rollout.temperature}): the learner divides logits by it to match the sampler")
        if self.learner.model_path != self.model.path:
            errors.append(f"learner.model_path ({self.learner.model_path!r}) differs from model.path "
                          f"({self.model.path!r}): set model.path only")
        if self.learner.kl_coef and self.algo.advantage in ("rloo", "reinforce_pp"):
            errors.append(f"learner.kl_coef puts KL in the loss; {self.algo.advantage} (RLOO, REINFORCE++) puts it "
                          "in the reward, which rlsci does not do yet: set learner.kl_coef=0 (reinforce_pp_baseline "
                          "takes KL in the loss, k2 in its paper)")
        t, r, lr = self.trainer, self.rollout, self.learner
        if t.placement == "cpu" and (lr.gpus_per_rank or r.gpus_per_worker):
            errors.append("trainer.placement=cpu takes no GPUs: set learner.gpus_per_rank and "
                          "rollout.gpus_per_worker to 0 (or trainer.placement=split / colocate)")
        if t.placement == "split" and (lr.gpus_per_rank != 1 or r.gpus_per_worker != r.tensor_parallel_size):
            errors.append(f"trainer.placement=split needs learner.gpus_per_rank=1 and rollout.gpus_per_worker = "
                          f"rollout.tensor_parallel_size, got {lr.gpus_per_rank}, {r.gpus_per_worker}, "
                          f"{r.tensor_parallel_size}")
        if t.placement == "colocate" and (
            r.workers > lr.num_ranks or not 0 < lr.gpus_per_rank < 1 or not 0 < r.gpus_per_worker < 1
            or lr.gpus_per_rank + r.gpus_per_worker > 1 or r.tensor_parallel_size != 1
        ):
            errors.append("trainer.placement=colocate shares each learner rank's GPU with at most one rollout "
                          "worker: rollout.workers <= learner.num_ranks, 0 < learner.gpus_per_rank, "
                          "rollout.gpus_per_worker and their sum <= 1, rollout.tensor_parallel_size = 1")
        if r.engine == "hf" and t.placement != "cpu" and r.gpus_per_worker > 1:
            errors.append("rollout.engine=hf drives one device: rollout.gpus_per_worker must be <= 1")
        if self.eval.max_tokens < 1:
            errors.append("eval.max_tokens must be >= 1")
        return errors


# ----------------------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None, overrides: typing.Sequence[str] = (), schema: type = Config
) -> Any:
    """Load `path` (with its `defaults:` chain) and `overrides` into a validated `schema` instance."""
    sources: list[tuple[str, dict]] = []
    if path is not None:
        sources.extend(_read_with_defaults(Path(path), chain=()))
    if overrides:
        sources.append(("command line", _parse_overrides(overrides, schema)))

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
    except UnicodeDecodeError:  # its offset counts from a read buffer: decode the whole file
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise ConfigError(
                f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode the file as UTF-8"
            ) from None
        raise
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


def _indexed_list(key: str, schema: type) -> str | None:
    """The list field of `schema` that the override key `key` indexes into ("data.ood" for
    "data.ood[0].path" or "data.ood.0.path"), or None (a dict's key "0" is an ordinary key)."""
    parts = re.sub(r"\[(\d+)\]", r".\1", key).split(".")
    tp: Any = schema
    for i, part in enumerate(parts[:-1]):
        if not dataclasses.is_dataclass(tp) or part not in (hints := typing.get_type_hints(tp)):
            return None
        tp = hints[part]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):  # list[...] | None
            tp = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
        if typing.get_origin(tp) in (list, tuple) and parts[i + 1].isdigit():
            return ".".join(parts[: i + 1])
    return None


def _parse_overrides(overrides: typing.Sequence[str], schema: type) -> dict:
    bad = [o for o in overrides if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise ConfigError(f"command line: overrides must look like `a.b.c=value`, got {bad}")
    if any(o.startswith("defaults=") for o in overrides):
        raise ConfigError("command line: `defaults` can only be set in a YAML file")
    for o in overrides:  # OmegaConf's dot-list would read "ood[0]" and "ood.0" as a mapping key "0"
        if (listed := _indexed_list(o.split("=", 1)[0].strip(), schema)) is not None:
            raise ConfigError(f"command line: `{o}` sets one item of the list `{listed}`, which an override "
                              f"cannot do: give the whole list, e.g. `{listed}=[{{...}}, {{...}}]`")
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
