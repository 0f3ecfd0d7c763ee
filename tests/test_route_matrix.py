"""Who may call what: every API route of the application, tried by every kind of caller.

The routes come from the application's own introspector, so a route added without an entry in
``EXPECTED`` fails ``test_the_matrix_covers_exactly_the_apps_routes`` until someone decides who may
call it. ``OUT_OF_SCOPE`` repeats the scoped routes with a study or country the callers do not hold.

Besides a tablet of a KE fieldworker (``device``), two tablets that the KE coordinator enrolled for
fieldworkers who also work elsewhere: ``device_split`` (its owner holds ocsea/KE and ocsea/TZ) and
``device_multi`` (ocsea/KE and other/KE). Bound to what the coordinator manages, they reach only
ocsea/KE, like ``device`` (issue 11: they used to carry all of their owners' grants).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import webtest
from console_support import csrf_for, csrf_in, start_console_session
from instrument_samples import minimal_definition
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_sync_support import make_conflict, make_field_conflict, make_interview

from surveykit.accounts import browser, passwords
from surveykit.accounts import services as accounts_services
from surveykit.accounts.identity import GrantScope, Identity
from surveykit.accounts.models import User
from surveykit.audit.models import AuditEvent
from surveykit.console.routes import ROUTES as CONSOLE_ROUTES
from surveykit.db import utcnow
from surveykit.exports import jobs
from surveykit.exports.models import ExportJob
from surveykit.instruments import services as instruments
from surveykit.security import Permission
from surveykit.studies.models import Study

CALLERS = (
    "anonymous",
    "fieldworker_ke",
    "coordinator_ke",
    "coordinator_tz",
    "analyst_ke",
    "study_admin",
    "global_admin",
    "device",
    "device_split",
    "device_multi",
)
EVERYONE = frozenset(CALLERS)
AUTHENTICATED = EVERYONE - {"anonymous"}
MANAGERS_KE = frozenset({"coordinator_ke", "study_admin", "global_admin"})
PUBLISHERS = frozenset({"coordinator_ke", "coordinator_tz", "study_admin", "global_admin"})
GLOBAL_ADMIN = frozenset({"global_admin"})
# Studies and the participant registry (docs/participants.md).
DEVICES = frozenset({"device", "device_split", "device_multi"})
READERS_KE = (
    frozenset({"fieldworker_ke", "coordinator_ke", "analyst_ke", "study_admin", "global_admin"}) | DEVICES
)
STUDY_ADMINS = frozenset({"study_admin", "global_admin"})
MANAGERS_TZ = frozenset({"coordinator_tz", "study_admin", "global_admin"})
STATS_FILES = ("csv", "sps", "do")
NOBODY: frozenset[str] = frozenset()
ANALYSTS_KE = frozenset({"coordinator_ke", "analyst_ke", "study_admin", "global_admin"})
ANALYSIS_CALLS = (
    ("codings", "GET"),
    ("codings", "POST"),
    ("coding", "GET"),
    ("coding", "PATCH"),
    ("coding", "DELETE"),
    ("coding_agreement", "GET"),
)
# The analysts' console pages (docs/console-analysis.md): the coding API's callers; a coding is
# changed by its coder or an admin (each allowed caller changes a coding of their own).
ANALYSIS_PAGES = (
    ("console.codebook", "GET"),
    ("console.analysis_interviews", "GET"),
    ("console.coding", "GET"),
    ("console.coding", "POST"),
    ("console.coding_change", "POST"),
    ("console.agreement", "GET"),
    ("console.codebook_code", "GET"),
    ("console.codebook_export", "GET"),
)
# The console's codebook editing pages: whoever may edit the codebook (a grant over the whole study).
CODEBOOK_EDIT_PAGES = (
    ("console.codebook", "POST"),
    ("console.codebook_code", "POST"),
    ("console.codebook_code_status", "POST"),
    ("console.codebook_code_merge", "POST"),
    ("console.codebook_import", "GET"),
    ("console.codebook_import", "POST"),
)
# The console (docs/console.md) knows people, not tablets: a device's token is no sign-in there.
PEOPLE = AUTHENTICATED - DEVICES

# The instrument studio's pages of a published version, and of a draft.
STUDIO_VERSION_PAGES = (
    ("console.version_preview", "GET"),
    ("console.version_xlsx", "GET"),
    ("console.instrument_compare", "GET"),
)
STUDIO_DRAFT_PAGES = (
    ("console.draft", "GET"),
    ("console.draft_file", "POST"),
    ("console.draft_delete", "POST"),
    ("console.draft_preview", "GET"),
    ("console.draft_compare", "GET"),
    ("console.draft_publish", "POST"),
)

# The REFI-QDA exchange routes (docs/refi-qda.md).
REFI_ROUTES = (
    ("analysis_country_qdpx", "GET"),
    ("analysis_country_qdpx", "POST"),
    ("analysis_study_qdpx", "GET"),
    ("analysis_codebook_qdc", "GET"),
    ("analysis_codebook_qdc", "POST"),
)


# consolecoord: the progress dashboard (coordinators, analysts, admins of the study), the registry
# (whoever reads the country's registry; its managers edit and import), tablets and conflicts (the
# country's managers).
PROGRESS_READERS = frozenset(
    {"coordinator_ke", "coordinator_tz", "analyst_ke", "study_admin", "global_admin"}
)
# The codebook (docs/codebook.md): one per study, read by the analysis roles (analysts, coordinators,
# admins) of any of its countries, edited with a grant over the whole study.
CODEBOOK_READERS = frozenset(
    {"coordinator_ke", "coordinator_tz", "analyst_ke", "study_admin", "global_admin"}
)
CODEBOOK_ROUTES: dict[tuple[str, str], frozenset[str]] = {
    ("codebook", "GET"): CODEBOOK_READERS,
    ("codebook_codes", "POST"): STUDY_ADMINS,
    ("codebook_code", "GET"): CODEBOOK_READERS,
    ("codebook_code", "PATCH"): STUDY_ADMINS,
    ("codebook_code_retire", "POST"): STUDY_ADMINS,
    ("codebook_code_reactivate", "POST"): STUDY_ADMINS,
    ("codebook_code_merge", "POST"): STUDY_ADMINS,
    ("codebook_code_history", "GET"): CODEBOOK_READERS,
    ("codebook_import", "POST"): STUDY_ADMINS,
}
COORDINATION_PAGES: dict[tuple[str, str], frozenset[str]] = {
    ("console.fieldwork", "GET"): PEOPLE,
    ("console.progress", "GET"): PROGRESS_READERS,
    ("console.registry", "GET"): READERS_KE - DEVICES,
    ("console.registry_import", "GET"): MANAGERS_KE,
    ("console.registry_import", "POST"): MANAGERS_KE,
    ("console.participant", "GET"): READERS_KE - DEVICES,
    ("console.participant", "POST"): MANAGERS_KE,
    ("console.tablets", "GET"): MANAGERS_KE,
    ("console.tablets", "POST"): MANAGERS_KE,
    ("console.tablet_reenrol", "POST"): MANAGERS_KE,
    ("console.tablet_revoke", "GET"): MANAGERS_KE,
    ("console.tablet_revoke", "POST"): MANAGERS_KE,
    ("console.conflicts", "GET"): MANAGERS_KE,
    ("console.conflict", "GET"): MANAGERS_KE,
    ("console.conflict", "POST"): MANAGERS_KE,
    ("console.field_conflict", "GET"): MANAGERS_KE,
    ("console.field_conflict", "POST"): MANAGERS_KE,
}

# (route name, request method) -> the callers that are not refused (neither 401 nor 403).
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("auth_token", "POST"): EVERYONE,
    ("auth_refresh", "POST"): EVERYONE,
    ("auth_logout", "POST"): EVERYONE,
    ("device_activate", "POST"): EVERYONE,
    ("me", "GET"): AUTHENTICATED,
    # A tablet's session never changes its owner's password.
    ("me_password", "POST"): AUTHENTICATED - DEVICES,
    # Accounts (docs/accounts.md): admins of every study.
    ("users", "GET"): GLOBAL_ADMIN,
    ("user", "GET"): GLOBAL_ADMIN,
    ("user_password", "POST"): GLOBAL_ADMIN,
    ("user_unlock", "POST"): GLOBAL_ADMIN,
    ("users", "POST"): GLOBAL_ADMIN,
    ("user_deactivate", "POST"): GLOBAL_ADMIN,
    ("user_grants", "POST"): GLOBAL_ADMIN,
    ("user_grant", "DELETE"): GLOBAL_ADMIN,
    # Personal access tokens (docs/accounts.md): people manage their own, admins anyone's; never a
    # tablet, and never a token itself (tests/test_access_tokens.py tries every route with one).
    ("access_tokens", "GET"): PEOPLE,
    ("access_tokens", "POST"): PEOPLE,
    ("access_token", "DELETE"): PEOPLE,
    ("user_access_tokens", "GET"): GLOBAL_ADMIN,
    ("user_access_token", "DELETE"): GLOBAL_ADMIN,
    ("devices", "GET"): AUTHENTICATED,
    ("devices", "POST"): MANAGERS_KE,
    ("device", "DELETE"): MANAGERS_KE,
    ("device_enrolment", "POST"): MANAGERS_KE,
    ("audit", "GET"): GLOBAL_ADMIN,
    ("instruments", "GET"): AUTHENTICATED,
    ("instruments_validate", "POST"): AUTHENTICATED,
    ("instruments", "POST"): PUBLISHERS,
    ("instrument", "GET"): AUTHENTICATED,
    ("instrument_version", "GET"): AUTHENTICATED,
    ("instrument_version_xlsx", "GET"): AUTHENTICATED,
    ("instrument_record_schema", "GET"): AUTHENTICATED,
    ("instrument_retire", "POST"): PUBLISHERS,
    # The instrument studio (docs/instrument-studio.md): whoever reads an instrument previews and
    # compares it; a draft is previewed by whoever may validate one.
    ("instrument_preview", "GET"): AUTHENTICATED,
    ("instruments_preview", "POST"): AUTHENTICATED,
    ("instrument_compare", "GET"): AUTHENTICATED,
    ("instrument_compare", "POST"): AUTHENTICATED,
    ("studies", "GET"): AUTHENTICATED,
    ("studies", "POST"): GLOBAL_ADMIN,
    ("study", "GET"): AUTHENTICATED,
    ("study_countries", "POST"): STUDY_ADMINS,
    ("study_country", "PATCH"): STUDY_ADMINS,
    ("study_activities", "POST"): STUDY_ADMINS,
    ("study_activity", "PATCH"): STUDY_ADMINS,
    # The progress dashboard: coordinators, analysts and admins of the study (each sees its countries).
    ("study_progress", "GET"): frozenset(
        {"coordinator_ke", "coordinator_tz", "analyst_ke", "study_admin", "global_admin"}
    ),
    ("participants", "GET"): READERS_KE,
    ("participants", "POST"): MANAGERS_KE,
    ("participants_import", "POST"): MANAGERS_KE,
    ("participant", "GET"): READERS_KE,
    ("participant", "PATCH"): MANAGERS_KE,
    ("blocks", "GET"): DEVICES,
    ("blocks", "POST"): DEVICES,
    # The blocks tablets hold in a country, and releasing them: that country's managers.
    ("country_blocks", "GET"): MANAGERS_KE,
    ("country_blocks_release", "POST"): MANAGERS_KE,
    # Sync (docs/sync.md): tablets and managers push (each change is scoped on its own).
    ("sync", "POST"): PUBLISHERS | DEVICES,
    ("sync_changes", "GET"): AUTHENTICATED,
    ("conflicts", "GET"): MANAGERS_KE,
    ("conflict_resolve", "POST"): MANAGERS_KE,
    ("field_conflicts", "GET"): MANAGERS_KE,
    ("field_conflict_resolve", "POST"): MANAGERS_KE,
    # Exports (docs/exports.md): analysts, coordinators and admins of the country; the study-wide
    # workbook needs a grant over every country of the study. Tablets and fieldworkers never.
    ("export_country", "GET"): frozenset({"coordinator_ke", "analyst_ke", "study_admin", "global_admin"}),
    ("export_study", "GET"): STUDY_ADMINS,
    # Coding (docs/coding.md): analysts, coordinators and admins of the country; a coding is changed
    # by its coder or an admin (each allowed caller here changes a coding of their own).
    **{call: ANALYSTS_KE for call in ANALYSIS_CALLS},
    **CODEBOOK_ROUTES,
    # REFI-QDA exchange (docs/refi-qda.md): a country's project for its analysts, coordinators and
    # admins; the study's project and the codebook need a grant over the whole study.
    ("analysis_country_qdpx", "GET"): frozenset(
        {"coordinator_ke", "analyst_ke", "study_admin", "global_admin"}
    ),
    ("analysis_country_qdpx", "POST"): frozenset(
        {"coordinator_ke", "analyst_ke", "study_admin", "global_admin"}
    ),
    ("analysis_study_qdpx", "GET"): STUDY_ADMINS,
    # The codebook as .qdc: whoever reads it as JSON (any analysis grant in the study).
    ("analysis_codebook_qdc", "GET"): CODEBOOK_READERS,
    ("analysis_codebook_qdc", "POST"): STUDY_ADMINS,
    # Export jobs (docs/export-jobs.md): starting one, as the download; a job is its owner's (each
    # caller is tried on a job of their own; anyone else's is a 404, tests/test_export_jobs.py),
    # who still needs the grant.
    ("export_country_jobs", "POST"): frozenset(
        {"coordinator_ke", "analyst_ke", "study_admin", "global_admin"}
    ),
    ("export_study_jobs", "POST"): STUDY_ADMINS,
    ("export_job", "GET"): frozenset({"coordinator_ke", "analyst_ke", "study_admin", "global_admin"}),
    ("export_job", "DELETE"): frozenset({"coordinator_ke", "analyst_ke", "study_admin", "global_admin"}),
    ("export_job_file", "GET"): frozenset({"coordinator_ke", "analyst_ke", "study_admin", "global_admin"}),
    # The CSV for statistics and the SPSS/Stata syntax: the same callers as the workbook.
    **{
        (f"export_country_{ext}", "GET"): frozenset(
            {"coordinator_ke", "analyst_ke", "study_admin", "global_admin"}
        )
        for ext in STATS_FILES
    },
    **{(f"export_study_{ext}", "GET"): STUDY_ADMINS for ext in STATS_FILES},
    # The analysts' console pages: the same callers; the start page is every person's.
    ("console.analysis", "GET"): PEOPLE,
    **{call: ANALYSTS_KE for call in ANALYSIS_PAGES},
    **{call: STUDY_ADMINS for call in CODEBOOK_EDIT_PAGES},
    # The API document (docs/api.md): public.
    ("openapi", "GET"): EVERYONE,
    # The health probe (docs/operations.md): public.
    ("health", "GET"): EVERYONE,
    ("api_docs", "GET"): EVERYONE,
    ("api_docs_static", "GET"): EVERYONE,
    # The web console (surveykit/console/routes.py). Callers are browsers: a signed-in person sends
    # the sign-in cookie, a tablet its bearer token (which the console ignores). A refused anonymous
    # browser is sent to the sign-in form, a refused person gets an HTML 403.
    ("console.root", "GET"): EVERYONE,
    ("console.static", "GET"): EVERYONE,
    ("console.signin", "GET"): EVERYONE,
    ("console.signin", "POST"): EVERYONE,
    ("console.signout", "POST"): EVERYONE,
    ("console.home", "GET"): PEOPLE,
    ("console.account", "GET"): PEOPLE,
    ("console.password", "GET"): PEOPLE,
    ("console.password", "POST"): PEOPLE,
    ("console.access_tokens", "POST"): PEOPLE,
    ("console.access_token_revoke", "POST"): PEOPLE,
    ("console.users", "GET"): GLOBAL_ADMIN,
    ("console.users", "POST"): GLOBAL_ADMIN,
    ("console.user", "GET"): GLOBAL_ADMIN,
    ("console.user_grants", "POST"): GLOBAL_ADMIN,
    ("console.user_grant_revoke", "POST"): GLOBAL_ADMIN,
    ("console.user_deactivate", "POST"): GLOBAL_ADMIN,
    ("console.user_password", "POST"): GLOBAL_ADMIN,
    ("console.user_unlock", "POST"): GLOBAL_ADMIN,
    ("console.audit", "GET"): GLOBAL_ADMIN,
    ("console.exports", "GET"): PEOPLE,
    ("console.export_country", "GET"): frozenset(
        {"coordinator_ke", "analyst_ke", "study_admin", "global_admin"}
    ),
    ("console.export_study", "GET"): STUDY_ADMINS,
    ("console.instruments", "GET"): PEOPLE,
    ("console.instrument", "GET"): PEOPLE,
    ("console.instrument_retire", "POST"): PUBLISHERS,
    # The instrument studio (docs/console-studio.md): published versions are read by their readers;
    # drafts are their study's publishers'.
    **{key: PEOPLE for key in STUDIO_VERSION_PAGES},
    **{key: PUBLISHERS for key in STUDIO_DRAFT_PAGES},
    ("console.studio_new", "GET"): PUBLISHERS,
    ("console.studio_new", "POST"): PUBLISHERS,
    ("console.instrument_guide", "GET"): PEOPLE,
    # consolecoord: the coordinators' pages (docs/console-coordinators.md), as their API routes allow.
    **COORDINATION_PAGES,
    # The field app's files (docs/field-app.md): public; the app itself signs in as a device.
    ("fieldapp_index", "GET"): EVERYONE,
    ("fieldapp_service_worker", "GET"): EVERYONE,
    ("fieldapp_file", "GET"): EVERYONE,
}

# (route, method, scenario) -> allowed callers, where the target lies outside the usual scope.
OUT_OF_SCOPE: dict[tuple[str, str, str], frozenset[str]] = {
    # An instrument of a study none of them (but the global admin) holds a grant in.
    ("instrument", "GET", "other_study"): GLOBAL_ADMIN,
    ("instrument_version", "GET", "other_study"): GLOBAL_ADMIN,
    ("instrument_version_xlsx", "GET", "other_study"): GLOBAL_ADMIN,
    ("instrument_record_schema", "GET", "other_study"): GLOBAL_ADMIN,
    ("instrument_retire", "POST", "other_study"): GLOBAL_ADMIN,
    ("instrument_preview", "GET", "other_study"): GLOBAL_ADMIN,
    ("instrument_compare", "GET", "other_study"): GLOBAL_ADMIN,
    ("instrument_compare", "POST", "other_study"): GLOBAL_ADMIN,
    ("instruments", "POST", "other_study"): GLOBAL_ADMIN,
    # A shared instrument (no study): everyone signed in reads it, only global admins change it.
    ("instrument", "GET", "shared"): AUTHENTICATED,
    ("instrument_version", "GET", "shared"): AUTHENTICATED,
    ("instrument_version_xlsx", "GET", "shared"): AUTHENTICATED,
    ("instrument_record_schema", "GET", "shared"): AUTHENTICATED,
    ("instrument_retire", "POST", "shared"): GLOBAL_ADMIN,
    ("instrument_preview", "GET", "shared"): AUTHENTICATED,
    ("instrument_compare", "GET", "shared"): AUTHENTICATED,
    ("instrument_compare", "POST", "shared"): AUTHENTICATED,
    ("instruments", "POST", "shared"): GLOBAL_ADMIN,
    # A fieldworker in TZ: the KE coordinator is out of scope, the TZ one in.
    ("devices", "POST", "tz_fieldworker"): frozenset({"coordinator_tz", "study_admin", "global_admin"}),
    ("device", "DELETE", "tz_fieldworker"): frozenset({"coordinator_tz", "study_admin", "global_admin"}),
    ("device_enrolment", "POST", "tz_fieldworker"): frozenset(
        {"coordinator_tz", "study_admin", "global_admin"}
    ),
    # A fieldworker of another study.
    ("devices", "POST", "other_study_fieldworker"): GLOBAL_ADMIN,
    ("device", "DELETE", "other_study_fieldworker"): GLOBAL_ADMIN,
    ("device_enrolment", "POST", "other_study_fieldworker"): GLOBAL_ADMIN,
    # The owner of device_split (KE and TZ): either coordinator may enrol a tablet for their own
    # country, but only a manager of both manages a tablet bound to both.
    ("devices", "POST", "split_fieldworker"): MANAGERS_KE | MANAGERS_TZ,
    ("device", "DELETE", "split_fieldworker"): STUDY_ADMINS,
    ("device_enrolment", "POST", "split_fieldworker"): STUDY_ADMINS,
    # ... and a tablet of theirs bound to TZ (asked for by name when enrolling).
    ("devices", "POST", "split_fieldworker_tz"): MANAGERS_TZ,
    ("device", "DELETE", "split_fieldworker_tz"): MANAGERS_TZ,
    ("device_enrolment", "POST", "split_fieldworker_tz"): MANAGERS_TZ,
    # The owner of device_multi (ocsea/KE and other/KE): a tablet bound to both studies is the
    # global admin's alone, as is one bound to study other.
    ("devices", "POST", "multi_fieldworker"): MANAGERS_KE,
    ("device", "DELETE", "multi_fieldworker"): GLOBAL_ADMIN,
    ("device_enrolment", "POST", "multi_fieldworker"): GLOBAL_ADMIN,
    ("devices", "POST", "multi_fieldworker_other"): GLOBAL_ADMIN,
    ("device", "DELETE", "multi_fieldworker_other"): GLOBAL_ADMIN,
    ("device_enrolment", "POST", "multi_fieldworker_other"): GLOBAL_ADMIN,
    # The registry of TZ: the KE callers (and the KE tablet) are out of scope, the TZ coordinator in.
    ("participants", "GET", "tz_country"): MANAGERS_TZ,
    ("participants", "POST", "tz_country"): MANAGERS_TZ,
    ("participants_import", "POST", "tz_country"): MANAGERS_TZ,
    ("participant", "GET", "tz_country"): MANAGERS_TZ,
    ("participant", "PATCH", "tz_country"): MANAGERS_TZ,
    ("blocks", "POST", "tz_country"): NOBODY,
    ("country_blocks", "GET", "tz_country"): MANAGERS_TZ,
    ("country_blocks_release", "POST", "tz_country"): MANAGERS_TZ,
    ("country_blocks", "GET", "other_study_registry"): GLOBAL_ADMIN,
    ("country_blocks_release", "POST", "other_study_registry"): GLOBAL_ADMIN,
    # The configuration and registry of a study none of them (but the global admin) holds a grant in.
    ("study", "GET", "other_study_registry"): GLOBAL_ADMIN,
    ("study_countries", "POST", "other_study_registry"): GLOBAL_ADMIN,
    ("study_country", "PATCH", "other_study_registry"): GLOBAL_ADMIN,
    ("study_activities", "POST", "other_study_registry"): GLOBAL_ADMIN,
    ("study_activity", "PATCH", "other_study_registry"): GLOBAL_ADMIN,
    ("study_progress", "GET", "other_study_registry"): GLOBAL_ADMIN,
    ("participants", "GET", "other_study_registry"): GLOBAL_ADMIN,
    ("participants", "POST", "other_study_registry"): GLOBAL_ADMIN,
    ("participants_import", "POST", "other_study_registry"): GLOBAL_ADMIN,
    ("participant", "GET", "other_study_registry"): GLOBAL_ADMIN,
    ("participant", "PATCH", "other_study_registry"): GLOBAL_ADMIN,
    # The feed and the conflicts of TZ, and of a study none of them (but the global admin) is in.
    ("sync_changes", "GET", "sync_tz"): MANAGERS_TZ,
    ("conflicts", "GET", "sync_tz"): MANAGERS_TZ,
    ("conflict_resolve", "POST", "sync_tz"): MANAGERS_TZ,
    ("field_conflicts", "GET", "sync_tz"): MANAGERS_TZ,
    ("field_conflict_resolve", "POST", "sync_tz"): MANAGERS_TZ,
    ("sync_changes", "GET", "sync_other_study"): GLOBAL_ADMIN,
    ("conflicts", "GET", "sync_other_study"): GLOBAL_ADMIN,
    ("conflict_resolve", "POST", "sync_other_study"): GLOBAL_ADMIN,
    ("field_conflicts", "GET", "sync_other_study"): GLOBAL_ADMIN,
    ("field_conflict_resolve", "POST", "sync_other_study"): GLOBAL_ADMIN,
    # The workbook of TZ, and the workbooks of a study none of them (but the global admin) is in.
    ("export_country", "GET", "export_tz"): MANAGERS_TZ,
    ("export_country", "GET", "export_other_study"): GLOBAL_ADMIN,
    ("export_study", "GET", "export_other_study"): GLOBAL_ADMIN,
    # The codings of TZ (its coordinator codes there), and of a study none of them is in.
    **{(route, method, "analysis_tz"): MANAGERS_TZ for route, method in ANALYSIS_CALLS},
    **{(route, method, "analysis_other_study"): GLOBAL_ADMIN for route, method in ANALYSIS_CALLS},
    # The codebook of a study none of them (but the global admin) holds a grant in.
    **{(route, method, "codebook_other_study"): GLOBAL_ADMIN for route, method in CODEBOOK_ROUTES},
    # REFI-QDA: TZ's project, and the exchange files of a study none of them (but the global admin) is in.
    ("analysis_country_qdpx", "GET", "analysis_tz"): MANAGERS_TZ,
    ("analysis_country_qdpx", "POST", "analysis_tz"): MANAGERS_TZ,
    **{(route, method, "analysis_other_study"): GLOBAL_ADMIN for route, method in REFI_ROUTES},
    ("export_country_jobs", "POST", "export_tz"): MANAGERS_TZ,
    ("export_country_jobs", "POST", "export_other_study"): GLOBAL_ADMIN,
    ("export_study_jobs", "POST", "export_other_study"): GLOBAL_ADMIN,
    ("export_job", "GET", "export_tz"): MANAGERS_TZ,
    ("export_job_file", "GET", "export_tz"): MANAGERS_TZ,
    **{(f"export_country_{ext}", "GET", "export_tz"): MANAGERS_TZ for ext in STATS_FILES},
    **{(f"export_country_{ext}", "GET", "export_other_study"): GLOBAL_ADMIN for ext in STATS_FILES},
    **{(f"export_study_{ext}", "GET", "export_other_study"): GLOBAL_ADMIN for ext in STATS_FILES},
    **{(route, method, "analysis_tz"): MANAGERS_TZ for route, method in ANALYSIS_PAGES},
    **{(route, method, "analysis_other_study"): GLOBAL_ADMIN for route, method in ANALYSIS_PAGES},
    **{(route, method, "analysis_tz"): STUDY_ADMINS for route, method in CODEBOOK_EDIT_PAGES},
    **{(route, method, "analysis_other_study"): GLOBAL_ADMIN for route, method in CODEBOOK_EDIT_PAGES},
    # The console's pages over the same resources: the same answers.
    ("console.export_country", "GET", "export_tz"): MANAGERS_TZ,
    ("console.export_country", "GET", "export_other_study"): GLOBAL_ADMIN,
    ("console.export_study", "GET", "export_other_study"): GLOBAL_ADMIN,
    ("console.instrument", "GET", "other_study"): GLOBAL_ADMIN,
    ("console.instrument_retire", "POST", "other_study"): GLOBAL_ADMIN,
    ("console.instrument_guide", "GET", "other_study"): GLOBAL_ADMIN,
    ("console.instrument", "GET", "shared"): PEOPLE,
    ("console.instrument_retire", "POST", "shared"): GLOBAL_ADMIN,
    **{(route, method, "other_study"): GLOBAL_ADMIN for route, method in STUDIO_VERSION_PAGES},
    **{(route, method, "shared"): PEOPLE for route, method in STUDIO_VERSION_PAGES},
    **{(route, method, "other_study"): GLOBAL_ADMIN for route, method in STUDIO_DRAFT_PAGES},
    ("console.instrument_guide", "GET", "shared"): PEOPLE,
    # consolecoord: the same pages for TZ (the KE callers are out of scope) and for another study.
    **{
        (route, method, "console_tz"): MANAGERS_TZ
        for route, method in COORDINATION_PAGES
        if route != "console.fieldwork"
    }
    | {("console.progress", "GET", "console_tz"): PROGRESS_READERS},
    **{
        (route, method, "console_other_study"): GLOBAL_ADMIN
        for route, method in COORDINATION_PAGES
        if route != "console.fieldwork"
    },
}

PASSWORD = "matrix password 1"
_PASSWORD_HASH = passwords.hash_password(PASSWORD)
ENVELOPE_KEYS = {"status", "code", "message", "details"}


def _definition(slug: str, study: str | None) -> dict[str, Any]:
    data = minimal_definition(slug)
    if study is not None:
        data["study"] = study
    return data


INSTRUMENTS = {"ocsea": "ocsea-debrief", "other_study": "other-debrief", "shared": "shared-debrief"}
STUDY_OF = {"ocsea": "ocsea", "other_study": "other", "shared": None}


@dataclass
class Call:
    method: str
    url: str
    json: Any = None
    form: dict[str, str] | None = None  # a console form (the caller's CSRF token is added)
    body: bytes | None = None  # a raw body of type ``content_type`` (a file upload)
    content_type: str | None = None


class World:
    """Studies, a user per caller, target fieldworkers, and three published instruments."""

    def __init__(self, accounts: Any, dbsession: Session) -> None:
        self.accounts = accounts
        self.session = dbsession
        self.caller = "anonymous"  # whose request is being built (see _check)
        accounts.study("ocsea", ("KE", "TZ", "KH"))
        accounts.study("other", ("KE",))
        self.users = {
            "fieldworker_ke": accounts.user("m-fieldworker", "fieldworker", "ocsea", ["KE"]),
            "coordinator_ke": accounts.user("m-coord-ke", "coordinator", "ocsea", ["KE"]),
            "coordinator_tz": accounts.user("m-coord-tz", "coordinator", "ocsea", ["TZ"]),
            "analyst_ke": accounts.user("m-analyst", "analyst", "ocsea", ["KE"]),
            "study_admin": accounts.user("m-study-admin", "admin", "ocsea"),
            "global_admin": accounts.user("m-global-admin", "admin", None),
        }
        self.tablet_owner = accounts.user("m-tablet-owner", "fieldworker", "ocsea", ["KE"])
        self.device, _ = accounts_services.enrol_device(
            dbsession, self.tablet_owner, "matrix tablet", "tests", accounts.policy
        )
        self.device.activated_at = self.device.created_at
        self.targets = {
            "ke": accounts.user("m-target-ke", "fieldworker", "ocsea", ["KE"]),
            "tz": accounts.user("m-target-tz", "fieldworker", "ocsea", ["TZ"]),
            "other": accounts.user("m-target-other", "fieldworker", "other", ["KE"]),
            "split": accounts.user("m-split", "fieldworker", "ocsea", ["KE"]),
            "multi": accounts.user("m-multi", "fieldworker", "ocsea", ["KE"]),
        }
        accounts_services.add_grant(dbsession, self.targets["split"], "fieldworker", "ocsea", ["TZ"], "tests")
        accounts_services.add_grant(dbsession, self.targets["multi"], "fieldworker", "other", ["KE"], "tests")
        # Enrolled as the KE coordinator's request would enrol them (the same scope rule).
        coordinator_ke = Identity(
            self.users["coordinator_ke"].id,
            "m-coord-ke",
            "",
            None,
            (GrantScope("coordinator", "ocsea", ("KE",)),),
        )
        self.device_owners = {"device": self.tablet_owner}
        self.devices = {"device": self.device}
        for caller, target in (("device_split", "split"), ("device_multi", "multi")):
            owner = self.targets[target]
            scope = accounts_services.enrolment_scope(dbsession, owner, coordinator_ke)
            device, _ = accounts_services.enrol_device(
                dbsession, owner, caller, "m-coord-ke", accounts.policy, scope=scope
            )
            device.activated_at = device.created_at
            self.device_owners[caller], self.devices[caller] = owner, device
        for user in self.users.values():
            user.password_hash = _PASSWORD_HASH  # to change their own
        self.login_user = accounts.user("m-login", "analyst", "ocsea", ["KH"])
        self.login_user.password_hash = _PASSWORD_HASH
        for scope, slug in INSTRUMENTS.items():
            instruments.publish(
                dbsession, instruments.validate_definition(_definition(slug, STUDY_OF[scope]))
            )
        dbsession.flush()

    def headers(self, caller: str) -> dict[str, str]:
        """A fresh session for every request: logging out must not spoil the next one."""
        if caller == "anonymous":
            return {}
        if caller in DEVICES:
            pair = accounts_services.start_session(
                self.session,
                self.device_owners[caller],
                self.accounts.tokens,
                self.accounts.policy,
                device=self.devices[caller],
            )
            self.session.flush()
            return {"Authorization": f"Bearer {pair.access_token}"}
        return {"Authorization": f"Bearer {self.accounts.token(self.users[caller])}"}

    def browser(self, caller: str) -> tuple[dict[str, str], str | None]:
        """A console request's headers for ``caller`` (a fresh sign-in each time) and its CSRF token."""
        headers = {"Accept": "text/html"}
        if caller == "anonymous":
            return headers, None
        if caller in DEVICES:
            return {**headers, **self.headers(caller)}, None
        cookie, session_id = start_console_session(self.accounts, self.users[caller])
        return {**headers, "Cookie": f"{browser.COOKIE_NAME}={cookie}"}, csrf_for(self.accounts, session_id)

    def own_access_token(self) -> int:
        """A new access token of the current caller's account (of m-login for anonymous callers)."""
        from surveykit.accounts import access_tokens

        if self.caller in DEVICES:
            owner = self.device_owners[self.caller]
        else:
            owner = self.users.get(self.caller, self.login_user)
        created = access_tokens.create_access_token(self.session, owner, "matrix")
        self.session.flush()
        return created.token.id

    def access_token_of(self, user: Any) -> int:
        from surveykit.accounts import access_tokens

        created = access_tokens.create_access_token(self.session, user, "matrix")
        self.session.flush()
        return created.token.id

    def refresh_token(self) -> str:
        pair = accounts_services.start_session(
            self.session, self.login_user, self.accounts.tokens, self.accounts.policy
        )
        self.session.flush()
        return pair.refresh_token

    def pending_device(self, target: str, scope: dict[str, Any] | None = None) -> tuple[str, str]:
        """A pending device of ``target``: bound to all of its fieldworker grants, or to ``scope``
        (a study and countries, as an enrol request names them)."""
        owner = self.targets[target]
        bound = accounts_services.enrolment_scope(self.session, owner, None, **scope) if scope else None
        device, code = accounts_services.enrol_device(
            self.session, owner, "spare", "tests", self.accounts.policy, scope=bound
        )
        self.session.flush()
        return device.id, code


