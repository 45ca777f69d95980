"""Reading question files and checking every row.

    result = load_samples("train.parquet", sample_row)            # refuses the file on any bad row
    result = load_samples(["a.jsonl", "hf:org/name"], wildsci_row, on_bad_row="skip")
    result.samples, result.report.to_metrics("data/train")

Sources: a parquet, jsonl, json or csv file; a folder (its files of those kinds, sorted); a glob
pattern; `bundled:NAME` (rlsci/data/bundled/NAME.jsonl); or a Hugging Face dataset id
(`hf:org/name`, or `org/name` when no such local path exists), read through `datasets` (the
`hub` extra, imported only then). A JSON file may hold a list of records, one record, or an
object of records keyed by id ({id: record}, as ScienceQA's problems.json).

A row function turns one `Record` into one or more Samples, or raises
`RowError(field, reason, detail)`. Every Sample is then checked the same way (`check_sample`),
and ids must be unique across all sources loaded together. A failing row becomes a `BadRow`
naming file, row and field. With on_bad_row="error" (the default) any bad row refuses the whole
dataset: `DataError` holds all of them and its message prints the first 20 and counts the rest.
With "skip" they are dropped and counted in the `LoadReport` (the trainer writes
`report.to_metrics(...)` into the run's metrics). Nothing is dropped silently.

Rows count from 1; in a jsonl file the row is the line number.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rewards.base import SAMPLE_FIELDS, Sample
from rlsci.data.json_text import MAX_DEPTH, parse_json, parse_record, too_deep
from rlsci.data.options import LETTERS, content_id

OnBadRow = Literal["error", "skip"]
ON_BAD_ROW = ("error", "skip")

REASONS = {  # why a row is refused
    "invalid_json": "a record is not JSON, or nests objects and lists more than 100 levels deep",
    "not_an_object": "the record is not a JSON object",
    "missing_field": "a field the format needs is absent or empty",
    "bad_value": "a field holds a value the format does not allow",
    "missing_question": "no question text",
    "options_type": "options are neither an object {letter: text} nor a list",
    "option_not_text": "an option is null, NaN, empty or not text",
    "option_letters": "option keys are not the letters A, B, C, ... without gaps",
    "too_few_options": "fewer than 2 options",
    "answer_not_option": "the answer is not one of the option letters",
    "answer_mismatch": "the answer's text and its letter (or index) disagree",
    "ambiguous_gold": "the gold option's text is also another option's text",
    "multiple_correct": "more than one option is marked correct",
    "missing_answer": "a free-form question without a reference answer",
    "duplicate_id": "the id was already used by an earlier row",
}
WARNINGS = {  # kept, but counted
    "duplicate_option_text": "two wrong options have the same text (the gold option is unambiguous)",
}
SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
SHOWN_BAD_ROWS = 20  # a DataError message prints this many bad rows, then a count
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


class DataError(ValueError):
    """A dataset that cannot be used; `bad_rows` holds every refused row (empty for a missing
    file or an unreachable hub)."""

    def __init__(self, message: str, bad_rows: Sequence[BadRow] = ()) -> None:
        super().__init__(message)
        self.bad_rows = tuple(bad_rows)


class RowError(Exception):
    """Raised by a row function: `field` of the record is wrong for `reason` (a key of REASONS)."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        if reason not in REASONS and reason not in WARNINGS:
            raise ValueError(f"unknown bad-row reason {reason!r}; add it to REASONS or WARNINGS")
        super().__init__(f"{field}: {detail} [{reason}]")
        self.field, self.reason, self.detail = field, reason, detail


@dataclass(frozen=True)
class Record:
    """One raw row of a source file: `value` is the parsed record (a dict for every format but
    headerless CSV), `key` its key when the file is an object of records ({id: record})."""

    file: str
    row: int  # from 1; the line number in a jsonl file
    value: Any
    key: str | None = None


@dataclass(frozen=True)
class BadRow:
    file: str
    row: int
    field: str
    reason: str  # a key of REASONS or WARNINGS
    detail: str

    def __str__(self) -> str:
        return f"{self.file}:{self.row}: {self.field}: {self.detail} [{self.reason}]"


