"""A study's codebook (docs/codebook.md): the services, the API, CSV/XLSX import and export, the CLI.

Codings are created as rows here: the codings API is another part's.
"""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import webtest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from support_db import Accounts, CommittingApp, settings_for

from surveykit.analysis import codebook, codebook_files, codebook_import
from surveykit.analysis.models import Code, Coding
from surveykit.audit.models import AuditEvent
from surveykit.cli import cli
from surveykit.studies import services as studies
from surveykit.sync.models import Interview

BASE = "/api/v1/studies/ocsea/codebook"
XLSX = codebook_files.XLSX_CONTENT_TYPE
ENVELOPE_KEYS = {"status", "code", "message", "details"}


@pytest.fixture
def study(accounts: Any) -> Any:
    accounts.study("other", ("KE",))
    return accounts.study("ocsea")


@pytest.fixture
def editor(accounts: Any, study: Any) -> dict[str, str]:
    """An analyst with a grant over every country of the study: may edit the codebook."""
    return accounts.headers("analyst", "ocsea", None)


@pytest.fixture
def reader(accounts: Any, study: Any) -> dict[str, str]:
    """An analyst of Kenya only: reads the codebook, does not edit it."""
    return accounts.headers("analyst", "ocsea", ["KE"])


def make(session: Session, study: Any, name: str, parent: Code | None = None, **values: Any) -> Code:
    code, _ = codebook.create_code(
        session, study, "tests", name=name, parent_id=parent.id if parent else None, **values
    )
    return code


def coding(session: Session, study: Any, code: Code, user_id: int, **values: Any) -> Coding:
    """A coded passage of a stored interview (the interview is made for it)."""
    interview = Interview(
        uuid=str(uuid.uuid4()),
        study_id=study.id,
        country_code="KE",
        activity="RA1",
        interview_number=session.scalar(select(func.count()).select_from(Interview)) + 1,
        revision=1,
        content_hash="0" * 64,
        record={},
        status="complete",
        instrument_slug="ra1",
        instrument_version=1,
        interviewer_id=user_id,
    )
    session.add(interview)
    session.flush()
    row = Coding(
        guid=str(uuid.uuid4()),
        study_id=study.id,
        country_code="KE",
        code_id=code.id,
        interview_uuid=interview.uuid,
        question_id="q1",
        start_offset=0,
        end_offset=5,
        text="words",
        coder_id=user_id,
        coder="tests",
        anchored_revision=1,
        **values,
    )
    session.add(row)
    session.flush()
    return row


def snapshot(session: Session, study: Any) -> list[tuple[Any, ...]]:
    session.expire_all()
    return [
        (c.id, c.guid, c.parent_id, c.name, c.definition, c.colour, c.status, c.merged_into_id, c.version)
        for c in codebook.study_codes(session, study)
    ]


def audit_actions(session: Session) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("codebook.%")).order_by(AuditEvent.id)
        )
    )


