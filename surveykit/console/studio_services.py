"""What the studio's pages ask of the instrument services, in one place: reading and checking an
uploaded file, the translation listing, the preview, the comparison and the XLSForm workbook.

The pages (``surveykit.console.studio``) call only these functions, so the services behind them can
change without the pages noticing.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from sqlalchemy.orm import Session

from surveykit.console.web import _
from surveykit.instruments import compare, files, preview, services, translations, xlsform
from surveykit.instruments.drafts import CheckedFile

# An instrument file is tens of kilobytes (the RA1 schedule's YAML is about 30 KB); a file far
# larger is the wrong file, and is refused before it is read (YAML files are read with the position
# of every part, which the instrument files' own limit keeps quick).
MAX_UPLOAD_BYTES = files.MAX_YAML_BYTES
ACCEPTED_SUFFIXES = ".yaml, .yml, .json, .xlsx"  # every suffix of files.FORMAT_BY_SUFFIX
XLSX_MEDIA_TYPE = xlsform.XLSX_MEDIA_TYPE


class UploadRefused(ValueError):
    """A file that cannot become a draft at all (empty, too large, of an unknown type); the message
    is marked for translation."""

    def __init__(self, message: Any) -> None:
        super().__init__(str(message))
        self.message = message


def check_upload(session: Session, data: bytes, content_type: str | None, filename: str) -> CheckedFile:
    """Read and check an uploaded instrument file. Raises UploadRefused; every other problem (a
    syntax error, an invalid definition) is in the result, with where it is in the file."""
    if not data:
        raise UploadRefused(_("The file is empty: choose the file again."))
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadRefused(
            _(
                "The file is too large: an instrument file is at most ${limit} MB.",
                mapping={"limit": MAX_UPLOAD_BYTES // 1024 // 1024},
            )
        )
    # Browsers name a file's type inconsistently (a YAML file may come as text/plain or
    # application/octet-stream, a workbook as application/vnd.ms-excel): the file name decides.
    fmt = files.FORMAT_BY_SUFFIX.get(PurePath(filename or "").suffix.lower())
    if fmt is None:
        raise UploadRefused(
            _(
                "This is not an instrument file: choose a YAML, JSON or XLSForm file (${suffixes}).",
                mapping={"suffixes": ACCEPTED_SUFFIXES},
            )
        )
    raw, problems, source_map = _read(data, fmt, filename)
    definition = None
    if raw is not None and not problems:
        try:
            definition = services.validate_definition(raw, source_map=source_map)
        except services.DefinitionError as exc:
            problems = exc.problems()
    if definition is not None:
        problems = ownership_problems(session, definition)
        if problems:
            definition = None
    return CheckedFile(
        filename=PurePath(filename).name or "instrument",
        format=fmt,
        content=data,
        slug=_text(raw, "slug"),
        study=_text(raw, "study"),
        definition=definition,
        problems=problems,
    )


def _read(
    data: bytes, fmt: str, filename: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], files.SourceMap | None]:
    if fmt == "xlsx":
        raw, sheet_problems = xlsform.read_xlsform(data)
        return raw, [_sheet_problem(problem) for problem in sheet_problems], None
    try:
        upload = files.read_instrument_file(data, None, filename)
    except files.FileTooLarge as exc:
        raise UploadRefused(
            _(
                "The file is too large: an instrument file is at most ${limit} MB.",
                mapping={"limit": MAX_UPLOAD_BYTES // 1024 // 1024},
            )
        ) from exc
    except files.UnreadableFile as exc:
        return None, exc.problems, None
    return upload.definition, upload.problems, upload.source_map


def _sheet_problem(problem: xlsform.SheetProblem) -> dict[str, Any]:
    found = problem.as_dict()
    if problem.letter and problem.column:
        found["column"] = f"{problem.letter} ({problem.column})"
    return found


def _text(raw: dict[str, Any] | None, key: str) -> str | None:
    value = (raw or {}).get(key)
    return value[:64] if isinstance(value, str) and value else None


def ownership_problems(session: Session, definition: dict[str, Any]) -> list[dict[str, Any]]:
    """An instrument stays in its study: a file that would move it cannot be published (as the API's
    publish refuses it)."""
    existing, study = services.instrument_study(session, definition["slug"])
    if existing and study != definition.get("study"):
        return [
            {
                "path": "study",
                "message": f"instrument {definition['slug']!r} belongs to {study or 'every study'}; "
                "a new version cannot move it",
            }
        ]
    return []


# ------------------------------------------------------------------------------------------ checks


def translation_listing(session: Session, definition: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """Per language other than the default: the texts ``missing`` in it, and those ``stale`` against
    the instrument's published versions (the draft's publisher reads them: same study)."""
    history = services.published_definitions(session, definition["slug"])
    return translations.translation_report(definition, history)


def publishing_refusals(session: Session, definition: dict[str, Any]) -> list[dict[str, Any]]:
    """What publishing ``definition`` now would be refused for by the type-change guard."""
    return [
        {"path": path, "message": message}
        for path, message in services.type_change_problems(session, definition["slug"], definition)
    ]


# ----------------------------------------------------------------------------------------- preview


def outline(definition: dict[str, Any], language: str | None) -> dict[str, Any]:
    """The interviewer's outline in ``language``; raises services.LanguageNotOffered."""
    return preview.preview(definition, language)


# ----------------------------------------------------------------------------------------- compare


def compare_with_current(session: Session, definition: dict[str, Any]) -> dict[str, Any] | None:
    """The draft ``definition`` against its instrument's current version (None: not published yet)."""
    if not services.instrument_study(session, definition["slug"])[0]:
        return None
    return compare.compare_with_draft(session, definition["slug"], None, definition)


def compare_versions(session: Session, slug: str, from_version: int, to_version: int) -> dict[str, Any]:
    """Two published versions; raises services.InstrumentNotFound or VersionNotFound."""
    return compare.compare_versions(session, slug, from_version, to_version)


# ---------------------------------------------------------------------------------------- workbook


def version_workbook(session: Session, slug: str, version: int) -> bytes:
    """A published version as an XLSForm workbook; raises InstrumentNotFound or VersionNotFound."""
    return xlsform.version_workbook(session, slug, version)
