"""Write a ``refi_model.Project`` as a .qdpx (zip) and a ``Codebook`` as a .qdc, valid against the
standard's schemas (``refi_schemas/``).

The output is deterministic: the same project gives the same bytes (no clock in the XML, fixed
times in the zip), so its hash can serve as an ETag.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO
from xml.etree import ElementTree as ET

from surveykit.analysis.refi_model import (
    CODEBOOK_NAMESPACE,
    ORIGIN,
    PROJECT_NAMESPACE,
    Case,
    Code,
    Codebook,
    Note,
    Project,
    Selection,
    Source,
)

PROJECT_FILE = "project.qde"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# Characters XML 1.0 cannot carry at all; they are replaced rather than written into a file no
# reader would open.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _when(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _Builder:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def element(self, parent: ET.Element | None, local: str, /, **attributes: str | None) -> ET.Element:
        attrs = {key: _clean(value) for key, value in attributes.items() if value is not None}
        if parent is None:
            # ElementTree cannot write a default namespace beside unqualified attributes, so the
            # root declares it itself and every tag stays unprefixed.
            return ET.Element(local, {"xmlns": self.namespace, **attrs})
        return ET.SubElement(parent, local, attrs)

    def text(self, parent: ET.Element, local: str, value: str) -> None:
        self.element(parent, local).text = _clean(value)


def _codes(builder: _Builder, parent: ET.Element, codes: list[Code]) -> None:
    for code in codes:
        node = builder.element(
            parent,
            "Code",
            guid=code.guid,
            name=code.name,
            isCodable="true" if code.codable else "false",
            color=code.color,
        )
        if code.description:
            builder.text(node, "Description", code.description)
        _codes(builder, node, code.children)


def _selection(builder: _Builder, parent: ET.Element, selection: Selection) -> None:
    node = builder.element(
        parent,
        "PlainTextSelection",
        guid=selection.guid,
        name=selection.name or None,
        startPosition=str(selection.start),
        endPosition=str(selection.end),
        creatingUser=selection.creating_user,
        creationDateTime=_when(selection.created_at) if selection.created_at else None,
    )
    if selection.description:
        builder.text(node, "Description", selection.description)
    for coding in selection.codings:
        coded = builder.element(
            node,
            "Coding",
            guid=coding.guid,
            creatingUser=coding.creating_user,
            creationDateTime=_when(coding.created_at) if coding.created_at else None,
        )
        builder.element(coded, "CodeRef", targetGUID=coding.code_guid)
    for note_guid in selection.note_guids:
        builder.element(node, "NoteRef", targetGUID=note_guid)


def _source(builder: _Builder, parent: ET.Element, source: Source) -> None:
    node = builder.element(
        parent,
        "TextSource",
        guid=source.guid,
        name=source.name,
        plainTextPath=f"internal://{source.guid}.txt",
    )
    if source.description:
        builder.text(node, "Description", source.description)
    for selection in source.selections:
        _selection(builder, node, selection)


def _case(builder: _Builder, parent: ET.Element, case: Case) -> None:
    node = builder.element(parent, "Case", guid=case.guid, name=case.name)
    if case.description:
        builder.text(node, "Description", case.description)
    for variable_guid, value in case.values.items():
        held = builder.element(node, "VariableValue")
        builder.element(held, "VariableRef", targetGUID=variable_guid)
        builder.text(held, "TextValue", value)
    for source_guid in case.source_guids:
        builder.element(node, "SourceRef", targetGUID=source_guid)
    for selection_guid in case.selection_guids:
        builder.element(node, "SelectionRef", targetGUID=selection_guid)


def _note(builder: _Builder, parent: ET.Element, note: Note) -> None:
    node = builder.element(parent, "Note", guid=note.guid, name=note.name)
    builder.text(node, "PlainTextContent", note.text)


def project_xml(project: Project) -> bytes:
    """The ``project.qde`` document."""
    b = _Builder(PROJECT_NAMESPACE)
    root = b.element(None, "Project", name=project.name, origin=ORIGIN)
    if project.users:
        users = b.element(root, "Users")
        for user in project.users:
            b.element(users, "User", guid=user.guid, name=user.name)
    if project.codes:
        codes = b.element(b.element(root, "CodeBook"), "Codes")
        _codes(b, codes, project.codes)
    if project.variables:
        variables = b.element(root, "Variables")
        for variable in project.variables:
            node = b.element(
                variables, "Variable", guid=variable.guid, name=variable.name, typeOfVariable="Text"
            )
            if variable.description:
                b.text(node, "Description", variable.description)
    if project.cases:
        cases = b.element(root, "Cases")
        for case in project.cases:
            _case(b, cases, case)
    if project.sources:
        sources = b.element(root, "Sources")
        for source in project.sources:
            _source(b, sources, source)
    if project.notes:
        notes = b.element(root, "Notes")
        for note in project.notes:
            _note(b, notes, note)
    if project.description:
        b.text(root, "Description", project.description)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def codebook_xml(codebook: Codebook) -> bytes:
    """A ``.qdc`` document."""
    b = _Builder(CODEBOOK_NAMESPACE)
    root = b.element(None, "CodeBook", origin=codebook.origin)
    _codes(b, b.element(root, "Codes"), codebook.codes)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def write_qdpx(project: Project, out: io.BufferedIOBase | io.BytesIO) -> None:
    """The .qdpx archive: ``project.qde`` first, then each source's UTF-8 text."""
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(_entry(PROJECT_FILE), project_xml(project))
        for source in project.sources:
            archive.writestr(_entry(source.path), source.text.encode("utf-8"))


