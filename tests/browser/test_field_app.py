"""The field app (docs/field-app.md) in Chromium: the journeys of a field researcher, each checked on
the screen and in the server's database, and the relevance conformance vectors run through the app's
own JavaScript evaluator."""

from __future__ import annotations

import gzip
import io
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner
from playwright.sync_api import expect
from sqlalchemy import text

from surveykit import server as surveykit_server
from surveykit.accounts import services as account_services
from surveykit.accounts.models import Device
from surveykit.cli import cli
from surveykit.exports import services as exports
from surveykit.fieldapp import views
from surveykit.participants import services as participants
from surveykit.studies import services as studies
from surveykit.web import Representation

REPO = Path(__file__).resolve().parents[2]
RA1 = REPO / "instruments" / "ra1-duty-bearers.yaml"
VECTORS = json.loads((REPO / "tests" / "relevance_vectors.json").read_text(encoding="utf-8"))["cases"]
TABLET = {"width": 800, "height": 1280}  # a 10-inch tablet, portrait
LANDSCAPE = {"width": 1280, "height": 800}
# Storage full, on demand: IndexedDB refuses writes the way a full disk makes it refuse them.
DISK_FULL = """(() => {
    const put = IDBObjectStore.prototype.put;
    IDBObjectStore.prototype.put = function (...args) {
        if (window.fieldappDiskFull) {
            throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
        }
        return put.apply(this, args);
    };
})();"""
ANSWER = "We trained two officers last year. There is no focal point yet, and budgets are thin."


@pytest.fixture(scope="module")
def field(live_server: Any) -> Iterator[Any]:
    with live_server.accounts() as accounts:
        study = accounts.study("ocsea", ("KE", "TZ"))
        studies.add_activity(accounts.session, study, "RA1", "Duty bearers")
        surveykit_server.publish_files(accounts.session, [RA1], "tests", lambda line: None)
    yield live_server


def enrolment_code(live_server: Any, username: str) -> tuple[str, str]:
    """A fieldworker of ocsea/KE and a tablet enrolled for them: (device id, one-time code)."""
    with live_server.accounts() as accounts:
        user = accounts.user(username, "fieldworker", "ocsea", ["KE"])
        device, code = account_services.enrol_device(
            accounts.session, user, f"{username} tablet", "tests", accounts.policy
        )
        return device.id, code


def open_app(context: Any, url: str) -> Any:
    page = context.pages[0] if context.pages else context.new_page()
    page.on("console", lambda m: print("CONSOLE", m.type, m.text))
    page.on("pageerror", lambda e: print("PAGEERROR", e))
    page.goto(f"{url}/app/")
    return page


def enrol(page: Any, code: str) -> None:
    page.get_by_label("Enrolment code").fill(code)
    page.get_by_role("button", name="Enrol").click()
    page.wait_for_selector("#status-title")


def download_instruments(page: Any) -> None:
    page.get_by_text("Sync finished").wait_for()  # the first sync, started by the enrolment
    page.get_by_role("button", name="Download instruments").click()
    page.get_by_text(re.compile(r"Instruments: \d+ downloaded")).wait_for()
    expect(page.locator("text=No instrument downloaded yet")).to_have_count(0)


def wait_for_worker(page: Any) -> None:
    page.wait_for_function(
        "() => navigator.serviceWorker && navigator.serviceWorker.controller !== null", timeout=20_000
    )


def reserve_and_start(page: Any) -> str:
    page.goto(page.url.split("#")[0] + "#/")
    page.get_by_role("link", name="New interview").click()
    page.wait_for_selector("#start-unplanned")
    if page.locator("#start-unplanned").is_disabled():
        page.get_by_role("button", name="Reserve a block of numbers").click()
        page.wait_for_selector("text=Reserved numbers")
    page.locator("#start-unplanned").click()
    page.wait_for_selector("#interview-title")
    return page.url.split("#/i/")[1].split("/")[0]


def fill_metadata(page: Any, *, second: bool = True) -> None:
    page.fill("#pA-agency", "Ministry of ICT")
    page.fill("#pA-position", "Director of Cyber Security")
    page.locator("[data-letter=A] label.option", has_text="Yes").click()
    page.locator("#block-mode label.option", has_text="In person").click()
    page.fill("#q-interview_language", "English")
    if second:
        page.get_by_role("button", name="Add participant B").click()
        page.fill("#pB-agency", "Ministry of ICT")
        page.locator("[data-letter=B] label.option", has_text="Yes").click()