def xlsx(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def post_csv(testapp: webtest.TestApp, headers: dict[str, str], text: str, query: str = "", **kw: Any) -> Any:
    return testapp.post(
        f"{BASE}/import{query}", text.encode("utf-8"), headers={**headers, "Content-Type": "text/csv"}, **kw
    )


def error_paths(response: Any) -> list[str]:
    assert set(response.json) == ENVELOPE_KEYS, response.json
    return [detail["path"] for detail in response.json["details"]]


# ----------------------------------------------------------------------------------------- services


def test_the_tree_nests_codes_with_their_paths_and_coding_counts(
    dbsession: Session, study: Any, accounts: Any
) -> None:
    user = accounts.user(None, "analyst", "ocsea", None)
    capacity = make(dbsession, study, "Capacity", definition="Skills and means", colour="#1f77b4")
    training = make(dbsession, study, "Training", capacity)
    make(dbsession, study, "Budget", capacity)
    awareness = make(dbsession, study, "Public awareness")
    coding(dbsession, study, training, user.id)
    coding(dbsession, study, training, user.id)
    tree = codebook.codebook_tree(dbsession, study)
    assert [node["name"] for node in tree] == ["Capacity", "Public awareness"]
    assert [child["path"] for child in tree[0]["children"]] == ["Capacity / Budget", "Capacity / Training"]
    assert tree[0]["colour"] == "#1F77B4" and tree[0]["definition"] == "Skills and means"
    assert tree[0]["children"][1]["codings"] == 2 and tree[0]["codings"] == 0
    assert tree[0]["children"][1]["parent"] == capacity.id
    assert tree[1]["id"] == awareness.id and tree[1]["children"] == []


def test_sibling_names_are_unique_ignoring_case_but_not_across_parents(
    dbsession: Session, study: Any
) -> None:
    capacity = make(dbsession, study, "Capacity")
    make(dbsession, study, "Training", capacity)
    with pytest.raises(codebook.NameTaken):
        make(dbsession, study, "TRAINING", capacity)
    with pytest.raises(codebook.NameTaken):
        make(dbsession, study, "capacity")
    assert make(dbsession, study, "Training").parent_id is None  # another parent: allowed


def test_bad_values_are_refused_with_their_field(dbsession: Session, study: Any) -> None:
    for values, field in (
        ({"name": "Laws/Gaps"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "Escape \x1b[31m red"}, "name"),
        ({"name": "Laws", "colour": "red"}, "colour"),
        ({"name": "Laws", "colour": "#12345"}, "colour"),
        ({"name": "Laws", "definition": "x" * 10_001}, "definition"),
        ({"name": "Laws", "parent_id": 999_999}, "parent_id"),
    ):
        with pytest.raises(codebook.CodebookError) as caught:
            codebook.create_code(dbsession, study, "tests", **values)
        assert caught.value.field == field, values
    assert codebook.study_codes(dbsession, study) == []


def test_a_stale_version_is_refused_and_changes_nothing(dbsession: Session, study: Any) -> None:
    code = make(dbsession, study, "Budget")
    change = codebook.update_code(dbsession, study, code, 1, {"definition": "Budget lines"})
    assert change is not None and code.version == 2
    assert change.details["before"] == {"definition": ""} and change.details["after"] == {
        "definition": "Budget lines"
    }
    with pytest.raises(codebook.StaleVersion):
        codebook.update_code(dbsession, study, code, 1, {"definition": "Overwritten"})
    assert (code.definition, code.version) == ("Budget lines", 2)
    # Nothing to change: no new version.
    assert codebook.update_code(dbsession, study, code, 2, {"definition": "Budget lines"}) is None
    assert code.version == 2


def test_a_code_cannot_move_into_its_own_subtree(dbsession: Session, study: Any) -> None:
    laws = make(dbsession, study, "Laws")
    gaps = make(dbsession, study, "Gaps", laws)
    grooming = make(dbsession, study, "Grooming", gaps)
    for target in (laws, gaps, grooming):
        with pytest.raises(codebook.CodebookError) as caught:
            codebook.update_code(dbsession, study, laws, None, {"parent_id": target.id})
        assert caught.value.field == "parent_id"
    other = make(dbsession, study, "Law enforcement")
    codebook.update_code(dbsession, study, grooming, None, {"parent_id": other.id})
    assert (
        codebook.paths_of(codebook.study_codes(dbsession, study))[grooming.id] == "Law enforcement / Grooming"
    )


def test_the_tree_is_at_most_max_depth_levels_deep(dbsession: Session, study: Any) -> None:
    chain = [make(dbsession, study, "Level 1")]
    for level in range(2, codebook.MAX_DEPTH + 1):
        chain.append(make(dbsession, study, f"Level {level}", chain[-1]))
    with pytest.raises(codebook.CodebookError) as caught:
        make(dbsession, study, "Too deep", chain[-1])
    assert caught.value.field == "parent_id"
    # Moving a two-level branch under the tenth level would make thirteen levels.
    branch = make(dbsession, study, "Branch")
    make(dbsession, study, "Leaf", branch)
    with pytest.raises(codebook.CodebookError):
        codebook.update_code(dbsession, study, branch, None, {"parent_id": chain[10].id})
    codebook.update_code(dbsession, study, branch, None, {"parent_id": chain[9].id})
    deepest = codebook.paths_of(codebook.study_codes(dbsession, study))
    assert max(path.count(" / ") for path in deepest.values()) == codebook.MAX_DEPTH - 1
    # Merging a code with sub-codes into a deep code would push them too low.
    other = make(dbsession, study, "Other")
    make(dbsession, study, "Sub", other)
    with pytest.raises(codebook.CodebookError) as caught:
        codebook.merge_code(dbsession, study, other, chain[-1].id, None)
    assert caught.value.field == "into"


def test_retire_and_reactivate(dbsession: Session, study: Any) -> None:
    code = make(dbsession, study, "Hotlines")
    codebook.retire_code(dbsession, study, code, 1)
    assert (code.status, code.version) == ("retired", 2)
    with pytest.raises(codebook.StatusRefused):
        codebook.retire_code(dbsession, study, code, None)
    # A retired code still holds its name among its siblings.
    with pytest.raises(codebook.NameTaken):
        make(dbsession, study, "hotlines")
    codebook.reactivate_code(dbsession, study, code, 2)
    assert (code.status, code.version) == ("active", 3)


def test_merge_moves_codings_and_children_and_keeps_where_they_came_from(
    dbsession: Session, study: Any, accounts: Any
) -> None:
    user = accounts.user(None, "analyst", "ocsea", None)
    training = make(dbsession, study, "Training")
    capacity = make(dbsession, study, "Capacity building")
    online = make(dbsession, study, "Online courses", training)
    first = coding(dbsession, study, training, user.id)
    earlier = make(dbsession, study, "Workshops")
    moved_before = coding(dbsession, study, training, user.id, original_code_id=earlier.id)
    kept = coding(dbsession, study, capacity, user.id)
    changes = codebook.merge_code(dbsession, study, training, capacity.id, 1)
    dbsession.expire_all()
    assert (training.status, training.merged_into_id, training.version) == ("merged", capacity.id, 2)
    assert (first.code_id, first.original_code_id) == (capacity.id, training.id)
    assert (moved_before.code_id, moved_before.original_code_id) == (capacity.id, earlier.id)
    assert (kept.code_id, kept.original_code_id) == (capacity.id, None)
    assert online.parent_id == capacity.id
    assert changes[0].details["codings_moved"] == 2
    assert [c.action for c in changes] == [
        "codebook.code_merged",
        "codebook.code_merged",
        "codebook.code_updated",
    ]
    # The merged code's name is free again; it cannot be merged or changed once more.
    make(dbsession, study, "Training")
    with pytest.raises(codebook.StatusRefused):
        codebook.merge_code(dbsession, study, training, capacity.id, None)
    with pytest.raises(codebook.StatusRefused):
        codebook.update_code(dbsession, study, training, None, {"name": "Again"})


def test_merge_refusals_change_nothing(dbsession: Session, study: Any) -> None:
    a = make(dbsession, study, "A")
    child = make(dbsession, study, "Shared", a)
    b = make(dbsession, study, "B")
    make(dbsession, study, "shared", b)
    before = snapshot(dbsession, study)
    for into, error in (
        (a.id, codebook.CodebookError),
        (child.id, codebook.CodebookError),
        (b.id, codebook.NameTaken),
    ):
        with pytest.raises(error):
            codebook.merge_code(dbsession, study, a, into, None)
    with pytest.raises(codebook.CodebookError) as caught:
        codebook.merge_code(dbsession, study, a, 999_999, None)
    assert caught.value.field == "into"
    assert snapshot(dbsession, study) == before


def test_another_studys_code_is_not_found(dbsession: Session, study: Any) -> None:
    other = studies.get_study(dbsession, "other")
    theirs = make(dbsession, other, "Theirs")
    with pytest.raises(codebook.CodeNotFound):
        codebook.get_code(dbsession, study, theirs.id)
    with pytest.raises(codebook.CodebookError):
        make(dbsession, study, "Mine", theirs)


# ------------------------------------------------------------------------------------------ the API


def test_create_read_update_over_http_with_etags(
    testapp: webtest.TestApp, editor: dict[str, str], reader: dict[str, str]
) -> None:
    created = testapp.post_json(
        f"{BASE}/codes", {"name": "Capacity", "colour": "#aabbcc"}, headers=editor, status=201
    )
    code = created.json
    assert (code["name"], code["colour"], code["version"], code["path"], code["status"]) == (
        "Capacity",
        "#AABBCC",
        1,
        "Capacity",
        "active",
    )
    assert created.headers["ETag"] == '"1"' and created.headers["Location"].endswith(f"/codes/{code['id']}")
    child = testapp.post_json(
        f"{BASE}/codes", {"name": "Training", "parent_id": code["id"]}, headers=editor, status=201
    )
    assert child.json["path"] == "Capacity / Training"

    tree = testapp.get(BASE, headers=reader, status=200)
    assert [node["name"] for node in tree.json["codes"]] == ["Capacity"]
    assert tree.json["codes"][0]["children"][0]["id"] == child.json["id"]
    etag = tree.headers["ETag"]
    assert testapp.get(BASE, headers={**reader, "If-None-Match": etag}, status=304).body == b""

    url = f"{BASE}/codes/{code['id']}"
    changed = testapp.patch_json(
        url, {"definition": "Training, staff, guidelines", "version": 1}, headers=editor
    )
    assert (changed.json["version"], changed.json["definition"]) == (2, "Training, staff, guidelines")
    # If-Match instead of the body's version.
    renamed = testapp.patch_json(url, {"name": "Capacities"}, headers={**editor, "If-Match": '"2"'})
    assert renamed.json["version"] == 3 and renamed.headers["ETag"] == '"3"'
    assert testapp.get(BASE, headers={**reader, "If-None-Match": etag}).status_int == 200
    assert testapp.get(url, headers=reader).json["name"] == "Capacities"


def test_two_analysts_editing_one_code_do_not_overwrite_each_other(
    testapp: webtest.TestApp, editor: dict[str, str], dbsession: Session, study: Any
) -> None:
    code = make(dbsession, study, "Budget")
    url = f"{BASE}/codes/{code.id}"
    testapp.patch_json(url, {"definition": "first", "version": 1}, headers=editor, status=200)
    stale = testapp.patch_json(url, {"definition": "second", "version": 1}, headers=editor, status=409)
    assert stale.json["code"] == "stale_version" and error_paths(stale) == ["version"]
    stale = testapp.patch_json(
        url, {"definition": "second"}, headers={**editor, "If-Match": '"1"'}, status=409
    )
    assert stale.json["code"] == "stale_version"
    dbsession.expire_all()
    assert (code.definition, code.version) == ("first", 2)


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({"name": ""}, ["name"]),
        ({"name": 12}, ["name"]),
        ({"name": "x" * 201}, ["name"]),
        ({"name": "Laws", "colour": "blue"}, ["colour"]),
        ({"name": "Laws", "parent_id": "1"}, ["parent_id"]),
        ({"name": "Laws", "parent_id": 0}, ["parent_id"]),
        ({"name": "Laws", "parent_id": 2_000_000}, ["parent_id"]),
        ({"name": "Laws/Gaps"}, ["name"]),
        ({"name": "Laws", "colour": "#000000", "status": "retired"}, ["status"]),
        ({}, ["name"]),
    ],
)
def test_create_refuses_bad_input_with_its_path(
    body: dict[str, Any],
    paths: list[str],
    testapp: webtest.TestApp,
    editor: dict[str, str],
    dbsession: Session,
    study: Any,
) -> None:
    response = testapp.post_json(f"{BASE}/codes", body, headers=editor, status=422)
    assert error_paths(response) == paths
    assert codebook.study_codes(dbsession, study) == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "paths"),
    [
        ({"name": "New"}, {}, 422, ["version"]),
        ({"version": 1}, {}, 422, [""]),
        ({"name": "New", "version": 0}, {}, 422, ["version"]),
        ({"name": "New", "version": 1}, {"If-Match": '"2"'}, 422, ["version"]),
        ({"name": "New"}, {"If-Match": "*"}, 422, ["If-Match"]),
        # A digit to str.isdigit, but not a number int() reads.
        ({"name": "New"}, {"If-Match": '"\u00b2"'}, 422, ["If-Match"]),
        ({"colour": "#GGGGGG", "version": 1}, {}, 422, ["colour"]),
        ({"name": "sibling", "version": 1}, {}, 409, ["name"]),
        ({"parent_id": "PARENT", "version": 1}, {}, 422, ["parent_id"]),
        ({"definition": "x" * 10_001, "version": 1}, {}, 422, ["definition"]),
    ],
)
def test_update_refuses_bad_input_and_changes_nothing(
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    paths: list[str],
    testapp: webtest.TestApp,
    editor: dict[str, str],
    dbsession: Session,
    study: Any,
) -> None:
    code = make(dbsession, study, "Code")
    child = make(dbsession, study, "Child", code)
    make(dbsession, study, "Sibling")
    if body.get("parent_id") == "PARENT":
        body = {**body, "parent_id": child.id}
    before = snapshot(dbsession, study)
    response = testapp.patch_json(
        f"{BASE}/codes/{code.id}", body, headers={**editor, **headers}, status=status
    )
    assert error_paths(response) == paths
    assert snapshot(dbsession, study) == before


