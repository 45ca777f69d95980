"""Evaluation: generate answers to benchmark questions, grade them with one lenient answer
extractor, and report accuracy per benchmark and per domain (in the spirit of the MegaScience
evaluation system: many benchmarks, one robust grader, per-domain tables).

    rlsci eval configs/eval/smoke.yaml --model runs/models/tiny                    # CPU, seconds
    rlsci eval configs/eval/science.yaml --model runs/x/checkpoints/step_000700/hf \\
        --engine vllm paths.wildsci=/data/wildsci engine_kwargs.tensor_parallel_size=2   # GPU
    rlsci eval configs/eval/science.yaml --model M --k 8 generation.temperature=0.6 \\
        skip=[wildsci_val] max_samples=50                                          # mean@8, maj@8

    summary = evaluate("runs/models/tiny", "configs/eval/smoke.yaml", "out/")     # Python
    sets = load_eval_sets(suite)                                                  # trainer: once
    evaluate(pool, suite, tokenizer=tok, run_dir=run_dir, step=step, sets=sets)   # every N steps

A suite (YAML, `EvalSuiteConfig`, loaded and checked by rlsci.config like every config) lists
benchmarks, each read by a converter of rlsci.data.benchmarks (or "wildsci" / "samples" rows),
optionally a seeded subset. Choices:
- Decoding: greedy by default (temperature 0, k = 1). With k samples at temperature T > 0 the
  report adds mean@k, maj@k and pass@k (rlsci/eval_report.py defines them and the tie rule).
- Grading: questions with options by the `mcq` reward (lenient extraction: "the answer is X",
  a final bare letter, ... as well as "Answer: X"), free-form questions (options {}, e.g.
  SciBench) by the `reference` reward; `grader.mcq` / `grader.free_form` name any other reward.
- Prompts: the training prompt template (rlsci.data.prompts) through the model's chat template
  (options via prompt.chat_template_kwargs, e.g. enable_thinking=false); a base model without a
  chat template gets plain text, said on stderr; prompts longer than prompt.max_prompt_tokens are
  not evaluated and counted as `prompts_dropped`.
- Paths in a suite are used as written: a relative path is relative to the CURRENT DIRECTORY
  (as in every rlsci config; run from the repository root), `bundled:NAME` is a file shipped
  with rlsci. `${paths.NAME}` interpolates the suite's `paths` table, so one command-line
  override (paths.benchmarks=/data/bench) moves every file.

Outputs (out_dir): items.parquet (one row per question x sample: eval_report.ITEM_SCHEMA),
summary.json, summary.md. With run_dir and step (training): run_dir/eval/step_XXXXXX.parquet and
a line of flat metrics appended to run_dir/eval/summary.jsonl.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rewards.base import Sample
from rewards.config import RewardConfig
from rewards.registry import load_fn, safe_grade
from rlsci.data.config import INPUT_FORMATS, did_you_mean
from rlsci.data.loaders import DataError
from rlsci.data.options import stable_int
from rlsci.data.prompts import (
    PromptConfig,
    has_chat_template,
    prompt_format,
    render_prompt_ids,
    resolve_template,
)
from rlsci.eval_report import (
    EvalSummary,
    ItemRecord,
    append_run_eval,
    summarize_benchmark,
    write_items,
    write_summary,
)
from rollouts.base import Completion, SamplingConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from rewards.base import RewardFn, RewardResult

BENCHMARK_NAMES = tuple(f for f in INPUT_FORMATS if f != "auto")  # wildsci, samples, benchmark converters
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

# (prompts, sampling) -> completions, prompt-major: a RolloutEngine's or RolloutPool's generate
GenerateFn = Callable[[list[list[int]], SamplingConfig], list[Completion]]


class EvalError(ValueError):
    """An evaluation that cannot run: the message names the benchmark, key or model at fault."""


# ----------------------------------------------------------------------------- config


@dataclass
class EvalBenchmark:
    name: str  # a converter of rlsci.data.benchmarks (gpqa_aug, mmlu, ...), "wildsci" or "samples"
    path: str  # file, folder, glob, bundled:NAME or hf:org/name; relative to the current directory
    label: str = ""  # name in reports and metric keys (eval/<label>/...); default: name; unique
    on_bad_row: Literal["error", "skip"] = "error"  # skip: drop and count rows that fail the checks
    max_samples: int | None = None  # a seeded subset of this many questions; None: all
    val_per_discipline: int | None = None  # name=wildsci: WildSci-Val, N all_aligned per discipline


@dataclass
class EvalGenerationConfig:
    k: int = 1  # samples per question; > 1 needs temperature > 0 and adds mean@k, maj@k, pass@k
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 1024  # response tokens at most; longer responses count as truncated
    seed: int = 0  # engine seed and per-call sampling seeds (sampled decoding is reproducible)
    batch_prompts: int = 256  # prompts per generate call (the progress bar moves per call)


@dataclass
class EvalGraderConfig:
    mcq: str = "mcq"  # reward for questions with options (mcq: lenient extraction)
    free_form: str = "reference"  # reward for questions without options


@dataclass
class EvalSuiteConfig:
    name: str = "eval"
    paths: dict[str, str] = field(default_factory=dict)  # named paths for ${paths.NAME} in benchmark paths
    benchmarks: list[EvalBenchmark] = field(default_factory=list)
    only: list[str] = field(default_factory=list)  # labels to evaluate (empty: all)
    skip: list[str] = field(default_factory=list)  # labels to leave out
    max_samples: int | None = None  # cap on every benchmark (a seeded subset); None: no cap
    seed: int = 0  # subsets, WildSci-Val choice, option order of gpqa_diamond / sciq
    generation: EvalGenerationConfig = field(default_factory=EvalGenerationConfig)
    grader: EvalGraderConfig = field(default_factory=EvalGraderConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    engine: Literal["hf", "vllm"] = "hf"
    engine_kwargs: dict[str, Any] = field(
        default_factory=dict
    )  # e.g. dtype, max_model_len, tensor_parallel_size

    def validate(self) -> list[str]:
        """Impossible settings, each message naming its key."""
        errors = []
        labels = [b.label or b.name for b in self.benchmarks]
        for i, b in enumerate(self.benchmarks):
            where = f"benchmarks[{i}] ({labels[i]})"
            if b.name not in BENCHMARK_NAMES:
                errors.append(
                    f"{where}.name: unknown benchmark {b.name!r}{did_you_mean(b.name, BENCHMARK_NAMES)}; "
                    f"expected one of {', '.join(BENCHMARK_NAMES)}"
                )
            if labels[i] in labels[:i]:
                errors.append(
                    f"{where}.label {labels[i]!r} is used twice: give each benchmark a unique label"
                )
            if not b.path.strip() and labels[i] in self.selected_labels():
                unset = [name for name, value in self.paths.items() if not value.strip()]
                hint = f" (unset in `paths`: {', '.join(unset)}: paths.{unset[0]}=DIR)" if unset else ""
                errors.append(
                    f"{where}: path is empty: set it{hint}, or leave the benchmark out with skip=[{labels[i]}]"
                )
            if b.max_samples is not None and b.max_samples < 1:
                errors.append(f"{where}.max_samples must be >= 1 or null, got {b.max_samples}")
            if b.val_per_discipline is not None and (b.name != "wildsci" or b.val_per_discipline < 1):
                errors.append(
                    f"{where}.val_per_discipline ({b.val_per_discipline}) needs name wildsci and a value >= 1"
                )
        for key in ("only", "skip"):
            unknown = [x for x in getattr(self, key) if x not in labels]
            if unknown:
                errors.append(f"{key}: unknown benchmark label(s) {unknown}; labels: {labels}")
        if not self.selected_labels() and not errors:
            errors.append("no benchmark to evaluate: benchmarks is empty, or only/skip leave none")
        if self.max_samples is not None and self.max_samples < 1:
            errors.append(f"max_samples must be >= 1 or null, got {self.max_samples}")
        g = self.generation
        if g.k < 1:
            errors.append(f"generation.k must be >= 1, got {g.k}")
        if g.temperature < 0:
            errors.append(f"generation.temperature must be >= 0, got {g.temperature}")
        if g.k > 1 and g.temperature == 0:
            errors.append(
                f"generation.k = {g.k} with generation.temperature 0 gives {g.k} identical greedy samples; "
                "set a temperature, for example generation.temperature=0.6"
            )
        if not 0 < g.top_p <= 1:
            errors.append(f"generation.top_p must be in (0, 1], got {g.top_p}")
        if g.top_k != -1 and g.top_k < 1:
            errors.append(f"generation.top_k must be -1 (off) or >= 1, got {g.top_k}")
        if g.max_tokens < 1:
            errors.append(f"generation.max_tokens must be >= 1, got {g.max_tokens}")
        if g.batch_prompts < 1:
            errors.append(f"generation.batch_prompts must be >= 1, got {g.batch_prompts}")
        if "seed" in self.engine_kwargs or "model" in self.engine_kwargs:
            errors.append("engine_kwargs must not set seed or model (use generation.seed and --model)")
        return errors

    def selected_labels(self) -> list[str]:
        """Labels evaluated, in suite order: `only` (all when empty) minus `skip`."""
        labels = [b.label or b.name for b in self.benchmarks]
        return [x for x in labels if (not self.only or x in self.only) and x not in self.skip]

    def sampling(self) -> SamplingConfig:
        g = self.generation
        return SamplingConfig(
            n=g.k, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k, max_tokens=g.max_tokens
        )


def load_suite_config(path: str | Path, overrides: Sequence[str] = ()) -> EvalSuiteConfig:
    """A suite YAML (with `defaults:` and dotted overrides) checked like every rlsci config."""
    from rlsci.config import load_config

    return load_config(path, overrides, schema=EvalSuiteConfig)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class EvalSet:
    """One benchmark, loaded: the questions to evaluate."""

    label: str
    name: str  # the converter / format it was read with
    samples: tuple[Sample, ...]
    rows_skipped: int = 0  # bad rows dropped while reading (on_bad_row: skip)
    n_total: int | None = None  # questions before the max_samples subset


def load_eval_sets(suite: EvalSuiteConfig) -> list[EvalSet]:
    """Read every selected benchmark of `suite` (all of them before any generation, so that a
    missing file fails at once); EvalError lists every benchmark that could not be read."""
    from rlsci.data.build import load_any, subset
    from rlsci.data.wildsci import split_val

    sets, errors = [], []
    selected = suite.selected_labels()
    for i, b in enumerate(suite.benchmarks):
        label = b.label or b.name
        if label not in selected:
            continue
        try:
            result = load_any(b.path, format=b.name, on_bad_row=b.on_bad_row, seed=suite.seed)
            samples = result.samples
            if b.val_per_discipline is not None:
                samples = split_val(samples, b.val_per_discipline, suite.seed)[1]
        except DataError as exc:
            where = f" (relative to {Path.cwd()})" if _is_relative_file(b.path) else ""
            errors.append(f"benchmarks[{i}] ({label}), path {b.path!r}{where}: {exc}")
            continue
        caps = [n for n in (b.max_samples, suite.max_samples) if n is not None]
        total = len(samples)
        samples = subset(samples, min(caps) if caps else None, suite.seed)
        sets.append(EvalSet(label, b.name, tuple(samples), result.report.rows_skipped, total))
    if errors:
        raise EvalError("cannot read the benchmarks of the suite:\n" + "\n".join(f"  - {e}" for e in errors))
    return sets


def _is_relative_file(path: str) -> bool:
    return not (path.startswith(("bundled:", "hf:")) or Path(path).expanduser().is_absolute())


# ----------------------------------------------------------------------------- core


@dataclass(frozen=True)
class Graders:
    mcq: RewardFn  # questions with options
    free_form: RewardFn  # questions without options

    def grade(self, response: str, sample: Sample) -> RewardResult:
        return safe_grade(self.mcq if sample.options else self.free_form, response, sample)


def build_graders(cfg: EvalGraderConfig) -> Graders:
    """The two rewards named in `cfg` (built-in values: correct 1, wrong 0, no answer 0)."""
    fns = {}
    for key in ("mcq", "free_form"):
        try:
            fns[key] = load_fn(getattr(cfg, key), RewardConfig())
        except (ImportError, ValueError) as exc:
            raise EvalError(f"grader.{key}: {exc}") from exc
    return Graders(**fns)


@dataclass(frozen=True)
class EvalOutput:
    records: tuple[ItemRecord, ...]  # one per question x sample, benchmarks in suite order
    summary: EvalSummary


def evaluate_samples(
    generate: GenerateFn,
    tokenizer: PreTrainedTokenizerBase,
    sets: Sequence[EvalSet],
    *,
    sampling: SamplingConfig,
    graders: Graders,
    prompt: PromptConfig | None = None,
    batch_prompts: int = 256,
    seed: int = 0,
    suite: str = "eval",
    model: str = "",
    step: int | None = None,
    progress: bool = True,
) -> EvalOutput:
    """Generate sampling.n responses per question with `generate`, grade them, summarize.

    Prompts are rendered with `prompt` (default PromptConfig()); longer ones than
    prompt.max_prompt_tokens are dropped and counted. Each generate call gets its own sampling
    seed, stable_int(seed, label, call index) mod 2^31, when temperature > 0."""
    prompt = prompt or PromptConfig()
    template = resolve_template(prompt)
    records: list[ItemRecord] = []
    results = []
    with _progress_bar(progress) as bar:
        for s in sets:
            ids = [render_prompt_ids(q, tokenizer, template) for q in s.samples]
            kept = [(q, p) for q, p in zip(s.samples, ids, strict=True) if len(p) <= prompt.max_prompt_tokens]
            if not kept:
                raise EvalError(
                    f"benchmark {s.label}: none of its {len(s.samples)} prompts fits prompt.max_prompt_tokens="
                    f"{prompt.max_prompt_tokens}"
                    if s.samples
                    else f"benchmark {s.label}: no questions"
                )
            task = bar.add_task(s.label, total=len(kept))
            rows: list[ItemRecord] = []
            for call, start in enumerate(range(0, len(kept), batch_prompts)):
                chunk = kept[start : start + batch_prompts]
                call_seed = stable_int(seed, s.label, call) % 2**31
                seeded = sampling if sampling.temperature == 0 else replace(sampling, seed=call_seed)
                completions = generate([p for _, p in chunk], seeded)
                _check_completions(completions, len(chunk), sampling.n, s.label)
                for c in sorted(completions, key=lambda c: (c.prompt_index, c.sample_index)):
                    rows.append(_record(s.label, chunk[c.prompt_index][0], c, graders))
                bar.advance(task, len(chunk))
            results.append(
                summarize_benchmark(s.label, s.name, rows, sampling.n,
                                    prompts_dropped=len(s.samples) - len(kept), rows_skipped=s.rows_skipped,
                                    n_total=s.n_total)
            )  # fmt: skip
            records += rows
    summary = EvalSummary(
        suite=suite, model=model, k=sampling.n, temperature=sampling.temperature,
        max_tokens=sampling.max_tokens, step=step, benchmarks=tuple(results),
    )  # fmt: skip
    return EvalOutput(tuple(records), summary)


def _check_completions(completions: Sequence[Completion], prompts: int, n: int, label: str) -> None:
    got = sorted((c.prompt_index, c.sample_index) for c in completions)
    if got != [(i, j) for i in range(prompts) for j in range(n)]:
        raise EvalError(
            f"benchmark {label}: the engine returned {len(completions)} completions for {prompts} prompts x "
            f"{n} samples, not one per (prompt, sample)"
        )


def _record(label: str, sample: Sample, c: Completion, graders: Graders) -> ItemRecord:
    result = graders.grade(c.response_text, sample)
    return ItemRecord(
        benchmark=label,
        source=sample.source,
        id=sample.id,
        domain=sample.domain,
        subdomain=sample.subdomain,
        sample=c.sample_index,
        n_options=len(sample.options),
        gold=sample.answer,
        pred=result.pred,
        correct=result.correct,
        score=result.score,
        extracted_by=result.extracted_by,
        format_ok=result.format_ok,
        error=result.error,
        prompt_len=len(c.prompt_ids),
        response_len=len(c.response_ids),
        finish_reason=c.finish_reason,
        response=c.response_text,
        question=sample.question,
        options=json.dumps(sample.options, ensure_ascii=False),
        group=str(sample.meta.get("base_id") or sample.id),  # GPQA-Aug: its 4 rotations are one question
    )


def _progress_bar(enabled: bool):
    """A rich progress bar on stderr; disabled when `enabled` is False or stderr is no terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not (enabled and console.is_terminal),
    )  # fmt: skip


