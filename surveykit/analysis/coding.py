"""Coding passages of interview answers: create, list, change and delete codings, and the figures of
agreement between two coders.

A coding is made against the interview's current revision: the passage is given by offsets (Unicode
code points) into the text answer of one question, or by a quote of that revision, whose offsets are
used. The stored ``text`` is always the answer's passage itself. Nothing here touches the interview,
its revisions or its quotes. A coder changes and deletes only their own codings; an admin of the
study (or a global admin) anyone's.

Locks (PostgreSQL; SQLite serialises writers anyway), always taken in the order interview, code,
coding, as the sync push (interview, then its codings) and a merge of codes (codes, then their
codings) take theirs: creating or re-placing a coding holds its interview ``FOR SHARE``, so a push of
a new revision either waits for the coding to commit and then re-anchors it, or commits first and the
coding is made against the new revision; the code is held ``FOR SHARE`` too, so a coding never lands
on a code a concurrent merge or retirement is changing.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.analysis import agreement as agreement_figures
from surveykit.analysis.codebook import MAX_ID
from surveykit.analysis.models import Code, Coding
from surveykit.db import utcnow
from surveykit.studies.models import Study
from surveykit.sync.models import Interview, Quote

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MEMO_MAX = 10_000


class InterviewNotFound(LookupError):
    """No interview with that UUID in the study and country of the URL."""


class CodingNotFound(LookupError):
    """No coding with that id in the study and country of the URL."""


class NotYourCoding(PermissionError):
    """A coder changing or deleting another coder's coding."""


class CodingInvalid(ValueError):
    """A request that names something that cannot be coded; ``path`` is the field at fault."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Coder:
    user_id: int
    username: str
    # Admins of the study change and delete every coder's codings.
    may_change_any: bool = False


@dataclass(frozen=True)
class Passage:
    """What a new coding codes: a quote, or offsets into one question's answer."""

    interview_uuid: str
    question_id: str | None = None
    start: int | None = None
    end: int | None = None
    quote_id: str | None = None


@dataclass(frozen=True)
class CodingFilter:
    coder: str | None = None
    code_id: int | None = None
    interview_uuid: str | None = None
    question_id: str | None = None
    anchor: str | None = None


@dataclass(frozen=True)
class CodingPage:
    codings: list[Coding]
    next_after: int | None


