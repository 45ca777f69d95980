"""Prompts: how a `Sample` becomes the chat the policy answers, and which prompts are too long.

A prompt template (YAML, default `configs/prompts/default.yaml`) has three keys:

    system: null                          # system message text, or null for none
    user: "{question}\\n\\n{options}\\n\\n{instruction}"   # multiple-choice questions
    user_free_form: "{question}\\n\\n{instruction}"        # questions without options
    option_format: "{letter}. {text}"     # one line per option, in letter order

`{instruction}` is the answer format the grader accepts, taken from the grader itself so the
two never drift apart: `rewards.mcq.ANSWER_INSTRUCTION` (a last line 'Answer: X') for
multiple choice, `rewards.reference.REFERENCE_INSTRUCTION` ('Answer: <number> <unit>') for
free form. The user message is rendered with the tokenizer's own chat template
(`apply_chat_template(..., add_generation_prompt=True, **prompt.chat_template_kwargs)`), so a hub
model gets its native format; `chat_template_kwargs` passes template options through (Qwen3:
`prompt.chat_template_kwargs.enable_thinking=false`). A tokenizer without a chat template (a base
model) gets the messages as plain text instead (`plain_text`: the system message, a blank line,
the user message, a newline); `prompt_format(tokenizer)` names which one a tokenizer gets.

    from rlsci.data.prompts import PromptConfig, render_prompt, filter_by_length
    text = render_prompt(sample, tokenizer, PromptConfig(system="You are a careful scientist."))
    kept, report = filter_by_length(samples, tokenizer, PromptConfig(max_prompt_tokens=512))
    print(report.summary())
"""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rewards.base import Sample
from rewards.mcq import ANSWER_INSTRUCTION
from rewards.reference import REFERENCE_INSTRUCTION

if TYPE_CHECKING:  # transformers is heavy; only the annotations need it
    from transformers import PreTrainedTokenizerBase

USER_FIELDS = ("question", "options", "instruction")
OPTION_FIELDS = ("letter", "text")
TEMPLATE_KEYS = ("system", "user", "user_free_form", "option_format")
# apply_chat_template's own arguments, which chat_template_kwargs must not set
RESERVED_CHAT_KWARGS = (
    "conversation",
    "tokenize",
    "add_generation_prompt",
    "return_dict",
    "continue_final_message",
)
PLAIN_TEXT = "plain text (the tokenizer has no chat template)"