def _export_job(w: World, country: str) -> str:
    """A finished export job of ocsea/``country`` owned by the caller being tried (anonymous: by
    the KE analyst), with its file in the jobs folder."""
    owner = w.device_owners.get(w.caller) or w.users.get(w.caller) or w.users["analyst_ke"]
    study = w.session.scalar(select(Study).where(Study.slug == "ocsea"))
    job_id = str(uuid.uuid4())
    folder = jobs.JobSettings.from_settings(w.accounts.settings).files_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job_id}.xlsx").write_bytes(b"PK matrix")
    now = utcnow()
    w.session.add(
        ExportJob(
            id=job_id,
            owner_id=owner.id,
            owner=owner.username,
            study_id=study.id,
            study_slug="ocsea",
            country=country,
            format="xlsx",
            state="done",
            step="done",
            done=1,
            total=1,
            attempts=1,
            file_path=f"{job_id}.xlsx",
            file_size=9,
            etag="0" * 64,
            file_name="matrix.xlsx",
            created_at=now,
            finished_at=now,
            expires_at=now + timedelta(hours=1),
        )
    )
    w.session.flush()
    return job_id


def _draft(w: World, scope: str) -> str:
    """A new draft of the scope's instrument (what a publisher of its study uploaded): its page."""
    from surveykit.instruments import drafts

    definition = instruments.validate_definition(_definition(INSTRUMENTS[scope], STUDY_OF[scope]))
    checked = drafts.CheckedFile(
        "debrief.json",
        "json",
        json.dumps(definition).encode(),
        definition["slug"],
        definition.get("study"),
        definition,
        [],
    )
    draft = drafts.create_draft(w.session, checked, "m-global-admin", w.users["global_admin"].id)
    return f"/console/instruments/drafts/{draft.id}"


