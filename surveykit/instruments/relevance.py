r"""Relevance expressions: when a question is shown, based on earlier answers.

An expression is tokenized and parsed by hand (it is never given to Python's
eval) into a tree of small frozen dataclasses. Grammar, loosest binding first:

    expression := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand [ ("==" | "=" | "!=" | "<" | "<=" | ">" | ">=") operand
                          | ["not"] "in" "[" literal ("," literal)* "]" ]
    operand    := literal | $ref | "(" expression ")"
                | "answered" "(" $ref ")" | ("count" | "count-selected") "(" $ref ")"
                | "selected" "(" $ref "," string ")"
    $ref       := "$" question_id | "${" question_id "}"
    literal    := string | number | "true" | "false" | "null"

XLSForm's spelling is the same language: ``${q}`` is ``$q``, ``=`` is ``==``, ``not(...)`` is
``not (...)`` and ``count-selected(${q})`` is ``count($q)``. A comparison with the empty string
literal ``''`` asks whether the other side is unanswered, as in XLSForm (where an unanswered
question is ``''``): ``$q == ''`` is ``not answered($q)`` and ``$q != ''`` is ``answered($q)``.

Strings use single or double quotes with the escapes \\, \' and \"; numbers
are integers or decimals with an optional leading "-". Keywords are lowercase.
Sources are limited to 1000 characters and 32 levels of nesting.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Expression", "RelevanceError", "parse"]

MAX_LENGTH = 1000
MAX_DEPTH = 32

LiteralValue = str | int | float | bool | None

_QUESTION_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ID_CHARS = re.compile(r"[A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]")
_KEYWORD_VALUES: dict[str, LiteralValue] = {"true": True, "false": False, "null": None}
_KEYWORDS = frozenset({"and", "or", "not", "in", *_KEYWORD_VALUES})
# Two-character operators come first so "<=" is not read as "<" followed by "=".
_OPERATORS = ("==", "!=", "<=", ">=", "=", "<", ">", "(", ")", "[", "]", ",")
# XLSForm's single "=" is the same equality as "==".
_OPERATOR_KINDS = {"=": "=="}
_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_LITERAL_KINDS = frozenset({"string", "number", *_KEYWORD_VALUES})
_ESCAPES = frozenset({"\\", "'", '"'})
_FUNCTIONS = frozenset({"answered", "count", "count-selected", "selected"})
_FUNCTION_ALIASES = {"count-selected": "count"}
_COUNT_SELECTED_TAIL = "-selected"
_WHITESPACE = frozenset(" \t\r\n")
_ORDERINGS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class RelevanceError(ValueError):
    """A malformed relevance expression; ``position`` is a 0-based offset into the source."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at character {position}")
        self.message = message
        self.position = position

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.position))


# --- tokenizer ---------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    # "ref", "string", "number", "name", "end", or the operator/keyword text itself.
    kind: str
    text: str
    position: int
    value: Any = None

    def describe(self) -> str:
        if self.kind == "end":
            return "end of expression"
        text = self.text if len(self.text) <= 30 else self.text[:27] + "..."
        if self.kind in ("string", "number", "ref"):
            return f"{'reference' if self.kind == 'ref' else self.kind} {text}"
        return f"'{text}'"


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        start = i
        if ch in "'\"":
            value, i = _read_string(source, start)
            tokens.append(_Token("string", source[start:i], start, value))
        elif ch == "$":
            braced = source.startswith("{", i + 1)
            opening = "${" if braced else "$"
            ident = _ID_CHARS.match(source, i + len(opening)).group()
            if not ident:
                raise RelevanceError(f"expected a question id after '{opening}'", start)
            if not _QUESTION_ID.fullmatch(ident):
                raise RelevanceError(f"invalid question id '{ident}'", start)
            i += len(opening) + len(ident)
            if braced:
                if not source.startswith("}", i):
                    raise RelevanceError(f"expected '}}' after '${{{ident}'", start)
                i += 1
            tokens.append(_Token("ref", source[start:i], start, ident))
        elif number := _NUMBER.match(source, i):
            i = number.end()
            # Reject "1.", "1.2.3", "1e5" and "12abc" instead of splitting them into two tokens.
            if i < len(source) and _NUMBER_TAIL.match(source, i):
                raise RelevanceError("invalid number", start)
            text = number.group()
            tokens.append(_Token("number", text, start, float(text) if "." in text else int(text)))
        elif name := _NAME.match(source, i):
            text = name.group()
            i = name.end()
            if text == "count" and source.startswith(_COUNT_SELECTED_TAIL, i):
                text += _COUNT_SELECTED_TAIL
                i += len(_COUNT_SELECTED_TAIL)
            kind = text if text in _KEYWORDS else "name"
            tokens.append(_Token(kind, text, start, _KEYWORD_VALUES.get(text)))
        else:
            op = next((op for op in _OPERATORS if source.startswith(op, i)), None)
            if op is None:
                raise RelevanceError(f"unexpected character {ch!r}", start)
            i += len(op)
            tokens.append(_Token(_OPERATOR_KINDS.get(op, op), op, start))
    tokens.append(_Token("end", "", len(source)))
    return tokens


