r"""The `reference` reward: free-form short answers graded against a reference answer.

For MegaScience / SciBench style questions: `sample.options` is empty and `sample.answer` is the
reference text, e.g. "3.2", "1.5e-3 m/s", "6.022 \times 10^{23}", "H2O", "yes". When the answer
is a bare number and `sample.meta["unit"]` holds a unit (SciBench keeps `answer_number` and
`unit` apart), the unit is appended: answer "4.3" with unit "$10^6$ m" is the reference 4.3e6 m.

Extraction from the text after the last `</think>` (a `<think>` left open, even after an
earlier closed block, is truncated reasoning: no answer):
    answer_line   the last line "Answer: ..." or "Final answer: ..."     } whichever of the two
    boxed         the last \boxed{...}, nested braces allowed            } comes later
    answer_is     else the last "the (final) answer is ...", up to the end of its sentence
format_ok (the instructed format, as in rewards.mcq): answer_line or boxed gave the answer and
the response ends there (no letter or digit after that line).
In the extracted text, a `\boxed{}` is unwrapped, `$`, `**` and a trailing period are dropped,
and only what follows the last "=" or "\approx" is kept ("v = 3.2 m/s" -> "3.2 m/s").

Numbers: integers, decimals, thousands separators ("1,500", "1{,}500", "1\,500"), scientific
notation ("1.5e-3", "1.5 × 10^-3", "1.5 \times 10^{-3}", "10^{23}"), fractions ("3/4",
"\frac{3}{4}"), a leading sign, and a power of ten written as part of the unit ("4.3 $10^6$ m").

Units (optional, after the number; LaTeX \mathrm{}, \text{}, ^{-1}, "/" and "·" understood):
symbols with SI prefixes ("km", "mL", "kJ", "MeV", "nm", "µC", "\mu m"), a few non-SI units (L,
M, eV, cal, atm, bar, Torr, mmHg, psi, Da, Å, min, h, day, yr, deg, rad, %) and common words
("seconds", "moles"). The unit text ends at a comma or semicolon, and a final remark in
parentheses that holds a word that is no unit is dropped ("3.2 m/s (rounded), i.e. fast" ->
"m/s"). Each side becomes (value in SI base units, dimension vector). Then:
    both sides carry a unit    -> dimensions must agree ("1.5 km" == "1500 m", "250 mL" == "0.25 L",
                                  "3 kJ" == "3000 J"); incompatible units -> wrong
    either side carries none   -> the numbers are compared as written (a response "1500" matches the
                                  reference "1500 m"; it does not match "1.5 km")
    a symbol not in the table  -> an opaque unit of its own: it matches only the same symbol
    °C and °F                  -> opaque as well (affine scales are not converted to kelvin)
Numeric match: |pred - ref| <= max(rel_tol·|ref|, abs_tol), rel_tol = 1e-2 by default;
`sample.meta["rel_tol"]` / `["abs_tol"]` override the arguments for one sample.

Non-numeric references (no leading number): exact match after normalisation (case, whitespace,
LaTeX \text{}/\mathrm{}, `$`, `_`, braces, surrounding quotes and trailing punctuation).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rewards.base import RewardResult, Sample
from rewards.mcq import UNCLOSED_THINK, after_reasoning
from rewards.mcq_rules import ANSWER_IS, ANSWER_LINE, BOXED  # the same rule names as the mcq grader

DEFAULT_REL_TOL = 1e-2

REFERENCE_INSTRUCTION = (
    "Solve the problem step by step, then end your response with a final line of the form "
    "'Answer: <number> <unit>', for example 'Answer: 1.5e-3 m/s'."
)

# ----------------------------------------------------------------------------- units

# SI base dimensions; angles and percentages are dimensionless (rad = 1, deg = pi/180, % = 0.01).
_BASE_DIMS = ("m", "kg", "s", "A", "K", "mol")


def _dims(spec: str) -> tuple[tuple[str, int], ...]:
    """ "kg m^2 s^-2" -> (("kg", 1), ("m", 2), ("s", -2)), sorted by name."""
    out: dict[str, int] = {}
    for part in spec.split():
        name, _, exp = part.partition("^")
        out[name] = out.get(name, 0) + int(exp or 1)
    return tuple(sorted((k, v) for k, v in out.items() if v))


_ELEMENTARY_CHARGE = 1.602176634e-19  # J per eV (exact, SI 2019)
# symbol -> (factor to SI base units, dimensions)
_UNITS: dict[str, tuple[float, tuple[tuple[str, int], ...]]] = {
    "m": (1.0, _dims("m")),
    "g": (1e-3, _dims("kg")),
    "s": (1.0, _dims("s")),
    "A": (1.0, _dims("A")),
    "K": (1.0, _dims("K")),
    "mol": (1.0, _dims("mol")),
    "Hz": (1.0, _dims("s^-1")),
    "N": (1.0, _dims("kg m s^-2")),
    "Pa": (1.0, _dims("kg m^-1 s^-2")),
    "J": (1.0, _dims("kg m^2 s^-2")),
    "W": (1.0, _dims("kg m^2 s^-3")),
    "C": (1.0, _dims("A s")),
    "V": (1.0, _dims("kg m^2 s^-3 A^-1")),
    "ohm": (1.0, _dims("kg m^2 s^-3 A^-2")),
    "F": (1.0, _dims("kg^-1 m^-2 s^4 A^2")),
    "T": (1.0, _dims("kg s^-2 A^-1")),
    "L": (1e-3, _dims("m^3")),
    "l": (1e-3, _dims("m^3")),
    "M": (1e3, _dims("mol m^-3")),  # molar, mol/L
    "eV": (_ELEMENTARY_CHARGE, _dims("kg m^2 s^-2")),
    "cal": (4.184, _dims("kg m^2 s^-2")),
    "atm": (101325.0, _dims("kg m^-1 s^-2")),
    "bar": (1e5, _dims("kg m^-1 s^-2")),
    "Torr": (101325.0 / 760.0, _dims("kg m^-1 s^-2")),
    "mmHg": (133.322387415, _dims("kg m^-1 s^-2")),
    "psi": (6894.757293168, _dims("kg m^-1 s^-2")),
    "Da": (1.66053906660e-27, _dims("kg")),
    "angstrom": (1e-10, _dims("m")),
    "min": (60.0, _dims("s")),
    "h": (3600.0, _dims("s")),
    "hr": (3600.0, _dims("s")),
    "day": (86400.0, _dims("s")),
    "yr": (365.25 * 86400.0, _dims("s")),  # Julian year
    "rad": (1.0, ()),
    "deg": (math.pi / 180.0, ()),
    "%": (1e-2, ()),
    "degC": (1.0, (("~degC", 1),)),  # affine scales: opaque, never converted to kelvin
    "degF": (1.0, (("~degF", 1),)),
}
# units that take SI prefixes (km, mL, kJ, MeV, kcal, mbar, kDa, ...)
_PREFIXABLE = frozenset("m g s A K mol Hz N Pa J W C V ohm F T L l M eV cal bar Da".split())
_PREFIXES = {
    "da": 1e1,
    "Y": 1e24,
    "Z": 1e21,
    "E": 1e18,
    "P": 1e15,
    "T": 1e12,
    "G": 1e9,
    "M": 1e6,
    "k": 1e3,
    "K": 1e3,
    "h": 1e2,
    "d": 1e-1,
    "c": 1e-2,
    "m": 1e-3,
    "u": 1e-6,
    "n": 1e-9,
    "p": 1e-12,
    "f": 1e-15,
    "a": 1e-18,
}  # "K" for kilo only where no unit "K..." exists ("KJ"); "da" first so that "dam" is decametre
# unit words (lower case) -> symbol
_WORDS = {
    word: symbol
    for symbol, words in {
        "s": "sec secs second seconds",
        "min": "minute minutes mins",
        "h": "hour hours hrs",
        "day": "days d",
        "yr": "year years yrs",
        "m": "meter meters metre metres",
        "km": "kilometer kilometers kilometre kilometres",
        "g": "gram grams",
        "kg": "kilogram kilograms",
        "K": "kelvin",
        "J": "joule joules",
        "kJ": "kilojoule kilojoules",
        "mol": "mole moles mols",
        "L": "liter liters litre litres",
        "mL": "milliliter milliliters millilitre millilitres",
        "N": "newton newtons",
        "Pa": "pascal pascals",
        "W": "watt watts",
        "V": "volt volts",
        "C": "coulomb coulombs",
        "Hz": "hertz",
        "A": "ampere amperes amp amps",
        "rad": "radian radians",
        "deg": "degree degrees",
        "%": "percent",
        "eV": "electronvolt electronvolts",
        "atm": "atmosphere atmospheres",
        "angstrom": "angstroms",
        "ohm": "ohms",
        "cal": "calorie calories",
    }.items()
    for word in words.split()
}

_Dims = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Unit:
    """A parsed unit: `scale` converts a value in this unit to SI base units; `dims` is the
    sorted dimension vector (opaque symbols appear as "~symbol")."""

    scale: float
    dims: _Dims


@dataclass(frozen=True)
class Quantity:
    """A number with an optional unit. `value` is as written, times any power of ten that was
    written as part of the unit ("4.3 $10^6$ m" -> value 4.3e6, unit m)."""

    value: float
    unit: Unit | None


def _resolve(sym: str) -> tuple[float, _Dims] | None:
    """One unit symbol (with an optional SI prefix, or a unit word) -> (scale, dims)."""
    if sym in _UNITS:
        return _UNITS[sym]
    if sym.lower() in _WORDS:
        return _resolve(_WORDS[sym.lower()])
    for prefix, factor in _PREFIXES.items():
        rest = sym[len(prefix) :]
        if sym.startswith(prefix) and rest in _PREFIXABLE:
            scale, dims = _UNITS[rest]
            return factor * scale, dims
    return None


_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_UNIT_SUBS = [
    (r"℃", " degC "),
    (r"\\(?:mu|micro)(?![A-Za-z])", "µ"),
    (r"\\Omega|Ω", "ohm"),
    (r"\\AA|Å", "angstrom"),
    (r"\^\s*\{?\s*\\circ\s*\}?|°|\\circ|\\degree", " deg "),
    (r"\\%", "%"),
    (r"\\(?:cdot|times)(?![A-Za-z])|[·⋅×*]", " "),
    (r"\\[,;:! ]|\\quad|~|\$", " "),
    (r"\^\s*\{\s*([+-]?\d+)\s*\}", r"^\1"),
    (r"\\[A-Za-z]+", " "),  # \mathrm, \text, \hat, ...: keep only their arguments
    (r"[{}()\[\]]", " "),
    (r"\s+\^", "^"),
    (r"deg\s*([CF])(?![A-Za-z])", r"deg\1"),
    (r"[µμ]\s*", "u"),  # micro, glued to its unit: "\mu \mathrm{m}" -> "um"
]
_FACTOR = re.compile(r"(?P<sym>[A-Za-z%]+)(?:\^?(?P<exp>[+-]?\d+))?")
_POW10 = re.compile(r"10\^(?P<exp>[+-]?\d+)(?P<rest>\D.*)?")


def parse_unit(text: str) -> tuple[float, Unit | None]:
    """Unit text -> (power-of-ten multiplier, Unit or None when no unit symbol is present).

    "/" puts every factor up to the next "/" in the denominator ("J/mol K" = J mol^-1 K^-1).
    A letter run that is no unit but two units in a row is split ("JK^-1" = J K^-1).
    """
    text = re.sub(r"([⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)", lambda m: "^" + m.group(1).translate(_SUPERSCRIPTS), text)
    for pattern, repl in _UNIT_SUBS:
        text = re.sub(pattern, repl, text)
    multiplier, scale, dims, found = 1.0, 1.0, {}, False
    for group_index, group in enumerate(text.split("/")):
        sign = 1 if group_index == 0 else -1
        for token in group.split():
            pow10 = _POW10.fullmatch(token)
            if pow10:
                multiplier *= 10.0 ** (sign * int(pow10.group("exp")))
                if not pow10.group("rest"):
                    continue
                token = pow10.group("rest")  # "10^-6m": a power of ten glued to a unit
            found = True
            for piece_scale, piece_dims, exp in _factor_pieces(token):
                scale *= piece_scale ** (sign * exp)
                for name, d in piece_dims:
                    dims[name] = dims.get(name, 0) + sign * exp * d
    if not found:
        return multiplier, None
    return multiplier, Unit(scale=scale, dims=tuple(sorted((k, v) for k, v in dims.items() if v)))


def _factor_pieces(token: str) -> list[tuple[float, _Dims, int]]:
    """One factor token ("kJ", "s^-1", "JK^-1", "h2o") -> [(scale, dims, exponent), ...]."""
    m = _FACTOR.fullmatch(token)
    if m:
        sym, exp = m.group("sym"), int(m.group("exp") or 1)
        whole = _resolve(sym)
        if whole is not None:
            return [(whole[0], whole[1], exp)]
        for i in range(1, len(sym)):
            head, tail = _resolve(sym[:i]), _resolve(sym[i:])
            if head is not None and tail is not None:
                return [(head[0], head[1], 1), (tail[0], tail[1], exp)]
    return [(1.0, (("~" + token.lower(), 1),), 1)]


# ----------------------------------------------------------------------------- numbers

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+)"
_EXP = r"[+-]?\d+"
_NUMBER = re.compile(
    rf"""\s*(?P<sign>[+-])?\s*
    (?: \\[dt]?frac\s*\{{\s*(?P<fnum>{_NUM})\s*\}}\s*\{{\s*(?P<fden>{_NUM})\s*\}}
      | 10\s*(?:\^|\*\*)\s*\{{?\s*(?P<pow>{_EXP})\s*\}}?
      | (?P<mant>{_NUM})(?:\s*/\s*(?P<den>{_NUM})(?![\d.]))? )
    (?: [eE](?P<e>{_EXP})
      | \s*(?:\\times|\\cdot|×|\*|x)\s*10\s*(?:\^|\*\*)\s*\{{?\s*(?P<x10>{_EXP})\s*\}}? )?""",
    re.X,
)
_NUMBER_SUBS = [
    (r"(?<=\d)(?:\{,\}|\\,|\\;|[\u2009\u202f])(?=\d{3}(?!\d))", ","),  # LaTeX/thin-space thousands
    (r"[−–]", "-"),
    (r"\\left|\\right|\\displaystyle|\\!|\$", ""),
    (r"\\[,; ]|\\quad|~", " "),
]


def parse_quantity(text: str) -> Quantity | None:
    """Leading number (+ optional unit) -> Quantity; None when the text does not start with a number."""
    for pattern, repl in _NUMBER_SUBS:
        text = re.sub(pattern, repl, text)
    m = _NUMBER.match(text)
    if m is None:
        return None
    if m.group("fnum") is not None:
        value = float(m.group("fnum").replace(",", "")) / float(m.group("fden").replace(",", ""))
    elif m.group("pow") is not None:
        value = 10.0 ** int(m.group("pow"))
    else:
        value = float(m.group("mant").replace(",", ""))
        if m.group("den") is not None:
            value /= float(m.group("den").replace(",", ""))
    exponent = m.group("e") or m.group("x10")
    if exponent is not None:
        value *= 10.0 ** int(exponent)
    if m.group("sign") == "-":
        value = -value
    multiplier, unit = parse_unit(_unit_part(text[m.end() :]))
    return Quantity(value=value * multiplier, unit=unit)


def _unit_part(rest: str) -> str:
    """The unit text after a number: cut at a comma or semicolon ("3.2 m/s, i.e. fast"), and
    drop a final remark in parentheses holding a word that is no unit ("3.2 m/s (rounded)")."""
    rest = re.split(r"[,;]", rest, maxsplit=1)[0]
    remark = re.search(r"\(([^()]*)\)\s*$", rest)
    if remark:
        words = re.findall(r"(?<![\\A-Za-z])[A-Za-z]{4,}", remark.group(1))
        if any(_resolve(word) is None for word in words):
            rest = rest[: remark.start()]
    return rest


def quantities_match(pred: Quantity, ref: Quantity, rel_tol: float, abs_tol: float) -> tuple[bool, str]:
    """|p - r| <= max(rel_tol·|r|, abs_tol), in SI units when both carry a unit, else as written.
    Returns (match, reason)."""
    if pred.unit is not None and ref.unit is not None:
        if pred.unit.dims != ref.unit.dims:
            return False, "incompatible units"
        p, r = pred.value * pred.unit.scale, ref.value * ref.unit.scale
    else:
        p, r = pred.value, ref.value
    if not (math.isfinite(p) and math.isfinite(r)):
        return False, "non-finite number"
    ok = abs(p - r) <= max(rel_tol * abs(r), abs_tol)
    return ok, "within tolerance" if ok else "outside tolerance"


# ----------------------------------------------------------------------------- text

_ANSWER_LINE = re.compile(
    r"^[ \t>*#_-]*(?:final[ \t]+)?answer[ \t*_]*[:：][ \t*_]*(?P<ans>.*?)[ \t]*$", re.I | re.M
)
_ANSWER_IS = re.compile(r"the\s+(?:final\s+)?answer\s+is\s*:?\s*(?P<ans>[^\n]+)", re.I)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|;")
_ALNUM = re.compile(r"[^\W_]")
_ANSWER_IS_LEAD = re.compile(r"^\s*the\s+(?:final\s+)?answer\s+is\s*:?", re.I)  # "The answer is: 7" -> " 7"


def _last_boxed(text: str) -> tuple[str, int] | None:
    """(content, end index) of the last \\boxed{...} with balanced braces, or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = start + len("\\boxed")
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i + 1 : j], j + 1
        start = text.rfind("\\boxed", 0, start)
    return None