@dataclass(frozen=True)
class LoadReport:
    """What loading a dataset kept and dropped. One row can hold several problems."""

    source: str
    rows: int  # records read
    samples: int  # samples kept (a GPQA-Aug row gives 4)
    skipped: tuple[BadRow, ...] = ()  # problems of the rows dropped (on_bad_row="skip")
    warnings: tuple[BadRow, ...] = ()  # problems of rows kept anyway

    @property
    def rows_skipped(self) -> int:
        return len({(b.file, b.row) for b in self.skipped})

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(b.reason for b in self.skipped).most_common())

    def warnings_by_reason(self) -> dict[str, int]:
        return dict(Counter(b.reason for b in self.warnings).most_common())

    def to_metrics(self, prefix: str) -> dict[str, float]:
        """Flat metric keys: {prefix}/rows, /samples, /rows_skipped, /skipped/<reason>, /warnings/<reason>."""
        out = {f"{prefix}/rows": float(self.rows), f"{prefix}/samples": float(self.samples)}
        out[f"{prefix}/rows_skipped"] = float(self.rows_skipped)
        out.update({f"{prefix}/skipped/{r}": float(n) for r, n in self.skipped_by_reason().items()})
        out.update({f"{prefix}/warnings/{r}": float(n) for r, n in self.warnings_by_reason().items()})
        return out

    def summary(self, limit: int = SHOWN_BAD_ROWS) -> str:
        lines = [f"{self.source}: {self.rows} rows read, {self.samples} samples kept"]
        if self.skipped:
            lines.append(f"  {self.rows_skipped} rows skipped ({_by_reason(self.skipped)})")
            lines.extend(_listing(self.skipped, limit))
        if self.warnings:
            lines.append(f"  {len(self.warnings)} warnings ({_by_reason(self.warnings)})")
            lines.extend(_listing(self.warnings, limit))
        return "\n".join(lines)


@dataclass(frozen=True)
class LoadResult:
    samples: list[Sample]
    report: LoadReport


RowFn = Callable[[Record], Sample | list[Sample]]


# ----------------------------------------------------------------------------- loading


def load_samples(
    sources: str | Path | Sequence[str | Path],
    row_fn: RowFn,
    *,
    on_bad_row: OnBadRow = "error",
    split: str = "train",
    free_form: bool = False,
) -> LoadResult:
    """Read `sources` (see the module docstring), convert each record with `row_fn`, check it.

    `split` is the split read from a hub dataset; `free_form` allows questions without options
    (the answer is then a reference text). Raises DataError on a missing source, an empty one,
    or (on_bad_row="error") any bad row."""
    per_source = read_each(sources, lambda source: read_source(source, split))
    records = [r for found in per_source.values() for r in found]
    return convert_records(
        records, row_fn, source=", ".join(per_source), on_bad_row=on_bad_row, free_form=free_form
    )


def read_each(
    sources: str | Path | Sequence[str | Path], read: Callable[[str | Path], list[Record]]
) -> dict[str, list[Record]]:
    """{source: its records} for one source or several; DataError when none is given or one is empty."""
    source_list = [sources] if isinstance(sources, str | Path) else list(sources)
    if not source_list:
        raise DataError("no data sources given")
    out = {}
    for source in source_list:
        out[str(source)] = read(source)
        if not out[str(source)]:
            raise DataError(f"{source}: holds no rows")
    return out


def convert_records(
    records: Iterable[Record],
    row_fn: RowFn,
    *,
    source: str,
    on_bad_row: OnBadRow = "error",
    free_form: bool = False,
) -> LoadResult:
    """Convert and check every record; a row is kept whole (all its samples) or refused whole."""
    if on_bad_row not in ON_BAD_ROW:
        raise ValueError(f"on_bad_row must be one of {ON_BAD_ROW}, got {on_bad_row!r}")
    kept: list[Sample] = []
    bad: list[BadRow] = []
    warned: list[BadRow] = []
    first_seen: dict[str, Record] = {}
    n_rows = 0
    for rec in records:
        n_rows += 1
        try:
            if isinstance(rec.value, RowError):  # a jsonl line that did not parse
                raise rec.value
            out = row_fn(rec)
        except RowError as exc:
            bad.append(BadRow(rec.file, rec.row, exc.field, exc.reason, exc.detail))
            continue
        samples = [out] if isinstance(out, Sample) else list(out)
        problems = [p for s in samples for p in check_sample(s, free_form=free_form)]
        for s in samples:
            if s.id in first_seen:
                first = first_seen[s.id]
                problems.append(
                    RowError("id", "duplicate_id", f"id {s.id!r} already used at {first.file}:{first.row}")
                )
        rows = [BadRow(rec.file, rec.row, p.field, p.reason, p.detail) for p in problems]
        errors = [b for b in rows if b.reason not in WARNINGS]
        if errors:
            bad.extend(errors)
            continue
        warned.extend(rows)
        first_seen.update((s.id, rec) for s in samples)
        kept.extend(samples)
    if bad and (on_bad_row == "error" or not kept):  # skipping every row leaves nothing to use
        raise DataError(_refusal(source, bad, n_rows), bad)
    report = LoadReport(source, n_rows, len(kept), tuple(bad), tuple(warned))
    return LoadResult(kept, report)