def _read_string(source: str, start: int) -> tuple[str, int]:
    """Read the string literal opening at ``start``; return its value and the index after it."""
    quote = source[start]
    chars: list[str] = []
    i = start + 1
    while i < len(source):
        ch = source[i]
        if ch == quote:
            return "".join(chars), i + 1
        if ch == "\\":
            if i + 1 >= len(source):
                break
            escaped = source[i + 1]
            if escaped not in _ESCAPES:
                raise RelevanceError(f"invalid escape '\\{escaped}' in string", i)
            chars.append(escaped)
            i += 2
            continue
        chars.append(ch)
        i += 1
    raise RelevanceError("unterminated string", start)


# --- evaluation helpers ------------------------------------------------------
#
# Answers come from clients and may hold anything, and evaluation must never
# raise. Types are therefore tested with issubclass(type(v), ...): unlike
# isinstance, it cannot be fooled or made to raise by a custom __class__.
# Every call into a foreign object (==, <, iteration) is guarded.


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    return issubclass(type(value), types)


def _is_number(value: Any) -> bool:
    return _is(value, (int, float)) and not _is(value, bool)


def _lookup(answers: Mapping[str, Any], question_id: str) -> Any:
    try:
        return answers.get(question_id)
    except Exception:
        # A broken or non-mapping container counts as "nothing answered".
        return None


def _items(value: Any) -> list[Any] | None:
    """The elements of a list-like answer, or None when the answer is not list-like."""
    if not _is(value, (list, tuple, set, frozenset)):
        return None
    try:
        return list(value)
    except Exception:
        return []


def _equal(left: Any, right: Any) -> bool:
    # A yes/no answer of True must not match the number 1 (nor False match 0).
    if _is(left, bool) != _is(right, bool):
        return False
    try:
        return bool(left == right)
    except Exception:
        return False


def _ordered(op: str, left: Any, right: Any) -> bool:
    comparable = (_is_number(left) and _is_number(right)) or (_is(left, str) and _is(right, str))
    if not comparable:
        return False
    try:
        return bool(_ORDERINGS[op](left, right))
    except Exception:
        return False


def _answered(value: Any) -> bool:
    if value is None:
        return False
    if _is(value, str):
        return bool(str.strip(value))
    items = _items(value)
    return bool(items) if items is not None else True


def _count(value: Any) -> int:
    items = _items(value)
    if items is not None:
        return len(items)
    return 1 if _answered(value) else 0


def _selected(value: Any, choice: str) -> bool:
    items = _items(value)
    if items is not None:
        return any(_equal(item, choice) for item in items)
    return _is(value, str) and _equal(value, choice)


# --- syntax tree ---------------------------------------------------------------


