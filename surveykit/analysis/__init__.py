"""Qualitative analysis: the study codebook, codings of answers, agreement between coders, and the
exchange with QDA tools (REFI-QDA).

Who may do what, by the principals of ``surveykit.accounts.identity``:
- analysts, coordinators and admins read the codebook and the codings of the countries their grants
  cover (a grant over every country of the study, ``role:R:STUDY:*``, covers the study), and code
  passages there (``ANALYSIS_READ``, ``ANALYSIS_CODE``);
- the same roles edit the study's codebook (``CODEBOOK_EDIT``) when their grant covers the whole
  study (a study admin's does; an admin of some of its countries cannot): a codebook is one per
  study, not per country;
- the exchange files (REFI-QDA projects and codebooks) are exports: their downloads carry
  ``EXPORTS_READ``, granted here exactly where ``ANALYSIS_READ`` is, so a personal access token
  (which reaches ``EXPORTS_READ`` only) can fetch them and nothing else of the analysis;
- global admins everything. Fieldworkers and tablets nothing.
"""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow

from surveykit.security import Permission

ANALYSIS_ROLES = ("analyst", "coordinator", "admin")


def analysis_acl(study: str, country: str | None) -> list[tuple[str, str, str]]:
    """The ACL of one country's analysis data, or of the study's (``country`` None)."""
    acl = [
        (Allow, "role:admin:*:*", permission)
        for permission in (
            Permission.ANALYSIS_READ,
            Permission.EXPORTS_READ,
            Permission.ANALYSIS_CODE,
            Permission.CODEBOOK_EDIT,
        )
    ]
    scopes = (country, "*") if country is not None else ("*",)
    for scope in scopes:
        for role in ANALYSIS_ROLES:
            acl += [
                (Allow, f"role:{role}:{study}:{scope}", Permission.ANALYSIS_READ),
                (Allow, f"role:{role}:{study}:{scope}", Permission.EXPORTS_READ),
                (Allow, f"role:{role}:{study}:{scope}", Permission.ANALYSIS_CODE),
            ]
    # Every grant of the study carries ``role:R:STUDY``, a country admin's too: only ``*`` (the whole
    # study) may edit the codebook.
    acl += [(Allow, f"role:{role}:{study}:*", Permission.CODEBOOK_EDIT) for role in ANALYSIS_ROLES]
    return acl


class StudyAnalysisResource:
    """Routes with ``{study}`` only (the codebook, study-wide exchange files)."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.study: str = request.matchdict["study"]
        self.country: str | None = None
        self.__acl__ = analysis_acl(self.study, None)


class CountryAnalysisResource:
    """Routes with ``{study}`` and ``{country}`` (codings, a country's exchange files)."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.study: str = request.matchdict["study"]
        self.country: str = request.matchdict["country"]
        self.__acl__ = analysis_acl(self.study, self.country)


class CodebookResource(StudyAnalysisResource):
    """The study's codebook (JSON and ``.qdc``). Its ACL is the study's analysis ACL, and besides:
    whoever holds an analysis role for any country of the study reads the codebook, which is the
    same for all of them (editing it still needs a grant over the whole study)."""

    def __init__(self, request: Any) -> None:
        super().__init__(request)
        self.__acl__ = [
            *[
                (Allow, f"role:{role}:{self.study}", permission)
                for role in ANALYSIS_ROLES
                for permission in (Permission.ANALYSIS_READ, Permission.EXPORTS_READ)
            ],
            *self.__acl__,
        ]


def includeme(config: Any) -> None:
    # Each part registers its own routes and views.
    config.include("surveykit.analysis.codebook_views")
    config.include("surveykit.analysis.coding_views")
    config.include("surveykit.analysis.exchange_views")