@dataclass
class PromptConfig:
    """The prompt section of the data config.

    template: a prompt-template YAML file; None = the built-in default (DEFAULT_TEMPLATE, the
        same as configs/prompts/default.yaml).
    system: overrides the template's system message when set; "" removes it.
    max_prompt_tokens: prompts longer than this (in tokens, chat template included) are dropped
        by `filter_by_length`, which reports every drop.
    chat_template_kwargs: extra arguments of the tokenizer's chat template, e.g.
        {enable_thinking: false} for Qwen3 (unused when the tokenizer has none: plain text).
    """

    template: str | None = None
    system: str | None = None
    max_prompt_tokens: int = 1024
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> list[str]:
        errors = []
        if self.max_prompt_tokens < 1:
            errors.append(f"prompt.max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        reserved = sorted(set(self.chat_template_kwargs) & set(RESERVED_CHAT_KWARGS))
        if reserved:
            errors.append(
                f"prompt.chat_template_kwargs: {reserved} are set by rlsci itself; expected template options "
                "such as enable_thinking"
            )
        if self.template is not None:
            if not Path(self.template).is_file():
                errors.append(f"prompt.template: no such file {self.template}")
            else:
                try:
                    load_template(self.template)
                except ValueError as exc:
                    errors.append(f"prompt.template: {exc}")
        return errors


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed, checked prompt template (see the module docstring for the fields)."""

    system: str | None
    user: str
    user_free_form: str
    option_format: str
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)  # PromptConfig's


DEFAULT_TEMPLATE = PromptTemplate(
    system=None,
    user="{question}\n\n{options}\n\n{instruction}",
    user_free_form="{question}\n\n{instruction}",
    option_format="{letter}. {text}",
)


def _placeholders(text: str) -> set[str]:
    """Names of the `{...}` fields of a str.format template ('{{' and '}}' are literal braces)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def check_template(template: PromptTemplate, source: str) -> PromptTemplate:
    """Raise ValueError naming `source` when a field uses a placeholder it cannot fill."""
    allowed = {"user": USER_FIELDS, "user_free_form": USER_FIELDS, "option_format": OPTION_FIELDS}
    required = {"user": ("question", "options"), "user_free_form": ("question",), "option_format": ("text",)}
    errors = []
    for name, fields in allowed.items():
        try:
            used = _placeholders(getattr(template, name))
        except ValueError as exc:  # unbalanced braces
            errors.append(f"{name}: {exc}")
            continue
        unknown = sorted(used - set(fields))
        if unknown:
            errors.append(f"{name}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}"
                          f" (allowed: {', '.join('{' + f + '}' for f in fields)})")  # fmt: skip
        missing = [f for f in required[name] if f not in used]
        if missing:
            errors.append(f"{name}: must contain {', '.join('{' + f + '}' for f in missing)}")
    if errors:
        raise ValueError(f"prompt template {source}: " + "; ".join(errors))
    return template


def load_template(path: str | Path) -> PromptTemplate:
    """Read a prompt-template YAML file; keys missing from it take DEFAULT_TEMPLATE's values."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ValueError(f"prompt template {path}: no such file (relative to {Path.cwd()})") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"prompt template {path}: cannot read it as YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"prompt template {path}: expected a mapping of {', '.join(TEMPLATE_KEYS)}")
    unknown = sorted(set(data) - set(TEMPLATE_KEYS))
    if unknown:
        raise ValueError(f"prompt template {path}: unknown key(s) {unknown}; expected {list(TEMPLATE_KEYS)}")
    for key, value in data.items():
        if not (isinstance(value, str) or (key == "system" and value is None)):
            raise ValueError(f"prompt template {path}: {key} must be a string, got {type(value).__name__}")
    defaults = {k: getattr(DEFAULT_TEMPLATE, k) for k in TEMPLATE_KEYS}
    return check_template(PromptTemplate(**{**defaults, **data}), str(path))


def resolve_template(cfg: PromptConfig) -> PromptTemplate:
    """The template `cfg` names (or the default), with cfg.system applied."""
    template = DEFAULT_TEMPLATE if cfg.template is None else load_template(cfg.template)
    if cfg.chat_template_kwargs:
        template = replace(template, chat_template_kwargs=dict(cfg.chat_template_kwargs))
    if cfg.system is None:
        return template
    return replace(template, system=cfg.system or None)


def render_messages(sample: Sample, prompt: PromptConfig | PromptTemplate) -> list[dict[str, str]]:
    """The chat messages for `sample`: an optional system message and the user message.
    Pass a PromptTemplate (from `resolve_template`) in loops so the YAML is read once."""
    template = prompt if isinstance(prompt, PromptTemplate) else resolve_template(prompt)
    if sample.options:
        lines = (template.option_format.format(letter=k, text=v) for k, v in sorted(sample.options.items()))
        options = "\n".join(lines)
        user = template.user.format(question=sample.question, options=options, instruction=ANSWER_INSTRUCTION)
    else:
        user = template.user_free_form.format(
            question=sample.question, options="", instruction=REFERENCE_INSTRUCTION
        )
    messages = [{"role": "system", "content": template.system}] if template.system else []
    return [*messages, {"role": "user", "content": user}]


def render_prompt(
    sample: Sample, tokenizer: PreTrainedTokenizerBase, prompt: PromptConfig | PromptTemplate
) -> str:
    """The prompt text through the tokenizer's chat template, ending with the assistant turn's
    opening; `plain_text` of the messages when the tokenizer has no chat template (a base model)."""
    template = prompt if isinstance(prompt, PromptTemplate) else resolve_template(prompt)
    messages = render_messages(sample, template)
    if not has_chat_template(tokenizer):
        return plain_text(messages)
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **template.chat_template_kwargs
    )


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_format(tokenizer: PreTrainedTokenizerBase) -> str:
    """How `render_prompt` renders for this tokenizer, for reports: "chat template" or PLAIN_TEXT."""
    return "chat template" if has_chat_template(tokenizer) else PLAIN_TEXT


def plain_text(messages: Sequence[dict[str, str]]) -> str:
    """The prompt of a model without a chat template: the messages' texts, a blank line apart,
    and a newline after the last (the model continues with its answer)."""
    return "\n\n".join(m["content"] for m in messages) + "\n"


def render_prompt_ids(
    sample: Sample, tokenizer: PreTrainedTokenizerBase, prompt: PromptConfig | PromptTemplate
) -> list[int]:
    """Token ids of `render_prompt` (the chat template's special tokens are in the text; no
    other special token is added)."""
    return tokenizer.encode(render_prompt(sample, tokenizer, prompt), add_special_tokens=False)


@dataclass(frozen=True)
class DropReport:
    """What `filter_by_length` kept and dropped. Lengths are in tokens over *all* samples given;
    percentiles are nearest-rank: p-th = sorted_lengths[ceil(p/100 · n) - 1] (0 when n = 0)."""

    max_prompt_tokens: int
    kept: int
    dropped: int
    dropped_by_domain: dict[str, int]
    dropped_ids: tuple[str, ...]
    max_len: int
    p50_len: int
    p95_len: int
    p99_len: int

    def summary(self) -> str:
        total = self.kept + self.dropped
        by_domain = ", ".join(f"{d}: {n}" for d, n in sorted(self.dropped_by_domain.items())) or "none"
        return (
            f"prompts: kept {self.kept}/{total}, dropped {self.dropped} longer than {self.max_prompt_tokens} "
            f"tokens (by domain: {by_domain}); length p50 {self.p50_len}, p95 {self.p95_len}, "
            f"p99 {self.p99_len}, max {self.max_len}"
        )


def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of ascending values: sorted_values[ceil(p/100 · n) - 1]."""
    if not sorted_values:
        return 0
    return sorted_values[max(math.ceil(p / 100 * len(sorted_values)) - 1, 0)]


def filter_by_length(
    samples: Sequence[Sample], tokenizer: PreTrainedTokenizerBase, cfg: PromptConfig
) -> tuple[list[Sample], DropReport]:
    """Keep the samples whose rendered prompt has at most cfg.max_prompt_tokens tokens; the
    report counts every dropped sample by domain and names it by id."""
    template = resolve_template(cfg)
    texts = [render_prompt(s, tokenizer, template) for s in samples]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
    kept = [s for s, n in zip(samples, lengths, strict=True) if n <= cfg.max_prompt_tokens]
    dropped = [s for s, n in zip(samples, lengths, strict=True) if n > cfg.max_prompt_tokens]
    ordered = sorted(lengths)
    report = DropReport(
        max_prompt_tokens=cfg.max_prompt_tokens,
        kept=len(kept),
        dropped=len(dropped),
        dropped_by_domain=dict(Counter(s.domain for s in dropped)),
        dropped_ids=tuple(s.id for s in dropped),
        max_len=ordered[-1] if ordered else 0,
        p50_len=percentile(ordered, 50),
        p95_len=percentile(ordered, 95),
        p99_len=percentile(ordered, 99),
    )
    return kept, report
