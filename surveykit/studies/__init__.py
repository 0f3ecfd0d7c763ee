"""Studies, their countries and research activities: the scope everything else is bounded by.

Who may do what, by the principals of ``surveykit.accounts.identity``:
- any signed-in caller lists the studies it holds a grant in (global admins: all);
- every grant holder of a study reads its configuration (tablets need countries and languages);
- global admins create studies; admins of the study (or global admins) configure countries and
  research activities;
- coordinators, analysts and admins of a study read its fieldwork progress, for the countries their
  grants cover (checked in the view).
"""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow, Authenticated

from surveykit.security import Permission

# Who reads a study's progress dashboard, for the countries these grants cover.
PROGRESS_ROLES = frozenset({"coordinator", "analyst", "admin"})


class StudiesResource:
    __acl__ = [
        (Allow, Authenticated, Permission.STUDIES_READ),
        (Allow, "role:admin:*", Permission.STUDIES_CREATE),
    ]

    def __init__(self, request: Any) -> None:
        self.request = request


def study_acl(slug: str) -> list[tuple[str, str, str]]:
    # Built from the URL alone: an unknown study and a study the caller has no grant in look the same.
    return [
        (Allow, "role:admin:*", Permission.STUDIES_READ),
        (Allow, "role:admin:*", Permission.STUDIES_CONFIGURE),
        (Allow, f"study:{slug}", Permission.STUDIES_READ),
        (Allow, f"role:admin:{slug}", Permission.STUDIES_CONFIGURE),
        *[(Allow, f"role:{role}:{slug}", Permission.PROGRESS_READ) for role in PROGRESS_ROLES],
        (Allow, "role:admin:*", Permission.PROGRESS_READ),
    ]


class StudyResource:
    def __init__(self, request: Any) -> None:
        self.request = request
        self.slug: str = request.matchdict["study"]
        self.__acl__ = study_acl(self.slug)


def includeme(config: Any) -> None:
    config.add_route("studies", "/api/v1/studies", factory=StudiesResource)
    config.add_route("study", "/api/v1/studies/{study}", factory=StudyResource)
    config.add_route("study_countries", "/api/v1/studies/{study}/countries", factory=StudyResource)
    config.add_route("study_country", "/api/v1/studies/{study}/countries/{cc}", factory=StudyResource)
    config.add_route("study_activities", "/api/v1/studies/{study}/activities", factory=StudyResource)
    config.add_route("study_activity", "/api/v1/studies/{study}/activities/{code}", factory=StudyResource)
    config.add_route("study_progress", "/api/v1/studies/{study}/progress", factory=StudyResource)
    config.scan(".views")