def test_retire_reactivate_and_merge_over_http(
    testapp: webtest.TestApp, editor: dict[str, str], dbsession: Session, study: Any, accounts: Any
) -> None:
    user = accounts.user(None, "analyst", "ocsea", None)
    a = make(dbsession, study, "Hotline")
    b = make(dbsession, study, "Hotlines")
    coded = coding(dbsession, study, a, user.id)
    retired = testapp.post(f"{BASE}/codes/{a.id}/retire", headers=editor, status=200)
    assert (retired.json["status"], retired.json["version"]) == ("retired", 2)
    again = testapp.post_json(f"{BASE}/codes/{a.id}/retire", {"version": 2}, headers=editor, status=409)
    assert again.json["code"] == "invalid_status_transition"
    testapp.post_json(f"{BASE}/codes/{a.id}/reactivate", {"version": 1}, headers=editor, status=409)
    testapp.post_json(f"{BASE}/codes/{a.id}/reactivate", {"version": 2}, headers=editor, status=200)
    bad = testapp.post_json(f"{BASE}/codes/{a.id}/merge", {"into": a.id}, headers=editor, status=422)
    assert error_paths(bad) == ["into"]
    bad = testapp.post_json(f"{BASE}/codes/{a.id}/merge", {}, headers=editor, status=422)
    assert error_paths(bad) == ["into"]
    merged = testapp.post_json(
        f"{BASE}/codes/{a.id}/merge", {"into": b.id, "version": 3}, headers=editor, status=200
    )
    assert merged.json["merged"]["status"] == "merged" and merged.json["merged"]["merged_into"] == b.id
    assert merged.json["into"]["codings"] == 1 and merged.json["codings_moved"] == 1
    dbsession.expire_all()
    assert (coded.code_id, coded.original_code_id) == (b.id, a.id)

    history = testapp.get(f"{BASE}/codes/{a.id}/history", headers=editor).json["history"]
    assert [event["action"] for event in history] == [
        "codebook.code_retired",
        "codebook.code_reactivated",
        "codebook.code_merged",
    ]
    assert history[0]["details"]["before"] == {"status": "active"}
    assert history[0]["details"]["after"] == {"status": "retired"}
    assert history[2]["details"]["after"] == {"status": "merged", "merged_into": b.id}


