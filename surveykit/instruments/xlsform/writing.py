"""Writing a published definition as an XLSForm workbook that reads back to the same content hash."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from surveykit.instruments.xlsform import columns as c

_TYPES = {
    "short_text": "text",
    "long_text": "text",
    "number": "decimal",
    "date": "date",
}


class _Sheet:
    """Rows of one sheet as dicts; the header grows as columns are first used, in a stable order."""

    def __init__(self, headers: list[str]) -> None:
        self.headers = list(headers)
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        for header in row:
            if header not in self.headers:
                self.headers.append(header)
        self.rows.append(row)

    def write(self, sheet: Worksheet) -> None:
        _write_row(sheet, 1, self.headers)
        for number, row in enumerate(self.rows, start=2):
            _write_row(sheet, number, [row.get(header) for header in self.headers])


def _write_row(sheet: Worksheet, number: int, values: list[Any]) -> None:
    for column, value in enumerate(values, start=1):
        if value is None:
            continue
        cell = sheet.cell(row=number, column=column)
        cell.value = value
        # Text is text: a prompt starting with '=' must not become a formula.
        cell.data_type = "s"


def _translated(base: str, text: dict[str, str], languages: list[str], default: str) -> dict[str, str]:
    return {
        c.language_header(base, language or default): value for language, value in _in_order(text, languages)
    }


def _in_order(text: dict[str, str], languages: list[str]) -> list[tuple[str, str]]:
    order = {language: index for index, language in enumerate(languages)}
    return sorted(text.items(), key=lambda item: order.get(item[0], len(order)))


def _number_text(value: int | float) -> str:
    # repr keeps 1.0 apart from 1, so the number reads back as the same JSON value.
    return repr(value)


def write_xlsform(definition: dict[str, Any]) -> bytes:
    """A published (normalised) definition as an XLSForm workbook."""
    languages = list(definition["languages"])
    default = definition["default_language"]
    label_columns = [c.language_header(c.LABEL, language) for language in languages]
    survey = _Sheet(["type", "name", *label_columns])
    choices = _Sheet(["list_name", "name", *label_columns])
    uses_yes_no = False

    def question_row(question: dict[str, Any]) -> dict[str, Any]:
        nonlocal uses_yes_no
        qtype = question["type"]
        row: dict[str, Any] = {"name": question["id"]}
        if qtype in ("single_choice", "multiple_choice"):
            kind = "select_one" if qtype == "single_choice" else "select_multiple"
            row["type"] = f"{kind} {question['id']}"
            for choice in question.get("choices", []):
                choices.add(
                    {
                        "list_name": question["id"],
                        "name": choice["value"],
                        **_translated(c.LABEL, choice["label"], languages, default),
                    }
                )
        elif qtype == c.YES_NO:
            row["type"] = f"select_one {c.YES_NO_LIST}"
            row[c.SURVEYKIT_TYPE] = c.YES_NO
            uses_yes_no = True
        else:
            row["type"] = _TYPES[qtype]
            if qtype == "long_text":
                row["appearance"] = c.MULTILINE
        row.update(_translated(c.LABEL, question["prompt"], languages, default))
        if "notes" in question:
            row.update(_translated(c.HINT, question["notes"], languages, default))
        if question.get("required"):
            row["required"] = "yes"
        if "relevance" in question:
            row["relevant"] = question["relevance"]
        if "binds" in question:
            row[c.BINDS] = question["binds"]
        for key, column in (("min", c.MIN), ("max", c.MAX)):
            if key in question:
                row[column] = _number_text(question[key])
        for number, probe in enumerate(question.get("probes", []), start=1):
            row.update(_translated(f"surveykit::probe_{number}", probe, languages, default))
        return row

    def section_rows(section: dict[str, Any]) -> None:
        survey.add(
            {
                "type": "begin group",
                "name": section["id"],
                **_translated(c.LABEL, section["title"], languages, default),
            }
        )
        if "intro" in section:
            survey.add(
                {
                    "type": "note",
                    "name": f"{section['id']}_intro",
                    **_translated(c.LABEL, section["intro"], languages, default),
                }
            )
        for question in section.get("questions", []):
            survey.add(question_row(question))
        for subsection in section.get("sections", []):
            section_rows(subsection)
        survey.add({"type": "end group", "name": section["id"]})

    for question in definition.get("metadata", []):
        survey.add(question_row(question))
    for section in definition["sections"]:
        section_rows(section)
    if uses_yes_no:
        default_label = c.language_header(c.LABEL, default)
        choices.add({"list_name": c.YES_NO_LIST, "name": "yes", default_label: "Yes"})
        choices.add({"list_name": c.YES_NO_LIST, "name": "no", default_label: "No"})

    settings = _Sheet(["form_id", c.FORM_TITLE, "default_language", c.LANGUAGES, c.ACTIVITY])
    setting: dict[str, Any] = {
        "form_id": definition["slug"],
        "default_language": c.language_setting(default),
        c.LANGUAGES: " ".join(languages),
        c.ACTIVITY: definition["activity"],
    }
    for language, text in _in_order(definition["title"], languages):
        setting[c.FORM_TITLE if language in (default, "") else c.language_header(c.FORM_TITLE, language)] = (
            text
        )
    if "study" in definition:
        setting[c.STUDY] = definition["study"]
    if "description" in definition:
        setting.update(_translated(c.DESCRIPTION, definition["description"], languages, default))
    settings.add(setting)

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = c.SURVEY
    survey.write(sheet)
    choices.write(workbook.create_sheet(c.CHOICES))
    settings.write(workbook.create_sheet(c.SETTINGS))
    out = BytesIO()
    workbook.save(out)
    return out.getvalue()
