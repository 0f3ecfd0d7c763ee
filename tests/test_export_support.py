"""Helpers for the export tests (no tests here): a study whose interviews are recorded through the
real registry and sync services, and readers for the workbooks written from it."""

from __future__ import annotations

import io
import uuid as uuid_module
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from surveykit.accounts.identity import GrantScope
from surveykit.exports.workbook import PART_PATTERN, join_parts
from surveykit.instruments import services as instruments
from surveykit.participants import ids
from surveykit.participants import services as registry
from surveykit.studies import services as studies
from surveykit.sync import services as sync
from surveykit.sync import validation
from surveykit.sync.models import Interview

STUDY = "exp"
STUDY_NAME = "Disrupting Harm"
SLUG = "exp-ra1"
SLUG_RA2 = "exp-ra2"
COUNTRIES = {"KE": "Kenya", "TZ": "Tanzania", "KH": "Cambodia", "ET": "Ethiopia", "TH": "Thailand"}
# Whether interview records carry the quote's participant letter yet (being added to sync).
QUOTES_NAME_PARTICIPANT = "participant" in validation.QUOTE_KEYS

KHMER = "ការយល់ដឹងរបស់សាធារណជនអំពីការកេងប្រវ័ញ្ចផ្លូវភេទលើកុមារតាមអ៊ីនធឺណិតនៅមានកម្រិតទាប។"
AMHARIC = "ስለ ህጻናት የመስመር ላይ ወሲባዊ ብዝበዛ የህዝብ ግንዛቤ አሁንም ዝቅተኛ ነው።"
THAI = "ความตระหนักรู้ของสาธารณชนเกี่ยวกับการแสวงหาประโยชน์ทางเพศจากเด็กทางออนไลน์ยังต่ำ"


def _question(qid: str, qtype: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"id": qid, "type": qtype, "prompt": prompt, **extra}


def definition(version: int, activity: str = "RA1") -> dict[str, Any]:
    """The RA1 schedule in small: version 2 drops ``laws_gaps`` and adds ``laws_future`` after
    ``laws_main``, and rewords the first prompt. With ``activity`` RA2: the same questions as
    another instrument, ``exp-ra2``."""
    laws = [
        _question(
            "laws_main",
            "long_text",
            "Which laws apply, and where are the gaps?",
            probes=["Grooming?", "Live streaming?"],
        )
    ]
    laws.append(
        _question("laws_gaps", "long_text", "Which gaps matter most?")
        if version == 1
        else _question("laws_future", "long_text", "Which draft laws or action plans are coming?")
    )
    awareness = (
        "How well do officials, parents, teachers and children understand the issue?"
        if version == 1
        else "How well do officials, parents, teachers and children understand online child abuse?"
    )
    return {
        "slug": SLUG if activity == "RA1" else SLUG_RA2,
        "study": STUDY,
        "title": f"{activity} (export tests)",
        "activity": activity,
        "default_language": "en",
        "languages": ["en", "sw", "km", "am", "th"],
        "metadata": [_question("agency", "short_text", "Ministry or agency")],
        "sections": [
            {
                "id": "awareness",
                "title": "Public awareness",
                "questions": [_question("awareness_main", "long_text", awareness)],
            },
            {
                "id": "government",
                "title": "Government ministries/agencies",
                "sections": [
                    {
                        "id": "capacity",
                        "title": "Capacity",
                        "questions": [
                            _question(
                                "training",
                                "long_text",
                                "What training do staff receive?",
                                probes=[
                                    {"en": "Who runs it?", "sw": "Nani anaiendesha?"},
                                    {"en": "How often?", "sw": "Mara ngapi?"},
                                    {"en": "Does it cover live streaming?", "sw": "Je, inahusu?"},
                                ],
                            ),
                            _question("budget_line", "yes_no", "Is there a budget line for the issue?"),
                            _question(
                                "budget_details",
                                "long_text",
                                "Describe the budget line.",
                                relevance="$budget_line == true",
                            ),
                        ],
                    }
                ],
            },
            {"id": "laws", "title": "Policies and laws", "questions": laws},
            {
                "id": "closing",
                "title": "Closing",
                "questions": [
                    _question(
                        "partners",
                        "multiple_choice",
                        "Which partners support the work?",
                        choices=[
                            {"value": "ngo", "label": "NGOs"},
                            {"value": "un", "label": "UN agencies"},
                            {"value": "police", "label": "Foreign police"},
                        ],
                    ),
                    _question("people", "number", "How many staff work on it?", min=0, max=10000),
                    _question("follow_up", "date", "Date of the follow-up"),
                    _question(
                        "confidence",
                        "single_choice",
                        "How confident is the participant?",
                        choices=[
                            {"value": "low", "label": "Low"},
                            {"value": "high", "label": "High"},
                        ],
                    ),
                ],
            },
        ],
    }


@dataclass
class Recorded:
    uuid: str
    country: str
    number: int
    pids: list[str]
    record: dict[str, Any]


