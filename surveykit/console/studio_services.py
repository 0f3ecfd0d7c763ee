"""What the studio's pages ask of the instrument services, in one place: reading and checking an
uploaded file, the translation listing, the preview, the comparison and the XLSForm workbook.

The pages (``surveykit.console.studio``) call only these functions, so the services behind them can
change without the pages noticing.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

import yaml
from sqlalchemy.orm import Session

from surveykit.console.web import _
from surveykit.instruments import services
from surveykit.instruments.drafts import CheckedFile
from surveykit.instruments.relevance import parse as parse_relevance

# An instrument file is tens of kilobytes (the RA1 schedule's YAML is about 30 KB); a file far
# larger is the wrong file, and is refused before it is read.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
FORMAT_BY_SUFFIX = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".xlsx": "xlsx"}
ACCEPTED_SUFFIXES = ".yaml, .yml, .json, .xlsx"


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
    fmt = FORMAT_BY_SUFFIX.get(PurePath(filename or "").suffix.lower())
    if fmt is None:
        raise UploadRefused(
            _(
                "This is not an instrument file: choose a YAML, JSON or XLSForm file (${suffixes}).",
                mapping={"suffixes": ACCEPTED_SUFFIXES},
            )
        )
    raw, problems = _read(data, fmt)
    definition = None
    if raw is not None and not problems:
        try:
            definition = services.validate_definition(raw)
        except services.DefinitionError as exc:
            problems = [{"path": path, "message": message} for path, message in exc.errors]
    slug = _text(raw, "slug")
    study = _text(raw, "study")
    if definition is not None:
        problems = ownership_problems(session, definition)
        if problems:
            definition = None
    return CheckedFile(
        filename=PurePath(filename).name or "instrument",
        format=fmt,
        content=data,
        slug=slug,
        study=study,
        definition=definition,
        problems=problems,
    )


def _read(data: bytes, fmt: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    if fmt == "xlsx":
        return None, [{"path": "", "message": "XLSForm workbooks cannot be read by this server yet."}]
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        return None, [{"path": "", "message": f"not UTF-8 text (byte {exc.start})"}]
    try:
        raw = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        return None, [
            {"path": "", "message": f"malformed JSON: {exc.msg}", "line": exc.lineno, "column": exc.colno}
        ]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem: dict[str, Any] = {"path": "", "message": f"malformed YAML: {getattr(exc, 'problem', exc)}"}
        if mark is not None:
            problem.update(line=mark.line + 1, column=mark.column + 1)
        return None, [problem]
    if not isinstance(raw, dict):
        return None, [{"path": "", "message": "the file must hold a mapping (slug, title, sections, ...)"}]
    return raw, []


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
    """Per language other than the default: the texts ``missing`` (and ``stale``) in it."""
    default = definition["default_language"]
    listing: dict[str, dict[str, list[Any]]] = {
        language: {"missing": [], "stale": []} for language in definition["languages"] if language != default
    }
    for path, text in services._iter_texts(definition):
        for language, states in listing.items():
            if language not in text:
                states["missing"].append({"path": path, "source": text.get(default, "")})
    return listing


def publishing_refusals(session: Session, definition: dict[str, Any]) -> list[dict[str, Any]]:
    """What publishing ``definition`` now would be refused for by the type-change guard."""
    existing = services.instrument_study(session, definition["slug"])[0]
    if not existing:
        return []
    instrument = services.get_instrument(session, definition["slug"])
    try:
        services._check_types_unchanged(session, instrument, definition)
    except services.DefinitionError as exc:
        return [{"path": path, "message": message} for path, message in exc.errors]
    return []


# ----------------------------------------------------------------------------------------- preview


def outline(definition: dict[str, Any], language: str | None) -> dict[str, Any]:
    """The interviewer's outline in ``language``; raises services.LanguageNotOffered."""
    language = language or definition["default_language"]
    if language not in definition["languages"]:
        raise services.LanguageNotOffered(language, definition["languages"])
    localised = services.localise(definition, language)
    number = iter(range(1, 100_000))

    def question(q: dict[str, Any], path: str) -> dict[str, Any]:
        return {
            "id": q["id"],
            "number": next(number),
            "path": path,
            "type": q["type"],
            "required": q.get("required", False),
            "prompt": q["prompt"],
            "choices": q.get("choices", []),
            "probes": q.get("probes", []),
            "notes": q.get("notes"),
            "relevance": q.get("relevance"),
            "depends_on": sorted(parse_relevance(q["relevance"]).references) if q.get("relevance") else [],
        }

    def section(s: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        return {
            "id": s["id"],
            "path": path,
            "depth": depth,
            "title": s["title"],
            "intro": s.get("intro"),
            "questions": [question(q, f"{path}.questions[{i}]") for i, q in enumerate(s["questions"])],
            "sections": [
                section(sub, f"{path}.sections[{i}]", depth + 1)
                for i, sub in enumerate(s.get("sections", []))
            ],
        }

    result = {
        "slug": definition["slug"],
        "language": language,
        "default_language": definition["default_language"],
        "languages": list(definition["languages"]),
        "title": localised["title"],
        "description": localised.get("description"),
        "metadata": [question(q, f"metadata[{i}]") for i, q in enumerate(localised.get("metadata", []))],
        "sections": [section(s, f"sections[{i}]", 1) for i, s in enumerate(localised["sections"])],
    }
    result["fallbacks"] = 0
    return result


# ----------------------------------------------------------------------------------------- compare


def compare_definitions(
    session: Session, old: dict[str, Any], new: dict[str, Any], refusals: list[dict[str, Any]]
) -> dict[str, Any]:
    before = {q["id"]: (path, q) for path, q in services.iter_questions(old)}
    after = {q["id"]: (path, q) for path, q in services.iter_questions(new)}
    changes = [{"question": qid, "kind": "added"} for qid in after if qid not in before]
    changes += [{"question": qid, "kind": "removed"} for qid in before if qid not in after]
    return {
        "identical": services.content_hash(old) == services.content_hash(new),
        "changes": changes,
        "refused": refusals,
        "publishable": not refusals,
    }


def compare_with_current(session: Session, definition: dict[str, Any]) -> dict[str, Any] | None:
    """The draft ``definition`` against its instrument's current version (None: not published yet)."""
    existing = services.instrument_study(session, definition["slug"])[0]
    if not existing:
        return None
    ref = services.find_version(session, definition["slug"])
    old = services.load_definition(session, ref.slug, ref.version)
    result = compare_definitions(session, old, definition, publishing_refusals(session, definition))
    return {
        "from": {"version": ref.version, "draft": False},
        "to": {"version": None, "draft": True},
        **result,
    }


def compare_versions(session: Session, slug: str, from_version: int, to_version: int) -> dict[str, Any]:
    """Two published versions; raises services.InstrumentNotFound or VersionNotFound."""
    source = services.find_version(session, slug, from_version)
    target = services.find_version(session, slug, to_version)
    old = services.load_definition(session, slug, source.version)
    new = services.load_definition(session, slug, target.version)
    result = compare_definitions(session, old, new, [])
    return {
        "from": {"version": source.version, "draft": False},
        "to": {"version": target.version, "draft": False},
        **result,
    }


# ---------------------------------------------------------------------------------------- workbook


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def version_workbook(session: Session, slug: str, version: int) -> bytes:
    """A published version as an XLSForm workbook; raises InstrumentNotFound or VersionNotFound."""
    services.find_version(session, slug, version)
    raise NotImplementedError("XLSForm export arrives with the xlsform branch")