def test_every_change_is_audited_with_before_and_after(
    testapp: webtest.TestApp, editor: dict[str, str], dbsession: Session
) -> None:
    code = testapp.post_json(f"{BASE}/codes", {"name": "Budget"}, headers=editor).json
    testapp.patch_json(f"{BASE}/codes/{code['id']}", {"colour": "#FF0000", "version": 1}, headers=editor)
    other = testapp.post_json(f"{BASE}/codes", {"name": "Funding"}, headers=editor).json
    testapp.post(f"{BASE}/codes/{code['id']}/retire", headers=editor)
    testapp.post(f"{BASE}/codes/{code['id']}/reactivate", headers=editor)
    testapp.post_json(f"{BASE}/codes/{code['id']}/merge", {"into": other["id"]}, headers=editor)
    assert audit_actions(dbsession) == [
        "codebook.code_created",
        "codebook.code_updated",
        "codebook.code_created",
        "codebook.code_retired",
        "codebook.code_reactivated",
        "codebook.code_merged",
        "codebook.code_merged",
    ]
    updated = dbsession.scalar(select(AuditEvent).where(AuditEvent.action == "codebook.code_updated"))
    assert updated.details["before"] == {"colour": "#808080"} and updated.details["after"] == {
        "colour": "#FF0000"
    }
    assert updated.target == f"ocsea/codes/{code['id']}"
    history = testapp.get(f"{BASE}/codes/{other['id']}/history", headers=editor).json["history"]
    assert [event["action"] for event in history] == ["codebook.code_created", "codebook.code_merged"]