def _clean(answer: str) -> str:
    """Strip decoration around an extracted answer; keep what follows the last "=" / "≈"."""
    boxed = _last_boxed(answer)
    if boxed is not None:
        answer = boxed[0]
    answer = _ANSWER_IS_LEAD.sub("", answer)
    parts = re.split(r"=|\\approx|≈|\\sim(?![A-Za-z])", answer)
    if len(parts) > 1 and parts[-1].strip():
        answer = parts[-1]
    answer = re.sub(r"\*\*|`|\\\(|\\\)|\\\[|\\\]|\$", " ", answer)
    answer = re.sub(r"^\s*(?:approximately|approx\.?|about|around|roughly|~)\s+", "", answer, flags=re.I)
    return re.sub(r"\s+", " ", answer).strip().rstrip(".").strip()


_MATH_WRAPPER = re.compile(r"^\s*(?:\$\$?|\\\(|\\\[)(?P<inner>.*?)(?:\$\$?|\\\)|\\\])\s*$", re.S)
# "v = 2.5 m/s", "E_k = 3 J": one short symbol, one "=" (no "<=", ">=", "!=" and no second "=")
_SYMBOL_EQUALS = re.compile(r"\s*\\?[A-Za-z][\w^{}\\]{0,12}\s*=(?P<value>[^=<>!]+)")


