"""Reading an XLSForm workbook into an instrument definition.

pyxform reads the sheets (``xlsx_to_dict``: one dict of non-empty cells per row, rows in sheet
order, so list index + 2 is the sheet row); this module maps the rows onto surveykit's definition
and refuses, by sheet, row and column, whatever surveykit has no equivalent for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from pyxform.errors import PyXFormError
from pyxform.xls2json_backends import xlsx_to_dict

from surveykit.instruments.services import DefinitionError, validate_definition
from surveykit.instruments.xlsform import columns as c
from surveykit.instruments.xlsform.columns import SheetProblem

QUESTION_TYPES = {
    "text": "short_text",
    "integer": "number",
    "decimal": "number",
    "date": "date",
    "select_one": "single_choice",
    "select_multiple": "multiple_choice",
}
SURVEY_COLUMNS = {
    "type",
    "name",
    "required",
    "relevant",
    "appearance",
    c.BINDS,
    c.MIN,
    c.MAX,
    c.SURVEYKIT_TYPE,
}
SETTINGS_COLUMNS = {"form_id", "default_language", "version", c.ACTIVITY, c.STUDY, c.LANGUAGES}
CHOICES_COLUMNS = {"list_name", "name"}
TRUE_WORDS = {"yes", "true", "true()", "1"}
FALSE_WORDS = {"no", "false", "false()", "0"}
_INTEGER = re.compile(r"^-?[0-9]+$")
_FIRST_DATA_ROW = 2

Located = tuple[str, int | None, str | None]


@dataclass
class _Reader:
    letters: dict[str, dict[str, str]]
    problems: list[SheetProblem] = field(default_factory=list)
    # Definition path -> where it came from, to place validate_definition's problems.
    places: dict[str, Located] = field(default_factory=dict)
    default_language: str | None = None
    languages_seen: list[str] = field(default_factory=list)

    def problem(self, sheet: str, row: int | None, column: str | None, message: str) -> None:
        letter = self.letters.get(sheet, {}).get(column) if column else None
        self.problems.append(SheetProblem(sheet, row, column, message, letter))

    def place(self, path: str, sheet: str, row: int | None, column: str | None) -> None:
        self.places.setdefault(path, (sheet, row, column))

    def language_of(self, sheet: str, header: str, named: str | None) -> str | None:
        if named is None:
            return self.default_language or ""
        code = c.language_code(named)
        if code is None:
            self.problem(
                sheet,
                None,
                header,
                f"column {header!r} names no language code; write it as e.g. 'label::English (en)'",
            )
            return None
        if code not in self.languages_seen:
            self.languages_seen.append(code)
        return code

    def texts(
        self, sheet: str, row_number: int, row: dict[str, str], base: str
    ) -> tuple[dict[str, str], str | None]:
        """The translations of ``base`` in ``row`` and the first column holding one."""
        found: dict[str, str] = {}
        first = None
        for header, value in row.items():
            header_base, named = c.split_translated(header)
            if header == base:
                named = None
            elif header_base != base:
                continue
            language = self.language_of(sheet, header, named)
            if language is None:
                continue
            if language in found:
                self.problem(sheet, row_number, header, f"a second {base} column for language {language!r}")
                continue
            found[language] = value
            first = first or header
        return found, first

    def unsupported(
        self, sheet: str, row_number: int, row: dict[str, str], allowed: set[str], bases: tuple[str, ...]
    ) -> None:
        for header in row:
            base, named = c.split_translated(header)
            if header in allowed or (named is not None and base in bases) or header in bases:
                continue
            self.problem(
                sheet, row_number, header, f"column `{header}` is not supported (surveykit has no equivalent)"
            )


def _column_letters(data: bytes) -> dict[str, dict[str, str]]:
    """Header -> column letter per sheet (lower-case sheet names, headers as pyxform cleans them)."""
    letters: dict[str, dict[str, str]] = {}
    try:
        workbook = load_workbook(BytesIO(data), read_only=True, data_only=True)
    except Exception:
        return letters
    try:
        for sheet in workbook.worksheets:
            first = next(sheet.iter_rows(min_row=1, max_row=1, values_only=True), ())
            letters[sheet.title.lower()] = {
                re.sub(r"\s+", " ", str(value).strip()): get_column_letter(index)
                for index, value in enumerate(first, start=1)
                if value is not None and str(value).strip()
            }
    finally:
        workbook.close()
    return letters


def read_xlsform(data: bytes) -> tuple[dict[str, Any] | None, list[SheetProblem]]:
    """An XLSForm workbook (.xlsx bytes) as a raw instrument definition, or None and its problems."""
    try:
        book = xlsx_to_dict(BytesIO(data))
    except PyXFormError as exc:
        return None, [SheetProblem("", None, None, f"not a readable XLSForm workbook: {exc}")]
    except Exception as exc:  # openpyxl raises many kinds on a damaged file
        return None, [SheetProblem("", None, None, f"not a readable .xlsx workbook ({type(exc).__name__})")]
    reader = _Reader(_column_letters(data))
    for sheet in ("external_choices", "osm", "entities"):
        if book.get(sheet):
            reader.problem(sheet, None, None, f"the `{sheet}` sheet is not supported")
    if not book.get(c.SURVEY):
        reader.problem(c.SURVEY, None, None, "the workbook has no `survey` sheet (or it is empty)")
        return None, reader.problems
    raw = _read_settings(reader, book.get(c.SETTINGS) or [])
    choices = _read_choices(reader, book.get(c.CHOICES) or [])
    metadata, sections = _read_survey(reader, book[c.SURVEY], choices)
    raw["metadata"] = metadata
    raw["sections"] = sections
    reader.place("sections", c.SURVEY, None, None)
    reader.place("metadata", c.SURVEY, None, None)
    if "languages" not in raw and reader.default_language:
        raw["languages"] = [reader.default_language] + [
            code for code in reader.languages_seen if code != reader.default_language
        ]
    if reader.problems:
        return None, reader.problems
    try:
        validate_definition(raw)
    except DefinitionError as exc:
        for path, message in exc.errors:
            sheet, row, column = _locate(reader.places, path)
            reader.problem(sheet, row, column, f"{path or '(top level)'}: {message}")
        return None, reader.problems
    return raw, []


def _locate(places: dict[str, Located], path: str) -> Located:
    while path:
        if path in places:
            return places[path]
        path = (
            re.sub(r"(\.[^.\[\]]+|\[[0-9]+\])$", "", path)
            if re.search(r"(\.[^.\[\]]+|\[[0-9]+\])$", path)
            else ""
        )
    return places.get("", (c.SETTINGS, None, None))


def _read_settings(reader: _Reader, rows: list[dict[str, str]]) -> dict[str, Any]:
    sheet = c.SETTINGS
    row_number = _FIRST_DATA_ROW
    row = rows[0] if rows else {}
    if len([r for r in rows if r]) > 1:
        reader.problem(
            sheet, row_number + 1, None, "settings take one row; the rows after row 2 are not read"
        )
    raw: dict[str, Any] = {}
    if "default_language" in row:
        code = c.language_code(row["default_language"])
        if code is None:
            reader.problem(sheet, row_number, "default_language", "write the language as e.g. 'English (en)'")
        reader.default_language = code
        raw["default_language"] = code or row["default_language"]
    reader.place("default_language", sheet, row_number, "default_language")
    reader.unsupported(sheet, row_number, row, SETTINGS_COLUMNS, (c.FORM_TITLE, c.DESCRIPTION))
    if c.LANGUAGES in row:
        raw["languages"] = [part for part in re.split(r"[\s,]+", row[c.LANGUAGES]) if part]
        reader.place("languages", sheet, row_number, c.LANGUAGES)
    if reader.default_language is None:
        # A workbook in one language without default_language: its columns name that language.
        codes = {
            c.language_code(named or "")
            for base, named in map(c.split_translated, _all_headers(reader))
            if named and c.is_translatable(base)
        }
        codes.discard(None)
        if len(codes) == 1:
            reader.default_language = raw["default_language"] = codes.pop()
        else:
            reader.problem(
                sheet,
                row_number,
                "default_language",
                "default_language is missing: name the language of the plain label columns, "
                "e.g. 'English (en)'",
            )
    for key, column in (("slug", "form_id"), ("activity", c.ACTIVITY), ("study", c.STUDY)):
        if column in row:
            raw[key] = row[column]
        reader.place(key, sheet, row_number, column)
    for key, base in (("title", c.FORM_TITLE), ("description", c.DESCRIPTION)):
        text, first = reader.texts(sheet, row_number, row, base)
        if text:
            raw[key] = text
        reader.place(key, sheet, row_number, first or base)
    reader.place("", sheet, row_number, None)
    return raw


def _all_headers(reader: _Reader) -> list[str]:
    return [header for sheet in reader.letters.values() for header in sheet]


@dataclass
class _Choices:
    rows: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)


def _read_choices(reader: _Reader, rows: list[dict[str, str]]) -> _Choices:
    choices = _Choices()
    for index, row in enumerate(rows):
        if not row:
            continue
        row_number = index + _FIRST_DATA_ROW
        reader.unsupported(c.CHOICES, row_number, row, CHOICES_COLUMNS, (c.LABEL,))
        list_name, name = row.get("list_name"), row.get("name")
        if not list_name:
            reader.problem(c.CHOICES, row_number, "list_name", "a choice needs its list_name")
            continue
        if not name:
            reader.problem(c.CHOICES, row_number, "name", "a choice needs a name (the value stored)")
            continue
        label, _ = reader.texts(c.CHOICES, row_number, row, c.LABEL)
        choice: dict[str, Any] = {"value": name}
        if label:
            choice["label"] = label
        choices.rows.setdefault(list_name, []).append((row_number, choice))
    return choices


@dataclass
class _OpenGroup:
    section: dict[str, Any]
    path: str
    row: int
    has_subgroup: bool = False


def _read_survey(
    reader: _Reader, rows: list[dict[str, str]], choices: _Choices
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sheet = c.SURVEY
    metadata: list[dict[str, Any]] = []
    sections: list[dict[str, Any]] = []
    open_groups: list[_OpenGroup] = []
    for index, row in enumerate(rows):
        if not row:
            continue
        row_number = index + _FIRST_DATA_ROW
        kind = re.sub(r"\s+", " ", row.get("type", "")).strip()
        words = kind.split(" ")
        base = words[0].lower() if kind else ""
        if not kind:
            reader.problem(sheet, row_number, "type", "the row has no type")
        elif kind.lower() in ("begin group", "begin_group"):
            siblings = open_groups[-1].section.setdefault("sections", []) if open_groups else sections
            path = (
                f"{open_groups[-1].path}.sections[{len(siblings)}]"
                if open_groups
                else f"sections[{len(sections)}]"
            )
            if open_groups:
                open_groups[-1].has_subgroup = True
            section = _read_group(reader, row_number, row, path)
            siblings.append(section)
            open_groups.append(_OpenGroup(section, path, row_number))
        elif kind.lower() in ("end group", "end_group"):
            reader.unsupported(sheet, row_number, row, {"type", "name"}, ())
            if not open_groups:
                reader.problem(sheet, row_number, "type", "`end group` without a `begin group` before it")
            else:
                open_groups.pop()
        elif base == "note":
            _read_note(reader, row_number, row, open_groups)
        elif base in QUESTION_TYPES:
            if open_groups:
                group = open_groups[-1]
                if group.has_subgroup:
                    reader.problem(
                        sheet,
                        row_number,
                        "type",
                        f"a question after a sub-group of group `{group.section.get('id')}` "
                        f"(row {group.row}): surveykit asks a section's own questions before its "
                        "sub-sections, so move it above the sub-group",
                    )
                    continue
                questions = group.section["questions"]
                path = f"{group.path}.questions[{len(questions)}]"
            else:
                if sections:
                    reader.problem(
                        sheet,
                        row_number,
                        "type",
                        "a question outside any group after the first group: questions outside "
                        "groups are the instrument's metadata and come before the first group",
                    )
                    continue
                questions = metadata
                path = f"metadata[{len(metadata)}]"
            question = _read_question(reader, row_number, row, words, path, choices)
            if question is not None:
                questions.append(question)
        else:
            reader.problem(sheet, row_number, "type", f"type `{kind}` is not supported")
    for group in open_groups:
        reader.problem(sheet, group.row, "type", f"group `{group.section.get('id')}` has no `end group`")
    return metadata, sections


def _read_group(reader: _Reader, row_number: int, row: dict[str, str], path: str) -> dict[str, Any]:
    sheet = c.SURVEY
    reader.unsupported(sheet, row_number, row, {"type", "name"}, (c.LABEL,))
    section: dict[str, Any] = {"questions": []}
    if "name" in row:
        section["id"] = row["name"]
    else:
        reader.problem(sheet, row_number, "name", "a group needs a name (the section id)")
    title, first = reader.texts(sheet, row_number, row, c.LABEL)
    if title:
        section["title"] = title
    reader.place(path, sheet, row_number, "name")
    reader.place(f"{path}.id", sheet, row_number, "name")
    reader.place(f"{path}.title", sheet, row_number, first or c.LABEL)
    reader.place(f"{path}.questions", sheet, row_number, "type")
    return section


def _read_note(reader: _Reader, row_number: int, row: dict[str, str], open_groups: list[_OpenGroup]) -> None:
    sheet = c.SURVEY
    reader.unsupported(sheet, row_number, row, {"type", "name"}, (c.LABEL,))
    group = open_groups[-1] if open_groups else None
    if group is None or group.section["questions"] or group.has_subgroup or "intro" in group.section:
        reader.problem(
            sheet,
            row_number,
            "type",
            "a `note` is read only as the first row of a group, where it becomes the section's introduction",
        )
        return
    intro, first = reader.texts(sheet, row_number, row, c.LABEL)
    if intro:
        group.section["intro"] = intro
    reader.place(f"{group.path}.intro", sheet, row_number, first or c.LABEL)


def _flag(reader: _Reader, row_number: int, value: str) -> bool | None:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    reader.problem(
        c.SURVEY,
        row_number,
        "required",
        f"write yes or no, not {value!r} (required expressions are not supported)",
    )
    return None


def _number(reader: _Reader, row_number: int, column: str, value: str) -> int | float | None:
    text = value.strip()
    try:
        return int(text) if _INTEGER.match(text) else float(text)
    except ValueError:
        reader.problem(c.SURVEY, row_number, column, f"{value!r} is not a number")
        return None


def _probe_bases(row: dict[str, str]) -> set[str]:
    bases = set()
    for header in row:
        base = header if c.PROBE.match(header) else c.split_translated(header)[0]
        if c.PROBE.match(base):
            bases.add(base)
    return bases


def _read_question(
    reader: _Reader, row_number: int, row: dict[str, str], words: list[str], path: str, choices: _Choices
) -> dict[str, Any] | None:
    sheet = c.SURVEY
    probe_bases = tuple(sorted(_probe_bases(row)))
    reader.unsupported(sheet, row_number, row, SURVEY_COLUMNS, (c.LABEL, c.HINT, *probe_bases))
    base = words[0].lower()
    question: dict[str, Any] = {}
    if "name" in row:
        question["id"] = row["name"]
    else:
        reader.problem(sheet, row_number, "name", "a question needs a name (its id)")
    qtype = QUESTION_TYPES[base]
    marked = row.get(c.SURVEYKIT_TYPE, "").strip()
    appearance = row.get("appearance", "").strip()
    if base in ("select_one", "select_multiple"):
        if len(words) != 2:
            extra = " (or_other is not supported)" if "or_other" in words else ""
            reader.problem(
                sheet, row_number, "type", f"write `{base} LIST_NAME`, not `{' '.join(words)}`{extra}"
            )
            return None
    elif len(words) != 1:
        reader.problem(sheet, row_number, "type", f"type `{' '.join(words)}` is not supported")
        return None
    if marked:
        if marked == c.YES_NO and base == "select_one":
            qtype = c.YES_NO
        else:
            reader.problem(
                sheet,
                row_number,
                c.SURVEYKIT_TYPE,
                f"`{marked}` is not a surveykit type this row can take (yes_no goes with select_one)",
            )
    if appearance:
        if appearance == c.MULTILINE and base == "text":
            qtype = "long_text"
        else:
            reader.problem(sheet, row_number, "appearance", f"appearance `{appearance}` is not supported")
    question["type"] = qtype
    prompt, prompt_column = reader.texts(sheet, row_number, row, c.LABEL)
    if prompt:
        question["prompt"] = prompt
    notes, notes_column = reader.texts(sheet, row_number, row, c.HINT)
    if notes:
        question["notes"] = notes
    probes = []
    for number, probe_base in enumerate(
        sorted(probe_bases, key=lambda b: int(c.PROBE.match(b).group(1))), start=1
    ):
        if probe_base != f"surveykit::probe_{number}":
            reader.problem(
                sheet,
                row_number,
                probe_base,
                f"probe columns are numbered 1, 2, 3...; expected surveykit::probe_{number}",
            )
            break
        text, column = reader.texts(sheet, row_number, row, probe_base)
        reader.place(f"{path}.probes[{len(probes)}]", sheet, row_number, column)
        probes.append(text)
    if probes:
        question["probes"] = probes
    if "required" in row and (flag := _flag(reader, row_number, row["required"])) is not None:
        question["required"] = flag
    if "relevant" in row:
        question["relevance"] = row["relevant"]
    if c.BINDS in row:
        question["binds"] = row[c.BINDS]
    for key, column in (("min", c.MIN), ("max", c.MAX)):
        if column in row and (value := _number(reader, row_number, column, row[column])) is not None:
            question[key] = value
    if qtype in ("single_choice", "multiple_choice"):
        list_name = words[1]
        listed = choices.rows.get(list_name)
        if not listed:
            reader.problem(
                sheet, row_number, "type", f"choice list `{list_name}` has no rows in the choices sheet"
            )
        else:
            question["choices"] = [dict(choice) for _, choice in listed]
            for index, (choice_row, _) in enumerate(listed):
                reader.place(f"{path}.choices[{index}]", c.CHOICES, choice_row, "name")
                reader.place(f"{path}.choices[{index}].value", c.CHOICES, choice_row, "name")
                reader.place(f"{path}.choices[{index}].label", c.CHOICES, choice_row, c.LABEL)
    for key, column in (
        ("", "name"),
        ("id", "name"),
        ("type", "type"),
        ("choices", "type"),
        ("prompt", prompt_column or c.LABEL),
        ("notes", notes_column or c.HINT),
        ("required", "required"),
        ("relevance", "relevant"),
        ("binds", c.BINDS),
        ("min", c.MIN),
        ("max", c.MAX),
        ("probes", "type"),
    ):
        reader.place(f"{path}.{key}" if key else path, sheet, row_number, column)
    return question
