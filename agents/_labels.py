"""Classification labels that follow the data through a run, and masking by label.

A state field's labels are the ones it declares plus those of whatever its current value
was derived from: a tool's labelled output fields, or the labelled fields a model read.
Every string that arrives with a label is also remembered as a labelled *value*, so a
prompt can be masked wherever that string shows up — even after a model copied it into a
field that declares nothing: glued to Chinese or Japanese text, behind an Arabic or Hebrew
prefix letter ("و" + name), inside an English sentence (but "Ann" not in "Annual"), or a phone
grouped differently ("138-0013-8000", "13800138000"). Values and texts are compared after
NFKC, with zero-width characters dropped and every script's digits read as 0-9, so
full-width "１３８…" or a zero-width space inside a name hides nothing.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import BaseMessage, messages_from_dict, messages_to_dict
from pydantic import BaseModel

from chamberlain.agents._expressions import Expression

MaskStyle = Literal["redact", "pseudonym", "last4"]
MIN_LENGTH = 2  # shorter strings cannot be masked without mangling the text around them


class DataLabels(BaseModel):
    """What a run knows about its data: the labels of each field's current value beyond those
    it declares (``fields``), and the strings seen with each label (``values``)."""

    fields: dict[str, list[str]] = {}
    values: dict[str, list[str]] = {}

    def of(self, names: Iterable[str], declared: Mapping[str, list[str]]) -> list[str]:
        """The labels of data made from the fields ``names``."""
        return sorted({label for n in names for label in (*declared.get(n, ()), *self.fields.get(n, ()))})

    def updated(self, fields: Mapping[str, list[str]], values: Mapping[str, Iterable[str]]) -> DataLabels:
        """After a step: its fields' new labels, and the labelled values it brought in."""
        known = {label: list(seen) for label, seen in self.values.items()}
        for label, new in values.items():
            bucket = known.setdefault(label, [])
            bucket += [v for v in dict.fromkeys(new) if v not in bucket]
        return DataLabels(fields={**self.fields, **{f: sorted(ls) for f, ls in fields.items()}}, values=known)

    def found_in(self, text: str) -> dict[str, list[str]]:
        """The labelled values that occur in ``text``, by label: what masking must hide."""
        text = _normalise(text)
        return {label: hits for label, seen in self.values.items() if (hits := [v for v in seen if _occurs(v, text)])}


def labels_read(expression: Expression, produced: Mapping[str, Collection[str]]) -> set[str]:
    """The labels of a tool's output (``produced``: its fields' labels) that an output
    expression reads: all of them for ``result``, a field's own for ``result.field``."""
    found: set[str] = set()
    for member in expression.members:
        if member == "result":
            found |= {label for labels in produced.values() for label in labels}
        elif member.startswith("result."):
            found |= set(produced.get(member.removeprefix("result."), ()))
    return found


def strings_in(value: Any) -> Iterator[str]:
    """Every string and number inside ``value``, as text — what could be quoted in a prompt."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value).strip()
        if len(_normalise(text)) >= MIN_LENGTH:  # zero-width characters alone are no value
            yield text


@dataclass(frozen=True)
class Masking:
    """How labelled values are hidden from a model, by label: ``redact`` (``[pii]``),
    ``pseudonym`` (``PII_3f2a1c``, the same for the same value, put back in the answer) or
    ``last4`` (``****1111``). ``key`` keys the pseudonyms, so they cannot be reversed by guessing."""

    styles: Mapping[str, MaskStyle]
    key: bytes

    def mask(self, value: str, label: str) -> str:
        style = self.styles[label]
        if style == "pseudonym":
            name = _number(value) or value  # one number, one pseudonym, however its digits are grouped
            return f"{label.upper()}_{hmac.new(self.key, name.encode(), hashlib.sha256).hexdigest()[:6]}"
        if style == "last4":
            return "****" + (value[-4:] if len(value) > 6 else "")
        return f"[{label}]"

    def mask_text(self, text: str, sensitive: Mapping[str, Iterable[str]]) -> str:
        """``text`` with the labelled values of every masked label replaced."""
        return self._replacer(sensitive)(text)

    def apply(
        self, messages: list[BaseMessage], sensitive: Mapping[str, list[str]]
    ) -> tuple[list[BaseMessage], dict[str, str]]:
        """``messages`` with the labelled values of every masked label replaced — in what a
        model reads: the content and tool calls' arguments; and each pseudonym's value."""
        replace = self._replacer(sensitive)
        dicts = messages_to_dict(messages)
        for message in dicts:
            data = message["data"]
            for key in ("content", "tool_calls"):
                if key in data:
                    data[key] = _map_strings(data[key], replace)
        restore = {
            self.mask(v, label): v
            for label, vs in sensitive.items()
            if self.styles.get(label) == "pseudonym"
            for v in vs
        }
        return messages_from_dict(dicts), restore

    def _replacer(self, sensitive: Mapping[str, Iterable[str]]) -> Callable[[str], str]:
        return _substitute(
            {v: self.mask(v, label) for label, vs in sensitive.items() if label in self.styles for v in vs}
        )


def redact(text: str, sensitive: Mapping[str, Iterable[str]], clearance: Iterable[str] = ()) -> str:
    """``text`` as a viewer with ``clearance`` may see it: other labels' values as ``[label]``."""
    hidden = {label: values for label, values in sensitive.items() if label not in set(clearance)}
    return Masking(dict.fromkeys(hidden, "redact"), key=b"").mask_text(text, hidden)