def _reference_key(reference: str) -> str:
    """What a reference is compared by when it is written like an answer: the content of a math wrapper
    (`$...$`, `\\(...\\)`) and of a leading \\boxed{} (a unit after the box kept: "\\boxed{5} m/s"),
    "the answer is" dropped, the value of "symbol = value". Anything else stays as it is: a relation
    ("x >= 5"), several values ("x = 2 or x = -2") or a reason ("12 J, since W = Fd")."""
    text = reference.strip()
    if (m := _MATH_WRAPPER.match(text)) is not None:
        text = m.group("inner").strip()
    text = _ANSWER_IS_LEAD.sub("", text).strip()
    if text.startswith("\\boxed") and (boxed := _last_boxed(text)) is not None and text.rfind("\\boxed") == 0:
        text = f"{boxed[0]} {text[boxed[1]:]}"
    if (m := _SYMBOL_EQUALS.fullmatch(text)) is not None:
        text = m.group("value")
    return text.strip().rstrip(".").strip() or reference


def _find_answer(text: str) -> tuple[str | None, str | None, int]:
    """(rule, answer text, end index of the match): the later of the last answer line and the
    last \\boxed{} (an "Answer: \\boxed{7}" line counts as the line), else "the answer is"."""
    found = []
    lines = [m for m in _ANSWER_LINE.finditer(text) if _clean(m.group("ans"))]
    if lines:
        found.append((lines[-1].end(), ANSWER_LINE, _clean(lines[-1].group("ans"))))
    boxed = _last_boxed(text)
    if boxed is not None and _clean(boxed[0]):
        found.append((boxed[1], BOXED, _clean(boxed[0])))
    if found:
        end, rule, answer = max(found, key=lambda item: item[0])
        return rule, answer, end
    phrases = list(_ANSWER_IS.finditer(text))
    if phrases:
        # cut at the end of the sentence (a period followed by a space, not a decimal point)
        tail = _SENTENCE_END.split(phrases[-1].group("ans"), maxsplit=1)[0]
        if _clean(tail):
            return ANSWER_IS, _clean(tail), phrases[-1].end()
    return None, None, len(text)