def qdpx_bytes(project: Project) -> bytes:
    buffer = io.BytesIO()
    write_qdpx(project, buffer)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- streamed
# A project too large to hold: its cases, sources and notes arrive a few at a time, are written as
# XML at once into spool files (and the source texts beside them), and ``project.qde`` is put
# together from the spools when the project's head (users, description) is known. Each element is
# serialised by ElementTree exactly as ``project_xml`` does, indented for its depth, so the bytes
# are the same as the in-memory writer's.

_INDENT = "  "
_SECTION_ITEM_LEVEL = 2  # Project > Cases > Case
_LENGTH = struct.Struct(">Q")
_COPY_CHUNK = 1 << 20


@dataclass
class ProjectPart:
    """What one unit (an interview) adds to a project."""

    cases: list[Case] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def _fragment(add: Callable[[ET.Element], None], level: int) -> bytes:
    holder = ET.Element("holder")
    add(holder)
    (node,) = holder
    ET.indent(node, space=_INDENT, level=level)
    return ET.tostring(node, encoding="unicode").encode("utf-8")


def _start_tag(namespace: str, local: str, **attributes: str) -> bytes:
    empty = ET.tostring(_Builder(namespace).element(None, local, **attributes), encoding="unicode")
    return (empty.removesuffix(" />") + ">").encode("utf-8")


