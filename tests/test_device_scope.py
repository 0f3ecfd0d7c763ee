"""Devices are bound to the scope they were enrolled for: nobody obtains through a tablet more than
they could reach themselves (issue 11, item 1).

The reproductions, through the HTTP API: study ``ocsea`` (KE, TZ) and study ``other`` (KE, UG);
``coord-ke`` coordinates ocsea/KE; ``fw-split`` is a fieldworker in ocsea/KE and ocsea/TZ;
``fw-multi`` a fieldworker in ocsea/KE and other/UG.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import webtest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from support_db import settings_for
from test_accounts_cli import CLI
from test_sync_support import SyncWorld, change, make_conflict, make_record, new_uuid, post_json

from surveykit import migrate
from surveykit.accounts import services
from surveykit.accounts.models import Device, Grant
from surveykit.audit.models import AuditEvent
from surveykit.db import make_engine, utcnow
from surveykit.participants import ids

DEVICES = "/api/v1/devices"
ME = "/api/v1/me"
FEED = "/api/v1/sync/changes"
BLOCKS = "/api/v1/blocks"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Audit:
    """Study ocsea (KE, TZ) and other (KE, UG), each with RA1, an instrument and a record in the
    country the KE coordinator must not reach; the users of the audit's reproductions."""

    def __init__(self, accounts: Any, dbsession: Session) -> None:
        self.accounts = accounts
        self.session = dbsession
        self.sync = SyncWorld(accounts, dbsession)
        accounts.study("other", ("KE", "UG"))
        root = accounts.user("root", "admin", None)
        self.global_admin = bearer(accounts.token(root))
        # One record (with its planned participant) in ocsea/TZ and one in other/UG.
        make_conflict(dbsession, root.id, "ocsea", "TZ")
        make_conflict(dbsession, root.id, "other", "UG")
        self.coord_ke_user = accounts.user("coord-ke", "coordinator", "ocsea", ["KE"])
        self.coord_ke = bearer(accounts.token(self.coord_ke_user))
        self.coord_tz = bearer(accounts.token(accounts.user("coord-tz", "coordinator", "ocsea", ["TZ"])))
        self.study_admin = bearer(accounts.token(accounts.user("ocsea-admin", "admin", "ocsea")))
        self.fw_split = accounts.user("fw-split", "fieldworker", "ocsea", ["KE"])
        services.add_grant(dbsession, self.fw_split, "fieldworker", "ocsea", ["TZ"], "tests")
        self.fw_multi = accounts.user("fw-multi", "fieldworker", "ocsea", ["KE"])
        services.add_grant(dbsession, self.fw_multi, "fieldworker", "other", ["UG"], "tests")
        dbsession.flush()


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> Audit:
    return Audit(accounts, dbsession)


def enrol(
    testapp: webtest.TestApp, headers: dict[str, str], username: str, status: int = 201, **scope: Any
) -> webtest.TestResponse:
    return testapp.post_json(
        DEVICES,
        {"username": username, "label": f"{username} tablet", **scope},
        headers=headers,
        status=status,
    )


def enrol_and_activate(
    testapp: webtest.TestApp, headers: dict[str, str], username: str, **scope: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """As the audit did: the manager enrols the tablet and activates it itself with the code."""
    enrolled = enrol(testapp, headers, username, **scope).json
    activated = testapp.post_json("/api/v1/devices/activate", {"code": enrolled["enrolment_code"]}).json
    assert activated["device_id"] == enrolled["device"]["id"]
    return enrolled["device"], bearer(activated["access_token"])


def device_rows(dbsession: Session) -> int:
    dbsession.expire_all()
    return dbsession.scalar(select(func.count()).select_from(Device))


def refusals(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.outcome == "refused")
            .order_by(AuditEvent.id)
        )
    )


def push_one(testapp: webtest.TestApp, headers: dict[str, str], record: dict[str, Any]) -> dict[str, Any]:
    response = post_json(testapp, "/api/v1/sync", {"changes": [change(new_uuid(), 0, record)]}, headers, 200)
    (result,) = response.json["results"]
    return result