def quote(page: Any, question: str, passage: str, tags: str = "", by: str = "A") -> None:
    area = page.locator(f"#q-{question}")
    value = area.input_value()
    start = value.index(passage)
    area.evaluate(
        "(el, [a, b]) => { el.focus(); el.setSelectionRange(a, b); }", [start, start + len(passage)]
    )
    page.locator(f"[data-quote={question}]").click()
    item = page.locator(f"#quotes-{question} li.quote").last
    if tags:
        item.locator("input").fill(tags)
    if by != "A":
        item.locator("select").select_option(by)


def conduct_interview(page: Any, screenshot: Any = None, assert_accessible: Any = None) -> None:
    """The RA1 interview of journey 1: participants A and B, three quotes (one said by B)."""
    fill_metadata(page)
    if screenshot:
        screenshot(page, "field-app-metadata")
    page.get_by_role("link", name="Government ministries/agencies").click()
    page.fill("#q-gov_capacity", ANSWER)
    quote(page, "gov_capacity", "There is no focal point yet", "capacity, focal point")
    quote(page, "gov_capacity", "budgets are thin", "budget", by="B")
    page.locator("#block-budget_line_exists label.option", has_text="Yes").click()
    page.fill("#q-budget_line_details", "A small line for the hotline since 2025.")
    quote(page, "budget_line_details", "small line for the hotline", "budget")
    if assert_accessible:
        assert_accessible(page)
    if screenshot:
        top = page.locator("#block-gov_capacity").bounding_box()["y"]
        page.mouse.wheel(0, top - 8)
        screenshot(page, "field-app-question")
    page.get_by_role("link", name="Public awareness").click()
    page.fill("#q-pa_understanding", "Officials know little; parents less.")


def stored_answer(page: Any, uuid: str, question: str) -> Any:
    return page.evaluate(
        "async ([u, q]) => (await (await import('/app/store.js')).get('interviews', u)).record.answers[q]",
        [uuid, question],
    )


def db_rows(live_server: Any, sql: str, **params: Any) -> list[Any]:
    with live_server.session() as session:
        return list(session.execute(text(sql), params))


def test_relevance_vectors_pass_in_the_apps_evaluator(field: Any, page: Any) -> None:
    page.goto(f"{field.url}/app/")
    results = page.evaluate(
        """async (cases) => {
            const { parse, RelevanceError } = await import('/app/relevance.js');
            return cases.map((c) => {
                try { return parse(c.expression).evaluate(c.answers); }
                catch (e) { return e instanceof RelevanceError ? 'error' : 'crash: ' + e; }
            });
        }""",
        VECTORS,
    )
    wrong = [
        (c["expression"], c["answers"], c["expected"], got)
        for c, got in zip(VECTORS, results, strict=True)
        if got != c["expected"]
    ]
    assert len(results) == len(VECTORS) > 100
    assert not wrong, wrong
    # The app's own strings exist in English and Portuguese alike.
    english, portuguese = page.evaluate(
        "async () => { const m = await import('/app/i18n.js'); return [m.keys(), m.portugueseKeys()]; }"
    )
    assert len(english) > 100 and sorted(english) == sorted(portuguese)