class _Node:
    """Base of the syntax tree nodes.

    ``resolve`` gives the node's value as a comparison operand; ``truth`` gives
    its meaning as a condition. Boolean-valued nodes only implement ``truth``.
    """

    __slots__ = ()

    def truth(self, answers: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def resolve(self, answers: Mapping[str, Any]) -> Any:
        return self.truth(answers)

    def referenced(self) -> frozenset[str]:
        return frozenset()


@dataclass(frozen=True)
class Literal(_Node):
    value: LiteralValue

    def resolve(self, answers: Mapping[str, Any]) -> Any:
        return self.value

    def truth(self, answers: Mapping[str, Any]) -> bool:
        return bool(self.value)


@dataclass(frozen=True)
class Reference(_Node):
    question_id: str

    def resolve(self, answers: Mapping[str, Any]) -> Any:
        return _lookup(answers, self.question_id)

    def truth(self, answers: Mapping[str, Any]) -> bool:
        return _answered(self.resolve(answers))

    def referenced(self) -> frozenset[str]:
        return frozenset({self.question_id})


@dataclass(frozen=True)
class Call(_Node):
    function: str  # "answered", "count" or "selected"
    argument: Reference
    choice: str | None = None  # the value tested by selected()

    def resolve(self, answers: Mapping[str, Any]) -> Any:
        value = self.argument.resolve(answers)
        if self.function == "answered":
            return _answered(value)
        if self.function == "count":
            return _count(value)
        return _selected(value, self.choice or "")

    def truth(self, answers: Mapping[str, Any]) -> bool:
        return bool(self.resolve(answers))

    def referenced(self) -> frozenset[str]:
        return self.argument.referenced()


@dataclass(frozen=True)
class Comparison(_Node):
    operator: str
    left: _Node
    right: _Node

    def truth(self, answers: Mapping[str, Any]) -> bool:
        left = self.left.resolve(answers)
        right = self.right.resolve(answers)
        if self.operator in ("==", "!=") and (empty := _empty_string_side(self.left, self.right)) is not None:
            unanswered = not _answered(empty.resolve(answers))
            return unanswered if self.operator == "==" else not unanswered
        if self.operator == "==":
            return _equal(left, right)
        if self.operator == "!=":
            return not _equal(left, right)
        return _ordered(self.operator, left, right)

    def referenced(self) -> frozenset[str]:
        return self.left.referenced() | self.right.referenced()


def _empty_string_side(left: _Node, right: _Node) -> _Node | None:
    """The operand compared with the literal '' (the other one), or None."""
    if isinstance(right, Literal) and right.value == "" and _is(right.value, str):
        return left
    if isinstance(left, Literal) and left.value == "" and _is(left.value, str):
        return right
    return None


@dataclass(frozen=True)
class Membership(_Node):
    operand: _Node
    options: tuple[LiteralValue, ...]
    negated: bool = False

    def truth(self, answers: Mapping[str, Any]) -> bool:
        value = self.operand.resolve(answers)
        return any(_equal(value, option) for option in self.options) != self.negated

    def referenced(self) -> frozenset[str]:
        return self.operand.referenced()


@dataclass(frozen=True)
class Not(_Node):
    operand: _Node

    def truth(self, answers: Mapping[str, Any]) -> bool:
        return not self.operand.truth(answers)

    def referenced(self) -> frozenset[str]:
        return self.operand.referenced()


@dataclass(frozen=True)
class And(_Node):
    operands: tuple[_Node, ...]

    def truth(self, answers: Mapping[str, Any]) -> bool:
        return all(node.truth(answers) for node in self.operands)

    def referenced(self) -> frozenset[str]:
        return frozenset().union(*(node.referenced() for node in self.operands))


@dataclass(frozen=True)
class Or(_Node):
    operands: tuple[_Node, ...]

    def truth(self, answers: Mapping[str, Any]) -> bool:
        return any(node.truth(answers) for node in self.operands)

    def referenced(self) -> frozenset[str]:
        return frozenset().union(*(node.referenced() for node in self.operands))


@dataclass(frozen=True)
class Expression:
    """A parsed relevance expression; build it with :func:`parse`."""

    source: str
    root: _Node = field(repr=False)
    references: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "references", self.root.referenced())

    def evaluate(self, answers: Mapping[str, Any]) -> bool:
        """Whether the expression holds for ``answers`` (question id -> answer; missing = null)."""
        return self.root.truth(answers)


