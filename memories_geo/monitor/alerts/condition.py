"""Alert conditions: a small, safe grammar parsed to a tree and evaluated against figures.

Grammar (``not`` binds tighter than ``and``, which binds tighter than ``or``)::

    condition  := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | comparison
    comparison := operand (">" | ">=" | "<" | "<=" | "==" | "!=") operand
    operand    := NAME | NUMBER [UNIT] ["/s"]

A comparison needs at least one name. The text is tokenized and parsed by hand; it is
never given to ``eval``, ``exec`` or ``ast``: anything outside the grammar is an
:class:`~memories_geo.errors.AlertConditionError` naming the position.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from memories_geo.monitor.alerts.lexer import (
    MAX_CONDITION_LENGTH,
    Token,
    TokenKind,
    condition_error,
    tokenize,
)

__all__ = ["MAX_DEPTH", "Condition", "figure_value", "parse_condition"]

#: Deepest nesting of parentheses and ``not`` accepted.
MAX_DEPTH = 50

_COMPARE: Mapping[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt,
    "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}
_OPERAND = "a name or a number"
_AFTER_COMPARISON = "'and', 'or', ')' or the end of the condition"


def figure_value(figures: Mapping[str, Any], name: str) -> float | None:
    """The figure called ``name`` as a float; ``None`` when missing, ``None``, NaN or not a number.

    Examples
    --------
    >>> figure_value({"a": 3, "b": float("nan")}, "a"), figure_value({"b": float("nan")}, "b")
    (3.0, None)
    """
    value = figures.get(name)
    if value is None or isinstance(value, bool | str | bytes):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


@dataclass(frozen=True)
class _Name:
    name: str

    def value(self, figures: Mapping[str, Any]) -> float | None:
        return figure_value(figures, self.name)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class _Number:
    number: float
    text: str

    def value(self, figures: Mapping[str, Any]) -> float | None:
        return self.number

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class _Compare:
    left: _Name | _Number
    op: str
    right: _Name | _Number

    def evaluate(self, figures: Mapping[str, Any]) -> bool:
        left, right = self.left.value(figures), self.right.value(figures)
        return left is not None and right is not None and _COMPARE[self.op](left, right)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True)
class _Not:
    operand: _Node

    def evaluate(self, figures: Mapping[str, Any]) -> bool:
        return not self.operand.evaluate(figures)

    def __str__(self) -> str:
        inner = str(self.operand)
        return f"not ({inner})" if isinstance(self.operand, _Bool) else f"not {inner}"


@dataclass(frozen=True)
class _Bool:
    op: str  # "and" | "or"
    operands: tuple[_Node, ...]

    def evaluate(self, figures: Mapping[str, Any]) -> bool:
        results = (o.evaluate(figures) for o in self.operands)
        return all(results) if self.op == "and" else any(results)

    def __str__(self) -> str:
        def part(node: _Node) -> str:
            lower = isinstance(node, _Bool) and node.op == "or" and self.op == "and"
            return f"({node})" if lower else str(node)

        return f" {self.op} ".join(part(o) for o in self.operands)


_Node = _Compare | _Not | _Bool


class _Parser:
    """Recursive descent over the tokens, one method per grammar rule."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.names: list[Token] = []

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def fail(self, expected: str, token: Token | None = None) -> Exception:
        token = token or self.token
        got = "the end of the condition" if token.kind is TokenKind.END else repr(token.text)
        hint = ""
        after_name = self.index > 0 and self.tokens[self.index - 1].kind is TokenKind.NAME
        if token.kind is TokenKind.LPAREN and after_name:
            hint = " (calls are not part of the grammar)"
        return condition_error(self.text, token.position, f"expected {expected}, got {got}{hint}")

    def take(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def parse(self) -> _Node:
        node = self.or_expr()
        if self.token.kind is not TokenKind.END:
            raise self.fail(_AFTER_COMPARISON)
        return node

    def or_expr(self) -> _Node:
        operands = [self.and_expr()]
        while self.token.kind is TokenKind.OR:
            self.take()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else _Bool("or", tuple(operands))

    def and_expr(self) -> _Node:
        operands = [self.not_expr()]
        while self.token.kind is TokenKind.AND:
            self.take()
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else _Bool("and", tuple(operands))

    def not_expr(self) -> _Node:
        kind = self.token.kind
        if kind not in (TokenKind.NOT, TokenKind.LPAREN):
            return self.comparison()
        opening = self.take()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise condition_error(
                self.text, opening.position, f"nested deeper than {MAX_DEPTH} levels"
            )
        if kind is TokenKind.NOT:
            node: _Node = _Not(self.not_expr())
        else:
            node = self.or_expr()
            if self.token.kind is not TokenKind.RPAREN:
                raise self.fail("')' closing the '(' at position " + str(opening.position))
            self.take()
        self.depth -= 1
        return node

    def operand(self) -> _Name | _Number:
        token = self.token
        if token.kind is TokenKind.NAME:
            self.names.append(self.take())
            return _Name(token.text)
        if token.kind is TokenKind.NUMBER:
            self.take()
            return _Number(token.value, token.text)
        raise self.fail(_OPERAND + " (or 'not', '(')")

    def comparison(self) -> _Compare:
        start = self.token
        left = self.operand()
        if self.token.kind is not TokenKind.OP:
            raise self.fail("a comparison operator (>, >=, <, <=, ==, !=)")
        op = self.take().text
        if self.token.kind not in (TokenKind.NAME, TokenKind.NUMBER):
            raise self.fail(_OPERAND)
        right = self.operand()
        if isinstance(left, _Number) and isinstance(right, _Number):
            raise condition_error(
                self.text, start.position,
                "a comparison needs at least one name (two numbers always compare the same way)",
            )
        if self.token.kind is TokenKind.OP:
            raise condition_error(
                self.text, self.token.position,
                "chained comparisons are not part of the grammar: join them with 'and'",
            )
        return _Compare(left, op, right)


@dataclass(frozen=True)
class Condition:
    """A parsed alert condition: the names it uses, and a test of figures.

    Made by :func:`parse_condition`; ``str(condition)`` is the normalised text.

    Examples
    --------
    >>> c = parse_condition("hot.utilization_percentage > 85 and error_rate >= 1%")
    >>> sorted(c.names)
    ['error_rate', 'hot.utilization_percentage']
    >>> c.evaluate({"hot.utilization_percentage": 91.5, "error_rate": 2.0})
    True
    >>> c.evaluate({"hot.utilization_percentage": 91.5})  # error_rate missing: False
    False
    """

    text: str
    _tree: _Node

    @property
    def names(self) -> frozenset[str]:
        """Names of the figures the condition uses."""
        return frozenset(_names(self._tree))

    def evaluate(self, figures: Mapping[str, Any]) -> bool:
        """Whether the condition holds for ``figures`` (name -> number).

        A comparison with a name missing from ``figures``, or whose value is ``None``
        or NaN, is false; it never raises.
        """
        return self._tree.evaluate(figures)

    def values(self, figures: Mapping[str, Any]) -> dict[str, float | None]:
        """The figures the condition uses, by name (``None`` when missing or not finite).

        Examples
        --------
        >>> parse_condition("a > 1 or b < 2").values({"a": 3, "c": 4})
        {'a': 3.0, 'b': None}
        """
        result: dict[str, float | None] = {}
        for name in sorted(self.names):
            value = figure_value(figures, name)
            result[name] = value if value is not None and math.isfinite(value) else None
        return result

    def __str__(self) -> str:
        return str(self._tree)

    def __repr__(self) -> str:
        return f"Condition({str(self)!r})"


def _names(node: _Node) -> set[str]:
    if isinstance(node, _Compare):
        return {o.name for o in (node.left, node.right) if isinstance(o, _Name)}
    if isinstance(node, _Not):
        return _names(node.operand)
    return set().union(*(_names(o) for o in node.operands))


def parse_condition(text: str, known_names: Collection[str] | None = None) -> Condition:
    """Parse an alert condition such as ``"hot.utilization_percentage > 85"``.

    Parameters
    ----------
    text : str
        The condition: dotted names, comparisons (``> >= < <= == !=``), ``and``,
        ``or``, ``not``, parentheses and numbers with an optional unit (``%``,
        ``B``...``PB``, ``KiB``...``TiB``, ``ms``, ``s``, ``min``, ``h``, ``d``, ``/s``).
        At most 500 characters.
    known_names : collection of str, optional
        The figures that exist; a name outside them is refused, with the close matches.

    Returns
    -------
    Condition

    Raises
    ------
    AlertConditionError
        For anything outside the grammar (code, quotes, calls, ``;``...), an empty or
        too long text, or an unknown name; the message names the position and what
        was expected.

    Examples
    --------
    >>> str(parse_condition("warm.read_latency_p95>200ms or (not hot.x==1 and y<5 MB/s)"))
    'warm.read_latency_p95 > 200 ms or not hot.x == 1 and y < 5 MB/s'
    >>> parse_condition("__import__('os')")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    memories_geo.errors.AlertConditionError: alert condition, position 0: unexpected character '_' ...
    """
    if not isinstance(text, str):
        raise condition_error(repr(text)[:80], 0, f"a condition is text, got {type(text).__name__}")
    if len(text) > MAX_CONDITION_LENGTH:
        raise condition_error(
            text[:60] + "...", 0, f"longer than {MAX_CONDITION_LENGTH} characters ({len(text)})"
        )
    if not text.strip():
        raise condition_error(
            text, 0, "empty condition: expected a comparison such as 'hot.utilization_percentage > 85'"
        )
    parser = _Parser(text, tokenize(text))
    tree = parser.parse()
    if known_names is not None:
        known = set(known_names)
        for token in parser.names:
            if token.text not in known:
                raise condition_error(text, token.position, _unknown_name(token.text, known))
    return Condition(text, tree)


def _unknown_name(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    accepted = sorted(known)
    listed = ", ".join(accepted[:40]) + (f", ... ({len(accepted)} in all)" if len(accepted) > 40 else "")
    message = f"unknown figure {name!r}"
    if close:
        message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return message + f" Figures: {listed or '(none)'}"