def extract_answer(response: str) -> tuple[str | None, str | None, bool]:
    """Response -> (rule, answer text, format_ok); rule and text are None when nothing is found.

    Only the text after the last `</think>` is read (`rewards.mcq.after_reasoning`); a
    `<think>` left open is truncated reasoning: (UNCLOSED_THINK, None, False). format_ok: the
    answer is in an instructed format (`Answer:` line or `\\boxed{}`) and no letter or digit
    follows the line it ends on.
    """
    graded = after_reasoning(response)
    if graded is None:
        return UNCLOSED_THINK, None, False
    rule, answer, end = _find_answer(graded)
    line_end = graded.find("\n", end)
    trailing = _ALNUM.search(graded, line_end) if line_end >= 0 else None
    return rule, answer, rule in (ANSWER_LINE, BOXED) and trailing is None


def normalize_text(text: str) -> str:
    """Text answer -> comparison key: LaTeX wrappers, `$`, `_`, braces, case, spacing, surrounding
    punctuation and the leading article of a text of words removed ("\\text{H}_2O." -> "h2o", "The
    mitochondrion" -> "mitochondrion"; "vitamin A" keeps its "a", "a x^2" and "a b" are symbols)."""
    text = re.sub(r"\\(?:text|textrm|textbf|mathrm|mathbf|mathit|operatorname|mbox)\s*", "", text)
    text = re.sub(r"[${}_\\]", "", text)
    text = re.sub(r"\s+", " ", text).lower().strip(" .,;:!?\"'`*()[]")
    if re.fullmatch(r"[a-z' -]+", text):  # words only: no symbol "a" of "a x^2" or "a + b"
        text = re.sub(r"^(?:the|an|a) (?=[a-z]{2})", "", text)
    return text


