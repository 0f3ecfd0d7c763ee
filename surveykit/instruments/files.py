"""Instrument files as they arrive (YAML, JSON, XLSX), turned into raw definition data.

YAML is read as YAML 1.2 (``no``, ``yes``, ``on`` and ``off`` stay text) with ruamel.yaml, keeping
the line and column of every mapping key and sequence item, so a problem found later by
``services.validate_definition`` under a path such as ``sections[0].questions[2].relevance`` can
name the line it is on. JSON is parsed by the standard library; its positions are worked out only
when a problem needs one (JSON is YAML 1.2 flow syntax, so the same position reader serves).

Formats other than YAML and JSON are read by readers registered in ``READERS`` (the XLSForm
reader plugs in under ``"xlsx"``); each answers ``(raw definition or None, problems)``, where a
problem is a dict with a ``message`` and its place (``sheet``, ``row``, ``column``).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

YAML_TYPES = frozenset({"application/yaml", "text/yaml", "application/x-yaml"})
JSON_TYPES = frozenset({"application/json"})
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMAT_BY_TYPE = {
    **{media_type: "yaml" for media_type in YAML_TYPES},
    **{media_type: "json" for media_type in JSON_TYPES},
    XLSX_TYPE: "xlsx",
}
FORMAT_BY_SUFFIX = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".xlsx": "xlsx"}
# Content types a browser or curl gives a file part it does not know: decide by the file name.
GENERIC_TYPES = frozenset({"", "application/octet-stream", "text/plain"})

# Anchors and aliases let a tiny file stand for a huge tree ("billion laughs"); an instrument has a
# few thousand nodes, so the expanded tree is capped well above that.
MAX_NODES = 200_000
MAX_DEPTH = 64
# ruamel.yaml reads about 130 KB a second here (pure Python, and its C reader knows only YAML 1.1);
# an instrument file is 20-60 KB. Larger YAML is refused rather than tying up a worker, and JSON
# beyond this size is reported by path only (its positions would take as long to find).
MAX_YAML_BYTES = 1024 * 1024

TOO_DEEP = f"the file nests deeper than {MAX_DEPTH} levels"
NOT_A_MAPPING = "the file must hold a mapping (slug, title, sections, ...)"

Problem = dict[str, Any]
Reader = Callable[[bytes], tuple[dict[str, Any] | None, list[Problem]]]


# Readers of binary formats, by format name. Importing ``surveykit.instruments.xlsform`` (the API's
# views do) plugs the XLSForm reader in under ``"xlsx"``; without it an XLSX upload is an
# unsupported type.
READERS: dict[str, Reader] = {}


class UnsupportedFileType(ValueError):
    """A file in a format no reader handles (HTTP 415)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FileTooLarge(ValueError):
    """A YAML file beyond what is read with positions in reasonable time (HTTP 413)."""

    def __init__(self, size: int) -> None:
        self.message = (
            f"a YAML instrument file may hold at most {MAX_YAML_BYTES} bytes, this one has {size}; "
            "send it as JSON if it really is this large"
        )
        super().__init__(self.message)