# ----------------------------------------------------------------------------- entry point


def load_tokenizer(model: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of a local model directory, or of a hub id (which needs the hub)."""
    from transformers import AutoTokenizer

    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        try:
            return AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise EvalError(
                f"model {text!r}: the folder holds no loadable tokenizer (expected a model folder with "
                f"config.json and the tokenizer files). {type(exc).__name__}: {exc}"
            ) from exc
    if path.exists() or not _HUB_ID.fullmatch(text) or Path(text.split("/")[0]).is_dir():
        # org/name whose `org` is a local folder is a mistyped path: fail now, not after hub retries
        raise EvalError(
            f"model {text!r}: no model directory there{_close_folders(path)} (expected a folder with "
            f"config.json and the tokenizer, or a Hugging Face hub id org/name)"
        )
    try:
        return AutoTokenizer.from_pretrained(text)
    except (OSError, ValueError) as exc:
        raise EvalError(
            f"model {text!r} is not a local directory, and loading it from the Hugging Face hub failed "
            f"(no network or no such repository?); download it where the hub is reachable and pass the "
            f"folder. {type(exc).__name__}: {exc}"
        ) from exc


def _close_folders(path: Path) -> str:
    """' (did you mean ...?)' naming folders next to a missing `path` with a similar name."""
    import difflib

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f" ({parent} does not exist either)"
    names = [p.name for p in parent.iterdir() if p.is_dir()]
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(str(parent / n) for n in close)}?)" if close else ""


def evaluate(
    model: str | Path | Any,
    suite: EvalSuiteConfig | str | Path,
    out_dir: str | Path | None = None,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    run_dir: str | Path | None = None,
    step: int | None = None,
    sets: Sequence[EvalSet] | None = None,
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> EvalSummary:
    """Evaluate `model` on `suite` and write the reports.

    model: a local model directory or a hub id (an engine of kind suite.engine is built, and shut
        down at the end), or an object with `generate(prompts, sampling)` (a RolloutEngine or
        RolloutPool, left running; then `tokenizer` is required).
    suite: an EvalSuiteConfig or the path of a suite YAML.
    out_dir: items.parquet, summary.json, summary.md go here (None: not written).
    run_dir, step: training-time validation files in the run directory (both or neither).
    sets: the suite's benchmarks already loaded by load_eval_sets (default: loaded now).
    overrides: the command line's key=value overrides, recorded in summary.json's settings.
    """
    if (run_dir is None) != (step is None):
        raise EvalError("evaluate: run_dir and step go together (training-time validation files)")
    cfg = suite if isinstance(suite, EvalSuiteConfig) else load_suite_config(suite)
    problems = cfg.validate() + cfg.prompt.validate()  # a suite built in code skipped load_config's checks
    if problems:
        raise EvalError("invalid eval suite:\n" + "\n".join(f"  - {p}" for p in problems))
    sets = load_eval_sets(cfg) if sets is None else sets
    graders = build_graders(cfg.grader)
    owned = isinstance(model, str | Path)
    if owned:
        tokenizer = load_tokenizer(model) if tokenizer is None else tokenizer
        from rollouts import build_engine

        try:
            engine = build_engine(
                cfg.engine, model=str(model), seed=cfg.generation.seed, **engine_kwargs(cfg)
            )
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise EvalError(
                f"engine_kwargs {sorted(cfg.engine_kwargs)} do not fit engine {cfg.engine!r}: {exc}"
            ) from exc
        name = str(model)
    else:
        if not callable(getattr(model, "generate", None)):
            raise EvalError(
                f"evaluate: model must be a path, a hub id or an engine with generate(), got {type(model).__name__}"
            )
        if tokenizer is None:
            raise EvalError("evaluate: pass tokenizer= with an engine object")
        engine = model
        paths = [getattr(model, attr, None) for attr in ("model_path", "model")]  # HFEngine, VLLMEngine
        name = next((p for p in paths if isinstance(p, str)), type(model).__name__)
    if not has_chat_template(tokenizer):  # a base model: said once, and recorded in summary.json
        print(f"rlsci eval: model {name}: prompts are {prompt_format(tokenizer)}", file=sys.stderr)
    try:
        output = evaluate_samples(
            engine.generate, tokenizer, sets, sampling=cfg.sampling(), graders=graders, prompt=cfg.prompt,
            batch_prompts=cfg.generation.batch_prompts, seed=cfg.generation.seed, suite=cfg.name,
            model=str(name), step=step, progress=progress,
        )  # fmt: skip
    finally:
        if owned:
            engine.shutdown()
    output = replace(
        output, summary=replace(output.summary, settings=_settings(cfg, owned, engine, tokenizer, overrides))
    )
    if out_dir is not None:
        write_items(output.records, Path(out_dir) / "items.parquet", step=step)
        write_summary(output.summary, out_dir)
    if run_dir is not None:
        append_run_eval(run_dir, step, output.records, output.summary)
    return output.summary


def engine_kwargs(cfg: EvalSuiteConfig) -> dict[str, Any]:
    """cfg.engine_kwargs, and for vLLM without a GPU dtype float32 unless set: on CPU float32 is
    faster than bfloat16 (DESIGN.md) and vLLM's "auto" would take the checkpoint's bf16."""
    import torch

    kwargs = dict(cfg.engine_kwargs)
    if cfg.engine == "vllm" and "dtype" not in kwargs and not torch.cuda.is_available():
        kwargs["dtype"] = "float32"
    return kwargs


def _settings(
    cfg: EvalSuiteConfig, owned: bool, engine: Any, tokenizer: Any, overrides: Sequence[str]
) -> dict[str, Any]:
    """How the evaluation ran, for summary.json: enough to trace and repeat it."""
    from datetime import UTC, datetime
    from importlib.metadata import PackageNotFoundError, version

    try:
        rlsci_version = version("rlsci")
    except PackageNotFoundError:
        rlsci_version = "unknown"
    kwargs = engine_kwargs(cfg) if owned else {}
    dtype = (
        kwargs.get("dtype", "float32" if cfg.engine == "hf" else "auto") if owned else None
    )  # HFEngine: fp32
    return {
        "engine": cfg.engine if owned else type(engine).__name__,
        "engine_kwargs": kwargs,
        "dtype": None if dtype is None else str(dtype),
        "seed": cfg.seed,
        "generation": asdict(cfg.generation),
        "max_samples": cfg.max_samples,
        "prompt": asdict(cfg.prompt) | {"format": prompt_format(tokenizer)},
        "grader": asdict(cfg.grader),
        "overrides": list(overrides),
        "rlsci_version": rlsci_version,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_summary(summary: EvalSummary, stream=None) -> None:
    """One line per benchmark, for the command line (to `stream`, default sys.stdout)."""
    stream = stream or sys.stdout
    for b in summary.benchmarks:
        extra = f"  maj@{b.k} {b.maj:.3f}  pass@{b.k} {b.pass_at_k:.3f}" if b.k > 1 else ""
        print(
            f"{b.label:<24} n {b.n:>5}  acc {b.acc:.3f}{extra}  extractable {b.extractability:.3f}  "
            f"truncated {b.truncation:.3f}  mean len {b.response_len:.1f}",
            file=stream,
        )
    if summary.benchmarks:
        print(f"{'macro average':<24} acc {summary.macro['acc']:.3f}", file=stream)
