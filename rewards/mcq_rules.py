"""The extraction rules behind `rewards.mcq`: where a response commits to an option letter.

Two kinds of rule:

* Explicit commitments (`find_commitments`), found anywhere in the graded text and ordered by
  position: `answer_line` ("Answer: X", "**Final answer:** (X)"), `boxed` (`\\boxed{X}` and its
  `\\text`/`\\textbf`/parenthesised forms), `answer_is` ("the correct answer is X", a mid-line
  "answer: X", "I'll go with X"), `is_correct` ("option X is correct"), `non_english`
  ("答案：X", "Réponse : X", "Ответ: X", ...). The first two are the instructed formats
  (`STRICT_RULES`); the others only run in lenient mode.
* Fallbacks on the last line / last paragraph (`find_fallback`, lenient only, used when no
  explicit commitment exists): `last_letter` (a final line that is only a letter, or starts
  "C. text"), `paren` ("(C)" ending the response), `bold` ("**C**" in the last paragraph),
  `option_text` (the final line names exactly one option's text).

Speed: every explicit rule is anchored on a keyword. Keywords are located with `str.find` on a
lower-cased copy of the text (C speed), and each rule's regex is run with `.match` at that one
position, so no case-insensitive pattern ever scans the whole response (one `str.find` per
keyword costs ~1 us per 2 KB; a single alternation regex costs twice as much). Non-English labels
in other scripts are not searched in ASCII text. Patterns are written without nested unbounded
repeats, so a 30 KB response costs time linear in its length.

A letter is a capital A-Z (fullwidth and Cyrillic look-alikes are mapped to ASCII) that is not
part of a word ("ATP", "B-cells", "X-ray") and, for "A" and "I", not an article or pronoun
("A cell", "I think"). Lists of letters ("A and C", "A, B", "A B C D") are kept whole so the
caller can refuse them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple

ANSWER_LINE = "answer_line"
BOXED = "boxed"
ANSWER_IS = "answer_is"
IS_CORRECT = "is_correct"
NON_ENGLISH = "non_english"
LAST_LETTER = "last_letter"
PAREN = "paren"
BOLD = "bold"
OPTION_TEXT = "option_text"
STRICT_RULES = frozenset({ANSWER_LINE, BOXED})


class Commitment(NamedTuple):
    """One place where the response commits to letters: text[start:end] holds them."""

    start: int
    end: int
    letters: tuple[str, ...]  # ASCII capitals in order of appearance; several = a list ("A and C")
    rule: str


# ----------------------------------------------------------------------------- letter tokens
_CYRILLIC = "АВСЕНКМОРТХ"  # Cyrillic capitals that look like Latin ones
_ASCII_OF = dict(zip(_CYRILLIC, "ABCEHKMOPTX", strict=True))
_ASCII_OF.update({chr(0xFF21 + i): chr(65 + i) for i in range(26)})  # fullwidth Ａ-Ｚ
_L = "[A-Z\uff21-\uff3a" + _CYRILLIC + "]"
# not followed by a letter or digit of any Latin, Greek or Cyrillic word, nor by ' ( { + - ("F(x)",
# "H+", "C{H_2}"), nor be a math variable: "F = ma", "E }_{ s }", "A\sqrt{m}" (though "\(C\)" is fine)
_END = (
    "(?![0-9A-Za-z'’({+\\-\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff\uff10-\uff19\uff21-\uff3a\uff41-\uff5a])"
    r"(?![ \t]*(?:[}\]][ \t]*)?(?:[=<>^_]|\\(?![)\]])))"  # one star per run of spaces: linear time
)
# markup that may precede a letter: spaces, **, (, [, $, \(, \text{, \textbf{, "option", "选项"
_PRE = (
    r"(?:[ \t*_`$(\[{]|\\[(\[]|\\(?:text(?:bf|rm|it|tt|sf)?|math(?:rm|bf|tt|sf)|mbox|bf)[ \t]*\{"
    r"|(?i:option|choice|letter)\b|选项|选)*"
)
_POST = r"(?:[*_`$)\]}]|\\[)\]])"  # markup that may close a letter (no spaces: see module doc)
_SEP = (
    r"(?:" + _POST + r"*(?:[ \t]*(?:[,，、/&+;](?:[ \t]*(?i:and|or)\b)?|(?i:and/or|and|or)\b"
    r"|et\b|ou\b|und\b|oder\b|y\b|o\b|и\b|或|和|及))?)"
)
_LIST = f"(?:{_L}{_END}(?:{_SEP}{_PRE}{_L}{_END})*)"
_LETTER_TOKEN = re.compile(_L + _END)
# "A"/"I" followed by a lower-case word are an article/pronoun unless the word links letters
_WORD_AFTER = re.compile(r"[ \t]+([a-z]+)")
_CYR_WORD_AFTER = re.compile(r"[ \t]+[а-яё]")
_LINK_WORDS = frozenset("is and or because since as was seems appears nor but which".split())


def _letters(text: str, start: int, end: int) -> tuple[str, ...]:
    """The letters of a matched list text[start:end], dropping the first non-letter ("A cell")
    and everything after it. Empty when the first token is not a letter."""
    if end - start == 1:  # the common case: one letter
        ch = text[start]
        return (_ASCII_OF.get(ch, ch),) if _is_letter(text, ch, end) else ()
    out = []
    for m in _LETTER_TOKEN.finditer(text, start, end):
        ch = m.group()
        if not _is_letter(text, ch, m.end()):
            break
        out.append(_ASCII_OF.get(ch, ch))
    return tuple(out)


def _is_letter(text: str, ch: str, end: int) -> bool:
    """False for an article/pronoun: "A cell", "I think", Russian "В клетке" (in the cell)."""
    if ch in "AI":
        w = _WORD_AFTER.match(text, end)
        return w is None or w.group(1) in _LINK_WORDS
    return ch not in _CYRILLIC or _CYR_WORD_AFTER.match(text, end) is None


def _commit(text: str, m: re.Match, rule: str, start: int) -> Commitment | None:
    letters = _letters(text, m.start("L"), m.end("L"))
    return Commitment(start, m.end("L"), letters, rule) if letters else None


# ----------------------------------------------------------------------------- explicit rules
_X = _PRE + "(?P<L>" + _LIST + ")"
_ANSWER_COLON = re.compile(r"(?i:answer)s?[ \t*_]*(?:\([^()\n]{0,30}\)[ \t*_]*)?[:：]" + _X)
# "Answer: b" / "Answer: (b)": a lower-case letter alone on its line
_ANSWER_COLON_LOWER = re.compile(
    r"(?i:answer)s?[ \t*_]*[:：][ \t*_$]*(?:\((?P<L>[a-z])\)|(?P<M>[a-z]))[ \t*_.)$]*(?:\n|\Z)"
)
_LINE_PREFIX = re.compile(
    r"[ \t>#*_\-+•\d.)]*(?:(?i:the|my|our|your|final|correct|best|short|proposed)[ \t*_]+)*"
)
# mid-line "... final answer: X" or a sentence opening with "Answer: X"
_FINAL_BEFORE = re.compile(r"(?:(?i:final)[ \t*_]+|[.!?;。][ \t]+[*_]*)\Z")
_VERB = (
    r"(?:is|are|would\s+be|should\s+be|must\s+be|will\s+be|has\s+to\s+be|appears\s+to\s+be|seems\s+to\s+be"
    r"|remains)"
)
_ADVERB = (
    r"(?:therefore|thus|clearly|then|definitely|probably|likely|indeed|obviously|most\s+likely|still|letter)"
)
_ANSWER_IS = re.compile(
    r"(?i:(?:answer|option|choice)s?\s+"
    + _VERB
    + r")(?:\s*[:：])?(?:\s+(?i:"
    + _ADVERB
    + r")(?=[\s,]),?)*\s*"
    + _X
)
_OPTION_COLON = re.compile(r"(?i:option|choice)[ \t*_]*[:：]" + _X)
_CHOOSE = re.compile(r"(?i:go\s+with|choose|pick|select)\s+" + _X)
_CHOOSE_SUBJECT = re.compile(r"(?i:\b(?:i|i'll|i\s+will|i\s+would|i'd|we|we'll|so|thus|therefore)\s+)\Z")
_HYPOTHETICAL = re.compile(
    r"(?i:\b(?:if|whether|suppose|assuming|assume|unless)\s+(?:the\s+|my\s+|our\s+|this\s+)?"
    r"(?:correct\s+|final\s+|right\s+|best\s+)?)\Z"
)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}")
_BOXED_CONTENT = re.compile(_X + _POST + r"*(?:[ \t]*[.:,)]?(?:\s.*)?)?\Z", re.S)
_BOXED_LOWER = re.compile(r"[\s$({\[]*(?:\\text\w*\s*\{)?\(?(?P<L>[a-z])\)?\}?[\s$)\].]*\Z")
_IS_CORRECT_TAIL = re.compile(
    r"(?i:correct|right|true)(?![\w\-])(?![ \t]*\?)(?![ \t,]+(?i:only|if|when|unless|provided|assuming|except)\b)"
)
_IS_CORRECT_HEAD = re.compile(
    "(?P<L>"
    + _LIST
    + ")"
    + _POST
    + r"*[ \t]+(?i:is|are)[ \t]+(?:(?i:the|also|indeed|definitely|clearly|most|only)[ \t]+)*\Z"
)
# words after which a letter opens a commitment ("so B is correct", "option B is correct")
_CLAUSE_WORDS = frozenset(
    "option choice answer letter statement so thus therefore hence then only and both".split()
)
_WORD_BEFORE = re.compile(r"([A-Za-z]+)\Z")
_LEAD_MARKUP = " \t*_`$([{"
_NON_ENGLISH = {  # lower-case keyword -> pattern matched at the keyword in the original text
    "答": r"答(?:案|え)?[ \t]*(?:应该|应当|应|就|也)?[ \t]*(?:(?:是|为|為|は)[ \t]*[：:]?|[：:])",
    "选": r"选(?:项|择)?[ \t]*(?:是|为|：|:)",
    "正解": r"正解[ \t]*(?:は|：|:)",
    "정답": r"정답[ \t]*(?:은|는|:|：|=)?",
    "답": r"답[ \t]*[:：]",
    "réponse": r"(?i:r[ée]ponse)(?:[ \t]+(?i:finale|correcte|juste))?[ \t]*(?::|(?i:est)[ \t]*:?)",
    "reponse": r"(?i:reponse)(?:[ \t]+(?i:finale|correcte|juste))?[ \t]*(?::|(?i:est)[ \t]*:?)",
    "respuesta": r"(?i:respuesta)(?:[ \t]+(?i:final|correcta))?[ \t]*(?::|(?i:es)[ \t]*:?)",
    "resposta": r"(?i:resposta)(?:[ \t]+(?i:final|correta))?[ \t]*(?::|(?i:é)[ \t]*:?)",
    "risposta": r"(?i:risposta)(?:[ \t]+(?i:finale|corretta|giusta))?[ \t]*(?::|(?i:è)[ \t]*:?)",
    "antwort": r"(?i:antwort)(?:[ \t]+(?i:ist))?[ \t]*:?",
    "ответ": r"(?i:ответ)(?:ом)?[ \t]*(?::|—|–|-|(?i:является|будет))?[ \t]*:?",
}
_NON_ENGLISH_ARTICLE = r"(?:[ \t]*(?i:la|el|le|die|der|вариант|opción|opção|variante)(?=[ \t]))?"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _lower(text: str) -> str:
    """Lower-case copy with the same length (str.lower may lengthen some characters, e.g. 'İ')."""
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)


# Cheap checks right after a keyword, before any precise regex runs. Like every look around a
# keyword they read the original text: a segment's lower-cased copy ends at the segment.
_COLON_AFTER = r"s?[ \t*_]*(?:\([^()\n]{0,30}\)[ \t*_]*)?[:：]"
_VERB_AFTER = r"s?\s+(?i:is|are|would|should|must|will|has|appears|seems|remains)\b"
_AFTER_ANSWER_COLON = re.compile(_COLON_AFTER)
_AFTER_ANSWER_VERB = re.compile(_VERB_AFTER)
_AFTER_OPTION = re.compile(f"(?i:s?)[ \t*_]*[:：]|{_VERB_AFTER}")


def _answer(text: str, low: str, off: int, i: int, lenient: bool) -> Commitment | None:
    """At "answer": an "Answer: X" line (or "final answer: X", or "Answer: X" opening a
    sentence); in lenient mode also any other "answer: X" and "the answer is X" (unless
    hypothetical: "if the answer is A")."""
    pos = off + i
    if pos and text[pos - 1].isalpha():
        return None
    if _AFTER_ANSWER_COLON.match(text, pos + 6) is None:
        return _answer_is(text, pos) if lenient and _AFTER_ANSWER_VERB.match(text, pos + 6) else None
    letters: tuple[str, ...] = ()
    if (m := _ANSWER_COLON.match(text, pos)) is not None:
        letters, end = _letters(text, m.start("L"), m.end("L")), m.end("L")
    elif (m := _ANSWER_COLON_LOWER.match(text, pos)) is not None:
        group = "L" if m.group("L") else "M"
        letters, end = (m.group(group).upper(),), m.end(group)
    if letters:
        line_start = text.rfind("\n", 0, pos) + 1
        if _LINE_PREFIX.fullmatch(text, line_start, pos) or _FINAL_BEFORE.search(
            text, max(line_start, pos - 12), pos
        ):
            return Commitment(pos, end, letters, ANSWER_LINE)
        return Commitment(pos, end, letters, ANSWER_IS) if lenient else None
    return _answer_is(text, pos) if lenient else None


def _answer_is(text: str, pos: int) -> Commitment | None:
    m = _ANSWER_IS.match(text, pos)
    if m is None:
        return None
    before = text[max(0, pos - 32) : pos].lower()
    hinted = (
        "if" in before or "whether" in before or "suppos" in before or "assum" in before or "unless" in before
    )
    if hinted and _HYPOTHETICAL.search(before):  # the substring test first: it is much cheaper
        return None
    return _commit(text, m, ANSWER_IS, pos)


def _option(text: str, low: str, off: int, i: int) -> Commitment | None:
    """At "option"/"choice": "the best option is X", "Correct option: X"."""
    pos = off + i
    if (pos and text[pos - 1].isalpha()) or _AFTER_OPTION.match(text, pos + 6) is None:
        return None
    m = _OPTION_COLON.match(text, pos)
    return _commit(text, m, ANSWER_IS, pos) if m is not None else _answer_is(text, pos)


def _choose(text: str, low: str, off: int, i: int) -> Commitment | None:
    """At "go with"/"choose"/"pick"/"select": "I'll go with B", "so I pick option (C)"."""
    pos = off + i
    if pos and text[pos - 1].isalpha():
        return None
    m = _CHOOSE.match(text, pos)
    if m is None or not _CHOOSE_SUBJECT.search(text, max(0, pos - 16), pos):
        return None
    return _commit(text, m, ANSWER_IS, pos)


def _boxed(text: str, low: str, off: int, i: int) -> Commitment | None:
    """At "box" of "\\boxed{"/"\\fbox{": the content must be a letter (list), optionally wrapped
    and followed by text."""
    pos = off + i - (1 if text[off + i - 1 : off + i] == "\\" else 2)
    m = _BOXED.match(text, pos) if pos >= 0 else None
    if m is None:
        return None
    inner = m.group(1)
    c = _BOXED_CONTENT.match(inner)
    if c is not None:
        letters = _letters(inner, c.start("L"), c.end("L"))
    else:
        low_letter = _BOXED_LOWER.match(inner)
        letters = (low_letter.group("L").upper(),) if low_letter is not None else ()
    return Commitment(pos, m.end(), letters, BOXED) if letters else None


def _is_correct(text: str, low: str, off: int, i: int) -> Commitment | None:
    """At "correct"/"right"/"true": "X is correct", "option X is the correct answer", "A and C are
    correct". The letter must open a clause or follow "option"/"so"/... ("vitamin D is correct"
    is not a commitment), and "correct only if"/"correct?" are not commitments."""
    pos = off + i
    if pos and text[pos - 1].isalpha():
        return None
    before = text[max(0, pos - 40) : pos].lower()
    if " is" not in before and " are" not in before:
        return None
    if _IS_CORRECT_TAIL.match(text, pos) is None:
        return None
    m = _IS_CORRECT_HEAD.search(text, max(0, pos - 80), pos)
    if m is None:
        return None
    j = m.start()
    while j > 0 and text[j - 1] in _LEAD_MARKUP:
        j -= 1
    if j > 0 and text[j - 1] not in "\n.!?:;,，。：；":
        w = _WORD_BEFORE.search(text, max(0, j - 12), j)
        if w is None or w.group(1).lower() not in _CLAUSE_WORDS:
            return None
    return _commit(text, m, IS_CORRECT, m.start())


def _non_english(keyword: str):
    """The rule for one non-English keyword: its pattern, then a letter ("答案：C", "Ответ: B")."""
    pattern = re.compile(_NON_ENGLISH[keyword] + _NON_ENGLISH_ARTICLE + _X)

    def rule(text: str, low: str, off: int, i: int) -> Commitment | None:
        m = pattern.match(text, off + i)
        return _commit(text, m, NON_ENGLISH, off + i) if m is not None else None

    return rule


def _strict_answer(text: str, low: str, off: int, i: int) -> Commitment | None:
    return _answer(text, low, off, i, False)


def _lenient_answer(text: str, low: str, off: int, i: int) -> Commitment | None:
    return _answer(text, low, off, i, True)


# (lower-case keyword, rule called at each occurrence). A rule gets (text, low, off, i): the
# keyword is at low[i], i.e. text[off + i], and every rule checks the original text around it.
_STRICT_KEYWORDS = (("answer", _strict_answer), ("box", _boxed))
_LENIENT_KEYWORDS = (
    ("answer", _lenient_answer),
    ("box", _boxed),
    ("option", _option),
    ("choice", _option),
    ("correct", _is_correct),
    ("right", _is_correct),
    ("true", _is_correct),
    ("go with", _choose),
    ("choose", _choose),
    ("pick", _choose),
    ("select", _choose),
)
# Non-English labels: searched in a segment that holds non-ASCII text or ends the response (a
# French, Spanish or German answer is followed by accented text, or by nothing).
_FOREIGN_KEYWORDS = tuple((k, _non_english(k)) for k in _NON_ENGLISH)
# Those of them spelled in ASCII; the others cannot occur in an ASCII segment, so are not searched there.
_ASCII_FOREIGN_KEYWORDS = tuple(row for row in _FOREIGN_KEYWORDS if row[0].isascii())
_LENIENT_FOREIGN_KEYWORDS = _LENIENT_KEYWORDS + _FOREIGN_KEYWORDS
_LENIENT_ASCII_FOREIGN_KEYWORDS = _LENIENT_KEYWORDS + _ASCII_FOREIGN_KEYWORDS
_LONGEST_KEYWORD = max(len(k) for k, _ in _LENIENT_KEYWORDS + _FOREIGN_KEYWORDS)


def find_commitments(text: str, start: int, end: int, lenient: bool) -> list[Commitment]:
    """Every explicit commitment whose keyword starts in text[start:end], ordered by position.
    The rules read the whole text around a keyword, so scanning adjacent segments separately
    finds what one scan of their union finds (but for non-English labels in ASCII text, which
    are searched only in the segment that ends the text).

    Strict: `answer_line` and `boxed` only. Lenient: also `answer_is`, `is_correct`, `non_english`.
    """
    low = _lower(text[start : end + _LONGEST_KEYWORD])
    limit = end - start
    if not lenient:
        table = _STRICT_KEYWORDS
    elif not low.isascii():
        table = _LENIENT_FOREIGN_KEYWORDS
    elif end == len(text):
        table = _LENIENT_ASCII_FOREIGN_KEYWORDS
    else:
        table = _LENIENT_KEYWORDS
    found = []
    find = low.find
    for keyword, rule in table:
        i = find(keyword)
        while 0 <= i < limit:  # the keyword must start before `end`
            c = rule(text, low, start, i)
            if c is not None:
                found.append(c)
            i = find(keyword, i + 1)
    found.sort()
    return found


# ----------------------------------------------------------------------------- fallback rules
_ALNUM = re.compile(r"[^\W_]")
_LONE_LINE = re.compile(
    r"[ \t>#*_`$(\[{]*(?:(?i:option|choice)[ \t]*)?(?P<L>" + _LIST + r")(?:" + _POST + r"|[ \t.!:,])*"
)
_LETTER_LED_LINE = re.compile(
    r"[ \t>#*_`]*(?P<P>[(\[])?[ \t]*(?:(?i:option|choice)[ \t]*)?(?P<L>"
    + _L
    + ")"
    + _END
    + r"(?:[)\].:]|\*\*)[ \t*_]*\S"
)
_BRACKETED = re.compile(r"[(\[](" + _L + r")[)\]]")
_PAREN_END = re.compile(r"[(\[](?P<L>" + _L + r")[)\]][ \t.!*_$]*\Z")
_BOLD = re.compile(
    r"(?:\*\*|__)[ \t]*(?:(?i:option|choice)[ \t]*)?[(\[]?(?P<L>"
    + _L
    + ")"
    + _END
    + r"[)\]]?[.:]?(?:[ \t][^*_\n]{0,80})?(?:\*\*|__)"
)
_TOKEN = re.compile(r"[^\W_]+(?:[./+\-][^\W_]+)*%?")
_LATEX_WRAP = re.compile(r"\\(?:text\w*|math\w*|emph|boxed|mbox)\s*\{")
_PHRASE = re.compile(r"(?i:answer|option|choice)s?\s*(?:is|would\s+be|should\s+be|[:：])\s*(.+)")
_ARTICLES = ("the ", "a ", "an ")
_SENTENCE_BREAK = re.compile(r"[.!?。！？][ \t]+(?=\S)")


def _last_line(text: str) -> tuple[str, int]:
    """The last line with a letter or digit, and where it starts ("" and -1 when none)."""
    end = len(text)
    while end > 0:
        s = text.rfind("\n", 0, end) + 1
        if _ALNUM.search(text, s, end):
            return text[s:end], s
        end = s - 1
    return "", -1


def _last_sentence(line: str) -> str:
    """What follows the last sentence break (". ", "? ", "。") in the line."""
    cut = 0
    for m in _SENTENCE_BREAK.finditer(line):
        cut = m.end()
    return line[cut:]


def _normalize(s: str) -> str:
    """Lower-case words joined by one space, LaTeX wrappers and markup dropped, leading article
    removed: "**The Mitochondria.**" -> "mitochondria"."""
    if "\\" in s:
        words = _TOKEN.findall(_LATEX_WRAP.sub(" ", s).lower())
    else:
        words = s.lower().split()
        if not "".join(words).isalnum():  # else the words are the tokens ([^\W_] is str.isalnum)
            words = _TOKEN.findall(s.lower())
    out = " ".join(words)
    return out.split(" ", 1)[1] if out.startswith(_ARTICLES) and " " in out else out


def _option_text(line: str, options: Mapping[str, str]) -> tuple[str, ...]:
    """Options whose text the final line (its last 300 characters) names: an exact (normalized)
    match of the phrase after "answer is"/"answer:", of a \\boxed{} content or of the whole line;
    else options whose text (>= 4 characters) appears as whole words in the line's last sentence,
    dropping those contained in a longer match ("cell" inside "cell membrane")."""
    exact = _exact_option_text(line, options)
    if exact:
        return exact
    normed = _normalized_options(tuple(options.items()))
    padded = f" {_normalize(_last_sentence(line))} "
    inside = {k: v for k, v in normed if len(v) >= 4 and f" {v} " in padded}
    return tuple(k for k, v in inside.items() if not any(v != w and v in w for w in inside.values()))


def _exact_option_text(line: str, options: Mapping[str, str]) -> tuple[str, ...]:
    """Options whose whole (normalized) text is the line, the phrase after "answer is"/"answer:"
    in it, or the content of a \\boxed{} in it."""
    normed = _normalized_options(tuple(options.items()))
    phrases = {_normalize(line)}
    low = line.lower()
    at = max(low.rfind("answer"), low.rfind("option"), low.rfind("choice"))
    if at >= 0 and (p := _PHRASE.match(line, at)) is not None:
        phrases.add(_normalize(p.group(1)))
    if "box" in low and (b := _BOXED.search(line)) is not None:
        phrases.add(_normalize(b.group(1)))
    return tuple(k for k, v in normed if v and v in phrases)


def find_named_option(text: str, options: Mapping[str, str]) -> tuple[str, ...]:
    """The `text` answer format: letters of the options whose whole text the last line names
    (" helium", "Answer: helium", "\\boxed{helium}"); () when it names none. No letters, no
    words inside a longer line: the strict counterpart of the lenient option_text rule."""
    line, line_start = _last_line(text)
    return _exact_option_text(line[-300:], options) if line_start >= 0 else ()


@lru_cache(maxsize=1024)
def _normalized_options(items: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """(letter, normalized text) per option; cached, as a sample is graded once per sample of its group."""
    return tuple((k, _normalize(v)) for k, v in items)


def find_fallback(text: str, options: Mapping[str, str] | None) -> tuple[str | None, tuple[str, ...]]:
    """(rule, letters) from the end of a response that has no explicit commitment; (None, ())
    when nothing is found. Rules, first that fires: a last line that is only letters
    ("C", "**C**", "(C)", "A B C D"; a letter that is not an option's letter but one option's whole
    text names that option; one that is both a letter and another option's text names both), a last
    line led by a letter ("C. Mitochondria"), a bracketed letter ending the response, bold letters in
    the last paragraph, the text of one option in the last line."""
    line, line_start = _last_line(text)
    if line_start < 0:
        return None, ()
    m = _LONE_LINE.fullmatch(line)
    # a line of letters only; all of them pass as letters (not "I I think")
    if (
        m is not None
        and (letters := _letters(line, m.start("L"), m.end("L")))
        and len(letters) == len(_LETTER_TOKEN.findall(line, m.start("L"), m.end("L")))
    ):
        rule = BOLD if ("**" in line or "__" in line) else PAREN if "(" in line else LAST_LETTER
        named = _exact_option_text(line, options) if options else ()
        if len(named) == 1 and named != letters:
            # a letter that is no option's letter but exactly one option's text names that option (the
            # chemical symbol "O" among options A-D); one that is both a letter and another option's
            # text (" B" for boron among "A. C  B. Li  C. B") is both, so no answer
            return (OPTION_TEXT, named) if not set(letters) <= set(options) else (rule, (*letters, *named))
        return rule, letters
    m = _LETTER_LED_LINE.match(line) or _PAREN_END.search(line, max(0, len(line) - 16))
    if m is not None:
        # "(A) and (B) both ..." or "Rate = K[A]^2[B]": a line with several bracketed letters is no
        # commitment to the first one
        bracketed = tuple(_ASCII_OF.get(x, x) for x in _BRACKETED.findall(line))
        letter = _ASCII_OF.get(m.group("L"), m.group("L"))
        rule = PAREN if m.re is _PAREN_END or m.group("P") else LAST_LETTER
        return rule, (letter, *bracketed)
    # a paragraph break more than 600 characters back would not count: search no further
    para_start = max(text.rfind("\n\n", max(0, line_start - 602), line_start) + 2, line_start - 600, 0)
    para = text[para_start:]
    bold = ()
    if "**" in para or "__" in para:
        bold = tuple(
            _ASCII_OF.get(m.group("L"), m.group("L"))
            for m in _BOLD.finditer(para)
            if _is_letter(para, m.group("L"), m.end("L"))
        )
    if bold:
        return BOLD, bold
    if options:
        named = _option_text(line[-300:], options)
        if named:
            return OPTION_TEXT, named
    return None, ()
