"""The texts reports print, made from the registry: the methods sentence and the citations.

The workbook's sheets and the Codes sheet (``codes_sheet``) both cite from here, so a citation has
one form wherever it appears.
"""

from __future__ import annotations

from datetime import date

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def month_year(day: date) -> str:
    return f"{MONTHS[day.month - 1]} {day.year}"


def methods_sentence(
    place: str, interviews: int, participants: int, first: date | None, last: date | None
) -> str:
    """``In Kenya, 9 interviews with a total of 11 participants were conducted from May 2020 to July 2020.``

    One interview: ``1 interview with a total of 2 participants was conducted in May 2020.`` (the
    verb agrees with the interviews; one month is "in May 2020"); none: ``In Kenya, no interviews
    have been recorded.``; interviews without a plausible date: the sentence names no months.
    """
    if interviews == 0:
        return f"In {place}, no interviews have been recorded."
    interview_noun = "interview" if interviews == 1 else "interviews"
    participant_noun = "participant" if participants == 1 else "participants"
    verb = "was" if interviews == 1 else "were"
    if first is None or last is None:
        return (
            f"In {place}, {interviews} {interview_noun} with a total of {participants} {participant_noun} "
            f"{verb} conducted."
        )
    if (first.year, first.month) == (last.year, last.month):
        when = f"in {month_year(first)}"
    else:
        when = f"from {month_year(first)} to {month_year(last)}"
    return (
        f"In {place}, {interviews} {interview_noun} with a total of {participants} {participant_noun} "
        f"{verb} conducted {when}."
    )


def citation(pid: str, agency: str, position: str | None) -> str:
    """``(RA1-KE-04-B, Director of Cyber Security, Ministry of ICT)``, or ``(RA1-KE-03-A, Ministry of
    Justice)`` when the position is blank."""
    position = (position or "").strip()
    return f"({pid}, {position}, {agency})" if position else f"({pid}, {agency})"


def short_citation(pid: str) -> str:
    return f"({pid})"