class UnreadableFile(ValueError):
    """A file that cannot be parsed at all: not UTF-8, malformed YAML or JSON, empty, not a mapping."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(describe(problem) for problem in problems))


def describe(problem: Problem) -> str:
    """One problem as ``line 3, column 5: path: message`` (or by sheet and row)."""
    where = []
    if problem.get("sheet"):
        where.append(f"sheet {problem['sheet']}")
    if problem.get("row"):
        where.append(f"row {problem['row']}")
    if problem.get("line"):
        where.append(f"line {problem['line']}")
    if problem.get("column"):
        where.append(f"column {problem['column']}")
    head = ", ".join(where)
    path = problem.get("path") or ""
    parts = [part for part in (head, path) if part]
    return ": ".join([*parts, problem["message"]])


def supported_types() -> list[str]:
    """The content types an upload may have now (XLSX only once its reader is registered)."""
    return sorted(t for t, fmt in FORMAT_BY_TYPE.items() if fmt in ("yaml", "json") or fmt in READERS)


# ---------------------------------------------------------------------------------------------
# Positions


@dataclass
class SourceMap:
    """Where each part of a parsed file was: path (``sections[0].questions[2]``) -> (line, column),
    both 1-based. ``text`` is kept for a JSON file, whose positions are only worked out when asked."""

    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    text: str | None = None

    def _ensure(self) -> None:
        if self.text is not None:
            text, self.text = self.text, None
            if len(text) > MAX_YAML_BYTES:
                return
            try:
                _, self.positions = parse_yaml(text)
            except Exception:  # best effort: valid JSON that YAML 1.2 cannot read
                self.positions = {}  # paths only

    def locate(self, path: str, message: str = "") -> tuple[int, int] | None:
        """The line and column of ``path``, or of the closest enclosing part that the file has
        (a missing field is reported where its mapping starts). For an unknown key named in
        ``message``, the key itself."""
        self._ensure()
        if message.startswith("Unrecognized keys"):
            for key in re.findall(r"'([^']*)':", message):
                found = self.positions.get(f"{path}.{key}" if path else key)
                if found:
                    return found
        while True:
            found = self.positions.get(path)
            if found is not None or not path:
                return found
            path = _parent(path)


def _parent(path: str) -> str:
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path.rpartition(".")[0]


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_yaml(text: str) -> tuple[Any, dict[str, tuple[int, int]]]:
    """YAML 1.2 text -> (plain Python data, positions); raises UnreadableFile with the line."""
    loader = YAML(typ="rt")
    loader.version = (1, 2)
    try:
        document = loader.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        raise UnreadableFile([_syntax_problem(f"malformed YAML: {problem}", mark)]) from exc
    except YAMLError as exc:
        raise UnreadableFile(
            [{"path": "", "message": f"malformed YAML: {' '.join(str(exc).split())}"}]
        ) from exc
    except RecursionError as exc:
        raise UnreadableFile([{"path": "", "message": TOO_DEEP}]) from exc
    positions: dict[str, tuple[int, int]] = {}
    data = _plain(document, "", positions, [0], 0)
    return data, positions


def _syntax_problem(message: str, mark: Any) -> Problem:
    if mark is None:
        return {"path": "", "message": message}
    line, column = mark.line + 1, mark.column + 1
    return {
        "path": "",
        "message": f"{message} at line {line} column {column}",
        "line": line,
        "column": column,
    }


def _plain(node: Any, path: str, positions: dict[str, tuple[int, int]], count: list[int], depth: int) -> Any:
    """ruamel's round-trip node -> plain dict/list/str/int/float, recording positions by path."""
    count[0] += 1
    if count[0] > MAX_NODES or depth > MAX_DEPTH:
        raise UnreadableFile(
            [
                {
                    "path": path,
                    "message": f"the file expands to more than {MAX_NODES} values or "
                    f"{MAX_DEPTH} levels (anchors and aliases included)",
                }
            ]
        )
    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            if not isinstance(key, str | int | float | bool) or key is None:
                where = _key_position(node, key)
                raise UnreadableFile(
                    [_syntax_problem(f"a key must be text, not {type(key).__name__}", _Mark(*where))]
                )
            name = str(key) if not isinstance(key, bool) else ("true" if key else "false")
            child = f"{path}.{name}" if path else name
            line, column = _key_position(node, key)
            positions[child] = (line + 1, column + 1)
            out[_scalar(key, child)] = _plain(value, child, positions, count, depth + 1)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = f"{path}[{index}]"
            line, column = node.lc.item(index)
            positions[child] = (line + 1, column + 1)
            items.append(_plain(value, child, positions, count, depth + 1))
        return items
    return _scalar(node, path)


def _key_position(node: CommentedMap, key: Any) -> tuple[int, int]:
    try:
        return node.lc.key(key)
    except (KeyError, TypeError):
        # A key brought in by a merge (<<: *anchor) has no position of its own in this mapping.
        return node.lc.line, node.lc.col


@dataclass(frozen=True)
class _Mark:
    line: int
    column: int


