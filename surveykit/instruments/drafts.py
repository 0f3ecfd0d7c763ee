"""Instrument drafts: an uploaded instrument file kept, with what was found in it, until it is
published or deleted (the studio's console pages, docs/console-studio.md).

A draft is not a version: nothing reads it but the people who may publish it. Its ``definition``
is the validated, normalised definition when the file holds one without problems, else None; its
``problems`` are what stands in the way, each with where it is in the file (line and column, or
sheet, row and column).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pyramid.authorization import Allow
from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from surveykit.db import Base, UTCDateTime, utcnow
from surveykit.instruments import instrument_acl
from surveykit.security import Permission

if TYPE_CHECKING:  # accounts imports instruments (its schemas); at run time only the attributes count
    from surveykit.accounts.identity import Identity

DRAFT_ID = r"[0-9]{1,18}"


class InstrumentDraft(Base):
    __tablename__ = "instrument_drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # From the file when it names them (None: unreadable, or not named); they decide who sees it.
    slug: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    study: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(8))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    uploaded_by: Mapped[str] = mapped_column(String(200))
    uploader_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def publishable(self) -> bool:
        return self.definition is not None and not self.problems


@dataclass(frozen=True)
class CheckedFile:
    """An uploaded file as read and checked: what a draft stores."""

    filename: str
    format: str
    content: bytes
    slug: str | None
    study: str | None
    definition: dict[str, Any] | None
    problems: list[dict[str, Any]]


class DraftNotFound(LookupError):
    pass


def draft_acl(draft: InstrumentDraft | None) -> tuple[tuple[str, str, str], ...]:
    """Whoever may publish instruments for the draft's study may see, change and publish it. A
    draft whose file names no study is also its uploader's (a shared instrument's publishers are
    global admins only, and an unreadable file names nothing)."""
    if draft is None:
        # An unknown draft: publishers get as far as the view's "not found".
        return (
            (Allow, "role:coordinator", Permission.INSTRUMENTS_PUBLISH),
            (Allow, "role:admin", Permission.INSTRUMENTS_PUBLISH),
        )
    acl = tuple(entry for entry in instrument_acl(draft.study) if entry[2] == Permission.INSTRUMENTS_PUBLISH)
    if draft.study is None and draft.uploader_id is not None:
        acl += ((Allow, f"user:{draft.uploader_id}", Permission.INSTRUMENTS_PUBLISH),)
    return acl


class DraftResource:
    """One draft by id (route ``{draft_id}``); its ACL comes from the study its file names."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.draft = find_draft(request.dbsession, request.matchdict["draft_id"])

    @property
    def __acl__(self) -> tuple[tuple[str, str, str], ...]:
        return draft_acl(self.draft)


def find_draft(session: Session, raw_id: str) -> InstrumentDraft | None:
    if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 18:
        return None
    return session.get(InstrumentDraft, int(raw_id))


def create_draft(
    session: Session, checked: CheckedFile, uploaded_by: str, uploader_id: int | None
) -> InstrumentDraft:
    now = utcnow()
    draft = InstrumentDraft(uploaded_by=uploaded_by, uploader_id=uploader_id, created_at=now, updated_at=now)
    _fill(draft, checked)
    session.add(draft)
    session.flush()
    return draft


def replace_file(
    session: Session, draft: InstrumentDraft, checked: CheckedFile, uploaded_by: str, uploader_id: int | None
) -> InstrumentDraft:
    """A corrected file: the draft keeps its id and holds what the new file holds; whoever sent the
    file is its uploader now (a file naming no study stays theirs)."""
    _fill(draft, checked)
    draft.uploaded_by, draft.uploader_id = uploaded_by, uploader_id
    draft.updated_at = utcnow()
    session.flush()
    return draft


def _fill(draft: InstrumentDraft, checked: CheckedFile) -> None:
    draft.filename = checked.filename[:255]
    draft.format = checked.format
    draft.content = checked.content
    draft.slug = checked.slug
    draft.study = checked.study
    draft.definition = checked.definition
    draft.problems = checked.problems


def delete_draft(session: Session, draft: InstrumentDraft) -> None:
    session.delete(draft)
    session.flush()


def publishing_studies(identity: Identity) -> set[str] | None:
    """The studies whose instruments ``identity`` may publish (None: every study, a global admin)."""
    if identity.is_global_admin:
        return None
    return {grant.study for grant in identity.grants if grant.role in ("coordinator", "admin")}


def may_publish_for(identity: Identity, study: str | None) -> bool:
    """The instruments' own rule (``instrument_acl``): coordinators and admins of the study; a
    shared instrument (no study), global admins."""
    studies = publishing_studies(identity)
    if studies is None:
        return True
    return study is not None and study in studies


def visible_drafts(session: Session, identity: Identity) -> list[InstrumentDraft]:
    """The drafts ``identity`` may see, most recently changed first."""
    query = select(InstrumentDraft).order_by(InstrumentDraft.updated_at.desc(), InstrumentDraft.id.desc())
    studies = publishing_studies(identity)
    if studies is not None:
        query = query.where(
            or_(
                InstrumentDraft.study.in_(sorted(studies)),
                (InstrumentDraft.study.is_(None)) & (InstrumentDraft.uploader_id == identity.user_id),
            )
        )
    return list(session.scalars(query))