class _Spool:
    """Length-prefixed records in a temporary file, read back in the order written."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="surveykit-qdpx-")
        self.count = 0

    def add(self, *fields: bytes) -> None:
        for value in fields:
            self.file.write(_LENGTH.pack(len(value)))
            self.file.write(value)
        self.count += 1

    def records(self, width: int = 1) -> Iterator[list[bytes]]:
        self.file.seek(0)
        for _ in range(self.count):
            yield [self.file.read(_LENGTH.unpack(self.file.read(_LENGTH.size))[0]) for _ in range(width)]

    def close(self) -> None:
        self.file.close()


def _write_project_xml(out: IO[bytes], head: Project, sections: list[tuple[str, _Spool]]) -> None:
    b = _Builder(PROJECT_NAMESPACE)
    children: list[Callable[[], Iterator[bytes]]] = []

    def whole(add: Callable[[ET.Element], None]) -> Callable[[], Iterator[bytes]]:
        return lambda: iter((_fragment(add, 1),))

    def spooled(local: str, spool: _Spool) -> Callable[[], Iterator[bytes]]:
        def parts() -> Iterator[bytes]:
            yield f"<{local}>".encode()
            for (item,) in spool.records():
                yield f"\n{_INDENT * _SECTION_ITEM_LEVEL}".encode() + item
            yield f"\n{_INDENT}</{local}>".encode()

        return parts

    def users(root: ET.Element) -> None:
        node = b.element(root, "Users")
        for user in head.users:
            b.element(node, "User", guid=user.guid, name=user.name)

    def variables(root: ET.Element) -> None:
        node = b.element(root, "Variables")
        for variable in head.variables:
            held = b.element(node, "Variable", guid=variable.guid, name=variable.name, typeOfVariable="Text")
            if variable.description:
                b.text(held, "Description", variable.description)

    if head.users:
        children.append(whole(users))
    if head.codes:
        children.append(
            whole(lambda root: _codes(b, b.element(b.element(root, "CodeBook"), "Codes"), head.codes))
        )
    if head.variables:
        children.append(whole(variables))
    children += [spooled(local, spool) for local, spool in sections if spool.count]
    if head.description:
        children.append(whole(lambda root: b.text(root, "Description", head.description)))

    out.write(b"<?xml version='1.0' encoding='utf-8'?>\n")
    start = _start_tag(PROJECT_NAMESPACE, "Project", name=head.name, origin=ORIGIN)
    if not children:
        out.write(start.removesuffix(b">") + b" />")
        return
    out.write(start)
    for child in children:
        out.write(f"\n{_INDENT}".encode())
        for chunk in child():
            out.write(chunk)
    out.write(b"\n</Project>")


class _SpooledDirectory:
    """The archive's member list, kept on disk: ``zipfile`` holds a ``ZipInfo`` per member until it
    writes the central directory at the end, about 430 bytes each, hundreds of megabytes for a
    study's sources. ``ZipFile`` only appends, counts and (at close) iterates it."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="surveykit-qdpx-directory-")
        self.count = 0

    def append(self, info: zipfile.ZipInfo) -> None:
        self.file.seek(0, io.SEEK_END)
        pickle.dump(info, self.file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[zipfile.ZipInfo]:
        self.file.seek(0)
        for _ in range(self.count):
            yield pickle.load(self.file)  # noqa: S301 - our own temporary file

    def close(self) -> None:
        self.file.close()


class _NoNames(dict[str, zipfile.ZipInfo]):
    """``ZipFile.NameToInfo`` without keeping anything: members are written once each, by name."""

    def __setitem__(self, key: str, value: zipfile.ZipInfo) -> None:
        pass


def write_qdpx_streamed(out: IO[bytes], parts: Iterable[ProjectPart], head: Callable[[], Project]) -> None:
    """The same archive as ``write_qdpx`` from a project given in parts, holding only one part in
    memory: ``head()`` is called once every part is consumed and gives the project's name,
    description, users, codes and variables (its cases, sources and notes are ignored)."""
    cases, sources, notes, texts = _Spool(), _Spool(), _Spool(), _Spool()
    directory = _SpooledDirectory()
    try:
        for part in parts:
            for case in part.cases:
                cases.add(
                    _fragment(lambda parent, case=case: _case(_Builder(PROJECT_NAMESPACE), parent, case), 2)
                )
            for source in part.sources:
                sources.add(
                    _fragment(
                        lambda parent, source=source: _source(_Builder(PROJECT_NAMESPACE), parent, source), 2
                    )
                )
                texts.add(source.path.encode("utf-8"), source.text.encode("utf-8"))
            for note in part.notes:
                notes.add(
                    _fragment(lambda parent, note=note: _note(_Builder(PROJECT_NAMESPACE), parent, note), 2)
                )
        with zipfile.ZipFile(out, "w") as archive:
            archive.filelist = directory  # type: ignore[assignment]
            archive.NameToInfo = _NoNames()
            with archive.open(_entry(PROJECT_FILE), "w") as project_file:
                _write_project_xml(
                    project_file, head(), [("Cases", cases), ("Sources", sources), ("Notes", notes)]
                )
            for path, text in texts.records(2):
                info = _entry(path.decode("utf-8"))
                info.file_size = len(text)
                with archive.open(info, "w") as text_file:
                    text_file.write(text)
    finally:
        for spool in (cases, sources, notes, texts, directory):
            spool.close()
