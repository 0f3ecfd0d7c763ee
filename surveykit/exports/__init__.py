"""Consolidated Excel workbooks: one per country, or one for the whole study; and the same data
for statistics programs (the CSV of the Answers sheet, SPSS syntax and a Stata do-file).

Who may download them, by the principals of ``surveykit.accounts.identity``:
- a country's workbook: analysts, coordinators and admins whose grant covers that country of the
  study (or every country of it), and global admins;
- the study-wide workbook (``ALL``): the same roles with a grant over every country of the study
  (``role:R:STUDY:*``), and global admins. A grant over some countries does not add up to the study.
Fieldworkers and tablets are refused: a device session carries only fieldworker grants. Refusals
are audited by the forbidden view (``authz.forbidden``), downloads by the views (``export.download``).
"""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow

from surveykit.security import Permission

EXPORT_ROLES = ("analyst", "coordinator", "admin")


def export_acl(study: str, country: str | None) -> list[tuple[str, str, str]]:
    """The ACL of one country's workbook, or of the study-wide one (``country`` None)."""
    acl = [(Allow, "role:admin:*:*", Permission.EXPORTS_READ)]
    scopes = (country, "*") if country is not None else ("*",)
    for scope in scopes:
        acl += [(Allow, f"role:{role}:{study}:{scope}", Permission.EXPORTS_READ) for role in EXPORT_ROLES]
    return acl


class CountryExportResource:
    def __init__(self, request: Any) -> None:
        self.request = request
        self.study: str = request.matchdict["study"]
        self.country: str = request.matchdict["country"]
        self.__acl__ = export_acl(self.study, self.country)


class StudyExportResource:
    def __init__(self, request: Any) -> None:
        self.request = request
        self.study: str = request.matchdict["study"]
        self.__acl__ = export_acl(self.study, None)


def includeme(config: Any) -> None:
    config.add_route("export_study", "/api/v1/exports/{study}/ALL.xlsx", factory=StudyExportResource)
    config.add_route(
        "export_country", "/api/v1/exports/{study}/{country:[A-Z]{2}}.xlsx", factory=CountryExportResource
    )
    # Export jobs (docs/export-jobs.md): the same workbooks, built in the background.
    config.add_route(
        "export_study_jobs", "/api/v1/exports/{study}/ALL.xlsx/jobs", factory=StudyExportResource
    )
    config.add_route(
        "export_country_jobs",
        "/api/v1/exports/{study}/{country:[A-Z]{2}}.xlsx/jobs",
        factory=CountryExportResource,
    )
    config.add_route(
        "export_job", "/api/v1/export-jobs/{job}", factory="surveykit.exports.job_views.ExportJobResource"
    )
    config.add_route(
        "export_job_file",
        "/api/v1/export-jobs/{job}/file",
        factory="surveykit.exports.job_views.ExportJobResource",
    )
    for extension in ("csv", "sps", "do"):
        config.add_route(
            f"export_study_{extension}",
            f"/api/v1/exports/{{study}}/ALL.{extension}",
            factory=StudyExportResource,
        )
        config.add_route(
            f"export_country_{extension}",
            f"/api/v1/exports/{{study}}/{{country:[A-Z]{{2}}}}.{extension}",
            factory=CountryExportResource,
        )
    config.scan(".views")
    config.scan(".stats_views")
    config.scan(".job_views")