def own_block(dbsession: Session, device_id: str, study: str, country: str) -> int:
    """A block the device holds from before the fix (reserved directly): its numbers alone must not
    let the device write where its grants do not reach."""
    from surveykit.studies import services as studies

    block = ids.reserve_block(dbsession, device_id, studies.get_study(dbsession, study).id, "RA1", country, 5)
    dbsession.flush()
    return block.first_number


# ------------------------------------------------------------------------------ the reproductions


def test_a_tablet_enrolled_by_coord_ke_for_fw_split_reaches_only_kenya(
    testapp: webtest.TestApp, dbsession: Session, world: Audit
) -> None:
    device, tablet = enrol_and_activate(testapp, world.coord_ke, "fw-split")
    assert device["scope"] == [{"study": "ocsea", "countries": ["KE"]}]
    assert testapp.get(ME, headers=tablet).json["grants"] == [
        {"role": "fieldworker", "study": "ocsea", "countries": ["KE"]}
    ]

    # The TZ feed: refused when asked for, and absent from the study's feed.
    assert testapp.get(FEED, params={"study": "ocsea", "country": "TZ"}, headers=tablet, status=403)
    admin_view = testapp.get(FEED, params={"study": "ocsea"}, headers=world.global_admin).json["changes"]
    assert "TZ" in {c["country"] for c in admin_view}
    seen = testapp.get(FEED, params={"study": "ocsea"}, headers=tablet).json["changes"]
    assert "TZ" not in {c["country"] for c in seen}

    # No TZ block, and no TZ record, not even with numbers of a TZ block it somehow holds.
    body = {"study": "ocsea", "country": "TZ", "activity": "RA1"}
    assert testapp.post_json(BLOCKS, body, headers=tablet, status=403).json["code"] == "forbidden"
    number = own_block(dbsession, device["id"], "ocsea", "TZ")
    result = push_one(testapp, tablet, make_record(number, country="TZ"))
    assert (result["result"], result["code"]) == ("rejected", "out_of_scope")

    # Kenya works as before.
    kenya = testapp.post_json(BLOCKS, dict(body, country="KE"), headers=tablet, status=201).json
    created = push_one(testapp, tablet, make_record(kenya["first_number"]))
    assert created["result"] == "created"


def test_a_tablet_enrolled_by_coord_ke_for_fw_multi_reaches_nothing_of_study_other(
    testapp: webtest.TestApp, dbsession: Session, world: Audit
) -> None:
    device, tablet = enrol_and_activate(testapp, world.coord_ke, "fw-multi")
    assert device["scope"] == [{"study": "ocsea", "countries": ["KE"]}]
    assert [g["study"] for g in testapp.get(ME, headers=tablet).json["grants"]] == ["ocsea"]

    testapp.get(FEED, params={"study": "other"}, headers=tablet, status=403)
    testapp.get(FEED, params={"study": "other", "country": "UG"}, headers=tablet, status=403)
    testapp.get("/api/v1/instruments/sync-other", headers=tablet, status=403)
    listed = testapp.get("/api/v1/instruments", headers=tablet).json["instruments"]
    assert "sync-other" not in {i["slug"] for i in listed}
    body = {"study": "other", "country": "UG", "activity": "RA1"}
    testapp.post_json(BLOCKS, body, headers=tablet, status=403)
    number = own_block(dbsession, device["id"], "other", "UG")
    record = make_record(number, country="UG", study="other", instrument={"slug": "sync-other", "version": 1})
    result = push_one(testapp, tablet, record)
    assert (result["result"], result["code"]) == ("rejected", "out_of_scope")