RECORD_RULES = """async () => {
    const { nobodyConsents, outgoing, relevantAnswers, speakers } = await import('/app/record.js');
    const { takeRegistryInto } = await import('/app/sync.js');
    const definition = { metadata: [], sections: [{ id: 's', questions: [
        { id: 'story', type: 'long_text' }] }] };
    const person = (letter, consent) => ({ letter, agency: 'Ministry of ICT', position: null,
        consent_given: consent, consent_date: consent ? '2026-05-04' : null, consent_recorded_how: null });
    const record = (a, b) => ({ study: 'ocsea', country: 'KE', activity: 'RA1', interview_number: 3,
        participants: [person('A', a), person('B', b)], instrument: { slug: 'x', version: 1 },
        language: 'en', mode: 'in_person', started_at: '2026-05-04T09:00:00+03:00', status: 'draft',
        answers: { story: 'A said this. B said that.' }, notes: '',
        quotes: [{ id: '1', question_id: 'story', text: 'A said this', start: 0, end: 11, tags: [] },
                 { id: '2', question_id: 'story', text: 'B said that', start: 13, end: 24, tags: [],
                   participant: 'B' }] });
    const sent = (a, b) => outgoing({ record: record(a, b) }, definition);
    // Registry corrections: a field untouched on the tablet follows the registry; one the
    // researcher changed locally (differs from the server's copy and the known entry) stays.
    const acked = record(true, true);
    const local = { uuid: 'u', edits: 4, dirty: false, acked, record: record(true, true) };
    local.record.participants[1].agency = 'Ministry of Justice';
    const known = { ...person('B', true) };
    const corrected = takeRegistryInto(structuredClone(local),
        { ...person('B', true), agency: 'Ministry of Health', position: 'Head of Policy' }, known);
    return {
        both: sent(true, true).quotes.map((q) => q.id),
        bRefused: sent(true, false).quotes.map((q) => q.id),
        bRefusedPeople: sent(true, false).participants.map((p) => [p.letter, p.consent_given]),
        aRefused: sent(false, true).quotes.map((q) => q.id),
        aRefusedAnswers: Object.keys(sent(false, true).answers),
        nobodyAnswers: Object.keys(sent(false, false).answers),
        nobody: [nobodyConsents(record(false, false)), nobodyConsents(record(false, true)),
                 nobodyConsents(record(null, false))],
        speakers: speakers(record(false, true)),
        asked: [...relevantAnswers(record(false, false), definition).asked],
        corrected: [corrected.record.participants[1].agency, corrected.record.participants[1].position,
                    corrected.edits, corrected.dirty],
        same: takeRegistryInto(structuredClone(local), { ...known, agency: 'Ministry of Justice' }, known),
    };
}"""


def test_consent_per_participant_and_registry_corrections_in_the_apps_record_code(
    field: Any, page: Any
) -> None:
    page.goto(f"{field.url}/app/")
    got = page.evaluate(RECORD_RULES)
    assert got["both"] == ["1", "2"]
    # B refused: B stays in the record (agency and consent are theirs to keep), B's quote goes.
    assert got["bRefused"] == ["1"] and got["bRefusedPeople"] == [["A", True], ["B", False]]
    # A refused, B goes on: the answers are kept, A's quote (no participant means A) is not.
    assert got["aRefused"] == ["2"] and got["aRefusedAnswers"] == ["story"]
    # Nobody consents: the interview stops, nothing more is recorded.
    assert got["nobodyAnswers"] == [] and got["asked"] == []
    assert got["nobody"] == [True, False, False] and got["speakers"] == ["B"]
    # The correction reaches the untouched position; the locally changed agency stays.
    assert got["corrected"] == ["Ministry of Justice", "Head of Policy", 5, True]
    assert got["same"] is None


PROBE_RULES = """async () => {
    const { adoptLocalProbes, outgoing } = await import('/app/record.js');
    const definition = { metadata: [], sections: [{ id: 's', questions: [
        { id: 'open', type: 'yes_no' },
        { id: 'story', type: 'long_text', probes: ['Who?', 'When?', 'How?'] },
        { id: 'more', type: 'long_text', relevance: '$open == true', probes: ['Why?'] }] }] };
    const record = (answers, probes_used) => ({ study: 'ocsea', country: 'KE', activity: 'RA1',
        interview_number: 3, participants: [{ letter: 'A', agency: 'Ministry of ICT', position: null,
        consent_given: true, consent_date: '2026-05-04', consent_recorded_how: null }],
        instrument: { slug: 'x', version: 1 }, language: 'en', mode: 'in_person',
        started_at: '2026-05-04T09:00:00+03:00', status: 'draft', answers, notes: '', quotes: [],
        ...(probes_used === undefined ? {} : { probes_used }) });
    const sent = (it) => outgoing(it, definition).probes_used;
    // A draft of an older release: ticks kept outside the record, and one tick in the record.
    const older = { local: { probes: { story: [2, 0], more: [] } },
                    record: record({ open: true }, { story: [1], more: [0] }) };
    const before = sent(older);
    const adopted = adoptLocalProbes(older);
    return {
        none: 'probes_used' in outgoing({ record: record({}) }, definition),
        empty: 'probes_used' in outgoing({ record: record({}, { story: [] }) }, definition),
        notAsked: sent({ record: record({ open: false }, { story: [0], more: [0] }) }),
        odd: sent({ record: record({}, { story: [2, 2, 7, -1, 'x', 0], gone: [0] }) }),
        before, adopted, after: sent(older), kept: older.record.probes_used, local: older.local,
        again: adoptLocalProbes(older),
    };
}"""


