"""The CSV for statistics: the workbook's long Answers sheet as UTF-8 CSV, streamed.

Same columns, same rows, same order as the Answers sheet (both are made by
``services.answer_rows`` from the same streamed read, ``services.rows_in_order``), with what a CSV
needs instead of what a spreadsheet cell needs:

- a text beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be a formula
  in a spreadsheet program that opens the CSV; the workbook stores such text as text, and a CSV has
  no cell types, so it is written with one ``'`` in front. Text already beginning with ``'`` gets
  one too, so the rule is reversible: a reader drops one leading ``'`` from every text that has
  one. Numbers (a number answer, the revision) are numbers and are written as they are.
- characters XML cannot hold are replaced by U+FFFD as in the workbook, so the two agree;
- a long text is never split (a CSV cell has no length limit), numbers are written whole and
  dates in ISO 8601 (``2020-05-04``), whatever Excel's limits.

Rows are generated one at a time from the database cursors and encoded in chunks
(``CsvExport.chunks``): memory stays flat however large the scope is. The content hash (the ETag)
is computed while the rows go past, over the same data ``content_tag(session, scope, "csv")``
reads, so a 200 names exactly what its body holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any

from sqlalchemy.orm import Session

from surveykit.exports import services
from surveykit.exports.workbook import CONTROL_MARKER, XML_ILLEGAL

CSV_MEDIA_TYPE = "text/csv"
ARTIFACT = "csv"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
NEUTRALISER = "'"
CHUNK_BYTES = 1 << 16


def answer_header(multi: bool) -> list[str]:
    """The Answers sheet's header (``Country`` after the ID in a study-wide export)."""
    country = ["Country"] if multi else []
    return [
        "ID",
        *country,
        "Section",
        "Question id",
        "Prompt",
        "Answer",
        "Probes used",
        "Stored value",
        "Language",
        "Revision",
    ]


def csv_text(value: Any) -> str:
    """One cell's text: inert for spreadsheet programs (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, str):
        if XML_ILLEGAL.search(value):
            value = XML_ILLEGAL.sub(CONTROL_MARKER, value)
        return NEUTRALISER + value if value.startswith(FORMULA_STARTS) else value
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def restore_text(cell: str) -> str:
    """Undo ``csv_text``'s neutralising for a text cell (for readers of the CSV)."""
    return cell[1:] if cell.startswith(NEUTRALISER) else cell


@dataclass
class CsvResult:
    content_hash: str
    rows: int


class CsvExport:
    """The Answers rows of one scope, as values (``rows``) or as encoded CSV (``chunks``).

    Iterate once; ``content_hash`` and ``rows_written`` are known when the iteration is complete.
    """

    def __init__(self, session: Session, scope: services.Scope) -> None:
        self.session = session
        self.scope = scope
        self.content_hash: str | None = None
        self.rows_written = 0

    def rows(self) -> Iterator[list[Any]]:
        """The header, then every Answers row (values as the workbook holds them), streamed."""
        session, scope = self.session, self.scope
        multi = scope.all_countries
        versions = services.load_versions(session, services.versions_used(session, scope), scope.language)
        fingerprint = services.Fingerprint(scope, ARTIFACT)
        used: set[tuple[str, int]] = set()
        yield answer_header(multi)
        for interview, people in services.rows_in_order(session, scope, with_record=True):
            fingerprint.interview(interview, people)
            key = (interview.instrument_slug, interview.instrument_version)
            used.add(key)
            info = versions.get(key)
            if info is None:
                raise services.ScopeChanged(f"{key[0]} v{key[1]} appeared during the export")
            record: dict[str, Any] = interview.record or {}
            answers = record.get("answers") or {}
            ticks = record.get("probes_used")
            ticks = ticks if isinstance(ticks, dict) else {}
            language = record.get("language")
            country = [interview.country_code] if multi else []
            for person in people:
                if person.status != "interviewed":
                    continue
                ordered, _ = services.answer_rows(
                    info, services.own_answers(info, answers, person, record), ticks
                )
                for section, qid, prompt, shown, probes, stored in ordered:
                    self.rows_written += 1
                    yield [
                        person.pid,
                        *country,
                        section,
                        qid,
                        prompt,
                        shown,
                        probes,
                        stored,
                        language,
                        interview.revision,
                    ]
        fingerprint.withdrawn_unrecorded(services.withdrawn_without_record(session, scope))
        fingerprint.versions({key: versions[key].content_hash for key in used})
        self.content_hash = fingerprint.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        """The CSV (RFC 4180: commas, double quotes, CRLF; UTF-8 without a byte order mark) in
        pieces of about ``CHUNK_BYTES``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for row in self.rows():
            writer.writerow([csv_text(value) for value in row])
            if buffer.tell() >= CHUNK_BYTES:
                yield buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode("utf-8")


def write_csv(session: Session, scope: services.Scope, target: IO[bytes]) -> CsvResult:
    """Stream the scope's CSV into ``target`` (a binary file), starting again if an instrument
    version appeared while it was being written (as ``services.write_workbook`` does)."""
    for attempt in range(services.MAX_ATTEMPTS):
        target.seek(0)
        target.truncate()
        export = CsvExport(session, scope)
        try:
            for chunk in export.chunks():
                target.write(chunk)
        except services.ScopeChanged:
            if attempt == services.MAX_ATTEMPTS - 1:
                raise
            continue
        assert export.content_hash is not None
        return CsvResult(export.content_hash, export.rows_written)
    raise AssertionError("unreachable")


def file_stem(scope: services.Scope) -> str:
    """``ocsea-KE-RA1-sw``: the name the CSV and the syntax that reads it share (no time, no hash,
    so the syntax can name the CSV)."""
    parts = [scope.study_slug, scope.label, *([scope.activity] if scope.activity else [])]
    if scope.language:
        parts.append(scope.language)
    return "-".join(parts)