def _interview(session: Session, study: Study, country: str, uuid: str) -> Interview:
    """The interview, held ``FOR SHARE`` until the transaction ends (see the module's doc)."""
    interview = session.scalar(
        select(Interview)
        .where(Interview.uuid == uuid, Interview.study_id == study.id, Interview.country_code == country)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    if interview is None:
        raise InterviewNotFound(f"no interview {uuid} in {study.slug}/{country}")
    return interview


def _shared_code(session: Session, study: Study, code_id: int) -> Code:
    """A code of the study, held ``FOR SHARE`` (a merge or a status change waits for the coding)."""
    code = None
    if 0 < code_id <= MAX_ID:
        code = session.scalar(
            select(Code)
            .where(Code.id == code_id, Code.study_id == study.id)
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        )
    if code is None:
        raise CodingInvalid("code_id", f"no code {code_id} in the codebook of {study.slug}")
    return code


def _check_active(code: Code) -> Code:
    if code.status != "active":
        raise CodingInvalid("code_id", f"code {code.id} is {code.status}: code with an active code")
    return code


def answer_text(interview: Interview, question_id: str, path: str = "question_id") -> str:
    """The text answer to ``question_id`` in the interview's current revision."""
    answers = interview.record.get("answers")
    if not isinstance(answers, dict) or question_id not in answers or answers[question_id] is None:
        raise CodingInvalid(
            path, f"revision {interview.revision} of the interview has no answer to {question_id!r}"
        )
    answer = answers[question_id]
    if not isinstance(answer, str):
        kind = "a list" if isinstance(answer, list) else type(answer).__name__
        if isinstance(answer, bool):
            kind = "yes/no"
        raise CodingInvalid(path, f"only text answers can be coded; the answer to {question_id!r} is {kind}")
    return answer


def _check_offsets(answer: str, start: int, end: int) -> None:
    if start < 0:
        raise CodingInvalid("start", "must be 0 or more")
    if start >= len(answer):
        raise CodingInvalid("start", f"must be less than the answer's length, {len(answer)} characters")
    if end <= start:
        raise CodingInvalid("end", "must be greater than start")
    if end > len(answer):
        raise CodingInvalid("end", f"must be at most the answer's length, {len(answer)} characters")


def _quote_passage(session: Session, interview: Interview, quote_id: str) -> tuple[str, int, int]:
    quote = session.get(Quote, quote_id)
    if quote is None or quote.interview_uuid != interview.uuid:
        raise CodingInvalid("quote_id", f"no quote {quote_id} in the interview's current revision")
    answer = answer_text(interview, quote.question_id, "quote_id")
    if quote.start_offset is not None and quote.end_offset is not None:
        start, end = quote.start_offset, quote.end_offset
    else:
        start = answer.find(quote.text)
        if start == -1 or not quote.text:
            raise CodingInvalid("quote_id", "the quote has no offsets and its text is not in its answer")
        end = start + len(quote.text)
    if not 0 <= start < end <= len(answer):
        raise CodingInvalid("quote_id", "the quote's offsets lie outside its answer")
    return quote.question_id, start, end


def create_coding(
    session: Session,
    study: Study,
    country: str,
    coder: Coder,
    passage: Passage,
    code_id: int,
    memo: str = "",
) -> Coding:
    interview = _interview(session, study, country, passage.interview_uuid)
    if passage.quote_id is not None:
        for name in ("question_id", "start", "end"):
            if getattr(passage, name) is not None:
                raise CodingInvalid(name, "give either quote_id or question_id, start and end, not both")
        question_id, start, end = _quote_passage(session, interview, passage.quote_id)
    else:
        for name in ("question_id", "start", "end"):
            if getattr(passage, name) is None:
                raise CodingInvalid(name, "required (or give quote_id)")
        assert passage.question_id is not None and passage.start is not None and passage.end is not None
        question_id, start, end = passage.question_id, passage.start, passage.end
    answer = answer_text(interview, question_id)
    _check_offsets(answer, start, end)
    code = _check_active(_shared_code(session, study, code_id))
    now = utcnow()
    coding = Coding(
        guid=str(uuid_module.uuid4()),
        study_id=study.id,
        country_code=country,
        code_id=code.id,
        interview_uuid=interview.uuid,
        question_id=question_id,
        quote_id=passage.quote_id,
        start_offset=start,
        end_offset=end,
        text=answer[start:end],
        memo=memo,
        coder_id=coder.user_id,
        coder=coder.username,
        anchor="current",
        anchored_revision=interview.revision,
        created_at=now,
        updated_at=now,
    )
    session.add(coding)
    session.flush()
    return coding


def get_coding(session: Session, study: Study, country: str, coding_id: int) -> Coding:
    coding = session.get(Coding, coding_id)
    if coding is None or coding.study_id != study.id or coding.country_code != country:
        raise CodingNotFound(f"no coding {coding_id} in {study.slug}/{country}")
    return coding


def _check_owner(coding: Coding, coder: Coder) -> None:
    if coding.coder_id != coder.user_id and not coder.may_change_any:
        raise NotYourCoding(
            f"coding {coding.id} is {coding.coder}'s: only its coder or an admin may change it"
        )


def update_coding(
    session: Session,
    study: Study,
    coding: Coding,
    coder: Coder,
    changes: dict[str, Any],
) -> list[str]:
    """Apply ``changes`` (memo, code_id, start and end together, confirm); the names changed.

    ``coding`` is read again under its lock (after its interview's and the new code's), so a
    revision or a merge committed meanwhile is what the change applies to."""
    _check_owner(coding, coder)
    if ("start" in changes) != ("end" in changes):
        missing = "end" if "start" in changes else "start"
        raise CodingInvalid(missing, "re-placing a coding takes both start and end")
    interview = session.scalar(
        select(Interview)
        .where(Interview.uuid == coding.interview_uuid)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    assert interview is not None  # a foreign key
    code = _shared_code(session, study, changes["code_id"]) if "code_id" in changes else None
    coding_id = coding.id
    locked = session.scalar(
        select(Coding)
        .where(Coding.id == coding_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if locked is None:
        raise CodingNotFound(f"coding {coding_id} was deleted meanwhile")
    changed: list[str] = []
    if code is not None and code.id != coding.code_id:
        coding.code_id = _check_active(code).id
        changed.append("code_id")
    if "memo" in changes and changes["memo"] != coding.memo:
        coding.memo = changes["memo"]
        changed.append("memo")
    if "start" in changes:
        answer = answer_text(interview, coding.question_id)
        start, end = changes["start"], changes["end"]
        _check_offsets(answer, start, end)
        coding.start_offset, coding.end_offset = start, end
        coding.text = answer[start:end]
        coding.anchor = "current"
        coding.anchored_revision = interview.revision
        changed.append("passage")
    elif changes.get("confirm"):
        if coding.anchor == "vanished":
            raise CodingInvalid("confirm", "a vanished coding is re-placed with start and end, not confirmed")
        if coding.anchor == "moved":
            coding.anchor = "current"
            changed.append("anchor")
    if changed:
        coding.updated_at = utcnow()
        session.flush()
    return changed


def delete_coding(session: Session, coding: Coding, coder: Coder) -> None:
    _check_owner(coding, coder)
    session.delete(coding)
    session.flush()


def coding_page(
    session: Session,
    study: Study,
    country: str,
    filters: CodingFilter,
    after: int | None = None,
    limit: int = DEFAULT_PAGE,
) -> CodingPage:
    query = select(Coding).where(Coding.study_id == study.id, Coding.country_code == country)
    if filters.coder is not None:
        query = query.where(Coding.coder == filters.coder)
    if filters.code_id is not None:
        query = query.where(Coding.code_id == filters.code_id)
    if filters.interview_uuid is not None:
        query = query.where(Coding.interview_uuid == filters.interview_uuid)
    if filters.question_id is not None:
        query = query.where(Coding.question_id == filters.question_id)
    if filters.anchor is not None:
        query = query.where(Coding.anchor == filters.anchor)
    if after is not None:
        query = query.where(Coding.id > after)
    rows = list(session.scalars(query.order_by(Coding.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return CodingPage(rows, rows[-1].id if more else None)


def describe_coding(coding: Coding) -> dict[str, Any]:
    return {
        "id": coding.id,
        "guid": coding.guid,
        "interview_uuid": coding.interview_uuid,
        "question_id": coding.question_id,
        "quote_id": coding.quote_id,
        "start": coding.start_offset,
        "end": coding.end_offset,
        "text": coding.text,
        "code_id": coding.code_id,
        "original_code_id": coding.original_code_id,
        "memo": coding.memo,
        "coder": coding.coder,
        "anchor": coding.anchor,
        "anchored_revision": coding.anchored_revision,
        "created_at": coding.created_at.isoformat(),
        "updated_at": coding.updated_at.isoformat(),
    }


def coder_agreement(
    session: Session, study: Study, country: str, first: str, second: str, code_id: int | None = None
) -> dict[str, Any]:
    """The agreement figures of two coders over the country's codings (see ``agreement``)."""
    rows = session.execute(
        select(Coding.coder, Coding.interview_uuid, Coding.question_id, Coding.code_id).where(
            Coding.study_id == study.id, Coding.country_code == country, Coding.coder.in_((first, second))
        )
    ).all()
    pairs: dict[str, list[tuple[Any, int]]] = {first: [], second: []}
    for coder, interview_uuid, question_id, code in rows:
        pairs[coder].append(((interview_uuid, question_id), code))
    units, figures = agreement_figures.agreement(
        pairs[first], pairs[second], None if code_id is None else [code_id]
    )
    return {
        "coders": [first, second],
        "unit": "answer (interview and question)",
        "units": len(units),
        "codes": [figure.as_json() for figure in figures],
    }
