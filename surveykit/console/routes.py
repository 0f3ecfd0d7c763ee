"""Every route of the web console, in one list: the app registers them from here and the route
matrix (tests/test_route_matrix.py) checks that each one has a decision for every caller.

A route's name starts with ``console.`` (``surveykit.accounts.browser.CONSOLE_ROUTE_PREFIX``): the
security policy reads the sign-in cookie on those routes only. Its factory is the context whose ACL
the view's permission is checked against, as for the API: reuse the domain package's resource
(for example ``CountryExportResource``) so that a page and its API route cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from surveykit.accounts import AccountResource, PublicResource, UsersResource
from surveykit.analysis import CountryAnalysisResource
from surveykit.audit import AuditResource
from surveykit.console.fieldwork import CountryConflictsResource, CountryTabletsResource
from surveykit.console.resources import ConsoleHomeResource, InstrumentsPageResource
from surveykit.exports import CountryExportResource, StudyExportResource
from surveykit.instruments import InstrumentResource, InstrumentsResource
from surveykit.instruments.drafts import DRAFT_ID, DraftResource
from surveykit.participants import CountryParticipantsResource, ParticipantResource
from surveykit.studies import StudyResource
from surveykit.sync import ConflictResource, FieldConflictResource

DRAFT_PATH = f"/console/instruments/drafts/{{draft_id:{DRAFT_ID}}}"
ANALYSIS_PATH = "/console/studies/{study}/countries/{country}"
CODE_PATH = f"{ANALYSIS_PATH}/codebook/codes/{{code_id:[0-9]{{1,9}}}}"


@dataclass(frozen=True)
class ConsoleRoute:
    name: str
    pattern: str
    factory: Callable[[Any], Any]


ROUTES: tuple[ConsoleRoute, ...] = (
    # Everyone (surveykit/console/account.py)
    ConsoleRoute("console.root", "/", PublicResource),
    ConsoleRoute("console.static", "/console/static/{subpath:.+}", PublicResource),
    ConsoleRoute("console.signin", "/console/sign-in", PublicResource),
    ConsoleRoute("console.signout", "/console/sign-out", PublicResource),
    ConsoleRoute("console.home", "/console/", ConsoleHomeResource),
    ConsoleRoute("console.account", "/console/account", AccountResource),
    ConsoleRoute("console.password", "/console/account/password", AccountResource),
    ConsoleRoute("console.access_tokens", "/console/account/access-tokens", AccountResource),
    ConsoleRoute(
        "console.access_token_revoke",
        "/console/account/access-tokens/{token_id:[0-9]{1,9}}/revoke",
        AccountResource,
    ),
    # Admins (surveykit/console/admin.py, audit.py)
    ConsoleRoute("console.users", "/console/admin/users", UsersResource),
    ConsoleRoute("console.user", "/console/admin/users/{username}", UsersResource),
    ConsoleRoute("console.user_grants", "/console/admin/users/{username}/grants", UsersResource),
    ConsoleRoute(
        "console.user_grant_revoke",
        "/console/admin/users/{username}/grants/{grant_id:[0-9]{1,18}}/revoke",
        UsersResource,
    ),
    ConsoleRoute("console.user_deactivate", "/console/admin/users/{username}/deactivate", UsersResource),
    ConsoleRoute("console.user_password", "/console/admin/users/{username}/password", UsersResource),
    ConsoleRoute("console.user_unlock", "/console/admin/users/{username}/unlock", UsersResource),
    ConsoleRoute("console.audit", "/console/admin/audit", AuditResource),
    # Analysts (surveykit/console/exports.py)
    ConsoleRoute("console.exports", "/console/exports", AccountResource),
    ConsoleRoute("console.export_study", "/console/exports/{study}/ALL.xlsx", StudyExportResource),
    ConsoleRoute(
        "console.export_country", "/console/exports/{study}/{country:[A-Z]{2}}.xlsx", CountryExportResource
    ),
    # Instruments (surveykit/console/instruments.py) and the studio's pages (studio.py), which come
    # first: "new" and "drafts/..." are not instrument slugs.
    ConsoleRoute("console.instruments", "/console/instruments", InstrumentsPageResource),
    ConsoleRoute("console.studio_new", "/console/instruments/new", InstrumentsResource),
    ConsoleRoute("console.draft", DRAFT_PATH, DraftResource),
    *(
        ConsoleRoute(
            f"console.draft_{action}",
            f"/console/instruments/drafts/{{draft_id:{DRAFT_ID}}}/{action}",
            DraftResource,
        )
        for action in ("file", "delete", "preview", "compare", "publish")
    ),
    ConsoleRoute(
        "console.version_xlsx", "/console/instruments/{slug}/versions/{version}.xlsx", InstrumentResource
    ),
    ConsoleRoute(
        "console.version_preview",
        "/console/instruments/{slug}/versions/{version}/preview",
        InstrumentResource,
    ),
    ConsoleRoute("console.instrument_compare", "/console/instruments/{slug}/compare", InstrumentResource),
    ConsoleRoute("console.instrument", "/console/instruments/{slug}", InstrumentResource),
    ConsoleRoute("console.instrument_retire", "/console/instruments/{slug}/retire", InstrumentResource),
    ConsoleRoute(
        "console.instrument_guide", "/console/instruments/{slug}/versions/{version}/guide", InstrumentResource
    ),
    # consolecoord: coordinators and analysts (fieldwork.py, dashboard.py, registry.py, tablets.py,
    # conflicts.py); the registry and conflict pages use the API's own resources.
    ConsoleRoute("console.fieldwork", "/console/fieldwork", ConsoleHomeResource),
    ConsoleRoute("console.progress", "/console/studies/{study}/progress", StudyResource),
    ConsoleRoute(
        "console.registry",
        "/console/studies/{study}/countries/{cc}/participants",
        CountryParticipantsResource,
    ),
    ConsoleRoute(
        "console.registry_import",
        "/console/studies/{study}/countries/{cc}/participants/import",
        CountryParticipantsResource,
    ),
    ConsoleRoute("console.participant", "/console/studies/{study}/participants/{pid}", ParticipantResource),
    ConsoleRoute(
        "console.tablets", "/console/studies/{study}/countries/{cc}/tablets", CountryTabletsResource
    ),
    ConsoleRoute(
        "console.tablet_reenrol",
        "/console/studies/{study}/countries/{cc}/tablets/{device_id}/reenrol",
        CountryTabletsResource,
    ),
    ConsoleRoute(
        "console.tablet_revoke",
        "/console/studies/{study}/countries/{cc}/tablets/{device_id}/revoke",
        CountryTabletsResource,
    ),
    ConsoleRoute(
        "console.conflicts", "/console/studies/{study}/countries/{cc}/conflicts", CountryConflictsResource
    ),
    ConsoleRoute("console.conflict", "/console/conflicts/{conflict_id}", ConflictResource),
    ConsoleRoute("console.field_conflict", "/console/field-conflicts/{conflict_id}", FieldConflictResource),
    # Analysts (analysis.py): the pages of a country use the coding API's resource.
    ConsoleRoute("console.analysis", "/console/analysis", ConsoleHomeResource),
    ConsoleRoute("console.codebook", f"{ANALYSIS_PATH}/codebook", CountryAnalysisResource),
    # The codebook's editing pages (codebook.py, codebook_transfer.py): the codebook is the study's,
    # shown under each country; editing it needs a grant over the whole study, as in the API.
    ConsoleRoute("console.codebook_import", f"{ANALYSIS_PATH}/codebook/import", CountryAnalysisResource),
    ConsoleRoute(
        "console.codebook_export",
        f"{ANALYSIS_PATH}/codebook/codebook.{{kind:csv|xlsx}}",
        CountryAnalysisResource,
    ),
    ConsoleRoute("console.codebook_code", CODE_PATH, CountryAnalysisResource),
    ConsoleRoute("console.codebook_code_status", f"{CODE_PATH}/status", CountryAnalysisResource),
    ConsoleRoute("console.codebook_code_merge", f"{CODE_PATH}/merge", CountryAnalysisResource),
    ConsoleRoute("console.analysis_interviews", f"{ANALYSIS_PATH}/interviews", CountryAnalysisResource),
    ConsoleRoute(
        "console.coding", f"{ANALYSIS_PATH}/interviews/{{uuid:[0-9a-f-]{{36}}}}", CountryAnalysisResource
    ),
    ConsoleRoute(
        "console.coding_change",
        f"{ANALYSIS_PATH}/codings/{{coding_id:[0-9]{{1,9}}}}",
        CountryAnalysisResource,
    ),
    ConsoleRoute("console.agreement", f"{ANALYSIS_PATH}/agreement", CountryAnalysisResource),
)