def _studio_calls(scope: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    slug = INSTRUMENTS[scope]
    pages = f"/console/instruments/{slug}"
    calls: dict[tuple[str, str], Callable[[World], Call]] = {
        ("console.version_preview", "GET"): lambda w: Call("GET", f"{pages}/versions/1/preview"),
        ("console.version_xlsx", "GET"): lambda w: Call("GET", f"{pages}/versions/1.xlsx"),
        ("console.instrument_compare", "GET"): lambda w: Call("GET", f"{pages}/compare"),
    }
    if scope == "shared":
        return calls
    return {
        **calls,
        ("console.draft", "GET"): lambda w: Call("GET", _draft(w, scope)),
        # Without a file: the form answers "choose the file" (422), past the permission check.
        ("console.draft_file", "POST"): lambda w: Call("POST", f"{_draft(w, scope)}/file", form={}),
        ("console.draft_delete", "POST"): lambda w: Call("POST", f"{_draft(w, scope)}/delete", form={}),
        ("console.draft_preview", "GET"): lambda w: Call("GET", f"{_draft(w, scope)}/preview"),
        ("console.draft_compare", "GET"): lambda w: Call("GET", f"{_draft(w, scope)}/compare"),
        ("console.draft_publish", "POST"): lambda w: Call("POST", f"{_draft(w, scope)}/publish", form={}),
    }


def _instrument_calls(scope: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    slug = INSTRUMENTS[scope]
    base = f"/api/v1/instruments/{slug}"
    return {
        **_studio_calls(scope),
        ("console.instrument", "GET"): lambda w: Call("GET", f"/console/instruments/{slug}"),
        ("console.instrument_retire", "POST"): lambda w: Call(
            "POST", f"/console/instruments/{slug}/retire", form={}
        ),
        ("instrument", "GET"): lambda w: Call("GET", base),
        ("instrument_version", "GET"): lambda w: Call("GET", f"{base}/versions/1"),
        ("instrument_version_xlsx", "GET"): lambda w: Call("GET", f"{base}/versions/1.xlsx"),
        ("instrument_record_schema", "GET"): lambda w: Call("GET", f"{base}/versions/1/record-schema"),
        ("console.instrument_guide", "GET"): lambda w: Call(
            "GET", f"/console/instruments/{slug}/versions/1/guide?lang=pt"
        ),
        ("instrument_retire", "POST"): lambda w: Call("POST", f"{base}/retire"),
        ("instrument_preview", "GET"): lambda w: Call("GET", f"{base}/versions/1/preview?lang=pt"),
        ("instrument_compare", "GET"): lambda w: Call("GET", f"{base}/compare?from=1&to=1"),
        ("instrument_compare", "POST"): lambda w: Call(
            "POST", f"{base}/compare?from=1", _definition(slug, STUDY_OF[scope])
        ),
        ("instruments", "POST"): lambda w: Call(
            "POST", "/api/v1/instruments", _definition(slug, STUDY_OF[scope])
        ),
    }


def _device_calls(
    target: str, scope: dict[str, Any] | None = None
) -> dict[tuple[str, str], Callable[[World], Call]]:
    return {
        ("devices", "POST"): lambda w: Call(
            "POST",
            "/api/v1/devices",
            {"username": w.targets[target].username, "label": "new tablet", **(scope or {})},
        ),
        ("device", "DELETE"): lambda w: Call(
            "DELETE", f"/api/v1/devices/{w.pending_device(target, scope)[0]}"
        ),
        ("device_enrolment", "POST"): lambda w: Call(
            "POST", f"/api/v1/devices/{w.pending_device(target, scope)[0]}/enrolment"
        ),
    }


def _with_activity(w: World, study: str, call: Call) -> Call:
    """``call``, once research activity RA1 of ``study`` exists (the registry needs it)."""
    from surveykit.studies import services as studies

    target = studies.get_study(w.session, study)
    try:
        studies.get_activity(w.session, target, "RA1")
    except studies.ActivityNotFound:
        studies.add_activity(w.session, target, "RA1", "Duty bearers")
        w.session.flush()
    return call


def _planned(w: World, study: str, country: str) -> str:
    """The ID of a new planned participant of ``study`` in ``country``."""
    from surveykit.participants import services as registry
    from surveykit.studies import services as studies

    _with_activity(w, study, Call("GET", "/"))
    [person] = registry.register_interview(
        w.session,
        studies.get_study(w.session, study),
        country,
        "RA1",
        [registry.NewParticipant("Ministry")],
        "t",
    )
    w.session.flush()
    return person.pid


def _grant_of(w: World, user: Any) -> int:
    from surveykit.accounts.models import Grant

    return w.session.scalar(select(Grant.id).where(Grant.user_id == user.id).limit(1))


def _free_code(taken: set[str], candidates: list[str]) -> str:
    return next(code for code in candidates if code not in taken)


def _free_country(w: World, study: str) -> str:
    from surveykit.studies import services as studies

    taken = studies.country_codes(w.session, studies.get_study(w.session, study))
    return _free_code(taken, [a + b for a in "QXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"])


def _free_activity(w: World, study: str) -> str:
    from surveykit.studies import services as studies

    taken = {a.code for a in studies.list_activities(w.session, studies.get_study(w.session, study))}
    return _free_code(taken, [f"RA{n}" for n in range(2, 10)])


def _free_study(w: World) -> str:
    from surveykit.studies import services as studies

    taken = {s.slug for s in studies.list_studies(w.session)}
    return _free_code(taken, [f"matrix-{n}" for n in range(100)])


def _free_username(w: World) -> str:
    taken = {user.username for user in accounts_services.list_users(w.session)}
    return _free_code(taken, [f"m-new-{n}" for n in range(1000)])


def _spare_user(w: World) -> str:
    """A new account made for one call (deactivated or given a new password by it)."""
    return w.accounts.user(_free_username(w), "fieldworker", "ocsea", ["KE"]).username


def _spare_grant(w: World) -> int:
    grant = accounts_services.add_grant(w.session, w.targets["ke"], "analyst", "ocsea", ["KH"], "tests")
    w.session.flush()
    return grant.id


def _study_calls(study: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    base = f"/api/v1/studies/{study}"
    return {
        ("study", "GET"): lambda w: Call("GET", base),
        ("study_countries", "POST"): lambda w: Call(
            "POST", f"{base}/countries", {"code": _free_country(w, study), "name": "Matrix"}
        ),
        ("study_country", "PATCH"): lambda w: Call("PATCH", f"{base}/countries/KE", {"region": "Matrix"}),
        ("study_activities", "POST"): lambda w: Call(
            "POST", f"{base}/activities", {"code": _free_activity(w, study), "name": "Matrix"}
        ),
        ("study_activity", "PATCH"): lambda w: _with_activity(
            w, study, Call("PATCH", f"{base}/activities/RA1", {"name": "Renamed"})
        ),
        ("study_progress", "GET"): lambda w: Call("GET", f"{base}/progress"),
    }


def _registry_calls(study: str, country: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    base = f"/api/v1/studies/{study}"
    people = f"{base}/countries/{country}/participants"
    register = {"activity": "RA1", "participants": [{"agency": "Ministry of ICT"}, {"agency": "Police"}]}
    return {
        ("participants", "GET"): lambda w: _with_activity(w, study, Call("GET", people)),
        ("participants", "POST"): lambda w: _with_activity(w, study, Call("POST", people, register)),
        ("participants_import", "POST"): lambda w: _with_activity(
            w, study, Call("POST", f"{people}/import?activity=RA1", {"rows": [{"agency": "Ministry of ICT"}]})
        ),
        ("participant", "GET"): lambda w: Call("GET", f"{base}/participants/{_planned(w, study, country)}"),
        ("participant", "PATCH"): lambda w: Call(
            "PATCH", f"{base}/participants/{_planned(w, study, country)}", {"position": "Director"}
        ),
    }


def _with_code(w: World, study: str, call: Call) -> Call:
    """The call, once the study has a code (a codebook with none is no valid .qdc)."""
    import uuid

    from surveykit.analysis.models import Code
    from surveykit.studies import services as studies

    study_id = studies.get_study(w.session, study).id
    if not w.session.scalar(select(func.count()).select_from(Code).where(Code.study_id == study_id)):
        w.session.add(Code(guid=str(uuid.uuid4()), study_id=study_id, name="Awareness", created_by="t"))
        w.session.flush()
    return call


def _refi_calls(study: str, country: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    import uuid

    from surveykit.analysis import refi_model, refi_write

    base = f"/api/v1/studies/{study}"
    project = f"{base}/countries/{country}/analysis.qdpx"

    def codebook() -> bytes:
        code = refi_model.Code(str(uuid.uuid4()), "From a QDA tool")
        return refi_write.codebook_xml(refi_model.Codebook(codes=[code]))

    # A project without codings on surveykit's sources: valid, and imports nothing.
    empty = refi_write.qdpx_bytes(refi_model.Project(name="matrix"))
    return {
        ("analysis_country_qdpx", "GET"): lambda w: Call("GET", project),
        ("analysis_country_qdpx", "POST"): lambda w: Call(
            "POST", project, body=empty, content_type="application/zip"
        ),
        ("analysis_study_qdpx", "GET"): lambda w: Call("GET", f"{base}/analysis.qdpx"),
        ("analysis_codebook_qdc", "GET"): lambda w: _with_code(w, study, Call("GET", f"{base}/codebook.qdc")),
        ("analysis_codebook_qdc", "POST"): lambda w: Call(
            "POST", f"{base}/codebook.qdc", body=codebook(), content_type="application/xml"
        ),
    }


def _block_call(country: str) -> Callable[[World], Call]:
    body = {"study": "ocsea", "country": country, "activity": "RA1"}
    return lambda w: _with_activity(w, "ocsea", Call("POST", "/api/v1/blocks", body))


def _country_block_calls(study: str, country: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    """Listing a country's blocks, and releasing the matrix tablet's block there (made for the call)."""
    from surveykit.participants import ids
    from surveykit.studies import services as studies

    base = f"/api/v1/studies/{study}/countries/{country}/blocks"

    def release(w: World) -> Call:
        _with_activity(w, study, Call("GET", "/"))
        ids.reserve_block(w.session, w.device.id, studies.get_study(w.session, study).id, "RA1", country, 2)
        w.session.flush()
        return Call("POST", f"{base}/release", {"device_id": w.device.id})

    return {
        ("country_blocks", "GET"): lambda w: _with_activity(w, study, Call("GET", base)),
        ("country_blocks_release", "POST"): release,
    }


def _stats_export_calls(study: str, country: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    """The CSV and the SPSS/Stata syntax of one country of ``study`` and of the whole study."""

    def call(path: str) -> Callable[[World], Call]:
        return lambda w: Call("GET", path)

    calls = {}
    for ext in STATS_FILES:
        calls[(f"export_country_{ext}", "GET")] = call(f"/api/v1/exports/{study}/{country}.{ext}")
        calls[(f"export_study_{ext}", "GET")] = call(f"/api/v1/exports/{study}/ALL.{ext}")
    return calls


def _sync_calls(study: str, country: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    scope = f"study={study}&country={country}"

    def resolve(w: World) -> Call:
        conflict_id = make_conflict(w.session, w.users["global_admin"].id, study, country)
        return Call("POST", f"/api/v1/conflicts/{conflict_id}/resolve", {"resolution": "keep_current"})

    def resolve_field(w: World) -> Call:
        conflict_id = make_field_conflict(w.session, w.users["global_admin"].id, study, country)
        return Call("POST", f"/api/v1/field-conflicts/{conflict_id}/resolve", {"resolution": "keep_current"})

    return {
        ("sync_changes", "GET"): lambda w: Call("GET", f"/api/v1/sync/changes?{scope}"),
        ("conflicts", "GET"): lambda w: Call("GET", f"/api/v1/conflicts?{scope}"),
        ("conflict_resolve", "POST"): resolve,
        ("field_conflicts", "GET"): lambda w: Call("GET", f"/api/v1/field-conflicts?{scope}"),
        ("field_conflict_resolve", "POST"): resolve_field,
    }


def _coded_interview(w: World, study: str, country: str) -> tuple[str, int]:
    """A stored interview of ``study``/``country`` with a text answer, and an active code of the study."""
    from surveykit.analysis.models import Code
    from surveykit.studies import services as studies

    target = studies.get_study(w.session, study)
    interview_uuid, _, _ = make_interview(w.session, w.users["global_admin"].id, study, country)
    code = Code(guid=str(uuid.uuid4()), study_id=target.id, name="Capacity", created_by="tests")
    w.session.add(code)
    w.session.flush()
    return interview_uuid, code.id


def _own_coding(w: World, study: str, country: str) -> int:
    """A coding of the caller about to call (its coder may change it), or the global admin's."""
    from surveykit.analysis.models import Coding
    from surveykit.studies import services as studies

    interview_uuid, code_id = _coded_interview(w, study, country)
    coder = w.users.get(w.caller, w.users["global_admin"])
    coding = Coding(
        guid=str(uuid.uuid4()),
        study_id=studies.get_study(w.session, study).id,
        country_code=country,
        code_id=code_id,
        interview_uuid=interview_uuid,
        question_id="details",
        start_offset=0,
        end_offset=8,
        text="We train",
        coder_id=coder.id,
        coder=coder.username,
        anchored_revision=1,
    )
    w.session.add(coding)
    w.session.flush()
    return coding.id


def _analysis_calls(study: str, country: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    base = f"/api/v1/studies/{study}/countries/{country}"

    def create(w: World) -> Call:
        interview_uuid, code_id = _coded_interview(w, study, country)
        body = {
            "interview_uuid": interview_uuid,
            "question_id": "details",
            "start": 0,
            "end": 8,
            "code_id": code_id,
        }
        return Call("POST", f"{base}/codings", body)

    return {
        ("codings", "GET"): lambda w: Call("GET", f"{base}/codings"),
        ("codings", "POST"): create,
        ("coding", "GET"): lambda w: Call("GET", f"{base}/codings/{_own_coding(w, study, country)}"),
        ("coding", "PATCH"): lambda w: Call(
            "PATCH", f"{base}/codings/{_own_coding(w, study, country)}", {"memo": "checked"}
        ),
        ("coding", "DELETE"): lambda w: Call("DELETE", f"{base}/codings/{_own_coding(w, study, country)}"),
        ("coding_agreement", "GET"): lambda w: Call("GET", f"{base}/agreement?coder=a&coder=b"),
    }


def _matrix_code(w: World, study: str, retired: bool = False) -> int:
    """A new code in the codebook of ``study`` (retired when asked), for a call to act on."""
    import uuid

    from surveykit.analysis import codebook
    from surveykit.studies import services as studies

    target = studies.get_study(w.session, study)
    made, _ = codebook.create_code(w.session, target, "tests", name=f"matrix {uuid.uuid4().hex[:12]}")
    if retired:
        codebook.retire_code(w.session, target, made, None)
    w.session.flush()
    return made.id


def _codebook_calls(study: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    """The codebook of ``study``; each change acts on codes made for it."""
    import uuid

    base = f"/api/v1/studies/{study}/codebook"

    def code(w: World, retired: bool = False) -> int:
        return _matrix_code(w, study, retired)

    return {
        ("codebook", "GET"): lambda w: Call("GET", base),
        ("codebook_codes", "POST"): lambda w: Call(
            "POST", f"{base}/codes", {"name": f"new {uuid.uuid4().hex}"}
        ),
        ("codebook_code", "GET"): lambda w: Call("GET", f"{base}/codes/{code(w)}"),
        ("codebook_code", "PATCH"): lambda w: Call(
            "PATCH", f"{base}/codes/{code(w)}", {"definition": "Changed", "version": 1}
        ),
        ("codebook_code_retire", "POST"): lambda w: Call("POST", f"{base}/codes/{code(w)}/retire"),
        ("codebook_code_reactivate", "POST"): lambda w: Call(
            "POST", f"{base}/codes/{code(w, retired=True)}/reactivate"
        ),
        ("codebook_code_merge", "POST"): lambda w: Call(
            "POST", f"{base}/codes/{code(w)}/merge", {"into": code(w)}
        ),
        ("codebook_code_history", "GET"): lambda w: Call("GET", f"{base}/codes/{code(w)}/history"),
        ("codebook_import", "POST"): lambda w: Call(
            "POST",
            f"{base}/import",
            body=f"path\nMatrix/{uuid.uuid4().hex}\n".encode(),
            content_type="text/csv",
        ),
    }


def _analysis_page_calls(study: str, country: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    base = f"/console/studies/{study}/countries/{country}"

    def interview(w: World) -> str:
        return f"{base}/interviews/{_coded_interview(w, study, country)[0]}"

    def create(w: World) -> Call:
        interview_uuid, code_id = _coded_interview(w, study, country)
        form = {"question_id": "details", "start": "0", "end": "8", "code_id": str(code_id)}
        return Call("POST", f"{base}/interviews/{interview_uuid}", form=form)

    return {
        ("console.codebook", "GET"): lambda w: Call("GET", f"{base}/codebook"),
        ("console.analysis_interviews", "GET"): lambda w: Call("GET", f"{base}/interviews"),
        ("console.coding", "GET"): lambda w: Call("GET", interview(w)),
        ("console.coding", "POST"): create,
        ("console.coding_change", "POST"): lambda w: Call(
            "POST",
            f"{base}/codings/{_own_coding(w, study, country)}",
            form={"action": "memo", "memo": "checked"},
        ),
        ("console.agreement", "GET"): lambda w: Call("GET", f"{base}/agreement"),
        **_codebook_page_calls(study, country),
    }


def _codebook_page_calls(study: str, country: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    """The console's codebook pages of ``study`` seen from ``country``; each change acts on codes
    made for it."""
    base = f"/console/studies/{study}/countries/{country}/codebook"

    def code(w: World, retired: bool = False) -> int:
        return _matrix_code(w, study, retired)

    def fields(name: str) -> dict[str, str]:
        return {"name": name, "definition": "", "colour": "#123456", "parent_id": ""}

    csv_file = base64.b64encode(b"path\nMatrix/console\n").decode()
    return {
        ("console.codebook", "POST"): lambda w: Call(
            "POST", base, form=fields(f"new {uuid.uuid4().hex[:12]}")
        ),
        ("console.codebook_code", "GET"): lambda w: Call("GET", f"{base}/codes/{code(w)}"),
        ("console.codebook_code", "POST"): lambda w: Call(
            "POST",
            f"{base}/codes/{code(w)}",
            form={**fields(f"renamed {uuid.uuid4().hex[:12]}"), "version": "1"},
        ),
        ("console.codebook_code_status", "POST"): lambda w: Call(
            "POST", f"{base}/codes/{code(w)}/status", form={"action": "retire", "version": "1"}
        ),
        ("console.codebook_code_merge", "POST"): lambda w: Call(
            "POST",
            f"{base}/codes/{code(w)}/merge",
            form={"into": str(code(w)), "version": "1", "confirmed": "yes"},
        ),
        ("console.codebook_import", "GET"): lambda w: Call("GET", f"{base}/import"),
        ("console.codebook_import", "POST"): lambda w: Call(
            "POST", f"{base}/import", form={"step": "import", "filename": "matrix.csv", "data": csv_file}
        ),
        ("console.codebook_export", "GET"): lambda w: Call("GET", f"{base}/codebook.csv"),
    }


CALLS: dict[tuple[str, str], Callable[[World], Call]] = {
    ("openapi", "GET"): lambda w: Call("GET", "/api/v1/openapi.json"),
    ("health", "GET"): lambda w: Call("GET", "/api/v1/health"),
    ("api_docs", "GET"): lambda w: Call("GET", "/api/v1/docs"),
    ("api_docs_static", "GET"): lambda w: Call("GET", "/api/v1/docs/static/api-docs/init.js"),
    ("fieldapp_index", "GET"): lambda w: Call("GET", "/app/"),
    ("fieldapp_service_worker", "GET"): lambda w: Call("GET", "/app/sw.js"),
    ("fieldapp_file", "GET"): lambda w: Call("GET", "/app/app.js"),
    ("auth_token", "POST"): lambda w: Call(
        "POST", "/api/v1/auth/token", {"username": "m-login", "password": PASSWORD}
    ),
    ("auth_refresh", "POST"): lambda w: Call(
        "POST", "/api/v1/auth/refresh", {"refresh_token": w.refresh_token()}
    ),
    ("auth_logout", "POST"): lambda w: Call(
        "POST", "/api/v1/auth/logout", {"refresh_token": w.refresh_token()}
    ),
    ("device_activate", "POST"): lambda w: Call(
        "POST", "/api/v1/devices/activate", {"code": w.pending_device("ke")[1]}
    ),
    ("me", "GET"): lambda w: Call("GET", "/api/v1/me"),
    ("me_password", "POST"): lambda w: Call(
        "POST", "/api/v1/me/password", {"current_password": PASSWORD, "new_password": PASSWORD * 2}
    ),
    ("users", "GET"): lambda w: Call("GET", "/api/v1/users"),
    ("user", "GET"): lambda w: Call("GET", "/api/v1/users/m-login"),
    ("user_password", "POST"): lambda w: Call(
        "POST", "/api/v1/users/m-login/password", {"password": PASSWORD}
    ),
    ("user_unlock", "POST"): lambda w: Call("POST", "/api/v1/users/m-login/unlock"),
    ("users", "POST"): lambda w: Call("POST", "/api/v1/users", {"username": f"m-new-{len(w.users)}"}),
    ("user_deactivate", "POST"): lambda w: Call("POST", "/api/v1/users/m-target-ke/deactivate"),
    ("user_grants", "POST"): lambda w: Call(
        "POST", "/api/v1/users/m-login/grants", {"role": "analyst", "study": "ocsea", "countries": ["KE"]}
    ),
    ("user_grant", "DELETE"): lambda w: Call(
        "DELETE", f"/api/v1/users/m-login/grants/{_grant_of(w, w.login_user)}"
    ),
    ("access_tokens", "GET"): lambda w: Call("GET", "/api/v1/account/access-tokens"),
    ("access_tokens", "POST"): lambda w: Call("POST", "/api/v1/account/access-tokens", {"name": "Excel"}),
    ("access_token", "DELETE"): lambda w: Call(
        "DELETE", f"/api/v1/account/access-tokens/{w.own_access_token()}"
    ),
    ("user_access_tokens", "GET"): lambda w: Call("GET", "/api/v1/users/m-login/access-tokens"),
    ("user_access_token", "DELETE"): lambda w: Call(
        "DELETE", f"/api/v1/users/m-login/access-tokens/{w.access_token_of(w.login_user)}"
    ),
    ("devices", "GET"): lambda w: Call("GET", "/api/v1/devices"),
    ("audit", "GET"): lambda w: Call("GET", "/api/v1/audit"),
    ("instruments", "GET"): lambda w: Call("GET", "/api/v1/instruments"),
    ("instruments_validate", "POST"): lambda w: Call(
        "POST", "/api/v1/instruments/validate", minimal_definition("anything")
    ),
    ("instruments_preview", "POST"): lambda w: Call(
        "POST", "/api/v1/instruments/preview?lang=pt", minimal_definition("anything")
    ),
    **_instrument_calls("ocsea"),
    **_device_calls("ke"),
    ("studies", "GET"): lambda w: Call("GET", "/api/v1/studies"),
    ("studies", "POST"): lambda w: Call(
        "POST", "/api/v1/studies", {"slug": _free_study(w), "name": "Matrix"}
    ),
    **_study_calls("ocsea"),
    **_registry_calls("ocsea", "KE"),
    ("blocks", "GET"): lambda w: Call("GET", "/api/v1/blocks"),
    ("blocks", "POST"): _block_call("KE"),
    **_country_block_calls("ocsea", "KE"),
    ("sync", "POST"): lambda w: Call("POST", "/api/v1/sync", {"changes": []}),
    **_sync_calls("ocsea", "KE"),
    ("sync_changes", "GET"): lambda w: Call("GET", "/api/v1/sync/changes?study=ocsea"),
    ("export_country", "GET"): lambda w: Call("GET", "/api/v1/exports/ocsea/KE.xlsx"),
    ("export_study", "GET"): lambda w: Call("GET", "/api/v1/exports/ocsea/ALL.xlsx"),
    **_codebook_calls("ocsea"),
    **_refi_calls("ocsea", "KE"),
    ("export_country_jobs", "POST"): lambda w: Call("POST", "/api/v1/exports/ocsea/KE.xlsx/jobs"),
    ("export_study_jobs", "POST"): lambda w: Call("POST", "/api/v1/exports/ocsea/ALL.xlsx/jobs"),
    ("export_job", "GET"): lambda w: Call("GET", f"/api/v1/export-jobs/{_export_job(w, 'KE')}"),
    ("export_job", "DELETE"): lambda w: Call("DELETE", f"/api/v1/export-jobs/{_export_job(w, 'KE')}"),
    ("export_job_file", "GET"): lambda w: Call("GET", f"/api/v1/export-jobs/{_export_job(w, 'KE')}/file"),
    **_stats_export_calls("ocsea", "KE"),
    **{
        ("console.root", "GET"): lambda w: Call("GET", "/"),
        ("console.static", "GET"): lambda w: Call("GET", "/console/static/console.css"),
        ("console.signin", "GET"): lambda w: Call("GET", "/console/sign-in"),
        ("console.signin", "POST"): lambda w: Call(
            "POST", "/console/sign-in", form={"username": "m-login", "password": PASSWORD}
        ),
        ("console.signout", "POST"): lambda w: Call("POST", "/console/sign-out", form={}),
        ("console.home", "GET"): lambda w: Call("GET", "/console/"),
        ("console.account", "GET"): lambda w: Call("GET", "/console/account"),
        ("console.password", "GET"): lambda w: Call("GET", "/console/account/password"),
        # The matrix's people have no password: the form answers "not your current password" (422).
        ("console.password", "POST"): lambda w: Call(
            "POST",
            "/console/account/password",
            form={"current_password": "x", "new_password": PASSWORD * 2, "confirm_password": PASSWORD * 2},
        ),
        ("console.access_tokens", "POST"): lambda w: Call(
            "POST", "/console/account/access-tokens", form={"name": "Excel", "expires_in_days": "30"}
        ),
        ("console.access_token_revoke", "POST"): lambda w: Call(
            "POST", f"/console/account/access-tokens/{w.own_access_token()}/revoke", form={}
        ),
        ("console.users", "GET"): lambda w: Call("GET", "/console/admin/users"),
        ("console.users", "POST"): lambda w: Call(
            "POST", "/console/admin/users", form={"username": _free_username(w), "password": PASSWORD}
        ),
        ("console.user", "GET"): lambda w: Call("GET", "/console/admin/users/m-target-ke"),
        ("console.user_grants", "POST"): lambda w: Call(
            "POST",
            "/console/admin/users/m-target-ke/grants",
            form={"role": "analyst", "study": "ocsea", "countries": "KE"},
        ),
        ("console.user_grant_revoke", "POST"): lambda w: Call(
            "POST", f"/console/admin/users/m-target-ke/grants/{_spare_grant(w)}/revoke", form={}
        ),
        ("console.user_deactivate", "POST"): lambda w: Call(
            "POST", f"/console/admin/users/{_spare_user(w)}/deactivate", form={}
        ),
        ("console.user_password", "POST"): lambda w: Call(
            "POST", f"/console/admin/users/{_spare_user(w)}/password", form={}
        ),
        ("console.user_unlock", "POST"): lambda w: Call(
            "POST", "/console/admin/users/m-target-ke/unlock", form={}
        ),
        ("console.audit", "GET"): lambda w: Call("GET", "/console/admin/audit?action=auth.*"),
        ("console.exports", "GET"): lambda w: Call("GET", "/console/exports"),
        ("console.export_country", "GET"): lambda w: Call("GET", "/console/exports/ocsea/KE.xlsx"),
        ("console.export_study", "GET"): lambda w: Call("GET", "/console/exports/ocsea/ALL.xlsx"),
        ("console.instruments", "GET"): lambda w: Call("GET", "/console/instruments"),
        ("console.studio_new", "GET"): lambda w: Call("GET", "/console/instruments/new"),
        ("console.studio_new", "POST"): lambda w: Call("POST", "/console/instruments/new", form={}),
        **{key: call for key, call in _instrument_calls("ocsea").items() if key[0].startswith("console.")},
    },
}


def _coordination_calls(study: str, country: str) -> dict[tuple[str, str], Callable[[World], Call]]:
    """consolecoord: the coordinators' pages of ``study``/``country``, each with what it acts on."""
    import base64

    from surveykit.studies import services as studies

    base = f"/console/studies/{study}/countries/{country}"

    def fieldworker(w: World) -> str:
        username = f"m-walker-{study}-{country}".lower()
        if w.session.scalar(select(func.count()).select_from(User).where(User.username == username)) == 0:
            w.accounts.user(username, "fieldworker", study, [country])
        return username

    def device(w: World) -> str:
        owner = w.session.scalar(select(User).where(User.username == fieldworker(w)))
        target = studies.get_study(w.session, study)
        scope = [{"study_id": target.id, "countries": [country]}]
        device, _ = accounts_services.enrol_device(
            w.session, owner, "spare", "tests", w.accounts.policy, scope=scope
        )
        w.session.flush()
        return device.id

    sheet = base64.b64encode(b"agency,position\nMinistry of ICT,Director\n").decode("ascii")
    planned = {"activity": "RA1", "step": "store", "filename": "plan.csv", "data": sheet}
    edit = {"agency": "Ministry of ICT", "position": "Director", "status": "planned"}

    def conflict(w: World) -> int:
        return make_conflict(w.session, w.users["global_admin"].id, study, country)

    def field_conflict(w: World) -> int:
        return make_field_conflict(w.session, w.users["global_admin"].id, study, country)

    return {
        ("console.progress", "GET"): lambda w: Call("GET", f"/console/studies/{study}/progress"),
        ("console.registry", "GET"): lambda w: _with_activity(w, study, Call("GET", f"{base}/participants")),
        ("console.registry_import", "GET"): lambda w: _with_activity(
            w, study, Call("GET", f"{base}/participants/import")
        ),
        ("console.registry_import", "POST"): lambda w: _with_activity(
            w, study, Call("POST", f"{base}/participants/import", form=planned)
        ),
        ("console.participant", "GET"): lambda w: Call(
            "GET", f"/console/studies/{study}/participants/{_planned(w, study, country)}"
        ),
        ("console.participant", "POST"): lambda w: Call(
            "POST", f"/console/studies/{study}/participants/{_planned(w, study, country)}", form=edit
        ),
        ("console.tablets", "GET"): lambda w: Call("GET", f"{base}/tablets"),
        ("console.tablets", "POST"): lambda w: Call(
            "POST", f"{base}/tablets", form={"username": fieldworker(w), "label": "matrix tablet"}
        ),
        ("console.tablet_reenrol", "POST"): lambda w: Call(
            "POST", f"{base}/tablets/{device(w)}/reenrol", form={}
        ),
        ("console.tablet_revoke", "GET"): lambda w: Call("GET", f"{base}/tablets/{device(w)}/revoke"),
        ("console.tablet_revoke", "POST"): lambda w: Call(
            "POST", f"{base}/tablets/{device(w)}/revoke", form={}
        ),
        ("console.conflicts", "GET"): lambda w: Call("GET", f"{base}/conflicts"),
        ("console.conflict", "GET"): lambda w: Call("GET", f"/console/conflicts/{conflict(w)}"),
        ("console.conflict", "POST"): lambda w: Call(
            "POST", f"/console/conflicts/{conflict(w)}", form={"resolution": "keep_current"}
        ),
        ("console.field_conflict", "GET"): lambda w: Call(
            "GET", f"/console/field-conflicts/{field_conflict(w)}"
        ),
        ("console.field_conflict", "POST"): lambda w: Call(
            "POST", f"/console/field-conflicts/{field_conflict(w)}", form={"resolution": "keep_current"}
        ),
    }


CALLS.update(_analysis_calls("ocsea", "KE"))
CALLS.update(_analysis_page_calls("ocsea", "KE"))
CALLS[("console.analysis", "GET")] = lambda w: Call("GET", "/console/analysis")

# consolecoord: the start page is everyone's; the rest is scoped by study and country.
CALLS.update(
    {
        ("console.fieldwork", "GET"): lambda w: Call("GET", "/console/fieldwork"),
        **_coordination_calls("ocsea", "KE"),
    }
)

SCENARIO_CALLS: dict[str, dict[tuple[str, str], Callable[[World], Call]]] = {
    "other_study": _instrument_calls("other_study"),
    "shared": _instrument_calls("shared"),
    "tz_fieldworker": _device_calls("tz"),
    "other_study_fieldworker": _device_calls("other"),
    "split_fieldworker": _device_calls("split"),
    "split_fieldworker_tz": _device_calls("split", {"study": "ocsea", "countries": ["TZ"]}),
    "multi_fieldworker": _device_calls("multi"),
    "multi_fieldworker_other": _device_calls("multi", {"study": "other"}),
    "tz_country": {
        **_registry_calls("ocsea", "TZ"),
        ("blocks", "POST"): _block_call("TZ"),
        **_country_block_calls("ocsea", "TZ"),
    },
    "other_study_registry": {
        **_study_calls("other"),
        **_registry_calls("other", "KE"),
        **_country_block_calls("other", "KE"),
    },
    "sync_tz": _sync_calls("ocsea", "TZ"),
    "sync_other_study": _sync_calls("other", "KE"),
    "export_tz": {
        ("export_country", "GET"): lambda w: Call("GET", "/api/v1/exports/ocsea/TZ.xlsx"),
        ("export_country_jobs", "POST"): lambda w: Call("POST", "/api/v1/exports/ocsea/TZ.xlsx/jobs"),
        ("export_job", "GET"): lambda w: Call("GET", f"/api/v1/export-jobs/{_export_job(w, 'TZ')}"),
        ("export_job_file", "GET"): lambda w: Call("GET", f"/api/v1/export-jobs/{_export_job(w, 'TZ')}/file"),
        ("console.export_country", "GET"): lambda w: Call("GET", "/console/exports/ocsea/TZ.xlsx"),
        **{key: call for key, call in _stats_export_calls("ocsea", "TZ").items() if "country" in key[0]},
    },
    "export_other_study": {
        ("export_country", "GET"): lambda w: Call("GET", "/api/v1/exports/other/KE.xlsx"),
        ("export_study", "GET"): lambda w: Call("GET", "/api/v1/exports/other/ALL.xlsx"),
        ("export_country_jobs", "POST"): lambda w: Call("POST", "/api/v1/exports/other/KE.xlsx/jobs"),
        ("export_study_jobs", "POST"): lambda w: Call("POST", "/api/v1/exports/other/ALL.xlsx/jobs"),
        ("console.export_country", "GET"): lambda w: Call("GET", "/console/exports/other/KE.xlsx"),
        ("console.export_study", "GET"): lambda w: Call("GET", "/console/exports/other/ALL.xlsx"),
        **_stats_export_calls("other", "KE"),
    },
    "codebook_other_study": _codebook_calls("other"),
    # consolecoord
    "console_tz": _coordination_calls("ocsea", "TZ"),
    "analysis_tz": {
        **_analysis_calls("ocsea", "TZ"),
        **_analysis_page_calls("ocsea", "TZ"),
        **{
            key: build
            for key, build in _refi_calls("ocsea", "TZ").items()
            if key[0] == "analysis_country_qdpx"
        },
    },
    "analysis_other_study": {
        **_analysis_calls("other", "KE"),
        **_analysis_page_calls("other", "KE"),
        **_refi_calls("other", "KE"),
    },
    "console_other_study": _coordination_calls("other", "KE"),
}


def app_routes(app: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """(route name, method) -> the view's introspectable data, for every routed view of the app."""
    introspector = app.registry.introspector
    patterns = {
        item["introspectable"]["name"]: item["introspectable"]["pattern"]
        for item in introspector.get_category("routes")
    }
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for item in introspector.get_category("views"):
        view = item["introspectable"]
        route = view["route_name"]
        if route is None:
            continue  # exception and not-found views
        methods = view["request_methods"]
        methods = ("*",) if methods is None else (methods,) if isinstance(methods, str) else methods
        permissions = [rel["value"] for rel in item["related"] if rel.category_name == "permissions"]
        for method in methods:
            if method == "HEAD":
                continue
            assert (route, method) not in found, f"two views for {route} {method}"
            found[(route, method)] = {
                "pattern": patterns[route],
                "permission": permissions[0] if permissions else None,
            }
    # Every route has at least one view.
    assert {route for route, _ in found} == set(patterns)
    return found


def test_the_matrix_covers_exactly_the_apps_routes(app: Any) -> None:
    routes = app_routes(app)
    missing = sorted(set(routes) - set(EXPECTED))
    stale = sorted(set(EXPECTED) - set(routes))
    assert not missing, f"routes without a decision in EXPECTED: {missing}"
    assert not stale, f"EXPECTED names routes the app does not have: {stale}"
    assert set(CALLS) == set(EXPECTED)
    for callers in [*EXPECTED.values(), *OUT_OF_SCOPE.values()]:
        assert callers <= EVERYONE
    for route, method, scenario in OUT_OF_SCOPE:
        assert (route, method) in EXPECTED
        assert (route, method) in SCENARIO_CALLS[scenario]


def test_every_view_declares_an_explicit_permission(app: Any) -> None:
    """API routes under /api/, console routes named console.* (all from the console's route list)."""
    routes = app_routes(app)
    api = {key: view for key, view in routes.items() if view["pattern"].startswith("/api/")}
    console = {key: view for key, view in routes.items() if key[0].startswith(browser.CONSOLE_ROUTE_PREFIX)}
    # Besides the API and the console, only the field app's files (surveykit/fieldapp), which are public.
    pages = {key: view for key, view in routes.items() if key not in api and key not in console}
    assert all(view["pattern"].startswith("/app/") for view in pages.values()), sorted(pages)
    assert all(view["permission"] == Permission.PUBLIC for view in pages.values())
    assert len(api) >= 15 and len(console) >= 7 and len(pages) == 3
    assert {route for route, _ in console} == {route.name for route in CONSOLE_ROUTES}
    for (route, method), view in routes.items():
        assert view["permission"] is not None, f"{route} {method} declares no permission"
        assert view["permission"] in set(Permission) - {Permission.UNDECLARED}, f"{route} {method}"


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> World:
    return World(accounts, dbsession)


def _refusals(dbsession: Session) -> int:
    dbsession.expire_all()
    return dbsession.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.outcome == "refused")
    )


def _send(testapp: webtest.TestApp, call: Call, headers: dict[str, str]) -> webtest.TestResponse:
    if call.json is not None:
        return testapp.request(
            call.url,
            method=call.method,
            body=json.dumps(call.json).encode("utf-8"),
            content_type="application/json",
            headers=headers,
            expect_errors=True,
        )
    if call.body is not None:
        return testapp.request(
            call.url,
            method=call.method,
            body=call.body,
            content_type=call.content_type,
            headers=headers,
            expect_errors=True,
        )
    return testapp.request(call.url, method=call.method, headers=headers, expect_errors=True)


def _check_console(
    testapp: webtest.TestApp,
    dbsession: Session,
    world: World,
    build: Callable[[World], Call],
    allowed: frozenset[str],
) -> list[str]:
    """Console routes: allowed callers get a page, a download or a redirect onwards; refused
    anonymous browsers (and tablets) are sent to the sign-in form; refused people get an HTML 403
    page, and the refusal is audited."""
    problems = []
    for caller in CALLERS:
        world.caller = caller
        call = build(world)
        headers, csrf = world.browser(caller)
        refusals_before = _refusals(dbsession)
        if call.form is not None:
            form = {**call.form, **({"csrf_token": csrf} if csrf else {})}
            if caller == "anonymous" or caller in DEVICES:
                # A signed-out browser holds the token of its sign-in form.
                page = testapp.get("/console/sign-in", headers={"Accept": "text/html"})
                form["csrf_token"] = csrf_in(page)
            response = testapp.post(call.url, form, headers=headers, expect_errors=True)
            testapp.reset()
        else:
            response = testapp.request(call.url, method=call.method, headers=headers, expect_errors=True)
        status = response.status_int
        location = response.headers.get("Location", "")
        label = f"{caller}: {call.method} {call.url} -> {status} {location}"
        sent_to_signin = status == 303 and "/console/sign-in?next=" in location
        refused = sent_to_signin or status in (401, 403)
        if response.content_type == "application/json" and call.url != "/":
            problems.append(f"{label}: a console route answered JSON")
        if caller in allowed:
            # A form answered with its errors (422) got past the permission and CSRF checks.
            if refused or (status >= 400 and status != 422):
                problems.append(f"{label}, expected to be allowed ({response.text[:200]})")
            continue
        if not refused:
            problems.append(f"{label}, expected a refusal")
        elif caller == "anonymous" or caller in DEVICES:
            if not sent_to_signin:
                problems.append(f"{label}, expected a redirect to the sign-in form")
        elif status != 403 or response.content_type != "text/html":
            problems.append(f"{label}, expected an HTML 403 page")
        elif _refusals(dbsession) <= refusals_before:
            problems.append(f"{label}: the refusal was not audited")
    return problems


def _check(
    testapp: webtest.TestApp,
    dbsession: Session,
    world: World,
    build: Callable[[World], Call],
    allowed: frozenset[str],
    *,
    success_expected: bool,
) -> list[str]:
    problems = []
    for caller in CALLERS:
        world.caller = caller
        call = build(world)
        headers = world.headers(caller)
        refusals_before = _refusals(dbsession)
        response = _send(testapp, call, headers)
        status = response.status_int
        label = f"{caller}: {call.method} {call.url} -> {status}"
        refused = status in (401, 403)
        if caller in allowed:
            if refused:
                problems.append(f"{label}, expected to be allowed ({response.text[:200]})")
            elif success_expected and not 200 <= status < 300:
                problems.append(f"{label}, expected a success ({response.text[:200]})")
            elif status >= 500:
                problems.append(f"{label}: server error")
            continue
        if not refused:
            problems.append(f"{label}, expected a refusal")
            continue
        body = response.json
        if set(body) != ENVELOPE_KEYS or body["status"] != status:
            problems.append(f"{label}: not the error envelope: {body}")
        expected_status = 401 if caller == "anonymous" else 403
        expected_code = "unauthenticated" if caller == "anonymous" else "forbidden"
        if (status, body.get("code")) != (expected_status, expected_code):
            problems.append(f"{label} {body.get('code')}, expected {expected_status} {expected_code}")
        if caller != "anonymous" and _refusals(dbsession) <= refusals_before:
            problems.append(f"{label}: the refusal was not audited")
    return problems


@pytest.mark.parametrize(("route", "method"), sorted(EXPECTED), ids=lambda value: str(value))
def test_route_matrix(
    route: str, method: str, testapp: webtest.TestApp, dbsession: Session, world: World
) -> None:
    if route.startswith(browser.CONSOLE_ROUTE_PREFIX):
        problems = _check_console(
            testapp, dbsession, world, CALLS[(route, method)], EXPECTED[(route, method)]
        )
    else:
        problems = _check(
            testapp,
            dbsession,
            world,
            CALLS[(route, method)],
            EXPECTED[(route, method)],
            success_expected=True,
        )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("route", "method", "scenario"), sorted(OUT_OF_SCOPE), ids=lambda value: str(value))
def test_route_matrix_out_of_scope(
    route: str, method: str, scenario: str, testapp: webtest.TestApp, dbsession: Session, world: World
) -> None:
    build, allowed = SCENARIO_CALLS[scenario][(route, method)], OUT_OF_SCOPE[(route, method, scenario)]
    if route.startswith(browser.CONSOLE_ROUTE_PREFIX):
        problems = _check_console(testapp, dbsession, world, build, allowed)
    else:
        problems = _check(testapp, dbsession, world, build, allowed, success_expected=True)
    assert not problems, "\n".join(problems)


def test_instrument_listing_is_filtered_by_study(
    testapp: webtest.TestApp, dbsession: Session, world: World
) -> None:
    """The collection is open to every signed-in caller, but shows only their studies' instruments."""
    seen = {}
    for caller in AUTHENTICATED:
        listed = testapp.get("/api/v1/instruments", headers=world.headers(caller)).json["instruments"]
        seen[caller] = {row["slug"] for row in listed}
    mine = {"ocsea-debrief", "shared-debrief"}
    assert seen == {caller: mine for caller in AUTHENTICATED - GLOBAL_ADMIN} | {
        "global_admin": set(INSTRUMENTS.values())
    }


@pytest.mark.parametrize("scope", ["other_study", "shared"])
def test_an_instrument_cannot_be_moved_into_the_callers_study(
    scope: str, testapp: webtest.TestApp, dbsession: Session, world: World
) -> None:
    """Re-publishing another study's (or a shared) slug under one's own study is a conflict."""
    slug = INSTRUMENTS[scope]
    hijack = _definition(slug, "ocsea")
    hijack["title"]["en"] = "Taken over"
    for caller in ("coordinator_ke", "study_admin"):
        response = _send(testapp, Call("POST", "/api/v1/instruments", hijack), world.headers(caller))
        assert response.status_int == 409, response.text
        assert response.json["code"] == "conflict"
    assert instruments.instrument_study(dbsession, slug) == (True, STUDY_OF[scope])
    assert instruments.find_version(dbsession, slug).version == 1