def _refusal(source: str, bad: list[BadRow], n_rows: int) -> str:
    n_bad = len({(b.file, b.row) for b in bad})
    lines = [f"{source}: {n_bad} of {n_rows} rows are invalid ({_by_reason(bad)}):"]
    lines.extend(_listing(bad, SHOWN_BAD_ROWS))
    if n_bad == n_rows:  # nothing is usable: skipping would leave an empty dataset
        lines.append(
            "Every row was rejected: is the format right (--format / data.format; rlsci's own rows are "
            '{"question": ..., "options": {"A": ..., "B": ...}, "answer": "B"}, a letter)?'
        )
        return "\n".join(lines)
    lines.append(
        "Fix these rows, or load with on_bad_row='skip' (config: data.on_bad_row=skip; "
        "CLI: --on-bad-row skip) to drop them: skipped rows are counted in the load report "
        "and the run's metrics."
    )
    return "\n".join(lines)


def _by_reason(rows: Sequence[BadRow]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in Counter(b.reason for b in rows).most_common())


def _listing(rows: Sequence[BadRow], limit: int) -> list[str]:
    lines = [f"  {b}" for b in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more")
    return lines


# ----------------------------------------------------------------------------- checks


def check_sample(sample: Sample, *, free_form: bool = False) -> list[RowError]:
    """Every problem of one converted sample (warnings included: see WARNINGS)."""
    problems = []
    if not sample.question.strip():
        problems.append(RowError("question", "missing_question", "no question text"))
    if free_form and not sample.options:
        if not sample.answer.strip():
            problems.append(RowError("answer", "missing_answer", "no reference answer"))
        return problems
    keys = list(sample.options)
    if keys != list(LETTERS[: len(keys)]):
        problems.append(
            RowError("options", "option_letters", f"expected A, B, C, ... in order, got {', '.join(keys)}")
        )
    if len(keys) < 2:
        problems.append(
            RowError("options", "too_few_options", f"{len(keys)} option(s); a question needs at least 2")
        )
    for letter, text in sample.options.items():
        if not text.strip():
            problems.append(RowError(f"options.{letter}", "option_not_text", f"option {letter} is empty"))
    if sample.answer not in sample.options:
        problems.append(
            RowError(
                "answer",
                "answer_not_option",
                f"answer {sample.answer!r} is not one of the option letters {''.join(keys)}",
            )
        )
        return problems
    by_text: dict[str, list[str]] = {}
    for letter, text in sample.options.items():
        by_text.setdefault(text_key(text), []).append(letter)
    for same in (group for group in by_text.values() if len(group) > 1):
        if sample.answer in same:
            problems.append(
                RowError(
                    "options",
                    "ambiguous_gold",
                    f"options {', '.join(same)} have the same text and {sample.answer} is the answer",
                )
            )
        else:
            problems.append(
                RowError("options", "duplicate_option_text", f"options {', '.join(same)} have the same text")
            )
    return problems


def text_key(text: str) -> str:
    """Option text as compared for duplicates: whitespace collapsed, case kept (case carries
    meaning in science: "Bb" and "bb" are different genotypes, "Co" and "CO" different species)."""
    return " ".join(text.split())


# ----------------------------------------------------------------------------- row helpers


def show(value: Any) -> str:
    """A short description of a value for error messages: its type and a truncated repr."""
    text = repr(value)
    return f"{type(value).__name__} {text[:57] + '...' if len(text) > 60 else text}"


def require_object(rec: Record) -> Mapping[str, Any]:
    if not isinstance(rec.value, Mapping):
        raise RowError("<record>", "not_an_object", f"expected a JSON object, got {show(rec.value)}")
    return rec.value


def is_missing(value: Any) -> bool:
    """None, NaN (a missing cell read by pandas) or blank text."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def as_text(value: Any, field: str, reason: str = "missing_field") -> str:
    """A non-empty text (numbers are written out); else RowError(field, reason or bad_value)."""
    if is_missing(value):
        raise RowError(field, reason, f"absent or empty (got {show(value)})")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowError(field, "bad_value", f"expected text, got {show(value)}")
    return str(value).strip()


def field_text(row: Mapping[str, Any], name: str, reason: str = "missing_field") -> str:
    return as_text(row.get(name), name, reason)


def optional_text(row: Mapping[str, Any], name: str) -> str:
    """The field as stripped text (numbers written out), "" when absent or empty; RowError(bad_value)
    when it is neither (a list, an object, a boolean)."""
    value = row.get(name)
    return "" if is_missing(value) else as_text(value, name)


def index_field(value: Any, field: str, n: int) -> int:
    """An integer index in 0..n-1 (bools and other types refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowError(field, "bad_value", f"expected an integer index, got {show(value)}")
    if not 0 <= value < n:
        raise RowError(field, "answer_not_option", f"index {value} is outside 0..{n - 1}")
    return value


def check_answer_text(options: dict[str, str], letter: str, text: Any, field: str) -> None:
    """A published answer text must be the text of the published answer letter."""
    if letter in options and not is_missing(text) and text_key(str(text)) != text_key(options[letter]):
        raise RowError(
            field,
            "answer_mismatch",
            f"answer text {str(text)[:60]!r} differs from option {letter} {options[letter][:60]!r}",
        )


def normalize_options(raw: Any, field: str = "options") -> dict[str, str]:
    """Options as {letter: text}, letters A, B, C, ... in order.

    Accepts an object keyed by letters (null values are absent options: parquet pads a struct
    of letters A-J with nulls), a list (lettered in order), or either one as JSON text.
    Texts are stripped."""
    if isinstance(raw, str) and raw.lstrip()[:1] in ("{", "["):
        try:
            raw = parse_record(raw)
        except json.JSONDecodeError as exc:
            raise RowError(field, "options_type", f"text that is not JSON ({exc.msg}): {show(raw)}") from exc
    if isinstance(raw, Mapping):
        items = {str(k).strip(): v for k, v in raw.items() if v is not None}
        keys = sorted(items)
        if keys != list(LETTERS[: len(keys)]):
            raise RowError(
                field,
                "option_letters",
                f"expected the letters A, B, C, ... without gaps, got {', '.join(keys) or 'none'}",
            )
        pairs = [(k, items[k]) for k in keys]
    elif isinstance(raw, list | tuple):
        if len(raw) > len(LETTERS):
            raise RowError(field, "bad_value", f"{len(raw)} options; at most {len(LETTERS)} can be lettered")
        pairs = list(zip(LETTERS, raw, strict=False))
    else:
        raise RowError(
            field, "options_type", f"expected an object {{letter: text}} or a list, got {show(raw)}"
        )
    out = {}
    for letter, value in pairs:
        if is_missing(value) or isinstance(value, bool) or not isinstance(value, str | int | float):
            raise RowError(f"{field}.{letter}", "option_not_text", f"option {letter} is {show(value)}")
        out[letter] = str(value).strip()
    return out


def meta_of(row: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """The record's fields not consumed by the conversion (kept in Sample.meta)."""
    skip = set(used)
    return {k: v for k, v in row.items() if k not in skip}


def sample_row(rec: Record) -> Sample:
    """A row in rlsci's own format (`Sample.to_dict()`, as written by `rlsci data export
    --format jsonl|parquet`): id, question, options, answer, domain, subdomain, source, meta.
    Other fields go into meta; a missing id becomes a content id. Options {} mark a free-form
    question (load with free_form=True); a missing `options` field is an error."""
    row = require_object(rec)
    question = field_text(row, "question", "missing_question")
    options = normalize_options(row.get("options"))
    meta = row.get("meta") or {}
    if isinstance(meta, str):  # the parquet export stores meta as JSON text
        try:
            meta = parse_record(meta)
        except json.JSONDecodeError as exc:
            raise RowError("meta", "bad_value", f"not JSON: {exc.msg}") from exc
    if not isinstance(meta, Mapping):
        raise RowError("meta", "bad_value", f"expected an object, got {show(meta)}")
    return Sample(
        id=optional_text(row, "id") or content_id("q", question, *options.values()),
        question=question,
        options=options,
        answer=optional_text(row, "answer"),
        domain=optional_text(row, "domain"),
        subdomain=optional_text(row, "subdomain"),
        source=optional_text(row, "source"),
        meta={**meta, **meta_of(row, SAMPLE_FIELDS)},
    )


# ----------------------------------------------------------------------------- reading


def read_source(source: str | Path, split: str = "train") -> list[Record]:
    """The records of one source (see the module docstring)."""
    text = str(source)
    if text.startswith("hf:"):
        return read_hub(text[3:], split)
    if text.startswith("bundled:"):
        path = BUNDLED_DIR / f"{text[8:]}.jsonl"
        if not path.is_file():
            names = sorted(p.stem for p in BUNDLED_DIR.glob("*.jsonl"))
            raise DataError(f"{text}: no bundled dataset of that name; bundled: {', '.join(names)}")
        return read_records(path)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
        if not files:
            raise DataError(f"{path}: folder holds no {'/'.join(SUFFIXES)} files")
        return [r for f in files for r in read_records(f)]
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not files:
            raise DataError(f"{text}: the pattern matches no file")
        return [r for f in files for r in read_records(f)]
    if path.is_file():
        return read_records(path)
    if _HUB_ID.fullmatch(text) and path.suffix not in SUFFIXES:
        try:
            return read_hub(text, split)
        except DataError as exc:
            raise DataError(
                f"{text}: not a local file or folder; as a Hugging Face dataset id: {exc}"
            ) from exc
    raise DataError(f"{text}: no such file or folder")


def read_records(path: Path) -> list[Record]:
    """The records of one local file, by suffix: .parquet, .jsonl, .json (or JSON lines), .csv."""
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read as parquet: {exc}") from exc
        return [Record(name, i + 1, r) for i, r in enumerate(rows)]
    text = read_text(path)
    if suffix == ".csv":
        return [Record(name, i + 1, r) for i, r in enumerate(parse_csv(text, header=True))]
    if suffix == ".json":
        try:
            return _json_records(name, parse_json(text))
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":  # "Extra data" after the first value: JSON lines
                raise DataError(f"{path}: not valid JSON: {exc}") from exc
    return _jsonl_records(name, text)


def read_text(path: Path) -> str:
    """The file as UTF-8 text, without a leading byte-order mark; DataError naming the file, line
    and byte where it is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode the file as UTF-8"
        ) from exc


def parse_csv(text: str, *, header: bool) -> list:
    """The rows of CSV text: dicts keyed by the header row, or lists of cells. The csv module
    refuses a cell over 128 KiB (the one error its default dialect raises): the limit is raised
    to the text's length, which no cell can exceed (process-wide, and only ever raised)."""
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    stream = io.StringIO(text, newline="")
    return list(csv.DictReader(stream) if header else csv.reader(stream))


def _json_records(name: str, data: Any) -> list[Record]:
    if isinstance(data, list):
        pairs = [(None, r) for r in data]
    elif isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        pairs = [(str(k), v) for k, v in data.items()]
    else:
        pairs = [(None, data)]
    deep = RowError("<record>", "invalid_json", f"nested deeper than {MAX_DEPTH} levels")
    return [Record(name, i + 1, deep if too_deep(v) else v, key=k) for i, (k, v) in enumerate(pairs)]


def _jsonl_records(name: str, text: str) -> list[Record]:
    """One record per line. Lines end at "\n" only: str.splitlines would also cut at U+2028,
    U+0085 and other characters a JSON string may hold unescaped (json.dumps(ensure_ascii=False))."""
    out = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value: Any = parse_record(line)
        except json.JSONDecodeError as exc:
            value = RowError("<line>", "invalid_json", f"not JSON: {exc.msg} at column {exc.colno}")
        out.append(Record(name, lineno, value))
    return out


def hub_hint(dataset_id: str) -> str:
    return (
        f"To use local files instead, download the dataset where the hub is reachable "
        f"(`hf download {dataset_id} --repo-type dataset --local-dir DIR`), copy DIR here and "
        f"point at its files: data.train=[DIR/data] (a folder of parquet/jsonl files) or one file."
    )


def read_hub(dataset_id: str, split: str) -> list[Record]:
    """The rows of `split` of a Hugging Face dataset, through `datasets.load_dataset`."""
    try:
        import datasets  # optional: the `hub` extra
    except ImportError as exc:
        raise DataError(
            f"cannot load {dataset_id!r} from the Hugging Face hub: the `datasets` package is not "
            f"installed (pip install 'rlsci[hub]').\n{hub_hint(dataset_id)}"
        ) from exc
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # ConnectionError offline, DatasetNotFoundError, ValueError for a bad split, ...
        raise DataError(
            f"cannot load {dataset_id!r} (split {split!r}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}\n{hub_hint(dataset_id)}"
        ) from exc
    label = f"hf:{dataset_id}[{split}]"
    return [Record(label, i + 1, dict(row)) for i, row in enumerate(ds)]