def test_the_kenya_analyst_reads_but_does_not_edit(
    testapp: webtest.TestApp, reader: dict[str, str], dbsession: Session, study: Any
) -> None:
    code = make(dbsession, study, "Budget")
    assert testapp.get(f"{BASE}/codes/{code.id}", headers=reader).json["id"] == code.id
    refused = testapp.patch_json(
        f"{BASE}/codes/{code.id}", {"name": "X", "version": 1}, headers=reader, status=403
    )
    assert refused.json["code"] == "forbidden"
    testapp.post_json(f"{BASE}/codes", {"name": "X"}, headers=reader, status=403)
    post_csv(testapp, reader, "path\nX\n", status=403)


@pytest.mark.parametrize("role", ["admin", "coordinator"])
def test_a_country_admin_or_coordinator_reads_but_does_not_edit(
    role: str, testapp: webtest.TestApp, accounts: Any, dbsession: Session, study: Any
) -> None:
    """Every grant of the study carries the study's principal: only a grant over the whole study
    (``*``) edits the codebook, an admin's too."""
    kenya = accounts.headers(role, "ocsea", ["KE"])
    code = make(dbsession, study, "Budget")
    assert testapp.get(f"{BASE}/codes/{code.id}", headers=kenya).json["id"] == code.id
    url = f"{BASE}/codes/{code.id}"
    assert testapp.patch_json(url, {"name": "X", "version": 1}, headers=kenya, status=403).json["code"] == (
        "forbidden"
    )
    testapp.post_json(f"{BASE}/codes", {"name": "X"}, headers=kenya, status=403)
    testapp.post_json(f"{url}/retire", {}, headers=kenya, status=403)
    post_csv(testapp, kenya, "path\nX\n", status=403)
    dbsession.expire_all()
    assert [(c.name, c.status, c.version) for c in codebook.study_codes(dbsession, study)] == [
        ("Budget", "active", 1)
    ]
    study_admin = accounts.headers("admin", "ocsea", None)
    assert testapp.patch_json(url, {"name": "X", "version": 1}, headers=study_admin).json["name"] == "X"


def test_another_studys_codes_and_unknown_studies_are_404(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session, study: Any
) -> None:
    admin = accounts.headers("admin")
    theirs = make(dbsession, studies.get_study(dbsession, "other"), "Theirs")
    for method, suffix in (("GET", ""), ("GET", "/history"), ("POST", "/retire")):
        response = testapp.request(
            f"{BASE}/codes/{theirs.id}{suffix}", method=method, headers=admin, expect_errors=True
        )
        assert (response.status_int, response.json["code"]) == (404, "code_not_found"), suffix
    response = testapp.patch_json(
        f"{BASE}/codes/{theirs.id}", {"name": "Mine", "version": 1}, headers=admin, status=404
    )
    assert response.json["code"] == "code_not_found"
    response = testapp.get(f"{BASE}/codes/99999999999", headers=admin, status=404)
    assert response.content_type == "application/json"
    response = testapp.get("/api/v1/studies/nosuch/codebook", headers=admin, status=404)
    assert response.json["code"] == "study_not_found"
    # Merging into another study's code: that code is unknown here.
    mine = make(dbsession, study, "Mine")
    response = testapp.post_json(
        f"{BASE}/codes/{mine.id}/merge", {"into": theirs.id}, headers=admin, status=422
    )
    assert error_paths(response) == ["into"]


# ------------------------------------------------------------------------------------------ files

CODEBOOK_CSV = """path,definition,colour
Public awareness,How well the issue is understood,#1F77B4
Capacity/Training,Training of officials,#FF7F0E
Capacity/Budget,,
Laws/Gaps/Grooming,"Gaps in the law, e.g. grooming",#2CA02C
"""


def test_a_csv_codebook_imports_with_parents_created(
    testapp: webtest.TestApp, editor: dict[str, str], dbsession: Session, study: Any
) -> None:
    response = post_csv(testapp, editor, "\ufeff" + CODEBOOK_CSV)
    assert {
        key: response.json[key] for key in ("file_type", "dry_run", "rows", "created", "updated", "unchanged")
    } == {
        "file_type": "csv",
        "dry_run": False,
        "rows": 4,
        "created": 7,
        "updated": 0,
        "unchanged": 0,
    }
    paths = codebook.paths_of(codebook.study_codes(dbsession, study)).values()
    assert sorted(paths) == [
        "Capacity",
        "Capacity / Budget",
        "Capacity / Training",
        "Laws",
        "Laws / Gaps",
        "Laws / Gaps / Grooming",
        "Public awareness",
    ]
    grooming = next(c for c in codebook.study_codes(dbsession, study) if c.name == "Grooming")
    assert (grooming.definition, grooming.colour) == ("Gaps in the law, e.g. grooming", "#2CA02C")
    assert audit_actions(dbsession) == ["codebook.code_created"] * 7 + ["codebook.imported"]
    # The same file again changes nothing.
    before = snapshot(dbsession, study)
    again = post_csv(testapp, editor, CODEBOOK_CSV).json
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4)
    assert snapshot(dbsession, study) == before


