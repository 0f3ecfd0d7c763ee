"""Write a ``refi_model.Project`` as a .qdpx (zip) and a ``Codebook`` as a .qdc, valid against the
standard's schemas (``refi_schemas/``).

The output is deterministic: the same project gives the same bytes (no clock in the XML, fixed
times in the zip), so its hash can serve as an ETag.
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from surveykit.analysis.refi_model import (
    CODEBOOK_NAMESPACE,
    ORIGIN,
    PROJECT_NAMESPACE,
    Code,
    Codebook,
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
            node = b.element(cases, "Case", guid=case.guid, name=case.name)
            if case.description:
                b.text(node, "Description", case.description)
            for variable_guid, value in case.values.items():
                held = b.element(node, "VariableValue")
                b.element(held, "VariableRef", targetGUID=variable_guid)
                b.text(held, "TextValue", value)
            for source_guid in case.source_guids:
                b.element(node, "SourceRef", targetGUID=source_guid)
            for selection_guid in case.selection_guids:
                b.element(node, "SelectionRef", targetGUID=selection_guid)
    if project.sources:
        sources = b.element(root, "Sources")
        for source in project.sources:
            _source(b, sources, source)
    if project.notes:
        notes = b.element(root, "Notes")
        for note in project.notes:
            node = b.element(notes, "Note", guid=note.guid, name=note.name)
            b.text(node, "PlainTextContent", note.text)
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
