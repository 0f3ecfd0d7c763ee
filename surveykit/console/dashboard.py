"""The progress dashboard of a study: per country and research activity, interviews planned, records
synced (draft, complete), participants withdrawn, open conflicts, and each tablet's last sync and
numbers left; as a table and as bars per country. Read-only; for coordinators, analysts and admins,
in the countries their grants cover (``studies.progress``, as the API's progress endpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pyramid.request import Request

from surveykit.accounts.identity import grants_coverage
from surveykit.console.fieldwork import page_study
from surveykit.console.web import console_view
from surveykit.db import utcnow
from surveykit.security import Permission
from surveykit.studies import PROGRESS_ROLES
from surveykit.studies import progress as study_progress
from surveykit.studies.progress import CountryProgress

# A tablet not heard from for this long is flagged on the dashboard.
QUIET_TABLET = timedelta(days=7)


@dataclass(frozen=True)
class CountryBar:
    """One country's bar: complete, draft and not yet synced shares of its interviews (percent,
    summing to 100 when there is anything to show)."""

    code: str
    name: str
    planned: int
    complete: int
    drafts: int
    # What the bar's whole length stands for: the planned interviews, or more when tablets synced
    # interviews nobody planned (numbers from their blocks).
    total: int
    complete_percent: float
    draft_percent: float
    remaining_percent: float
    open_conflicts: int


def _share(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def country_bars(countries: list[CountryProgress]) -> list[CountryBar]:
    bars = []
    for country in countries:
        planned = sum(entry.planned for entry in country.activities)
        complete = sum(entry.complete for entry in country.activities)
        drafts = sum(entry.drafts for entry in country.activities)
        total = max(planned, complete + drafts)
        complete_percent = _share(complete, total)
        draft_percent = _share(drafts, total)
        bars.append(
            CountryBar(
                code=country.code,
                name=country.name,
                planned=planned,
                complete=complete,
                drafts=drafts,
                total=total,
                complete_percent=complete_percent,
                draft_percent=draft_percent,
                remaining_percent=round(max(0.0, 100 - complete_percent - draft_percent), 1)
                if total
                else 0.0,
                open_conflicts=country.open_conflicts,
            )
        )
    return bars


def quiet(last_sync_at: datetime | None, now: datetime) -> bool:
    return last_sync_at is None or now - last_sync_at > QUIET_TABLET


@console_view(
    route_name="console.progress",
    request_method="GET",
    permission=Permission.PROGRESS_READ,
    renderer="surveykit.console:templates/fieldwork/dashboard.jinja2",
)
def dashboard(request: Request) -> dict[str, Any]:
    study = page_study(request)
    identity = request.identity
    covered = grants_coverage(identity.grants, PROGRESS_ROLES, study.slug)
    progress = study_progress.study_progress(
        request.dbsession, study.slug, list(covered) if covered is not None else None
    )
    managed = grants_coverage(identity.grants, frozenset({"coordinator", "admin"}), study.slug)
    return {
        "study": study,
        "progress": progress,
        "bars": country_bars(progress.countries),
        "now": utcnow(),
        "quiet": quiet,
        "manages": lambda code: managed is None or code in managed,
    }
