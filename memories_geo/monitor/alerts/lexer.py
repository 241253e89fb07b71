"""Units and tokens of the alert condition grammar, and durations as people write them.

The tokenizer reads the text one character class at a time against a fixed list of
token kinds; anything outside them (quotes, ``;``, brackets, backticks, ``_``-led
names...) stops it with an :class:`~memories_geo.errors.AlertConditionError` naming
the position. Nothing here evaluates text.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from memories_geo.errors import AlertConditionError, ConfigError

__all__ = [
    "BYTE_UNITS",
    "MAX_CONDITION_LENGTH",
    "PERCENT_UNITS",
    "TIME_UNITS",
    "UNITS",
    "Token",
    "TokenKind",
    "condition_error",
    "parse_duration",
    "tokenize",
]

#: Longest condition text accepted, in characters.
MAX_CONDITION_LENGTH = 500

#: ``%``: figures are percentages from 0 to 100, so ``85%`` is ``85``.
PERCENT_UNITS: Mapping[str, float] = {"%": 1.0}
#: Bytes: decimal (``kb`` = 1000 B) and binary (``kib`` = 1024 B), case-insensitive.
BYTE_UNITS: Mapping[str, float] = {
    "b": 1.0,
    **{u: float(1000**p) for p, u in enumerate(("kb", "mb", "gb", "tb", "pb"), start=1)},
    **{u: float(1024**p) for p, u in enumerate(("kib", "mib", "gib", "tib"), start=1)},
}
#: Times, in seconds.
TIME_UNITS: Mapping[str, float] = {
    "ms": 0.001,
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
#: Every unit a number may carry (lower case) and its factor; ``/s`` may follow any of them.
UNITS: Mapping[str, float] = {**PERCENT_UNITS, **BYTE_UNITS, **TIME_UNITS}

_UNIT_NAMES = "%, B KB MB GB TB PB, KiB MiB GiB TiB, ms s min h d (and their long forms), '/s' for a rate"
_KEYWORDS = ("and", "or", "not")
_OPERATORS = (">=", "<=", "==", "!=", ">", "<")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
_WORD = re.compile(r"[A-Za-z]+|%")
_SPACE = re.compile(r"\s+")


class TokenKind(Enum):
    """Kinds of token of the condition grammar."""

    NAME = "a name"
    NUMBER = "a number"
    OP = "a comparison operator"
    AND = "'and'"
    OR = "'or'"
    NOT = "'not'"
    LPAREN = "'('"
    RPAREN = "')'"
    END = "the end of the condition"


@dataclass(frozen=True)
class Token:
    """One token: its kind, its text as written, where it starts, and a number's value.

    Examples
    --------
    >>> tokenize("x > 5 MB")[2]
    Token(kind=<TokenKind.NUMBER: 'a number'>, text='5 MB', position=4, value=5000000.0)
    """

    kind: TokenKind
    text: str
    position: int
    value: float = 0.0


def condition_error(text: str, position: int, message: str) -> AlertConditionError:
    """An :class:`AlertConditionError` naming the position, with the text and a caret.

    Examples
    --------
    >>> print(condition_error("x >> 1", 3, "expected a number or a name, got '>'"))
    alert condition, position 3: expected a number or a name, got '>'
      x >> 1
         ^
    """
    return AlertConditionError(
        f"alert condition, position {position}: {message}\n  {text}\n  {' ' * position}^"
    )


def _describe(text: str, position: int) -> str:
    char = text[position]
    hints = {
        "'": "quotes are not part of the grammar",
        '"': "quotes are not part of the grammar",
        "`": "backticks are not part of the grammar",
        ";": "';' is not part of the grammar: join comparisons with 'and' / 'or'",
        "[": "indexing is not part of the grammar",
        "_": "a name starts with a letter",
        "=": "did you mean '=='?",
        "!": "use 'not' or '!='",
        "&": "use 'and'",
        "|": "use 'or'",
    }
    return f"unexpected character {char!r}" + (f" ({hints[char]})" if char in hints else "")


def _unit(text: str, position: int) -> tuple[str, float, int]:
    """The unit after a number at ``position`` (spaces allowed before it): (text, factor, end)."""
    start = position
    space = _SPACE.match(text, position)
    if space:
        position = space.end()
    word = _WORD.match(text, position)
    factor, unit_text, end = 1.0, "", start
    if word and word.group().lower() in UNITS:
        unit_text, end = _canonical(word.group().lower()), word.end()
        factor = UNITS[word.group().lower()]
    elif word and not space and word.group() != "%":
        raise condition_error(
            text, position, f"unknown unit {word.group()!r}; units: {_UNIT_NAMES}"
        )
    after = end if unit_text else position
    if text.startswith("/", after):
        if not re.match(r"/[sS](?![A-Za-z0-9_])", text[after:]):
            raise condition_error(text, after, "only '/s' may follow a number (a rate per second)")
        return (f"{unit_text}/s" if unit_text else "/s"), factor, after + 2
    return unit_text, factor, end


def _canonical(unit: str) -> str:
    """A unit as the normalised text spells it: ``MB``, ``KiB``, ``ms``, ``hours``."""
    if unit in BYTE_UNITS:
        return unit.upper() if "i" not in unit else unit[0].upper() + "iB"
    return unit


def tokenize(text: str) -> list[Token]:
    """The tokens of a condition, ending with an ``END`` token.

    Raises
    ------
    AlertConditionError
        For a character or word outside the grammar, naming its position.

    Examples
    --------
    >>> [t.text for t in tokenize("hot.utilization_percentage > 85%")]
    ['hot.utilization_percentage', '>', '85%', '']
    """
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char.isspace():
            position += 1
        elif char in "()":
            kind = TokenKind.LPAREN if char == "(" else TokenKind.RPAREN
            tokens.append(Token(kind, char, position))
            position += 1
        elif (op := next((o for o in _OPERATORS if text.startswith(o, position)), None)) is not None:
            tokens.append(Token(TokenKind.OP, op, position))
            position += len(op)
        elif number := _NUMBER.match(text, position):
            unit, factor, end = _unit(text, number.end())
            value = float(number.group()) * factor
            written = number.group() + ("" if not unit else unit if unit[0] in "%/" else f" {unit}")
            tokens.append(Token(TokenKind.NUMBER, written, position, value))
            position = end
        elif name := _NAME.match(text, position):
            tokens.append(_word_token(text, name.group(), position))
            position = name.end()
            if text.startswith(".", position):
                raise condition_error(text, position, "a dot must join two names that start with a letter")
        else:
            raise condition_error(text, position, _describe(text, position))
    tokens.append(Token(TokenKind.END, "", len(text)))
    return tokens


def _word_token(text: str, word: str, position: int) -> Token:
    lower = word.lower()
    if lower in _KEYWORDS:
        return Token(TokenKind[lower.upper()], lower, position)
    for part in word.split("."):
        if keyword.iskeyword(part) or part.lower() in ("true", "false", "none"):
            raise condition_error(
                text, position, f"{part!r} is not part of the grammar (keywords: and, or, not)"
            )
    return Token(TokenKind.NAME, word, position)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")
_DURATION_FORMS = (
    "a timedelta, a number of seconds, or text such as '90s', '30 min', '6 hours' or '1 day' "
    "(units: ms, s, sec, seconds, min, minutes, h, hours, d, days)"
)


def parse_duration(value: str | timedelta | float, *, name: str = "cooldown") -> timedelta:
    """A duration from ``"6 hours"``, ``"30 min"``, ``"1 day"``, ``"90s"``, a timedelta or seconds.

    Parameters
    ----------
    value : str, timedelta, int or float
        What was written; a bare number counts seconds.
    name : str
        What the value is, for the error message.

    Raises
    ------
    ConfigError
        For a negative duration, an unknown unit or anything else, naming the accepted forms.

    Examples
    --------
    >>> parse_duration("6 hours")
    datetime.timedelta(seconds=21600)
    >>> parse_duration("90s"), parse_duration(30)
    (datetime.timedelta(seconds=90), datetime.timedelta(seconds=30))
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if value != value:
            raise ConfigError(f"{name} must be {_DURATION_FORMS}; got {value!r}")
        result = timedelta(seconds=float(value))
    elif isinstance(value, str) and (match := _DURATION.match(value)) is not None:
        unit = match.group(2).lower() or "s"
        if unit not in TIME_UNITS:
            raise ConfigError(f"{name} must be {_DURATION_FORMS}; got {value!r}")
        result = timedelta(seconds=float(match.group(1)) * TIME_UNITS[unit])
    else:
        raise ConfigError(f"{name} must be {_DURATION_FORMS}; got {value!r}")
    if result < timedelta(0):
        raise ConfigError(f"{name} must not be negative; got {value!r}")
    return result
