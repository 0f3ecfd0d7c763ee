"""Read a .qdc codebook or a .qdpx project (from any QDA tool) into ``refi_model`` dataclasses.

Everything here treats its input as hostile:
- XML is parsed only by defusedxml (no DTDs, no entities, no external references), then validated
  against the standard's schema (``refi_schemas/``) with xmlschema; every problem is reported with
  the element's path and line, and nothing is returned from an invalid document;
- a .qdpx is opened from memory, never extracted: member names that would escape the archive
  (absolute, ``..``, drive letters, backslashes) are refused, and the number of members, each
  member's size and the total are capped while reading (a zip bomb stops at the cap, whatever its
  headers claim).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any
from xml.etree import ElementTree as ET

import xmlschema
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from surveykit.analysis.refi_model import (
    CODEBOOK_NAMESPACE,
    PROJECT_NAMESPACE,
    Case,
    Code,
    Codebook,
    Coding,
    Note,
    Project,
    Selection,
    Source,
    User,
    Variable,
)
from surveykit.analysis.refi_write import PROJECT_FILE

MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_PROBLEMS = 50
# Far deeper than any codebook tree; a deeper document would only exhaust the validator's stack.
MAX_DEPTH = 64
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


class RefiError(Exception):
    """The file is not a usable REFI-QDA file; ``problems`` say where and why."""

    def __init__(self, message: str, problems: list[Problem]) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems


@cache
def schema(namespace: str) -> xmlschema.XMLSchema:
    name = "Project.xsd" if namespace == PROJECT_NAMESPACE else "Codebook.xsd"
    with resources.as_file(resources.files("surveykit.analysis") / "refi_schemas" / name) as path:
        return xmlschema.XMLSchema(str(path))


# --------------------------------------------------------------------------------------------- XML


class _LineRecorder(ET.TreeBuilder):
    """A tree builder that remembers the line each element starts on."""

    def __init__(self) -> None:
        super().__init__()
        self.parser: Any = None
        self.lines: dict[ET.Element, int] = {}
        self.depth = 0
        self.deepest: tuple[int, int] = (0, 0)  # depth, line

    def start(self, tag: Any, attrs: Any) -> ET.Element:
        element = super().start(tag, attrs)
        line = self.parser.parser.CurrentLineNumber
        self.lines[element] = line
        self.depth += 1
        if self.depth > self.deepest[0]:
            self.deepest = (self.depth, line)
        return element

    def end(self, tag: Any) -> ET.Element:
        self.depth -= 1
        return super().end(tag)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _paths(root: ET.Element) -> dict[ET.Element, str]:
    """Each element's path, with 1-based positions among same-named siblings.

    For example ``/Project/Sources[1]/TextSource[2]``.
    """
    found = {root: f"/{_local(root.tag)}"}
    pending = [root]
    while pending:
        parent = pending.pop()
        seen: dict[str, int] = {}
        for child in parent:
            name = _local(child.tag)
            seen[name] = seen.get(name, 0) + 1
            found[child] = f"{found[parent]}/{name}[{seen[name]}]"
            pending.append(child)
    return found


def parse_document(data: bytes, namespace: str, root_name: str, where: str) -> ET.Element:
    """Parse and validate one REFI-QDA XML document; raise ``RefiError`` naming each problem."""
    recorder = _LineRecorder()
    parser = DefusedXMLParser(target=recorder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    recorder.parser = parser
    try:
        parser.feed(data)
        root = parser.close()
    except DefusedXmlException as exc:
        raise RefiError(
            f"{where} uses a DTD or entities, which REFI-QDA files never need", [Problem(where, str(exc))]
        ) from exc
    except ET.ParseError as exc:
        line, column = exc.position
        raise RefiError(
            f"{where} is not well-formed XML", [Problem(f"{where}:{line}:{column}", str(exc))]
        ) from exc
    depth, line = recorder.deepest
    if depth > MAX_DEPTH:
        raise RefiError(
            f"{where} nests elements {depth} deep; at most {MAX_DEPTH} are read",
            [Problem(f"{where}:{line}", "nested too deep")],
        )
    expected = f"{{{namespace}}}{root_name}"
    if root.tag != expected:
        found_ns, _, found_name = (
            root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
        )
        raise RefiError(
            f"{where} must have the root element {root_name} in the namespace {namespace}",
            [
                Problem(
                    f"{where}:/{found_name}",
                    f"found {found_name} in the namespace {found_ns or '(none)'}",
                )
            ],
        )
    paths = _paths(root)
    problems = []
    for error in schema(namespace).iter_errors(root):
        element = getattr(error, "elem", None)
        path = paths.get(element, error.path or "/") if element is not None else (error.path or "/")
        line = recorder.lines.get(element) if element is not None else None
        at = f"{where}:{path}" + (f" (line {line})" if line else "")
        problems.append(Problem(at, error.reason or str(error.message)))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise RefiError(f"{where} is not valid against the REFI-QDA schema", problems)
    return root


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _guid(value: str) -> str:
    # The standard allows braces and either case; surveykit's guids are bare lower-case.
    return value.strip().strip("{}").lower()


def _text(node: ET.Element, namespace: str, name: str) -> str:
    child = node.find(_q(namespace, name))
    return (child.text or "") if child is not None else ""


def _codes(node: ET.Element, namespace: str) -> list[Code]:
    codes = []
    for element in node.findall(_q(namespace, "Code")):
        codes.append(
            Code(
                guid=_guid(element.get("guid", "")),
                name=element.get("name", ""),
                color=element.get("color"),
                description=_text(element, namespace, "Description"),
                codable=element.get("isCodable") in ("true", "1"),
                children=_codes(element, namespace),
            )
        )
    return codes


def read_qdc(data: bytes) -> Codebook:
    root = parse_document(data, CODEBOOK_NAMESPACE, "CodeBook", "codebook")
    codes = root.find(_q(CODEBOOK_NAMESPACE, "Codes"))
    assert codes is not None  # the schema requires it
    return Codebook(codes=_codes(codes, CODEBOOK_NAMESPACE), origin=root.get("origin", ""))


# --------------------------------------------------------------------------------------------- zip


def _member_name_problem(name: str) -> str | None:
    if name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/", 1)[0]:
        return "an absolute path or a drive"
    if any(part == ".." for part in name.split("/")):
        return "a path that leaves the archive (..)"
    if "\x00" in name:
        return "a NUL character"
    return None


class _Archive:
    """The members of an uploaded .qdpx, read within the caps."""

    def __init__(self, data: bytes) -> None:
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, ValueError) as exc:
            raise RefiError(
                "the upload is not a .qdpx: not a zip archive", [Problem("archive", str(exc) or "not a zip")]
            ) from exc
        members = self.zip.infolist()
        if len(members) > MAX_MEMBERS:
            raise RefiError(
                f"the archive has {len(members)} members; at most {MAX_MEMBERS} are read",
                [Problem("archive", "too many members")],
            )
        problems = [
            Problem(f"archive:{info.filename}", f"refused: {reason}")
            for info in members
            if (reason := _member_name_problem(info.filename)) is not None
        ]
        if problems:
            raise RefiError("the archive has member paths that escape it", problems[:MAX_PROBLEMS])
        self.by_name = {info.filename: info for info in members if not info.is_dir()}
        self.by_folded = {name.casefold(): info for name, info in self.by_name.items()}
        self.total = 0

    def read(self, name: str) -> bytes | None:
        info = self.by_name.get(name) or self.by_folded.get(name.casefold())
        if info is None:
            return None
        chunks = []
        size = 0
        try:
            with self.zip.open(info) as member:
                while chunk := member.read(_CHUNK):
                    size += len(chunk)
                    self.total += len(chunk)
                    if size > MAX_MEMBER_BYTES or self.total > MAX_TOTAL_BYTES:
                        raise RefiError(
                            "the archive unpacks to more than surveykit reads",
                            [
                                Problem(
                                    f"archive:{info.filename}", "member or archive too large when unpacked"
                                )
                            ],
                        )
                    chunks.append(chunk)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            raise RefiError(
                "the archive is damaged or uses an unsupported feature",
                [Problem(f"archive:{info.filename}", str(exc))],
            ) from exc
        return b"".join(chunks)


def _source_text(archive: _Archive, element: ET.Element, where: str) -> str:
    inline = element.find(_q(PROJECT_NAMESPACE, "PlainTextContent"))
    if inline is not None:
        return inline.text or ""
    path = element.get("plainTextPath") or ""
    if not path.startswith("internal://"):
        raise RefiError(
            "a text source's text is not inside the archive",
            [
                Problem(
                    where, f"plainTextPath {path!r} is not internal://<file> (external files are not read)"
                )
            ],
        )
    file_name = path.removeprefix("internal://")
    problem = _member_name_problem(file_name)
    if problem is not None or "/" in file_name:
        raise RefiError("a text source's path escapes the archive", [Problem(where, f"refused: {path!r}")])
    raw = archive.read(f"sources/{file_name}")
    if raw is None:
        raise RefiError(
            "a text source's file is missing", [Problem(where, f"no sources/{file_name} in the archive")]
        )
    try:
        # Plain UTF-8, never "utf-8-sig": an answer may itself begin with U+FEFF (text pasted from
        # Windows files), and stripping it would move every offset of the source by one.
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefiError("a text source is not UTF-8", [Problem(where, str(exc))]) from exc


def read_qdpx(data: bytes) -> Project:
    archive = _Archive(data)
    raw = archive.read(PROJECT_FILE)
    if raw is None:
        raise RefiError("the archive has no project.qde", [Problem(f"archive:{PROJECT_FILE}", "missing")])
    root = parse_document(raw, PROJECT_NAMESPACE, "Project", PROJECT_FILE)
    ns = PROJECT_NAMESPACE
    paths = _paths(root)
    project = Project(name=root.get("name", ""), description=_text(root, ns, "Description"))
    for user in root.iterfind(f"{_q(ns, 'Users')}/{_q(ns, 'User')}"):
        project.users.append(User(_guid(user.get("guid", "")), user.get("name", "")))
    codebook = root.find(f"{_q(ns, 'CodeBook')}/{_q(ns, 'Codes')}")
    if codebook is not None:
        project.codes = _codes(codebook, ns)
    for variable in root.iterfind(f"{_q(ns, 'Variables')}/{_q(ns, 'Variable')}"):
        project.variables.append(
            Variable(
                _guid(variable.get("guid", "")), variable.get("name", ""), _text(variable, ns, "Description")
            )
        )
    for element in root.iterfind(f"{_q(ns, 'Cases')}/{_q(ns, 'Case')}"):
        case = Case(
            _guid(element.get("guid", "")), element.get("name", ""), _text(element, ns, "Description")
        )
        for value in element.iterfind(_q(ns, "VariableValue")):
            ref = value.find(_q(ns, "VariableRef"))
            held = value.find(_q(ns, "TextValue"))
            if ref is not None and held is not None:
                case.values[_guid(ref.get("targetGUID", ""))] = held.text or ""
        case.source_guids = [_guid(r.get("targetGUID", "")) for r in element.iterfind(_q(ns, "SourceRef"))]
        case.selection_guids = [
            _guid(r.get("targetGUID", "")) for r in element.iterfind(_q(ns, "SelectionRef"))
        ]
        project.cases.append(case)
    for element in root.iterfind(f"{_q(ns, 'Sources')}/{_q(ns, 'TextSource')}"):
        source = Source(
            guid=_guid(element.get("guid", "")),
            name=element.get("name", ""),
            text=_source_text(archive, element, f"{PROJECT_FILE}:{paths[element]}"),
            description=_text(element, ns, "Description"),
        )
        for chosen in element.iterfind(_q(ns, "PlainTextSelection")):
            selection = Selection(
                guid=_guid(chosen.get("guid", "")),
                start=int(chosen.get("startPosition", "0")),
                end=int(chosen.get("endPosition", "0")),
                name=chosen.get("name", ""),
                description=_text(chosen, ns, "Description"),
                creating_user=_guid(chosen.get("creatingUser", "")) or None,
                created_at=_when(chosen.get("creationDateTime")),
            )
            for coding in chosen.iterfind(_q(ns, "Coding")):
                ref = coding.find(_q(ns, "CodeRef"))
                selection.codings.append(
                    Coding(
                        guid=_guid(coding.get("guid", "")),
                        code_guid=_guid(ref.get("targetGUID", "")) if ref is not None else "",
                        creating_user=_guid(coding.get("creatingUser", "")) or None,
                        created_at=_when(coding.get("creationDateTime")),
                    )
                )
            selection.note_guids = [
                _guid(r.get("targetGUID", "")) for r in chosen.iterfind(_q(ns, "NoteRef"))
            ]
            source.selections.append(selection)
        project.sources.append(source)
    for element in root.iterfind(f"{_q(ns, 'Notes')}/{_q(ns, 'Note')}"):
        project.notes.append(
            Note(
                _guid(element.get("guid", "")),
                element.get("name", ""),
                _text(element, ns, "PlainTextContent"),
            )
        )
    return project


def selection_path(source_index: int, selection_index: int) -> str:
    """Where a selection sits in ``project.qde``, for problems found after reading."""
    source = f"/Project/Sources[1]/TextSource[{source_index + 1}]"
    return f"{PROJECT_FILE}:{source}/PlainTextSelection[{selection_index + 1}]"