def test_coord_ke_cannot_reenrol_revoke_or_list_a_tablet_bound_to_tanzania(
    testapp: webtest.TestApp, dbsession: Session, world: Audit
) -> None:
    # One tablet bound to TZ (by the TZ coordinator), one to KE and TZ (by the study admin).
    tz_device, tz_tablet = enrol_and_activate(testapp, world.coord_tz, "fw-split")
    both_device, _ = enrol_and_activate(testapp, world.study_admin, "fw-split")
    assert tz_device["scope"] == [{"study": "ocsea", "countries": ["TZ"]}]
    assert both_device["scope"] == [{"study": "ocsea", "countries": ["KE", "TZ"]}]
    ke_device, _ = enrol_and_activate(testapp, world.coord_ke, "fw-split")

    for device in (tz_device, both_device):
        url = f"{DEVICES}/{device['id']}"
        assert (
            testapp.post(f"{url}/enrolment", headers=world.coord_ke, status=403).json["code"] == "forbidden"
        )
        assert testapp.delete(url, headers=world.coord_ke, status=403).json["code"] == "forbidden"
    dbsession.expire_all()
    for device in (tz_device, both_device):
        stored = dbsession.get(Device, device["id"])
        assert stored.revoked_at is None and stored.enrolment_code_hash is None
    # The real tablet was not cut off.
    assert testapp.get(ME, headers=tz_tablet).status_int == 200
    assert [(e.action, e.target) for e in refusals(dbsession, "device.reenrol")] == [
        ("device.reenrol", tz_device["id"]),
        ("device.reenrol", both_device["id"]),
    ]
    assert len(refusals(dbsession, "device.revoke")) == 2

    # coord-ke lists only the tablet it could have enrolled itself; the others see theirs.
    def listed(headers: dict[str, str]) -> set[str]:
        return {
            d["id"]
            for d in testapp.get(DEVICES, params={"username": "fw-split"}, headers=headers).json["devices"]
        }

    assert listed(world.coord_ke) == {ke_device["id"]}
    assert listed(world.coord_tz) == {tz_device["id"]}
    assert listed(world.study_admin) == {tz_device["id"], both_device["id"], ke_device["id"]}
    assert listed(bearer(world.accounts.token(world.fw_split))) == listed(world.study_admin)
    # Those who cover a device's whole scope still manage it.
    testapp.post(f"{DEVICES}/{tz_device['id']}/enrolment", headers=world.coord_tz, status=200)
    testapp.post(f"{DEVICES}/{ke_device['id']}/enrolment", headers=world.coord_ke, status=200)
    testapp.delete(f"{DEVICES}/{both_device['id']}", headers=world.study_admin, status=200)


def test_a_study_admin_enrolling_for_fw_multi_binds_the_tablet_to_their_study(
    testapp: webtest.TestApp, dbsession: Session, world: Audit
) -> None:
    device, tablet = enrol_and_activate(testapp, world.study_admin, "fw-multi")
    assert device["scope"] == [{"study": "ocsea", "countries": ["KE"]}]
    assert testapp.get(ME, headers=tablet).json["grants"] == [
        {"role": "fieldworker", "study": "ocsea", "countries": ["KE"]}
    ]
    testapp.get(FEED, params={"study": "other"}, headers=tablet, status=403)
    # Asking for the other study is refused, with the field.
    before = device_rows(dbsession)
    refused = enrol(testapp, world.study_admin, "fw-multi", 403, study="other").json
    assert (refused["code"], refused["details"][0]["path"]) == ("forbidden", "study")
    assert device_rows(dbsession) == before
    # A global admin may bind a tablet to both studies, or to one.
    everything = enrol(testapp, world.global_admin, "fw-multi").json["device"]
    assert everything["scope"] == [
        {"study": "ocsea", "countries": ["KE"]},
        {"study": "other", "countries": ["UG"]},
    ]
    only_other = enrol(testapp, world.global_admin, "fw-multi", study="other").json["device"]
    assert only_other["scope"] == [{"study": "other", "countries": ["UG"]}]


# ----------------------------------------------------------------------------- requested scopes


