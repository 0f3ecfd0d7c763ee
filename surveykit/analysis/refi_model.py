"""The part of a REFI-QDA project surveykit exchanges, as plain data (no XML, no database).

REFI-QDA (QDA-XML 1.0, the exchange standard of NVivo, ATLAS.ti, MAXQDA and QualCoder) has two
files: a ``.qdpx`` project (a zip holding ``project.qde`` and the ``sources/`` its text sources
point at) and a ``.qdc`` codebook (the codes alone). ``refi_write`` turns these dataclasses into
both files and ``refi_read`` turns both files back into them.

Positions of a selection are offsets into its source's plain text in Unicode code points, zero-based,
the end excluded: the standard counts characters of the plain text (its schema says only
``xsd:integer``), QualCoder slices by code points, and surveykit's offsets (codings, quotes) are code
points already, so they pass through unchanged, emoji and "Ministério" included.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

PROJECT_NAMESPACE = "urn:QDA-XML:project:1.0"
CODEBOOK_NAMESPACE = "urn:QDA-XML:codebook:1.0"
ORIGIN = "surveykit"

# Every guid surveykit derives (sources, cases, users, variables, notes) is a uuid5 in this
# namespace, so a re-export of the same data carries the same guids and a QDA tool's project
# merges with it instead of doubling it.
GUID_NAMESPACE = uuid.UUID("5b0e7f3c-2f55-4c8e-9a3e-1d6f0e6b7a21")


def derived_guid(kind: str, *parts: str) -> str:
    return str(uuid.uuid5(GUID_NAMESPACE, "\x1f".join((kind, *parts))))


@dataclass
class User:
    guid: str
    name: str


@dataclass
class Code:
    guid: str
    name: str
    color: str | None = None
    description: str = ""
    codable: bool = True
    children: list[Code] = field(default_factory=list)

    def walk(self) -> list[Code]:
        """This code and all below it, parents first."""
        found = [self]
        for child in self.children:
            found += child.walk()
        return found


@dataclass
class Coding:
    guid: str
    code_guid: str
    creating_user: str | None = None
    created_at: datetime | None = None


@dataclass
class Selection:
    guid: str
    start: int
    end: int
    name: str = ""
    description: str = ""
    creating_user: str | None = None
    created_at: datetime | None = None
    codings: list[Coding] = field(default_factory=list)
    note_guids: list[str] = field(default_factory=list)


@dataclass
class Source:
    """A text source; its text travels as ``sources/<guid>.txt`` inside the .qdpx."""

    guid: str
    name: str
    text: str
    description: str = ""
    selections: list[Selection] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"sources/{self.guid}.txt"


@dataclass
class Variable:
    guid: str
    name: str
    description: str = ""


@dataclass
class Case:
    guid: str
    name: str
    description: str = ""
    # Variable guid -> text value.
    values: dict[str, str] = field(default_factory=dict)
    source_guids: list[str] = field(default_factory=list)
    selection_guids: list[str] = field(default_factory=list)


@dataclass
class Note:
    guid: str
    name: str
    text: str


@dataclass
class Project:
    name: str
    description: str = ""
    users: list[User] = field(default_factory=list)
    codes: list[Code] = field(default_factory=list)
    variables: list[Variable] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def all_codes(self) -> list[Code]:
        found: list[Code] = []
        for code in self.codes:
            found += code.walk()
        return found


@dataclass
class Codebook:
    codes: list[Code] = field(default_factory=list)
    origin: str = ORIGIN

    def all_codes(self) -> list[Code]:
        found: list[Code] = []
        for code in self.codes:
            found += code.walk()
        return found