def unmask(value: Any, restore: Mapping[str, str]) -> Any:
    """``value`` with every pseudonym in its strings put back."""
    return _map_strings(value, _substitute(restore)) if restore else value


def _substitute(replacements: Mapping[str, str]) -> Callable[[str], str]:
    """Replace each occurrence of a key (see ``_pattern``) by its value; the longest key first,
    so a value inside another loses. Matching is on the normalised text (see ``_normalised``);
    the text around the replacements is kept as it was written."""
    if not replacements:
        return lambda text: text
    ordered = sorted(replacements, key=len, reverse=True)
    pattern = re.compile("|".join(f"({_pattern(key)})" for key in ordered))

    def replace(text: str) -> str:
        normal, origin = _normalised(text)
        parts, done = [], 0
        for match in pattern.finditer(normal):
            start, end = origin[match.start()][0], origin[match.end() - 1][1]
            parts += [text[done:start], replacements[ordered[(match.lastindex or 1) - 1]]]
            done = end
        return "".join(parts) + text[done:]

    return replace


# Scripts written without spaces between words (Chinese, Japanese, Korean with its particles,
# Thai, Lao, Khmer, Myanmar), and scripts whose words take clitic letters glued on (Arabic "و"
# and "ب", Hebrew "ו" and "ה", Syriac, Thaana): a value in them touches the text around it, so
# no edge is a word edge.
_UNSPACED = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
    "\u0590-\u05ff\u0600-\u06ff\u0700-\u074f\u0750-\u077f\u0780-\u07bf\u08a0-\u08ff"
    "\ufb1d-\ufb4f\ufb50-\ufdff\ufe70-\ufeff"
)
_LETTER = f"[^\\W\\d{_UNSPACED}]"  # a letter (or _) of a script that separates words with spaces
_DIGITS = re.compile(r"[(\s]*\+?[\d\s\-.(),]+")  # phones, cards, account numbers: digits in groups
_SEPARATORS = r"[\s\-.(),]{0,8}"  # a line break and its indent included
_MIN_DIGITS = 7


@functools.lru_cache(maxsize=4096)
def _pattern(value: str) -> str:
    """The regular expression ``value`` is found by in text. A value may not begin or end inside
    a word of a space-separated script ("Ann" is not in "Annual") nor inside a longer number; in
    Chinese and other unspaced scripts it may touch anything. A number written in groups is also
    found with other separators or none ("138 0013 8000" in "138-0013-8000" and "13800138000"),
    and a phone held with its country code in the forms people dial it in ("+86 138 0013 8000"
    in "0086 13800138000" and "138 0013 8000"; "+7 912 …" in "8 (912) …")."""
    value = _normalise(value)
    if not value:
        return "(?!)"  # nothing to find
    number = _number(value)
    if number is None:
        return f"{_edge(value[0], '(?<!{})')}{re.escape(value)}{_edge(value[-1], '(?!{})')}"
    forms = sorted(_dialled(number), key=len, reverse=True)
    body = "|".join(_edge(form[0], "(?<!{})") + _SEPARATORS.join(map(re.escape, form)) for form in forms)
    return f"(?:{body})(?!\\d)"