def test_a_dry_run_reports_and_stores_nothing(
    testapp: webtest.TestApp, editor: dict[str, str], dbsession: Session, study: Any
) -> None:
    make(dbsession, study, "Public awareness")
    before = snapshot(dbsession, study)
    report = post_csv(testapp, editor, CODEBOOK_CSV, "?dry_run=true").json
    assert (report["dry_run"], report["created"], report["updated"]) == (True, 6, 1)
    assert {code["action"] for code in report["codes"] if code["code"] is None} == {"created"}
    updated = next(code for code in report["codes"] if code["action"] == "updated")
    assert updated["fields"] == ["colour", "definition"] and updated["path"] == "Public awareness"
    assert snapshot(dbsession, study) == before and audit_actions(dbsession) == []


def test_an_xlsx_codebook_by_name_and_parent_and_a_multipart_upload(
    testapp: webtest.TestApp, editor: dict[str, str], dbsession: Session, study: Any
) -> None:
    data = xlsx(
        [
            ["Name", "Parent", "Definition", "Colour"],
            ["Law enforcement", None, "=SUM(A1:A2)", "#D62728"],
            ["Digital evidence", "Law enforcement", "Skills to handle it", None],
            ["SIM cards", "Law enforcement/Digital evidence", None, None],
        ]
    )
    response = testapp.post(
        f"{BASE}/import",
        params={"dry_run": "false"},
        upload_files=[("file", "codebook.xlsx", data, XLSX)],
        headers=editor,
    )
    assert (response.json["file_type"], response.json["created"]) == ("xlsx", 3)
    codes = {c.name: c for c in codebook.study_codes(dbsession, study)}
    # A formula-looking cell is text, kept as typed.
    assert codes["Law enforcement"].definition == "=SUM(A1:A2)"
    assert codes["SIM cards"].parent_id == codes["Digital evidence"].id
    raw = testapp.post(f"{BASE}/import", data, headers={**editor, "Content-Type": XLSX})
    assert (raw.json["created"], raw.json["unchanged"]) == (0, 3)


@pytest.mark.parametrize(
    ("text", "paths"),
    [
        ("path,colour\nLaws,red\n", ["file.row[2].colour"]),
        (
            "path,colour\nLaws,#000000\nLaws/Gaps,#12\nPolicy,blue\n",
            ["file.row[3].colour", "file.row[4].colour"],
        ),
        ("path\nLaws//Gaps\n", ["file.row[2].path"]),
        ("path\nLaws\nlaws\n", ["file.row[3].path"]),
        ("path,guid\nLaws,not-a-guid\n", ["file.row[2].guid"]),
        ("name,parent\nGaps/Holes,Laws\n", ["file.row[2].name"]),
        ("name,parent\n,Laws\n", ["file.row[2].name"]),
        ("path,colour\n,#000000\n", ["file.row[2].path"]),
        ("path,speaker\nLaws,x\n", ["file.row[1]"]),
        ("path,name\nLaws,x\n", ["file.row[1]"]),
        ("definition\nx\n", ["file.row[1]"]),
        ("path\nLaws,extra\n", ["file.row[2]"]),
        ("path\n", ["file"]),
        ("", ["file"]),
        ("path,definition\n" + "x" * 201 + ",d\n", ["file.row[2].path"]),
        ("path\n" + "/".join(["level"] * 13) + "\n", ["file.row[2].path"]),
    ],
)
def test_bad_files_are_refused_by_row_and_column_and_nothing_changes(
    text: str,
    paths: list[str],
    testapp: webtest.TestApp,
    editor: dict[str, str],
    dbsession: Session,
    study: Any,
) -> None:
    make(dbsession, study, "Existing")
    before = snapshot(dbsession, study)
    response = post_csv(testapp, editor, text, status=422)
    assert response.json["code"] == "import_invalid"
    assert error_paths(response) == paths
    assert snapshot(dbsession, study) == before


