"""The one rule every piece of text the service accepts must obey, whatever brought it in.

Refused everywhere: NUL (PostgreSQL cannot store it), lone surrogates (they have no UTF-8 form) and
the C0 and C1 control characters, DEL included (they hide or rewrite text on a terminal and make a
workbook cell unreadable). Tab, line feed and carriage return are allowed where text may run over
several lines: the free text of a body (answers, notes, quotes, prompts, descriptions). They are
refused where text is one line: identifiers, names, labels, codes, tokens, registry fields, JSON
object keys, and everything in a URL (path segments and query string).

HTTP bodies are checked centrally (``surveykit.web.json_body``), URLs by a subscriber before any
route factory reads them (``surveykit.web.refuse_unusable_url_text``); colander schemas apply the
same rule through ``StrictString``/``TranslatableText`` and ``TextRule``, so instrument files
published from the command line and imported sheets obey it too.
"""

from __future__ import annotations

import re
from typing import Any

import colander

LINE_BREAKS_AND_TAB = "\t\n\r"
_REFUSED_IN_MULTI_LINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_REFUSED_IN_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

Problem = tuple[str, str]


def refused_character(text: str, *, multiline: bool = False) -> str | None:
    """The first character of ``text`` the rule refuses, or None."""
    match = (_REFUSED_IN_MULTI_LINE if multiline else _REFUSED_IN_ONE_LINE).search(text)
    return None if match is None else match.group()


def describe(char: str) -> str:
    code = f"U+{ord(char):04X}"
    if char == "\x00":
        return f"contains a NUL character ({code})"
    if "\ud800" <= char <= "\udfff":
        return f"contains a lone surrogate ({code}), which is not text"
    if char in LINE_BREAKS_AND_TAB:
        return f"contains a line break or tab ({code}); it must be one line"
    return f"contains the control character {code}"


def text_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why ``text`` is refused, or None when the rule allows it."""
    char = refused_character(text, multiline=multiline)
    return None if char is None else describe(char)


def printable(text: str) -> str:
    """``text`` with every refused character written as ``\\uXXXX``: safe to echo in a message."""
    return _REFUSED_IN_ONE_LINE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def json_path(prefix: str, key: Any) -> str:
    """``changes[0]`` + ``record`` -> ``changes[0].record``; an index when ``key`` is an int."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    name = printable(str(key))
    return f"{prefix}.{name}" if prefix else name


def tree_problems(value: Any, path: str = "", limit: int = 50) -> list[Problem]:
    """Every string in JSON-like data the rule refuses, as (path, message): keys must be one line,
    string values may run over several lines. Stops after ``limit`` problems."""
    problems: list[Problem] = []

    def walk(item: Any, where: str) -> None:
        if len(problems) >= limit:
            return
        if isinstance(item, str):
            if message := text_problem(item, multiline=True):
                problems.append((where, message))
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = json_path(where, key)
                if isinstance(key, str) and (message := text_problem(key)):
                    problems.append((child_path, f"the key {message}"))
                    continue
                walk(child, child_path)
        elif isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, json_path(where, index))

    walk(value, path)
    return problems


class TextRule:
    """colander validator: the text rule, for one-line text unless ``multiline``."""

    def __init__(self, *, multiline: bool = False) -> None:
        self.multiline = multiline

    def __call__(self, node: colander.SchemaNode, value: Any) -> None:
        if isinstance(value, str) and (message := text_problem(value, multiline=self.multiline)):
            raise colander.Invalid(node, message)