@pytest.mark.parametrize(
    ("caller", "username", "scope", "status", "path"),
    [
        # Beyond the caller's own grants: 403.
        ("coord_ke", "fw-split", {"study": "ocsea", "countries": ["TZ"]}, 403, "countries"),
        ("coord_ke", "fw-split", {"study": "ocsea", "countries": ["KE", "TZ"]}, 403, "countries"),
        ("coord_ke", "fw-multi", {"study": "other"}, 403, "study"),
        ("coord_tz", "fw-split", {"study": "ocsea", "countries": ["KE"]}, 403, "countries"),
        # Beyond what the owner holds: 422.
        ("study_admin", "fw-split", {"study": "ocsea", "countries": ["KH"]}, 422, "countries"),
        ("global_admin", "fw-split", {"study": "other"}, 422, "study"),
        ("coord_ke", "fw-split", {"countries": ["KE"]}, 422, "study"),
        # Not a scope at all.
        ("coord_ke", "fw-split", {"study": "ocsea", "countries": []}, 422, "countries"),
        ("coord_ke", "fw-split", {"study": "ocsea", "countries": ["ke"]}, 422, "countries[0]"),
        ("coord_ke", "fw-split", {"study": "Not A Slug"}, 422, "study"),
    ],
)
def test_a_requested_scope_beyond_either_side_is_refused_with_its_field(
    testapp: webtest.TestApp,
    dbsession: Session,
    world: Audit,
    caller: str,
    username: str,
    scope: dict[str, Any],
    status: int,
    path: str,
) -> None:
    refused_before = len(refusals(dbsession, "device.enrol"))
    body = enrol(testapp, getattr(world, caller), username, status, **scope).json
    assert body["code"] == ("forbidden" if status == 403 else "invalid_input")
    assert body["details"][0]["path"] == path and body["details"][0]["location"] == "body"
    assert device_rows(dbsession) == 0
    assert len(refusals(dbsession, "device.enrol")) == refused_before + (status == 403)


def test_a_requested_scope_within_both_sides_is_kept(
    testapp: webtest.TestApp, dbsession: Session, world: Audit
) -> None:
    device = enrol(testapp, world.study_admin, "fw-split", study="ocsea", countries=["TZ"]).json["device"]
    assert device["scope"] == [{"study": "ocsea", "countries": ["TZ"]}]
    device = enrol(testapp, world.coord_ke, "fw-split", study="ocsea").json["device"]
    assert device["scope"] == [{"study": "ocsea", "countries": ["KE"]}]
    # Unknown and other study's fieldworkers look alike to a coordinator, as before.
    for username in ("nobody", "fw-other"):
        if username == "fw-other":
            world.accounts.user(username, "fieldworker", "other", ["UG"])
        body = enrol(testapp, world.coord_ke, username, 403).json
        assert body["message"] == f"{username} is not a fieldworker in a study and country you coordinate"


# ------------------------------------------------------------------ the scope over the device's life


def test_grants_added_later_do_not_widen_a_tablet_and_grants_removed_shrink_it_at_once(
    testapp: webtest.TestApp, dbsession: Session, world: Audit
) -> None:
    # Enrolled by the global admin while fw-split held KE and TZ.
    device, tablet = enrol_and_activate(testapp, world.global_admin, "fw-split")
    assert device["scope"] == [{"study": "ocsea", "countries": ["KE", "TZ"]}]
    dbsession.expire_all()
    [tz_grant] = [
        g
        for g in dbsession.scalars(select(Grant).where(Grant.user_id == world.fw_split.id))
        if g.countries == ["TZ"]
    ]
    services.remove_grant(dbsession, world.fw_split, tz_grant.id)
    dbsession.flush()
    assert testapp.get(ME, headers=tablet).json["grants"] == [
        {"role": "fieldworker", "study": "ocsea", "countries": ["KE"]}
    ]
    testapp.get(FEED, params={"study": "ocsea", "country": "TZ"}, headers=tablet, status=403)

    # A tablet bound to KE stays in KE when the owner is given a new country or study.
    kenya, kenya_tablet = enrol_and_activate(testapp, world.coord_ke, "fw-split")
    services.add_grant(dbsession, world.fw_split, "fieldworker", "ocsea", ["TZ"], "tests")
    services.add_grant(dbsession, world.fw_split, "fieldworker", "other", None, "tests")
    dbsession.flush()
    assert testapp.get(ME, headers=kenya_tablet).json["grants"] == [
        {"role": "fieldworker", "study": "ocsea", "countries": ["KE"]}
    ]
    # The first tablet gets TZ back (it was enrolled for it), but not study other; grants are listed
    # in the order they were given.
    assert [(g["study"], g["countries"]) for g in testapp.get(ME, headers=tablet).json["grants"]] == [
        ("ocsea", ["KE"]),
        ("ocsea", ["TZ"]),
    ]