def test_probe_ticks_travel_in_the_record_and_older_local_ticks_are_adopted(field: Any, page: Any) -> None:
    page.goto(f"{field.url}/app/")
    got = page.evaluate(PROBE_RULES)
    # No ticks: no probes_used at all, so an older record is sent byte for byte as before.
    assert got["none"] is False and got["empty"] is False
    # Ticks on a question not asked are not sent (the server refuses them), as its answer is not.
    assert got["notAsked"] == {"story": [0]}
    assert got["odd"] == {"story": [0, 2]}
    # Ticks of an older release (interview.local.probes) are sent, then moved into the record once.
    assert got["before"] == {"story": [0, 1, 2], "more": [0]}
    assert got["adopted"] is True and got["again"] is False
    assert got["kept"] == {"story": [0, 1, 2], "more": [0]} and got["local"] == {}
    assert got["after"] == got["before"]


def test_without_indexeddb_the_app_says_so_instead_of_pretending_to_save(
    field: Any, new_context: Any
) -> None:
    context = new_context(viewport=TABLET)
    context.add_init_script("Object.defineProperty(window, 'indexedDB', { value: undefined });")
    page = open_app(context, field.url)
    alert = page.get_by_role("alert")
    alert.wait_for()
    expect(alert).to_contain_text("cannot store data")
    expect(page.locator("#enrol-code")).to_have_count(0)


def test_journey_1_offline_interview_survives_reload_and_reopening(
    field: Any, new_context: Any, tmp_path: Path, screenshot: Any, assert_accessible: Any
) -> None:
    device_id, code = enrolment_code(field, "wanjiru")
    profile = tmp_path / "profile"
    context = new_context(user_data_dir=profile, viewport=TABLET)
    context.add_init_script(DISK_FULL)
    page = open_app(context, field.url)
    screenshot(page, "field-app-enrol")
    assert_accessible(page)
    enrol(page, code)
    wait_for_worker(page)
    download_instruments(page)
    # A small block: three numbers, so one interview leaves the low-block warning.
    page.evaluate(
        "async (d) => (await import('/app/sync.js')).reserveBlock(d, 'ocsea', 'KE', 'RA1', 3)", device_id
    )
    uuid = reserve_and_start(page)

    context.set_offline(True)
    page.reload()
    page.wait_for_selector("#interview-title")
    conduct_interview(page, screenshot, assert_accessible)

    # The storage fills up: the researcher is told, and what was saved stays as it was.
    page.evaluate("window.fieldappDiskFull = true")
    page.locator("#q-pa_understanding").press_sequentially(" More")
    alert = page.get_by_role("alert")
    alert.wait_for()
    expect(alert).to_contain_text("storage is full")
    expect(alert).to_contain_text("Everything saved before is kept")
    assert stored_answer(page, uuid, "pa_understanding") == "Officials know little; parents less."
    expect(page.locator("#saved")).to_have_text("")
    page.evaluate("window.fieldappDiskFull = false")
    page.locator("#q-pa_understanding").press_sequentially("!")
    page.wait_for_function(
        "async (u) => (await (await import('/app/store.js')).get('interviews', u))"
        ".record.answers.pa_understanding.endsWith('More!')",
        arg=uuid,
    )
    page.locator("#saved", has_text="Saved on this tablet").wait_for()
    page.get_by_role("button", name="Mark complete").click()
    page.wait_for_selector("text=Reopen as draft")
    context.close()

    # Reopened offline, on the tablet turned to landscape.
    reopened = new_context(user_data_dir=profile, viewport=LANDSCAPE, offline=True)
    page = open_app(reopened, field.url)
    page.wait_for_selector("#interview-list")
    row = page.locator(f"[data-uuid='{uuid}']")
    expect(row).to_contain_text("complete")
    expect(row).to_contain_text("not sent")
    row.locator("a").click()
    page.get_by_role("link", name="Government ministries/agencies").click()
    expect(page.locator("#q-gov_capacity")).to_have_value(ANSWER)
    expect(page.locator("#quotes-gov_capacity li.quote")).to_have_count(2)
    screenshot(page, "field-app-landscape")
    assert db_rows(field, "SELECT uuid FROM interviews") == []
    page.goto(page.url.split("#")[0] + "#/new")
    expect(page.locator("#low-block")).to_contain_text("Only 2 interview number(s) left")