def _number(value: str) -> str | None:
    """A number written in groups (a phone, a card) as its digits, with a leading ``+`` if it has
    one; None for any other value."""
    if _DIGITS.fullmatch(value) and len(digits := re.sub(r"\D", "", value)) >= _MIN_DIGITS:
        return ("+" if value.lstrip("( ").startswith("+") else "") + digits
    return None


def _dialled(number: str) -> set[str]:
    """The digits a number is written with: itself, and for a phone with its country code also
    ``00`` and the code, and the national number with and without its trunk prefix."""
    if not number.startswith("+"):
        return {number}
    import phonenumbers  # here: its metadata loads only when a labelled phone is masked

    try:
        phone = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return {number}
    national = re.sub(r"\D", "", phonenumbers.format_number(phone, phonenumbers.PhoneNumberFormat.NATIONAL))
    significant = phonenumbers.national_significant_number(phone)
    forms = {number, f"00{number[1:]}", national, significant}
    return {form for form in forms if len(form) >= _MIN_DIGITS}


def _edge(char: str, guard: str) -> str:
    """The guard that keeps a value's edge ``char`` from being matched in the middle of a run of its kind."""
    if re.fullmatch(r"\d", char):
        return guard.format(r"\d")
    return guard.format(_LETTER) if re.fullmatch(_LETTER, char) else ""


def _occurs(value: str, normal_text: str) -> bool:
    """Whether ``value`` is in ``normal_text`` (normalised) as masking finds it: one rule for both."""
    return re.search(_pattern(value), normal_text) is not None


# Zero-width characters and soft hyphens dropped; dashes of every kind, the minus sign and the
# katakana long-vowel mark (written between digit groups in Japanese) as "-"; the ideographic comma as ",".
_AS_ASCII = {
    **dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad")),
    **dict.fromkeys(map(ord, "\u058a\u05be\u1400\u1806\u2010\u2011\u2012\u2013\u2014\u2015\u2e17\u2e1a"), "-"),
    **dict.fromkeys(map(ord, "\u2e3a\u2e3b\u2e40\u2e5d\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d"), "-"),
    **dict.fromkeys(map(ord, "\U00010ead\u2212\u30fc"), "-"),
    ord("\u3001"): ",",
}
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")
# Marks that compose with the letter before them though Unicode gives them no combining class:
# half-width katakana's voicing marks, and Hangul's vowel and final jamo (a syllable decomposed).
_COMPOSES_BACK = re.compile("[\uff9e\uff9f\u1160-\u11ff\ud7b0-\ud7ff]")


def _normalise(text: str) -> str:
    """``text`` as values are compared in: NFKC (full-width letters and digits, composed
    accents), case folded, zero-width characters and soft hyphens dropped, every decimal digit
    as 0-9, every dash as "-"."""
    return _normalised(text)[0]


def _normalised(text: str) -> tuple[str, list[tuple[int, int]]]:
    """:func:`_normalise`'s text, and for each of its characters the span of ``text`` it comes
    from (a character with its combining marks is normalised as one)."""
    chars: list[str] = []
    origin: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        end = i + 1
        while end < len(text) and (unicodedata.combining(text[end]) or _composes(text[i:end], text[end])):
            end += 1
        piece = unicodedata.normalize("NFKC", text[i:end]).casefold().translate(_AS_ASCII)
        piece = _OTHER_DIGIT.sub(lambda m: str(unicodedata.decimal(m[0])), piece)
        chars += piece
        origin += [(i, end)] * len(piece)
        i = end
    return "".join(chars), origin


def _composes(before: str, mark: str) -> bool:
    """Whether ``mark`` (of no combining class) joins the characters before it under NFKC."""
    if not _COMPOSES_BACK.match(mark):
        return False
    return len(unicodedata.normalize("NFKC", before + mark)) <= len(unicodedata.normalize("NFKC", before))


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    return value