def epoch(session: Session) -> int:
    return session.execute(text("SELECT value FROM cache_epoch WHERE id = 1")).scalar_one()


def test_changing_a_devices_scope_renews_the_cache_epoch(
    testapp: webtest.TestApp, dbsession: Session, world: Audit
) -> None:
    device, tablet = enrol_and_activate(testapp, world.global_admin, "fw-split")
    assert len(testapp.get(ME, headers=tablet).json["grants"]) == 2  # now remembered
    study_id = dbsession.get(Device, device["id"]).scope[0]["study_id"]

    def set_scope(scope: list[dict[str, Any]]) -> bool:
        before = epoch(dbsession)
        dbsession.execute(update(Device).where(Device.id == device["id"]).values(scope=scope))
        dbsession.flush()
        return epoch(dbsession) != before

    assert set_scope([{"study_id": study_id, "countries": ["KE"]}])
    # The remembered identity is not used under the new epoch.
    assert testapp.get(ME, headers=tablet).json["grants"] == [
        {"role": "fieldworker", "study": "ocsea", "countries": ["KE"]}
    ]
    assert not set_scope([{"study_id": study_id, "countries": ["KE"]}])
    before = epoch(dbsession)
    dbsession.execute(update(Device).where(Device.id == device["id"]).values(last_seen_at=utcnow()))
    dbsession.flush()
    assert epoch(dbsession) == before


def test_a_device_with_an_empty_scope_reaches_nothing_and_only_a_global_admin_manages_it(
    testapp: webtest.TestApp, dbsession: Session, world: Audit
) -> None:
    device, tablet = enrol_and_activate(testapp, world.coord_ke, "fw-split")
    dbsession.execute(update(Device).where(Device.id == device["id"]).values(scope=[]))
    dbsession.flush()
    assert testapp.get(ME, headers=tablet).json["grants"] == []
    for headers in (world.coord_ke, world.study_admin):
        testapp.post(f"{DEVICES}/{device['id']}/enrolment", headers=headers, status=403)
    assert testapp.get(DEVICES, headers=world.study_admin).json["devices"] == []
    testapp.delete(f"{DEVICES}/{device['id']}", headers=world.global_admin, status=200)


# --------------------------------------------------------------------------------------- the CLI


@pytest.fixture
def run(fresh_database: Callable[[], str], tmp_path: Path) -> CLI:
    runner = CLI(fresh_database(), tmp_path / "data")
    runner.ok("db", "upgrade")
    runner.ok("studies", "add", "ocsea", "--name", "OCSEA")
    runner.ok("studies", "add-country", "ocsea", "KE", "--name", "Kenya")
    runner.ok("studies", "add-country", "ocsea", "TZ", "--name", "Tanzania")
    runner.ok("studies", "add", "other", "--name", "Other")
    runner.ok("studies", "add-country", "other", "UG", "--name", "Uganda")
    runner.ok("users", "add", "fw-multi")
    runner.ok("users", "grant", "fw-multi", "fieldworker", "--study", "ocsea", "--country", "KE")
    runner.ok("users", "grant", "fw-multi", "fieldworker", "--study", "other", "--country", "UG")
    return runner


def test_the_cli_binds_a_tablet_to_the_owners_grants_or_the_named_part_of_them(run: CLI) -> None:
    assert "scope: ocsea KE; other UG" in run.ok("devices", "enrol", "fw-multi", "--label", "both")
    assert "scope: other UG" in run.ok("devices", "enrol", "fw-multi", "--label", "ug", "--study", "other")
    output = run.ok("devices", "enrol", "fw-multi", "--label", "ke", "--study", "ocsea", "--country", "KE")
    assert "scope: ocsea KE" in output
    assert re.search(r"enrolment code: \S+", output)
    assert "no fieldworker grant for TZ" in run.fails(
        "devices", "enrol", "fw-multi", "--label", "x", "--study", "ocsea", "--country", "TZ"
    )
    assert "name the study" in run.fails("devices", "enrol", "fw-multi", "--label", "x", "--country", "KE")
    assert run.ok("devices", "list").count("fw-multi") == 3
    engine = sa.create_engine(run.url)
    try:
        with Session(engine) as session:
            given = [
                e.details["scope"]
                for e in session.scalars(
                    select(AuditEvent).where(AuditEvent.action == "device.enrol").order_by(AuditEvent.id)
                )
            ]
    finally:
        engine.dispose()
    assert given == [
        [{"study": "ocsea", "countries": ["KE"]}, {"study": "other", "countries": ["UG"]}],
        [{"study": "other", "countries": ["UG"]}],
        [{"study": "ocsea", "countries": ["KE"]}],
    ]