# --- parser --------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def peek(self) -> _Token:
        return self.tokens[min(self.index + 1, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    @staticmethod
    def unexpected(token: _Token, expected: str = "") -> RelevanceError:
        suffix = f", expected {expected}" if expected else ""
        return RelevanceError(f"unexpected {token.describe()}{suffix}", token.position)

    @contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            message = f"expression is nested deeper than {MAX_DEPTH} levels"
            raise RelevanceError(message, token.position)
        try:
            yield
        finally:
            self.depth -= 1

    def parse(self) -> _Node:
        if self.current.kind == "end":
            raise RelevanceError("empty expression", 0)
        node = self.parse_or()
        if self.current.kind != "end":
            raise self.unexpected(self.current)
        return node

    def parse_or(self) -> _Node:
        operands = [self.parse_and()]
        while self.current.kind == "or":
            self.advance()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> _Node:
        operands = [self.parse_not()]
        while self.current.kind == "and":
            self.advance()
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_not(self) -> _Node:
        if self.current.kind != "not":
            return self.parse_comparison()
        token = self.advance()
        with self.nested(token):
            return Not(self.parse_not())

    def parse_comparison(self) -> _Node:
        left = self.parse_operand()
        token = self.current
        if token.kind in _COMPARISONS:
            self.advance()
            return Comparison(token.kind, left, self.parse_operand())
        if token.kind == "in":
            self.advance()
            return Membership(left, self.parse_list())
        if token.kind == "not" and self.peek().kind == "in":
            self.advance()
            self.advance()
            return Membership(left, self.parse_list(), negated=True)
        return left

    def parse_list(self) -> tuple[LiteralValue, ...]:
        opening = self.current
        if opening.kind != "[":
            raise self.unexpected(opening, "a list literal after 'in'")
        self.advance()
        if self.current.kind == "]":
            raise RelevanceError("empty list after 'in'", opening.position)
        items = [self.parse_list_item()]
        while self.current.kind == ",":
            self.advance()
            items.append(self.parse_list_item())
        if self.current.kind != "]":
            raise self.unexpected(self.current, "',' or ']'")
        self.advance()
        return tuple(items)

    def parse_list_item(self) -> LiteralValue:
        token = self.current
        if token.kind not in _LITERAL_KINDS:
            raise self.unexpected(token, "a literal list item")
        self.advance()
        return token.value

    def parse_operand(self) -> _Node:
        token = self.current
        if token.kind in _LITERAL_KINDS:
            self.advance()
            return Literal(token.value)
        if token.kind == "ref":
            self.advance()
            return Reference(token.value)
        if token.kind == "(":
            self.advance()
            with self.nested(token):
                node = self.parse_or()
            if self.current.kind != ")":
                raise self.unexpected(self.current, "')'")
            self.advance()
            return node
        if token.kind == "name":
            if self.peek().kind == "(":
                return self.parse_call()
            if token.text.lower() in _KEYWORDS:
                hint = "keywords are lowercase"
            else:
                hint = "question references start with '$'"
            raise RelevanceError(f"unknown name '{token.text}' ({hint})", token.position)
        if token.kind == "[":
            raise RelevanceError("list literals are only allowed after 'in'", token.position)
        raise self.unexpected(token, "a value")

    def parse_call(self) -> Call:
        name = self.advance()
        if name.text not in _FUNCTIONS:
            hint = " (function names are lowercase)" if name.text.lower() in _FUNCTIONS else ""
            raise RelevanceError(f"unknown function '{name.text}'{hint}", name.position)
        self.advance()  # "("
        args: list[_Token] = []
        if self.current.kind != ")":
            args.append(self.parse_argument(name.text))
            while self.current.kind == ",":
                self.advance()
                args.append(self.parse_argument(name.text))
        closing = self.current
        if closing.kind != ")":
            raise self.unexpected(closing, "',' or ')'")
        self.advance()

        function = _FUNCTION_ALIASES.get(name.text, name.text)
        wanted = 2 if function == "selected" else 1
        if len(args) != wanted:
            position = args[wanted].position if len(args) > wanted else closing.position
            plural = "s" if wanted > 1 else ""
            message = f"{name.text}() takes exactly {wanted} argument{plural} ({len(args)} given)"
            raise RelevanceError(message, position)
        if args[0].kind != "ref":
            raise RelevanceError(
                f"{name.text}() expects a $reference, not {args[0].describe()}", args[0].position
            )
        if function != "selected":
            return Call(function, Reference(args[0].value))
        if args[1].kind != "string":
            raise RelevanceError(
                f"selected() expects a string value, not {args[1].describe()}", args[1].position
            )
        return Call(name.text, Reference(args[0].value), args[1].value)

    def parse_argument(self, function: str) -> _Token:
        token = self.current
        if token.kind != "ref" and token.kind not in _LITERAL_KINDS:
            raise self.unexpected(token, f"a $reference or literal as argument of {function}()")
        self.advance()
        return token


def parse(source: str) -> Expression:
    """Parse a relevance expression, raising :class:`RelevanceError` if it is malformed."""
    if not isinstance(source, str):
        raise TypeError(f"relevance expression must be a string, not {type(source).__name__}")
    if len(source) > MAX_LENGTH:
        raise RelevanceError(f"expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    return Expression(source, _Parser(source).parse())
