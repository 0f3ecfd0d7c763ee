"""Validating, publishing, retiring and serving instrument definitions.

Plain functions over a SQLAlchemy session; the CLI, the API and the tests all call these.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import colander
from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from surveykit.db import utcnow
from surveykit.instruments.bindings import check_binding
from surveykit.instruments.files import SourceMap, UnreadableFile, parse_text
from surveykit.instruments.models import Instrument, InstrumentVersion
from surveykit.instruments.relevance import RelevanceError
from surveykit.instruments.relevance import parse as parse_relevance
from surveykit.instruments.schemas import CHOICE_TYPES, InstrumentDefinitionSchema
from surveykit.web import Representation, colander_path

DEFINITION_SUFFIXES = {".yaml", ".yml", ".json"}
TRANSLATABLE_KEYS = ("title", "description", "intro", "prompt", "notes", "label")


class DefinitionError(ValueError):
    """An instrument definition that cannot be stored, with every problem and where it is.

    ``errors`` are (path, message); ``source_map``, when the definition came from a file, gives the
    line and column of each path (``problems()``)."""

    def __init__(
        self,
        errors: list[tuple[str, str]],
        source: str | None = None,
        source_map: SourceMap | None = None,
        positions: dict[int, tuple[int, int]] | None = None,
    ) -> None:
        self.errors = errors
        self.source = source
        self.source_map = source_map
        # Positions known without a source map (a syntax error's line), by index in ``errors``.
        self.positions = positions or {}
        lines = [f"{path or '(top level)'}: {message}" for path, message in errors]
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + ("; ".join(lines) if lines else "invalid definition"))

    def problems(self) -> list[dict[str, Any]]:
        """Each problem as ``{path, message}`` plus ``line`` and ``column`` (1-based) when known."""
        out = []
        for index, (path, message) in enumerate(self.errors):
            problem: dict[str, Any] = {"path": path, "message": message}
            where = self.positions.get(index)
            if where is None and self.source_map is not None:
                where = self.source_map.locate(path, message)
            if where is not None:
                problem["line"], problem["column"] = where
            out.append(problem)
        return out

    def as_details(self) -> list[dict[str, Any]]:
        return [{"location": "body", **problem} for problem in self.problems()]

    def located(self, source_map: SourceMap | None, source: str | None = None) -> DefinitionError:
        """The same problems, placed in the file ``source_map`` describes."""
        return DefinitionError(
            self.errors, source or self.source, source_map or self.source_map, self.positions
        )


class LocatedDefinition(dict):
    """Raw definition data read from a file, remembering where each part of it was."""

    source_map: SourceMap | None = None


class InstrumentNotFound(LookupError):
    pass


class VersionNotFound(LookupError):
    pass


@dataclass(frozen=True)
class PublishResult:
    slug: str
    version: int
    content_hash: str
    created: bool


# ---------------------------------------------------------------------------------------------
# Reading and validating


def read_definition_file(path: str | Path) -> LocatedDefinition:
    """Parse a YAML (1.2) or JSON instrument file into raw data (not yet validated) that keeps the
    line and column of each part for ``validate_definition``'s problems."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in DEFINITION_SUFFIXES:
        raise DefinitionError(
            [("", f"unsupported file type {path.suffix!r}; use .yaml, .yml or .json")], source
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DefinitionError([("", "file not found")], source) from exc
    except UnicodeDecodeError as exc:
        raise DefinitionError([("", f"not UTF-8 text (byte {exc.start})")], source) from exc
    try:
        data, source_map = parse_text(text.removeprefix("\ufeff"), "json" if suffix == ".json" else "yaml")
    except UnreadableFile as exc:
        raise unreadable(exc, source) from exc
    if not isinstance(data, dict):
        raise DefinitionError([("", "the file must hold a mapping (slug, title, sections, ...)")], source)
    located = LocatedDefinition(data)
    located.source_map = source_map
    return located


def unreadable(exc: UnreadableFile, source: str | None = None) -> DefinitionError:
    """A parse failure as a DefinitionError, keeping the line of a syntax error."""
    positions = {
        index: (problem["line"], problem["column"])
        for index, problem in enumerate(exc.problems)
        if problem.get("line")
    }
    return DefinitionError(
        [(problem.get("path", ""), problem["message"]) for problem in exc.problems],
        source,
        positions=positions,
    )


def validate_definition(
    raw: Any, source: str | None = None, source_map: SourceMap | None = None
) -> dict[str, Any]:
    """Validate raw definition data and return it normalised, or raise DefinitionError.

    Problems carry line and column when ``source_map`` is given or ``raw`` came from
    ``read_definition_file``."""
    source_map = source_map or getattr(raw, "source_map", None)
    if not isinstance(raw, dict):
        raise DefinitionError([("", "a definition must be a mapping")], source)
    try:
        data = InstrumentDefinitionSchema().deserialize(raw)
    except colander.Invalid as invalid:
        errors = [(colander_path(path), message) for path, message in sorted(invalid.asdict().items())]
        raise DefinitionError(errors, source, source_map) from invalid
    errors = check_definition(data)
    if errors:
        raise DefinitionError(errors, source, source_map)
    return normalise(data)


def check_definition(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules that span fields; ``data`` has passed the colander schema."""
    errors: list[tuple[str, str]] = []
    default = data["default_language"]
    languages = data["languages"]
    if len(set(languages)) != len(languages):
        errors.append(("languages", "a language is listed twice"))
    if default not in languages:
        errors.append(("languages", f"must include the default language {default!r}"))
    known_languages = set(languages)

    for path, text in _iter_texts(data):
        for language in text:
            if language and language not in known_languages:
                errors.append(
                    (path, f"translation {language!r} is not in languages {sorted(known_languages)}")
                )
        if "" not in text and default not in text:
            errors.append((path, f"has no text in the default language {default!r}"))

    seen_questions: dict[str, str] = {}
    seen_sections: dict[str, str] = {}
    seen_bindings: dict[str, str] = {}
    for path, section in _iter_sections(data):
        if section["id"] in seen_sections:
            errors.append(
                (
                    f"{path}.id",
                    f"section id {section['id']!r} is already used at {seen_sections[section['id']]}",
                )
            )
        else:
            seen_sections[section["id"]] = path
        if not section["questions"] and not section.get("sections"):
            errors.append((path, "a section needs questions or sub-sections"))

    for path, question in iter_questions(data):
        qid = question["id"]
        # Relevance may only look back: an answer that comes later cannot decide what is asked now.
        earlier = set(seen_questions)
        if qid in seen_questions:
            errors.append((f"{path}.id", f"question id {qid!r} is already used at {seen_questions[qid]}"))
        else:
            seen_questions[qid] = path
        errors.extend(_check_question(path, question, earlier))
        errors.extend(check_binding(path, question, seen_bindings))
    return errors


def _check_question(path: str, question: dict[str, Any], earlier: set[str]) -> list[tuple[str, str]]:
    errors = []
    qtype = question["type"]
    if qtype in CHOICE_TYPES:
        choices = question.get("choices") or []
        if not choices:
            errors.append((f"{path}.choices", f"a {qtype} question needs at least one choice"))
        values = [choice["value"] for choice in choices]
        for index, value in enumerate(values):
            if value in values[:index]:
                errors.append((f"{path}.choices[{index}].value", f"choice value {value!r} is repeated"))
    elif "choices" in question:
        errors.append((f"{path}.choices", f"a {qtype} question cannot have choices"))
    if qtype != "number":
        for bound in ("min", "max"):
            if bound in question:
                errors.append((f"{path}.{bound}", f"only number questions take {bound}"))
    elif "min" in question and "max" in question and question["min"] > question["max"]:
        errors.append((f"{path}.min", "min is greater than max"))
    if "relevance" in question:
        try:
            expression = parse_relevance(question["relevance"])
        except RelevanceError as exc:
            errors.append((f"{path}.relevance", f"bad relevance expression: {exc}"))
        else:
            for ref in sorted(expression.references - earlier):
                errors.append((f"{path}.relevance", f"refers to ${ref}, which is not an earlier question"))
    return errors


def _iter_sections(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    def walk(sections: list[dict[str, Any]], prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for index, section in enumerate(sections):
            path = f"{prefix}[{index}]"
            yield path, section
            yield from walk(section.get("sections", []), f"{path}.sections")

    yield from walk(data["sections"], "sections")


def iter_questions(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every question in asking order, metadata first, with its path in the definition."""
    for index, question in enumerate(data.get("metadata", [])):
        yield f"metadata[{index}]", question
    for path, section in _iter_sections(data):
        for index, question in enumerate(section["questions"]):
            yield f"{path}.questions[{index}]", question


def iter_section_questions(data: dict[str, Any]) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """Section questions in asking order with the ids of the sections that hold them."""

    def walk(sections: list[dict[str, Any]], trail: list[str]) -> Iterator[tuple[list[str], dict[str, Any]]]:
        for section in sections:
            here = [*trail, section["id"]]
            for question in section["questions"]:
                yield here, question
            yield from walk(section.get("sections", []), here)

    yield from walk(data["sections"], [])


def _iter_texts(data: Any, path: str = "") -> Iterator[tuple[str, dict[str, str]]]:
    if isinstance(data, dict):
        for key, value in data.items():
            child = f"{path}.{key}" if path else key
            if key in TRANSLATABLE_KEYS and isinstance(value, dict):
                yield child, value
            elif key == "probes":
                for index, probe in enumerate(value):
                    yield f"{child}[{index}]", probe
            else:
                yield from _iter_texts(value, child)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from _iter_texts(item, f"{path}[{index}]")


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Give plain strings their language, so two spellings of one instrument hash alike."""
    default = data["default_language"]

    def fix(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            if key in TRANSLATABLE_KEYS or key == "probe":
                return {
                    (lang or default): text
                    for lang, text in sorted(value.items(), key=lambda kv: kv[0] or default)
                }
            return {k: fix(v, "probe" if k == "probes" else k) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(item, key) for item in value]
        return value

    return fix(data)


def content_hash(definition: dict[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def question_types(definition: dict[str, Any]) -> dict[str, str]:
    return {question["id"]: question["type"] for _, question in iter_questions(definition)}


# ---------------------------------------------------------------------------------------------
# Publishing


def publish(session: Session, definition: dict[str, Any], published_by: str | None = None) -> PublishResult:
    """Store ``definition`` (already validated) as the next version, unless it is the current one."""
    digest = content_hash(definition)
    slug = definition["slug"]
    instrument = session.scalar(select(Instrument).where(Instrument.slug == slug))
    if instrument is not None:
        current = session.scalar(
            select(InstrumentVersion).where(
                InstrumentVersion.instrument_id == instrument.id,
                InstrumentVersion.version == instrument.current_version,
            )
        )
        if current is not None and current.content_hash == digest:
            return PublishResult(slug, current.version, digest, created=False)
        _check_types_unchanged(session, instrument, definition)
        next_version = instrument.current_version + 1
    else:
        instrument = Instrument(slug=slug, current_version=1)
        session.add(instrument)
        next_version = 1
    instrument.title = _default_text(definition["title"], definition["default_language"])[:500]
    instrument.activity = definition["activity"]
    instrument.study = definition.get("study")
    instrument.current_version = next_version
    session.flush()
    session.add(
        InstrumentVersion(
            instrument_id=instrument.id,
            version=next_version,
            content_hash=digest,
            definition=definition,
            published_by=published_by,
        )
    )
    session.flush()
    announce(session, instrument.study, f"{slug}@{next_version}")
    return PublishResult(slug, next_version, digest, created=True)


def announce(session: Session, study: str | None, key: str) -> None:
    """Put an instrument change into the change feed of its study (of every study when shared),
    so tablets learn of it on their next pull."""
    from surveykit.studies.feed import append_changes
    from surveykit.studies.models import Study

    query = select(Study.id).order_by(Study.id)
    if study is not None:
        query = query.where(Study.slug == study)
    for study_id in session.scalars(query).all():
        append_changes(session, study_id, [(None, "instrument", key)])


def _check_types_unchanged(session: Session, instrument: Instrument, definition: dict[str, Any]) -> None:
    new_types = question_types(definition)
    earlier = session.execute(
        select(InstrumentVersion.version, InstrumentVersion.definition)
        .where(InstrumentVersion.instrument_id == instrument.id)
        .order_by(InstrumentVersion.version)
    )
    errors: dict[str, tuple[str, str]] = {}
    old_types: dict[str, tuple[str, int]] = {}
    for version, old_definition in earlier:
        for qid, qtype in question_types(old_definition).items():
            old_types[qid] = (qtype, version)
    paths = {question["id"]: path for path, question in iter_questions(definition)}
    for qid, qtype in new_types.items():
        if qid in old_types and old_types[qid][0] != qtype:
            old_type, version = old_types[qid]
            errors[qid] = (
                f"{paths[qid]}.type",
                f"question {qid!r} was {old_type} in version {version} and cannot become {qtype}; "
                "give the changed question a new id",
            )
    if errors:
        raise DefinitionError(list(errors.values()))


def type_change_problems(session: Session, slug: str, definition: dict[str, Any]) -> list[tuple[str, str]]:
    """What the type-change guard would refuse if ``definition`` were published now as the next
    version of ``slug``: (path, message) pairs, none for an instrument not yet published. The
    comparison of versions (``surveykit.instruments.compare``) asks this before publishing."""
    instrument = session.scalar(select(Instrument).where(Instrument.slug == slug))
    if instrument is None:
        return []
    try:
        _check_types_unchanged(session, instrument, definition)
    except DefinitionError as exc:
        return list(exc.errors)
    return []


def publish_file(session: Session, path: str | Path, published_by: str | None = None) -> PublishResult:
    raw = read_definition_file(path)
    definition = validate_definition(raw, source=str(path))
    try:
        return publish(session, definition, published_by)
    except DefinitionError as exc:
        # A refused type change must still name the file it came from, and the line.
        raise exc.located(raw.source_map, str(path)) from exc


def definition_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in DEFINITION_SUFFIXES and p.is_file())


def retire(session: Session, slug: str) -> Instrument:
    instrument = get_instrument(session, slug)
    if instrument.retired_at is None:
        instrument.retired_at = utcnow()
        announce(session, instrument.study, instrument.slug)
    return instrument


def instrument_study(session: Session, slug: str) -> tuple[bool, str | None]:
    """Whether ``slug`` exists, and the study it belongs to (None: shared)."""
    row = session.execute(select(Instrument.study).where(Instrument.slug == slug)).first()
    return (row is not None, row.study if row is not None else None)


@dataclass(frozen=True)
class CurrentInstrument:
    study: str | None
    current: VersionRef


_CURRENT_QUERY = (
    select(Instrument.study, Instrument.retired_at, InstrumentVersion.version, InstrumentVersion.content_hash)
    .join(
        InstrumentVersion,
        (InstrumentVersion.instrument_id == Instrument.id)
        & (InstrumentVersion.version == Instrument.current_version),
    )
    .where(Instrument.slug == bindparam("slug"))
)


def current_instrument(session: Session, slug: str) -> CurrentInstrument | None:
    """The study and the current version of ``slug`` in one query (None: no such instrument):
    what both the access check and the tablet's GET need."""
    row = session.connection().execute(_CURRENT_QUERY, {"slug": slug}).first()
    if row is None:
        return None
    return CurrentInstrument(
        row.study, VersionRef(slug, row.version, row.content_hash, row.retired_at is not None)
    )


def get_instrument(session: Session, slug: str) -> Instrument:
    instrument = session.scalar(select(Instrument).where(Instrument.slug == slug))
    if instrument is None:
        raise InstrumentNotFound(slug)
    return instrument


def list_versions(session: Session, slug: str) -> list[dict[str, Any]]:
    """The published versions of an instrument, newest first (without their definitions)."""
    instrument = get_instrument(session, slug)
    rows = session.execute(
        select(
            InstrumentVersion.version,
            InstrumentVersion.content_hash,
            InstrumentVersion.published_at,
            InstrumentVersion.published_by,
        )
        .where(InstrumentVersion.instrument_id == instrument.id)
        .order_by(InstrumentVersion.version.desc())
    )
    return [
        {
            "version": row.version,
            "content_hash": row.content_hash,
            "published_at": row.published_at,
            "published_by": row.published_by,
            "current": row.version == instrument.current_version,
        }
        for row in rows
    ]


def list_instruments(
    session: Session, include_retired: bool = False, studies: set[str] | None = None
) -> list[dict[str, Any]]:
    """Instruments with their current version; ``studies`` limits them to shared ones and those studies."""
    query = (
        select(Instrument, InstrumentVersion)
        .join(
            InstrumentVersion,
            (InstrumentVersion.instrument_id == Instrument.id)
            & (InstrumentVersion.version == Instrument.current_version),
        )
        .order_by(Instrument.slug)
    )
    if not include_retired:
        query = query.where(Instrument.retired_at.is_(None))
    if studies is not None:
        query = query.where(or_(Instrument.study.is_(None), Instrument.study.in_(sorted(studies))))
    return [
        {
            "slug": instrument.slug,
            "title": instrument.title,
            "activity": instrument.activity,
            "study": instrument.study,
            "current_version": version.version,
            "languages": version.definition["languages"],
            "default_language": version.definition["default_language"],
            "content_hash": version.content_hash,
            "published_at": version.published_at.isoformat(),
            "retired": instrument.retired,
        }
        for instrument, version in session.execute(query)
    ]


@dataclass(frozen=True)
class VersionRef:
    slug: str
    version: int
    content_hash: str
    retired: bool


def find_version(session: Session, slug: str, version: int | None = None) -> VersionRef:
    """Locate a version (the current one when ``version`` is None) without loading its body."""
    query = (
        select(
            Instrument.current_version,
            Instrument.retired_at,
            InstrumentVersion.version,
            InstrumentVersion.content_hash,
        )
        .join(InstrumentVersion, InstrumentVersion.instrument_id == Instrument.id)
        .where(Instrument.slug == slug)
    )
    if version is None:
        query = query.where(InstrumentVersion.version == Instrument.current_version)
    else:
        query = query.where(InstrumentVersion.version == version)
    row = session.execute(query).first()
    if row is None:
        if version is not None and session.scalar(select(Instrument.id).where(Instrument.slug == slug)):
            raise VersionNotFound(f"{slug} has no version {version}")
        raise InstrumentNotFound(slug)
    return VersionRef(slug, row.version, row.content_hash, row.retired_at is not None)


def published_definitions(session: Session, slug: str) -> list[dict[str, Any]]:
    """The definitions of every published version of ``slug``, oldest first (none: not published)."""
    return list(
        session.scalars(
            select(InstrumentVersion.definition)
            .join(Instrument, Instrument.id == InstrumentVersion.instrument_id)
            .where(Instrument.slug == slug)
            .order_by(InstrumentVersion.version)
        )
    )


def load_definition(session: Session, slug: str, version: int) -> dict[str, Any]:
    return session.scalar(
        select(InstrumentVersion.definition)
        .join(Instrument, Instrument.id == InstrumentVersion.instrument_id)
        .where(Instrument.slug == slug, InstrumentVersion.version == version)
    )


# ---------------------------------------------------------------------------------------------
# Serving


LANGUAGE_QUERY = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


def localise(definition: dict[str, Any], language: str) -> dict[str, Any]:
    """Every translatable text as ``{"text", "lang", "fallback"}`` in ``language``."""
    default = definition["default_language"]

    def pick(text: dict[str, str]) -> dict[str, Any]:
        if language in text:
            return {"text": text[language], "lang": language, "fallback": False}
        return {"text": text[default], "lang": default, "fallback": True}

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            if key in TRANSLATABLE_KEYS or key == "probe":
                return pick(value)
            return {k: walk(v, "probe" if k == "probes" else k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(item, key) for item in value]
        return value

    localised = walk(definition)
    localised["language"] = language
    return localised


def serving_payload(
    slug: str, version: int, digest: str, definition: dict[str, Any], language: str | None
) -> dict[str, Any]:
    body = localise(definition, language) if language else definition
    return {"slug": slug, "version": version, "content_hash": digest, "definition": body}


# Versions are immutable, so a rendered body can be kept in memory and never needs invalidating.
# The key (and the ETag) includes the version number: republishing earlier content creates a new
# version with the same content hash, and its body names a different version.
_rendered: dict[tuple[str, int, str, str | None], Representation] = {}


def remembered_representation(ref: VersionRef, language: str | None) -> Representation | None:
    """The served form of a version if this process has rendered it before (no database needed)."""
    return _rendered.get((ref.slug, ref.version, ref.content_hash, language))


def version_representation(session: Session, ref: VersionRef, language: str | None) -> Representation:
    key = (ref.slug, ref.version, ref.content_hash, language)
    rep = _rendered.get(key)
    if rep is None:
        definition = load_definition(session, ref.slug, ref.version)
        if language is not None and language not in definition["languages"]:
            raise LanguageNotOffered(language, definition["languages"])
        payload = serving_payload(ref.slug, ref.version, ref.content_hash, definition, language)
        etag = f"{ref.content_hash}-v{ref.version}"
        if language is not None:
            etag = f"{etag}-{language}"
        rep = Representation.of_json(etag, payload)
        if len(_rendered) > 512:
            _rendered.clear()
        _rendered[key] = rep
    return rep


class LanguageNotOffered(LookupError):
    def __init__(self, language: str, offered: list[str]) -> None:
        super().__init__(f"language {language!r} is not offered; choose one of {', '.join(offered)}")
        self.language = language
        self.offered = offered


def _default_text(text: dict[str, str], default: str) -> str:
    return text.get(default) or next(iter(text.values()))