def sync_and_wait(page: Any) -> str:
    page.goto(page.url.split("#")[0] + "#/")
    page.wait_for_function("() => window.fieldapp && !window.fieldapp.syncing")
    page.locator("#sync-button").click()
    message = page.get_by_text("Sync finished")
    message.wait_for()
    return message.inner_text()


def started_tablet(field: Any, new_context: Any, username: str, **options: Any) -> tuple[Any, Any, str, str]:
    device_id, code = enrolment_code(field, username)
    context = new_context(viewport=TABLET, **options)
    page = open_app(context, field.url)
    enrol(page, code)
    wait_for_worker(page)
    download_instruments(page)
    return context, page, device_id, reserve_and_start(page)


def test_journey_2_sync_stores_the_record_its_quotes_and_receipts_exactly_once(
    field: Any, new_context: Any, screenshot: Any, assert_accessible: Any
) -> None:
    context, page, device_id, uuid = started_tablet(field, new_context, "amina")
    context.set_offline(True)
    conduct_interview(page)
    # Participant C joins and does not consent: the interview goes on for A and B, and C cannot
    # be quoted.
    page.get_by_role("link", name="Interview details and consent").click()
    page.get_by_role("button", name="Add participant C").click()
    page.fill("#pC-agency", "Ministry of Justice")
    page.locator("[data-letter=C] label.option").get_by_text("No", exact=True).click()
    expect(page.locator("#pC-refused")).to_contain_text("C did not consent")
    expect(page.locator("#consent-stop")).to_have_count(0)
    page.get_by_role("link", name="Government ministries/agencies").click()
    speakers = page.locator("#quotes-gov_capacity li.quote").first.locator("select option")
    expect(speakers).to_have_text(["A", "B"])
    # Probes used on gov_capacity: the ticks are saved with the interview and survive a reload.
    probes = page.locator("#block-gov_capacity details.probes")
    probes.locator("summary").click()
    for k in (4, 0, 2):
        probes.locator(f"input[value='{k}']").check()
    probes.locator("input[value='2']").uncheck()
    page.wait_for_function(
        "async (u) => JSON.stringify((await (await import('/app/store.js')).get('interviews', u))"
        ".record.probes_used) === JSON.stringify({gov_capacity: [0, 4]})",
        arg=uuid,
    )
    expect(page.locator("#block-gov_capacity")).not_to_contain_text("stay on this tablet")
    page.reload()
    page.get_by_role("link", name="Government ministries/agencies").click()
    probes = page.locator("#block-gov_capacity details.probes")
    probes.locator("summary").click()
    expect(probes.locator("input:checked")).to_have_count(2)
    for k in ("0", "4"):
        expect(probes.locator(f"input[value='{k}']")).to_be_checked()
    page.get_by_role("button", name="Mark complete").click()
    page.wait_for_selector("text=Reopen as draft")
    context.set_offline(False)  # the connection coming back starts a sync by itself
    page.get_by_text("Sync finished: 1 created").wait_for()
    page.goto(page.url.split("#")[0] + "#/")
    row = page.locator(f"[data-uuid='{uuid}']")
    stored = db_rows(field, "SELECT uuid, revision, content_hash, record, device_id FROM interviews")
    assert [(r.uuid, r.revision, r.device_id) for r in stored] == [(uuid, 1, device_id)]
    expect(row).to_contain_text(f"revision 1, {stored[0].content_hash[:12]}")
    record = stored[0].record if isinstance(stored[0].record, dict) else json.loads(stored[0].record)
    people = [(p["letter"], p["consent_given"]) for p in record["participants"]]
    assert people == [("A", True), ("B", True), ("C", False)]
    assert record["status"] == "complete" and record["answers"]["gov_capacity"] == ANSWER
    assert record["probes_used"] == {"gov_capacity": [0, 4]}
    quotes = db_rows(field, "SELECT text, start_offset, end_offset, question_id FROM quotes ORDER BY text")
    assert [q.text for q in quotes] == [
        "There is no focal point yet",
        "budgets are thin",
        "small line for the hotline",
    ]
    assert all(ANSWER[q.start_offset : q.end_offset] == q.text for q in quotes[:2])
    said_by = {q["text"]: (q.get("participant", "A"), q.get("tags")) for q in record["quotes"]}
    assert said_by["budgets are thin"] == ("B", ["budget"])
    assert said_by["There is no focal point yet"] == ("A", ["capacity", "focal point"])
    expect(page.locator("#count-sent")).to_have_text("1")
    screenshot(page, "field-app-home")
    assert_accessible(page)

    assert "0 created, 0 updated, 0 unchanged" in sync_and_wait(page)
    assert db_rows(field, "SELECT count(*) AS n FROM interview_revisions")[0].n == 1

    with field.session() as session:
        buffer = io.BytesIO()
        exports.write_workbook(session, exports.resolve_scope(session, "ocsea", "KE"), buffer, "tests")
    workbook = openpyxl.load_workbook(io.BytesIO(buffer.getvalue()), read_only=True)
    cells = {
        str(c) for sheet in workbook.worksheets for r in sheet.iter_rows(values_only=True) for c in r if c
    }
    pid = record_pid(record)
    assert f"{pid}-B" in cells and any("There is no focal point yet" in c for c in cells)
    assert (
        "Have staff received training on OCSEA? Who provided it, and how often?\n"
        "Is there a designated focal point for OCSEA in your agency or across government?"
    ) in cells

    # A coordinator corrects B's position in the registry: the next pull writes it into the
    # tablet's record (docs/client.md, rule 13) and the sync after that stores it, no conflict.
    answer = coordinator_call(
        field, "PATCH", f"/api/v1/studies/ocsea/participants/{pid}-B", {"position": "Head of Policy"}
    )
    assert answer["position"] == "Head of Policy"
    sync_and_wait(page)
    local = page.evaluate(
        "async (u) => (await (await import('/app/store.js')).get('interviews', u)).record.participants[1]",
        uuid,
    )
    assert local["position"] == "Head of Policy"
    assert "1 updated" in sync_and_wait(page)
    stored = db_rows(field, "SELECT record FROM interviews WHERE uuid = :u", u=uuid)[0].record
    stored = stored if isinstance(stored, dict) else json.loads(stored)
    assert stored["participants"][1]["position"] == "Head of Policy"
    assert db_rows(field, "SELECT count(*) AS n FROM field_conflicts")[0].n == 0