@dataclass
class ExportWorld:
    session: Session
    accounts: Any
    recorded: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            self.study = studies.get_study(self.session, STUDY)
        except studies.StudyNotFound:
            self.study = studies.create_study(self.session, STUDY, STUDY_NAME)
            for code, name in COUNTRIES.items():
                studies.add_country(self.session, self.study, code, name)
            studies.add_activity(self.session, self.study, "RA1", "Duty bearers")
            studies.add_activity(self.session, self.study, "RA2", "Frontline workers")
            for version in (1, 2):
                instruments.publish(self.session, instruments.validate_definition(definition(version)))
            instruments.publish(self.session, instruments.validate_definition(definition(1, "RA2")))
        user = self.accounts.user(None, "coordinator", STUDY, None)
        self.caller = sync.Caller(user.id, user.username, None, (GrantScope("coordinator", STUDY, None),))
        self.session.flush()

    def skip_numbers(self, country: str, count: int) -> None:
        """Numbers used up by pilot or withdrawn interviews: gaps are normal."""
        ids.allocate_interview_numbers(self.session, self.study.id, "RA1", country, count)

    def interview(
        self,
        country: str,
        people: list[tuple[str, str | None]],
        *,
        version: int = 1,
        started: str = "2020-05-12T09:30:00+03:00",
        mode: str = "in_person",
        language: str = "en",
        answers: dict[str, Any] | None = None,
        quotes: list[dict[str, Any]] | None = None,
        status: str = "complete",
        activity: str = "RA1",
        probes_used: dict[str, list[int]] | None = None,
    ) -> Recorded:
        """Register a planned interview, then push its record as a coordinator at a desk would."""
        planned = registry.register_interview(
            self.session,
            self.study,
            country,
            activity,
            [registry.NewParticipant(agency, position) for agency, position in people],
            "tests",
        )
        number = planned[0].interview_number
        record: dict[str, Any] = {
            "study": STUDY,
            "country": country,
            "activity": activity,
            "interview_number": number,
            "participants": [
                {
                    "letter": ids.letter_for(index),
                    "agency": agency,
                    "position": position,
                    "consent_given": True,
                    "consent_date": started[:10],
                    "consent_recorded_how": "verbal_notes",
                }
                for index, (agency, position) in enumerate(people)
            ],
            "instrument": {"slug": SLUG if activity == "RA1" else SLUG_RA2, "version": version},
            "language": language,
            "mode": mode,
            "started_at": started,
            "ended_at": started[:11] + "23:00:00" + started[19:],
            "status": status,
            "answers": answers if answers is not None else {"awareness_main": "Low, but growing."},
        }
        if probes_used is not None:
            record["probes_used"] = probes_used
        stored_quotes = []
        for quote in quotes or []:
            quote = {"id": str(uuid_module.uuid4()), "tags": [], **quote}
            stored_quotes.append(quote)
        sent_quotes = [
            {k: v for k, v in q.items() if k != "participant" or QUOTES_NAME_PARTICIPANT}
            for q in stored_quotes
        ]
        if sent_quotes:
            record["quotes"] = sent_quotes
        uuid = str(uuid_module.uuid4())
        outcome = sync.push_batch(
            self.session, self.caller, [{"uuid": uuid, "base_revision": 0, "record": record}]
        )
        (result,) = outcome.results
        assert result.result == "created", result.as_json()
        if stored_quotes and not QUOTES_NAME_PARTICIPANT:
            # Until sync accepts the quote's participant letter, put it into the stored record as the
            # new sync will; the export reads it from there (``quote.get("participant", "A")``).
            record = {**record, "quotes": stored_quotes}
            self.session.execute(update(Interview).where(Interview.uuid == uuid).values(record=record))
        self.session.flush()
        recorded = Recorded(uuid, country, number, [p.pid for p in planned], record)
        self.recorded.append(recorded)
        return recorded

    def stored_interviews(self, country: str) -> list[Interview]:
        self.session.expire_all()
        return list(
            self.session.scalars(
                select(Interview)
                .where(Interview.study_id == self.study.id, Interview.country_code == country)
                .order_by(Interview.interview_number)
            )
        )