def test_file_reading_semicolons_bom_formulas_and_limits() -> None:
    text = '\ufeffPath;Definition\nLaws;=1+1\n;\nLaws/Gaps;"a; b"\n'
    file = codebook_files.read_file(text.encode("utf-8"), codebook_files.CSV)
    assert file.by_path and file.columns == ("path", "definition")
    assert [(row.row, row.cells) for row in file.rows] == [
        (2, {"path": "Laws", "definition": "=1+1"}),
        (4, {"path": "Laws/Gaps", "definition": "a; b"}),
    ]
    sheet = xlsx([["name", "parent"], ["Gaps", "Laws"], ["=A2", None]])
    rows = codebook_files.read_file(sheet, codebook_files.XLSX).rows
    assert [row.cells for row in rows] == [{"name": "Gaps", "parent": "Laws"}, {"name": "=A2"}]
    for data, kind, message in (
        (b"path\n" + b"x\n" * (codebook_files.MAX_ROWS + 1), "csv", "more than"),
        (b"path\n" + b"x" * codebook_files.MAX_FILE_BYTES, "csv", "larger than"),
        (b"path\n\xff\n", "csv", "not UTF-8"),
        (("path" + "," * 40 + "x\n").encode(), "csv", "wider than"),
        (xlsx([["path", *[None] * (codebook_files.MAX_COLUMNS - 1), "extra"], ["x"]]), "xlsx", "wider than"),
    ):
        with pytest.raises(codebook_files.FileRejected) as caught:
            codebook_files.read_file(data, kind)
        assert message in str(caught.value), message
    with pytest.raises(codebook_files.UnsupportedFile):
        codebook_files.file_kind(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", None, "old.xls")


def test_a_file_that_is_no_codebook_is_refused(testapp: webtest.TestApp, editor: dict[str, str]) -> None:
    response = testapp.post(
        f"{BASE}/import", b"PK\x03\x04junk", headers={**editor, "Content-Type": XLSX}, status=415
    )
    assert response.json["code"] == "unsupported_media_type"
    response = testapp.post(
        f"{BASE}/import", b"{}", headers={**editor, "Content-Type": "application/json"}, status=415
    )
    assert set(response.json) == ENVELOPE_KEYS
    response = post_csv(testapp, editor, "path\nx\n", "?dry_run=maybe", status=422)
    assert error_paths(response) == ["dry_run"]
    response = testapp.post(
        f"{BASE}/import",
        params={"dry_run": "true"},
        content_type="multipart/form-data",
        headers=editor,
        status=422,
    )
    assert error_paths(response) == ["file"]


def test_import_matches_by_guid_first_and_can_rename_and_move(dbsession: Session, study: Any) -> None:
    laws = make(dbsession, study, "Laws")
    gaps = make(dbsession, study, "Gaps", laws)
    rows = codebook_files.read_file(f"path,guid\nPolicy/Holes,{gaps.guid}\n".encode(), codebook_files.CSV)
    result = codebook_import.import_file(dbsession, study, rows, "tests")
    assert [(c.action, c.path) for c in result.codes] == [
        ("created", "Policy"),
        ("updated", "Policy / Holes"),
    ]
    assert result.codes[1].fields == ("name", "parent")
    assert (gaps.name, gaps.version) == ("Holes", 2) and laws.status == "active"
    # A guid of another study's code, a guid that disagrees with the code at the path.
    theirs = make(dbsession, studies.get_study(dbsession, "other"), "Theirs")
    for text in (f"path,guid\nMine,{theirs.guid}\n", f"path,guid\nLaws,{uuid.uuid4()}\n"):
        with pytest.raises(codebook_files.FileRejected) as caught:
            codebook_import.import_file(
                dbsession, study, codebook_files.read_file(text.encode(), "csv"), "tests"
            )
        assert [e.path for e in caught.value.errors] == ["file.row[2].guid"]
    # A move into its own subtree is refused on its row.
    policy = dbsession.get(Code, result.codes[0].code)
    rows = codebook_files.read_file(f"path,guid\nPolicy/Holes/Top,{policy.guid}\n".encode(), "csv")
    before = snapshot(dbsession, study)
    with pytest.raises(codebook_files.FileRejected) as caught:
        codebook_import.import_file(dbsession, study, rows, "tests")
    assert [e.path for e in caught.value.errors] == ["file.row[2].path"]
    assert snapshot(dbsession, study) == before


def test_export_then_import_round_trips_in_csv_and_xlsx(dbsession: Session, study: Any) -> None:
    capacity = make(
        dbsession, study, "Capacity", definition='Line one\nline "two", =not a formula', colour="#123ABC"
    )
    make(dbsession, study, "Training", capacity)
    retired = make(dbsession, study, "Old")
    codebook.retire_code(dbsession, study, retired, None)
    merged = make(dbsession, study, "Merged")
    codebook.merge_code(dbsession, study, merged, capacity.id, None)
    rows = codebook_import.export_rows(dbsession, study)
    assert [row["path"] for row in rows] == ["Capacity", "Capacity/Training", "Old"]
    before = snapshot(dbsession, study)
    for kind, data in (("csv", codebook_files.write_csv(rows)), ("xlsx", codebook_files.write_xlsx(rows))):
        parsed = codebook_files.read_file(data, codebook_files.file_kind(data, None, f"codebook.{kind}"))
        result = codebook_import.import_file(dbsession, study, parsed, "tests")
        assert result.summary()["unchanged"] == 3 and not result.changes, kind
        assert snapshot(dbsession, study) == before
    # Into another study: guids are one code's only, so it takes the file without them.
    fresh = studies.create_study(dbsession, "fresh", "Fresh")
    with pytest.raises(codebook_files.FileRejected) as caught:
        codebook_import.import_file(
            dbsession, fresh, codebook_files.read_file(codebook_files.write_xlsx(rows), "xlsx"), "t"
        )
    assert [e.path for e in caught.value.errors] == [
        "file.row[2].guid",
        "file.row[3].guid",
        "file.row[4].guid",
    ]
    without_guids = [{**row, "guid": ""} for row in rows]
    data = codebook_files.write_xlsx(without_guids)
    codebook_import.import_file(dbsession, fresh, codebook_files.read_file(data, "xlsx"), "t")
    copied = codebook_import.export_rows(dbsession, fresh)
    assert [{**row, "guid": ""} for row in copied] == without_guids
    assert not {row["guid"] for row in copied} & {row["guid"] for row in rows}


def test_xlsx_export_keeps_formula_looking_text_as_text(dbsession: Session, study: Any) -> None:
    make(dbsession, study, "Budget", definition='=HYPERLINK("http://x")')
    data = codebook_files.write_xlsx(codebook_import.export_rows(dbsession, study))
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet["B2"].value == '=HYPERLINK("http://x")' and sheet["B2"].data_type == "s"


# ------------------------------------------------------------------------------------------- the CLI


def test_the_cli_imports_checks_and_exports(fresh_database: Callable[[], str], tmp_path: Path) -> None:
    url = fresh_database()
    runner = CliRunner()
    env = {"SURVEYKIT_DATA_DIR": str(tmp_path / "data"), "SURVEYKIT_ENV": "test"}

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, ["--database-url", url, *args], env=env)
        assert result.exit_code == code, f"{args}: {result.output}"
        assert "Traceback" not in result.output
        return result.output

    run("db", "upgrade")
    run("studies", "add", "ocsea", "--name", "Disrupting Harm")
    source = tmp_path / "codebook.csv"
    source.write_text(CODEBOOK_CSV, encoding="utf-8")
    out = run("codebook", "import", str(source), "--study", "ocsea", "--dry-run")
    assert "7 created, 0 updated, 0 unchanged; nothing was stored (dry run)" in out
    out = run("codebook", "import", str(source), "--study", "ocsea")
    assert "Laws / Gaps / Grooming" in out and "imported codebook.csv into ocsea: 7 created" in out
    assert "4 unchanged" in run("codebook", "import", str(source), "--study", "ocsea")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,colour\nLaws,red\n", encoding="utf-8")
    out = run("codebook", "import", str(bad), "--study", "ocsea", code=1)
    assert "row" in out and "colour" in out and "nothing was imported" in out
    run("codebook", "import", str(source), "--study", "nosuch", code=1)
    for suffix in ("csv", "xlsx"):
        exported = tmp_path / f"export.{suffix}"
        assert "wrote 7 code(s)" in run("codebook", "export", "--study", "ocsea", "--out", str(exported))
        assert "0 created, 0 updated, 7 unchanged" in run(
            "codebook", "import", str(exported), "--study", "ocsea"
        )
    run("codebook", "export", "--study", "ocsea", "--out", str(tmp_path / "x.txt"), code=2)
    engine = create_engine(url)
    with Session(engine) as session:
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("codebook.%"))))
    engine.dispose()
    assert actions.count("codebook.code_created") == 7 and actions.count("codebook.imported") == 4