# --------------------------------------------------------------------------------- the migration


def test_the_migration_binds_existing_devices_to_their_owners_fieldworker_grants(
    fresh_database: Callable[[], str], tmp_path: Path
) -> None:
    engine = make_engine(settings_for(fresh_database(), tmp_path))
    try:
        migrate.upgrade(engine, "0005")
        meta = sa.MetaData()
        studies = sa.Table("studies", meta, autoload_with=engine)
        users = sa.Table("users", meta, autoload_with=engine)
        grants = sa.Table("grants", meta, autoload_with=engine)
        devices = sa.Table("devices", meta, autoload_with=engine)
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(
                studies.insert(),
                [
                    {"id": 1, "slug": "ocsea", "name": "O", "created_at": now},
                    {"id": 2, "slug": "other", "name": "X", "created_at": now},
                ],
            )
            connection.execute(
                users.insert(),
                [
                    {"id": n, "username": name, "active": True, "failed_logins": 0, "created_at": now}
                    for n, name in [(1, "fw-split"), (2, "fw-multi"), (3, "fw-all"), (4, "analyst")]
                ],
            )
            connection.execute(
                grants.insert(),
                [
                    {
                        "user_id": 1,
                        "role": "fieldworker",
                        "study_id": 1,
                        "countries": ["KE"],
                        "created_at": now,
                    },
                    {
                        "user_id": 1,
                        "role": "fieldworker",
                        "study_id": 1,
                        "countries": ["TZ"],
                        "created_at": now,
                    },
                    {
                        "user_id": 1,
                        "role": "coordinator",
                        "study_id": 2,
                        "countries": None,
                        "created_at": now,
                    },
                    {
                        "user_id": 2,
                        "role": "fieldworker",
                        "study_id": 1,
                        "countries": ["KE"],
                        "created_at": now,
                    },
                    {
                        "user_id": 2,
                        "role": "fieldworker",
                        "study_id": 2,
                        "countries": ["UG"],
                        "created_at": now,
                    },
                    {
                        "user_id": 3,
                        "role": "fieldworker",
                        "study_id": 1,
                        "countries": ["KE"],
                        "created_at": now,
                    },
                    {
                        "user_id": 3,
                        "role": "fieldworker",
                        "study_id": 1,
                        "countries": None,
                        "created_at": now,
                    },
                    {"user_id": 4, "role": "analyst", "study_id": 1, "countries": None, "created_at": now},
                ],
            )
            connection.execute(
                devices.insert(),
                [
                    {"id": f"device-{n}", "user_id": n, "label": "tablet", "created_at": now}
                    for n in (1, 2, 3, 4)
                ],
            )
        migrate.upgrade(engine)
        with engine.connect() as connection:
            scopes = dict(connection.execute(text("SELECT id, scope FROM devices ORDER BY id")).all())
        # SQLite hands JSON back as text here (a plain SQL query, no column type).
        scopes = {
            key: json.loads(value) if isinstance(value, str) else value for key, value in scopes.items()
        }
        assert scopes == {
            "device-1": [{"study_id": 1, "countries": ["KE", "TZ"]}],
            "device-2": [{"study_id": 1, "countries": ["KE"]}, {"study_id": 2, "countries": ["UG"]}],
            "device-3": [{"study_id": 1, "countries": None}],
            "device-4": [],
        }
        columns = {c["name"]: c for c in sa.inspect(engine).get_columns("devices")}
        assert columns["scope"]["nullable"] is False
        # And back: the column goes, the devices stay.
        migrate.downgrade(engine, "0005")
        assert "scope" not in {c["name"] for c in sa.inspect(engine).get_columns("devices")}
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM devices")).scalar() == 4
    finally:
        engine.dispose()