def kenya(world: ExportWorld) -> dict[str, Any]:
    """Kenya: 9 interviews with 11 participants from May to July 2020, numbered 95 to 103 (so IDs
    cross from 99 to 100), one group interview of three (A, B, C), blank positions, versions 1 and 2."""
    world.skip_numbers("KE", 94)
    made = {}
    made["director"] = world.interview(
        "KE",
        [("Ministry of ICT", "Director of Cyber Security")],
        started="2020-05-04T09:30:00+03:00",
        answers={
            "agency": "Ministry of ICT",
            "awareness_main": "Awareness is low outside Nairobi.",
            "training": "Two workshops a year.",
            "budget_line": True,
            "budget_details": "A small line inside the ICT budget.",
            "laws_main": "The Computer Misuse and Cybercrimes Act 2018.",
            "laws_gaps": "Grooming is not an offence yet.",
            "partners": ["ngo", "un"],
            "people": 12,
            "follow_up": "2020-06-01",
            "confidence": "high",
        },
        quotes=[
            {
                "question_id": "awareness_main",
                "text": "Awareness is low",
                "start": 0,
                "end": 16,
                "tags": ["awareness"],
            },
            {"question_id": "laws_gaps", "text": "Grooming is not an offence yet.", "tags": ["law", "gaps"]},
        ],
    )
    made["justice"] = world.interview(
        "KE",
        [("Ministry of Justice", None)],
        started="2020-05-20T10:00:00+03:00",
        mode="virtual",
        answers={"awareness_main": "We see more cases every year.", "budget_line": False},
        quotes=[{"question_id": "awareness_main", "text": "We see more cases every year."}],
    )
    made["group"] = world.interview(
        "KE",
        [
            ("Directorate of Criminal Investigations", "Head of the Cybercrime Unit"),
            ("Directorate of Criminal Investigations", None),
            ("Office of the Director of Public Prosecutions", "Senior Prosecutor"),
        ],
        version=2,
        started="2020-06-02T08:00:00+03:00",
        answers={
            "awareness_main": "Officers know the law; parents do not.",
            "laws_main": "Prosecutions rely on the Sexual Offences Act.",
            "laws_future": "A national plan of action is being drafted.",
            "people": 3,
        },
        quotes=[
            {
                "question_id": "laws_main",
                "text": "Prosecutions rely on the Sexual Offences Act.",
                "participant": "C",
            },
            {
                "question_id": "awareness_main",
                "text": "parents do not",
                "participant": "B",
                "tags": ["parents"],
            },
            {"question_id": "awareness_main", "text": "Officers know the law", "participant": "A"},
        ],
    )
    for index, (agency, position, started, mode, version) in enumerate(
        [
            (
                "Communications Authority of Kenya",
                "Manager, Child Online Protection",
                "2020-06-10",
                "phone",
                2,
            ),
            ("National Council for Children's Services", None, "2020-06-15", "in_person", 2),
            ("Ministry of Education", "Deputy Director", "2020-06-22", "virtual", 2),
            ("Ministry of Labour and Social Protection", "Children's Officer", "2020-07-01", "in_person", 1),
            ("Kenya Police Service", "Gender Desk Officer", "2020-07-14", "in_person", 2),
            ("Judiciary", None, "2020-07-28", "virtual", 2),
        ]
    ):
        made[f"single{index}"] = world.interview(
            "KE",
            [(agency, position)],
            version=version,
            started=f"{started}T09:00:00+03:00",
            mode=mode,
            answers={"awareness_main": f"Answer {index} about awareness.", "people": index},
        )
    return made


# --------------------------------------------------------------------------------------- reading


def load(source: bytes | str | Path) -> openpyxl.Workbook:
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    return openpyxl.load_workbook(source)


def rows(book: openpyxl.Workbook, title: str, header_rows: int = 1) -> list[list[Any]]:
    sheet = book[title]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    return [_trim(row) for row in values[header_rows:]]


def header(book: openpyxl.Workbook, title: str, row: int = 1) -> list[Any]:
    return _trim(list(next(book[title].iter_rows(min_row=row, max_row=row, values_only=True))))


def _trim(row: list[Any]) -> list[Any]:
    while row and row[-1] is None:
        row.pop()
    return row


def joined(data: list[list[Any]]) -> list[list[Any]]:
    """Rows with split texts put back together: a row whose texts continue a text of the row above
    (``[part k/n]`` with k > 1) is folded into it."""
    out: list[list[Any]] = []
    for row in data:
        continues = {
            index: value
            for index, value in enumerate(row)
            if isinstance(value, str) and (m := PART_PATTERN.match(value)) and m.group(1) != "1"
        }
        if continues and out:
            previous = out[-1]
            for index, value in continues.items():
                previous[index] = join_parts([previous[index], value])
            continue
        out.append([join_parts([v]) if isinstance(v, str) and PART_PATTERN.match(v) else v for v in row])
    return out


def summary(book: openpyxl.Workbook) -> dict[str, Any]:
    """The Summary's item/value pairs (up to the per-country table)."""
    items: dict[str, Any] = {}
    for row in book["Summary"].iter_rows(values_only=True):
        if row[0] == "Per country":
            break
        if row[0] is not None:
            items[row[0]] = row[1]
    return items


def per_country(book: openpyxl.Workbook) -> list[dict[str, Any]]:
    data = [list(row) for row in book["Summary"].iter_rows(values_only=True)]
    start = next(i for i, row in enumerate(data) if row[0] == "Per country")
    names = data[start + 1]
    return [dict(zip(names, row, strict=False)) for row in data[start + 2 :] if row[0] is not None]


def as_date(value: Any) -> date | None:
    return value.date() if isinstance(value, datetime) else value