def test_the_documented_example_file_imports(dbsession: Session, study: Any) -> None:
    page = (Path(__file__).parent.parent / "docs" / "codebook.md").read_text(encoding="utf-8")
    example = page.split("```csv\n", 1)[1].split("```", 1)[0]
    file = codebook_files.read_file(example.encode("utf-8"), codebook_files.CSV)
    result = codebook_import.import_file(dbsession, study, file, "tests")
    paths = sorted(codebook.paths_of(codebook.study_codes(dbsession, study)).values())
    assert "Ministries and agencies / Capacity / Training" in paths and result.summary()["created"] == len(
        paths
    )


# ------------------------------------------------------------------------------------ concurrency


class CodebookServer(CommittingApp):
    """The app on a real database whose requests commit, with the study and an editor's token."""

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        with self.factory() as session:
            helper = Accounts(session, settings)
            helper.study("ocsea")
            self.headers = helper.headers("admin", "ocsea", None)
            session.commit()

    def concurrently(self, calls: list[Callable[[webtest.TestApp], Any]]) -> list[Any]:
        """Every call at once, one thread each; the responses in order."""
        barrier = threading.Barrier(len(calls))
        answers: list[Any] = [None] * len(calls)
        client = webtest.TestApp(self.app, extra_environ={"HTTP_HOST": "surveykit.test"})

        def run(index: int) -> None:
            barrier.wait()
            answers[index] = calls[index](client)

        threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        return answers


@pytest.fixture
def server(fresh_database: Callable[[], str], tmp_path: Path) -> Any:
    server = CodebookServer(settings_for(fresh_database(), tmp_path))
    yield server
    server.engine.dispose()


def test_concurrent_edits_of_one_code_keep_one_and_refuse_the_others(server: CodebookServer) -> None:
    client = webtest.TestApp(server.app, extra_environ={"HTTP_HOST": "surveykit.test"})
    code = client.post_json(f"{BASE}/codes", {"name": "Budget"}, headers=server.headers).json

    def edit(text: str) -> Callable[[webtest.TestApp], Any]:
        return lambda c: c.patch_json(
            f"{BASE}/codes/{code['id']}",
            {"definition": text, "version": 1},
            headers=server.headers,
            expect_errors=True,
        )

    answers = server.concurrently([edit(f"definition {n}") for n in range(4)])
    assert sorted(answer.status_int for answer in answers) == [200, 409, 409, 409]
    assert {answer.json["code"] for answer in answers if answer.status_int == 409} == {"stale_version"}
    winner = next(answer.json for answer in answers if answer.status_int == 200)
    stored = client.get(f"{BASE}/codes/{code['id']}", headers=server.headers).json
    assert (stored["version"], stored["definition"]) == (2, winner["definition"])


def test_concurrent_creations_of_one_name_store_one_code(server: CodebookServer) -> None:
    def create(name: str) -> Callable[[webtest.TestApp], Any]:
        return lambda c: c.post_json(
            f"{BASE}/codes", {"name": name}, headers=server.headers, expect_errors=True
        )

    answers = server.concurrently([create(name) for name in ("Training", "training", "TRAINING", "Training")])
    assert sorted(answer.status_int for answer in answers) == [201, 409, 409, 409]
    with server.factory() as session:
        assert session.scalar(select(func.count()).select_from(Code)) == 1