def reference_text(sample: Sample) -> str:
    """sample.answer, with sample.meta["unit"] appended when the answer is a bare number."""
    unit = sample.meta.get("unit")
    answer = sample.answer.strip()
    if isinstance(unit, str) and unit.strip():
        m = _NUMBER.fullmatch(answer)
        if m is not None:
            return f"{answer} {unit.strip()}"
    return answer


def _meta_float(sample: Sample, key: str, default: float) -> float:
    value = sample.meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"sample {sample.id!r}: meta[{key!r}] must be a number >= 0, got {value!r}")
    return float(value)


def grade_reference(
    response: str,
    sample: Sample,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = 0.0,
    correct: float = 1.0,
    wrong: float = 0.0,
    no_answer: float = 0.0,
    format_bonus: float = 0.0,
) -> RewardResult:
    """Grade a free-form answer against `reference_text(sample)`.

    score = correct | wrong | no_answer (nothing extracted), + format_bonus when format_ok
    (the response ends in an "Answer: ..." line or \\boxed{}). pred = the extracted answer text.
    """
    rel_tol = _meta_float(sample, "rel_tol", rel_tol)
    abs_tol = _meta_float(sample, "abs_tol", abs_tol)
    ref = reference_text(sample)
    rule, pred, format_ok = extract_answer(response)
    if pred is None:
        info = {"reference": ref} | ({"rule": rule} if rule else {})
        return RewardResult(score=no_answer, correct=False, info=info)
    ref_key = _reference_key(ref)  # "$\\boxed{H_2O}$" -> "H_2O", "v = 2.5 m/s" -> "2.5 m/s"
    ref_q = parse_quantity(ref_key)
    if ref_q is not None:
        pred_q = parse_quantity(pred)
        if pred_q is None:
            ok, reason = False, "no number in the answer"
        else:
            ok, reason = quantities_match(pred_q, ref_q, rel_tol, abs_tol)
        kind = "numeric"
    else:
        ok = normalize_text(pred) == normalize_text(ref_key)
        reason, kind = ("same text" if ok else "different text"), "text"
    return RewardResult(
        score=(correct if ok else wrong) + (format_bonus if format_ok else 0.0),
        correct=ok,
        pred=pred,
        extracted_by=rule,
        format_ok=format_ok,
        info={"reference": ref, "match": kind, "reason": reason},
    )