def _scalar(value: Any, path: str) -> Any:
    # ruamel keeps the spelling of scalars in subclasses (ScalarInt, ScalarFloat, quoted strings);
    # the definition must hold plain values, as JSON gives. Dates stay dates (the schema refuses
    # them where text is expected); tagged values, binary data and sets have no place in a definition.
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime.date):
        return value
    tag = getattr(getattr(value, "tag", None), "value", None)
    kind = f"a value tagged {tag}" if tag else f"a YAML {type(value).__name__}"
    raise UnreadableFile([{"path": path, "message": f"{kind} cannot be part of an instrument definition"}])


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str) -> tuple[Any, SourceMap]:
    """JSON text -> (data, a SourceMap that finds positions when asked); raises UnreadableFile."""

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            key = next(key for key, _ in pairs if key in seen or seen.add(key))
            raise ValueError(f"the key {key!r} appears more than once in one object")
        return obj

    try:
        data = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as exc:
        raise UnreadableFile(
            [
                {
                    "path": "",
                    "message": f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                    "line": exc.lineno,
                    "column": exc.colno,
                }
            ]
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise UnreadableFile([{"path": "", "message": f"malformed JSON: {exc}"}]) from exc
    return data, SourceMap(text=text)


def decode_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile([{"path": "", "message": f"not UTF-8 text (byte {exc.start})"}]) from exc
    return text.removeprefix("\ufeff")


def parse_text(text: str, fmt: str) -> tuple[Any, SourceMap]:
    """YAML or JSON text -> (data, source map)."""
    if fmt == "json":
        return parse_json(text)
    data, positions = parse_yaml(text)
    return data, SourceMap(positions)


# ---------------------------------------------------------------------------------------------
# Uploads


@dataclass
class InstrumentFile:
    """An uploaded file read into raw definition data (not yet validated). ``problems`` come from
    a registered reader (XLSX: by sheet, row and column); ``source_map`` locates paths in YAML/JSON."""

    format: str
    definition: dict[str, Any] | None
    problems: list[Problem]
    source_map: SourceMap | None = None


def file_format(content_type: str | None, filename: str | None = None) -> str:
    """``yaml``, ``json`` or ``xlsx`` from a content type, else from the file name's suffix."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in FORMAT_BY_TYPE:
        return FORMAT_BY_TYPE[media_type]
    if media_type in GENERIC_TYPES and filename:
        suffix = PurePath(filename).suffix.lower()
        if suffix in FORMAT_BY_SUFFIX:
            return FORMAT_BY_SUFFIX[suffix]
    shown = media_type or "none"
    named = f" (file {filename!r})" if filename else ""
    raise UnsupportedFileType(
        f"unsupported content type {shown}{named}; send one of {', '.join(supported_types())}"
    )


def read_instrument_file(
    data: bytes, content_type: str | None, filename: str | None = None
) -> InstrumentFile:
    """Read an uploaded instrument file. Raises UnsupportedFileType (no reader for its format),
    FileTooLarge (YAML over MAX_YAML_BYTES) or UnreadableFile (empty, not UTF-8, malformed, not a
    mapping)."""
    fmt = file_format(content_type, filename)
    if fmt not in ("yaml", "json"):
        reader = READERS.get(fmt)
        if reader is None:
            raise UnsupportedFileType(
                f"{fmt.upper()} files cannot be read by this server yet; send one of "
                f"{', '.join(supported_types())}"
            )
        if not data:
            raise UnreadableFile([{"path": "", "message": "the file is empty"}])
        definition, problems = reader(data)
        return InstrumentFile(fmt, definition, problems)
    if fmt == "yaml" and len(data) > MAX_YAML_BYTES:
        raise FileTooLarge(len(data))
    text = decode_text(data)
    if not text.strip():
        raise UnreadableFile([{"path": "", "message": "the file is empty"}])
    raw, source_map = parse_text(text, fmt)
    if not isinstance(raw, dict):
        raise UnreadableFile(
            [{"path": "", "message": "the file must hold a mapping (slug, title, sections, ...)"}]
        )
    return InstrumentFile(fmt, raw, [], source_map)