def record_pid(record: dict[str, Any]) -> str:
    return f"RA1-KE-{record['interview_number']:02d}"


def coordinator_call(field: Any, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with field.accounts() as accounts:
        token = accounts.token(accounts.user("registry-coordinator", "coordinator", "ocsea", ["KE"]))
    request = urllib.request.Request(
        f"{field.url}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def coordinator_push(field: Any, uuid: str, change: dict[str, Any]) -> dict[str, Any]:
    with field.accounts() as accounts:
        token = accounts.token(accounts.user(None, "coordinator", "ocsea", ["KE"]))
    request = urllib.request.Request(
        f"{field.url}/api/v1/sync",
        data=json.dumps({"changes": [change]}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())["results"][0]


def test_journey_3_an_edit_made_on_the_server_meanwhile_keeps_the_tablets_change_as_a_conflict(
    field: Any, new_context: Any, screenshot: Any
) -> None:
    context, page, device_id, uuid = started_tablet(field, new_context, "joseph")
    fill_metadata(page, second=False)
    assert "1 created" in sync_and_wait(page)
    current = db_rows(field, "SELECT record FROM interviews WHERE uuid = :u", u=uuid)[0].record
    current = current if isinstance(current, dict) else json.loads(current)
    edited = {**current, "notes": "Corrected by the coordinator."}
    assert (
        coordinator_push(field, uuid, {"uuid": uuid, "base_revision": 1, "record": edited})["result"]
        == "updated"
    )

    page.locator(f"[data-uuid='{uuid}'] a").click()
    page.fill("#record-notes", "The tablet's own note.")
    assert "1 conflict" in sync_and_wait(page)
    row = page.locator(f"[data-uuid='{uuid}']")
    expect(row).to_contain_text("conflict")
    conflicts = db_rows(
        field, "SELECT record, base_revision FROM interview_revisions WHERE kind = 'conflict'"
    )
    assert len(conflicts) == 1 and conflicts[0].base_revision == 1
    kept = conflicts[0].record if isinstance(conflicts[0].record, dict) else json.loads(conflicts[0].record)
    assert kept["notes"] == "The tablet's own note."
    assert db_rows(field, "SELECT revision FROM interviews WHERE uuid = :u", u=uuid)[0].revision == 2

    row.locator("a").click()
    page.locator("#conflict").wait_for()
    expect(page.locator("#conflict")).to_contain_text("Someone changed this interview on the server")
    expect(page.locator("#record-notes")).to_have_value("Corrected by the coordinator.")
    screenshot(page, "field-app-conflict")

    # A group interview the coordinators planned reaches the tablet through the feed.
    council = "National Council for Children"
    with field.session() as session:
        planned = participants.register_interview(
            session,
            studies.get_study(session, "ocsea"),
            "KE",
            "RA1",
            [participants.NewParticipant(council), participants.NewParticipant(council, "Legal officer")],
            "tests",
        )
        pids = [p.pid for p in planned]
    sync_and_wait(page)
    page.get_by_role("link", name="New interview").click()
    offer = page.locator("#planned li", has_text=", ".join(pids))
    offer.get_by_role("button", name="Start interview").click()
    page.wait_for_selector("#interview-title")
    expect(page.locator("#pA-agency")).to_have_value(council)
    expect(page.locator("#pB-position")).to_have_value("Legal officer")


def test_journey_6_a_rejected_record_shows_the_reason_and_field_and_is_resent_once_fixed(
    field: Any, new_context: Any, screenshot: Any
) -> None:
    context, page, device_id, uuid = started_tablet(field, new_context, "grace")
    fill_metadata(page, second=False)
    date = page.locator("#q-interview_date")
    expect(date).to_have_value(re.compile(r"^\d{4}-\d{2}-\d{2}$"))
    today = date.input_value()
    next_year = str(int(today[:4]) + 1) + today[4:]
    page.fill("#q-interview_date", next_year)
    assert "1 rejected" in sync_and_wait(page)
    expect(page.locator(f"[data-uuid='{uuid}']")).to_contain_text("rejected")
    assert db_rows(field, "SELECT uuid FROM interviews WHERE uuid = :u", u=uuid) == []

    page.locator(f"[data-uuid='{uuid}'] a").click()
    notice = page.locator("#rejected")
    notice.wait_for()
    expect(notice.locator(".error-path").first).to_contain_text("started_at")
    expect(notice).to_contain_text("plausible")
    screenshot(page, "field-app-rejected")
    page.fill("#q-interview_date", today)
    assert "1 created" in sync_and_wait(page)
    stored = db_rows(field, "SELECT record FROM interviews WHERE uuid = :u", u=uuid)
    record = stored[0].record if isinstance(stored[0].record, dict) else json.loads(stored[0].record)
    assert record["started_at"].startswith(today)
    expect(page.locator(f"[data-uuid='{uuid}']")).to_contain_text("sent")

    # A colleague on the same tablet: signing out keeps this work, and they do not see it.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("#enrol-code")
    _, code = enrolment_code(field, "grace-colleague")
    enrol(page, code)
    expect(page.locator("#interview-list li")).to_have_count(0)
    assert (
        page.evaluate(
            """() => new Promise((resolve) => {
            const open = indexedDB.open('surveykit-field');
            open.onsuccess = () => {
                const count = open.result.transaction('interviews').objectStore('interviews').count();
                count.onsuccess = () => resolve(count.result);
            };
        })"""
        )
        == 1
    )


def test_journey_5_a_revoked_tablet_keeps_its_work_and_its_backup_is_pushed_once_by_the_command(
    field: Any, new_context: Any, tmp_path: Path, screenshot: Any
) -> None:
    context, page, device_id, first = started_tablet(field, new_context, "tendai")
    fill_metadata(page, second=False)
    page.fill("#record-notes", "First interview of the day.")
    second = reserve_and_start(page)
    fill_metadata(page)
    with field.session() as session:
        account_services.revoke_device(session, session.get(Device, device_id))

    page.goto(f"{field.url}/app/#/")
    page.locator("#sync-button").click()
    alert = page.get_by_text("This tablet's access was revoked")
    alert.wait_for()
    expect(page.locator("#interview-list li")).to_have_count(2)
    screenshot(page, "field-app-revoked")
    with page.expect_download() as download:
        page.locator("#backup-button").click()
    backup = tmp_path / download.value.suggested_filename
    download.value.save_as(backup)
    assert device_id in backup.name
    changes = json.loads(backup.read_text(encoding="utf-8"))["changes"]
    assert sorted(c["uuid"] for c in changes) == sorted([first, second])
    assert {c["base_revision"] for c in changes} == {0}
    assert db_rows(field, "SELECT uuid FROM interviews WHERE device_id = :d", d=device_id) == []

    url = field.engine.url.render_as_string(hide_password=False)
    command = ["--database-url", url, "sync", "push-file", str(backup), "--device", device_id]
    env = {"SURVEYKIT_DATA_DIR": str(tmp_path / "cli"), "SURVEYKIT_ENV": "test"}
    pushed = CliRunner().invoke(cli, command, env=env)
    assert pushed.exit_code == 0, pushed.output
    assert "2 created" in pushed.output
    again = CliRunner().invoke(cli, command, env=env)
    assert "0 created, 0 updated, 2 unchanged" in again.output
    stored = db_rows(
        field, "SELECT uuid, revision FROM interviews WHERE device_id = :d ORDER BY uuid", d=device_id
    )
    assert [(r.uuid, r.revision) for r in stored] == sorted([(first, 1), (second, 1)])
    assert (
        db_rows(field, "SELECT count(*) AS n FROM participants WHERE interview_number IS NOT NULL")[0].n >= 3
    )


def test_journey_4_an_app_update_while_records_are_unsent_loses_nothing_and_works_offline(
    field: Any, new_context: Any, monkeypatch: pytest.MonkeyPatch, screenshot: Any
) -> None:
    context, page, device_id, uuid = started_tablet(field, new_context, "lindiwe")
    fill_metadata(page, second=False)
    page.fill("#record-notes", "Typed before the update.")
    before = page.evaluate("caches.keys()")
    assert len(before) == 1 and before[0].startswith("fieldapp-")

    released = dict(views.app_files())
    worker = released["sw.js"]
    body = worker.body.replace(b'const APP_VERSION = "', b'const APP_VERSION = "next-', 1)
    released["sw.js"] = Representation(worker.etag + "n", body, gzip.compress(body), worker.content_type)
    monkeypatch.setattr(views, "app_files", lambda: released)
    page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r.update())")
    page.get_by_text("A new version of the app is ready").wait_for()
    # Installed but waiting: the running release and its cache are untouched until the switch.
    assert sorted(page.evaluate("caches.keys()")) == sorted(
        [*before, before[0].replace("fieldapp-", "fieldapp-next-")]
    )
    screenshot(page, "field-app-update")
    assert db_rows(field, "SELECT uuid FROM interviews WHERE uuid = :u", u=uuid) == []

    # Switched to offline: the new release must start from its own cache alone.
    context.set_offline(True)
    with page.expect_navigation():
        page.get_by_role("button", name="Use it now").click()
    page.wait_for_selector("#interview-title")
    assert page.evaluate("caches.keys()") == [before[0].replace("fieldapp-", "fieldapp-next-")]
    expect(page.locator("#record-notes")).to_have_value("Typed before the update.")
    page.reload()
    page.wait_for_selector("#interview-title")
    expect(page.locator("#pA-agency")).to_have_value("Ministry of ICT")
    context.set_offline(False)
    page.get_by_text("Sync finished: 1 created").wait_for()
    stored = db_rows(field, "SELECT record FROM interviews WHERE uuid = :u", u=uuid)
    record = stored[0].record if isinstance(stored[0].record, dict) else json.loads(stored[0].record)
    assert record["notes"] == "Typed before the update."
