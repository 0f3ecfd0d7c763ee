"""The field app (docs/field-app.md) in Chromium: the journeys of a field researcher, each checked on
the screen and in the server's database, and the relevance conformance vectors run through the app's
own JavaScript evaluator."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from surveykit import server as surveykit_server
from surveykit.accounts import services as account_services
from surveykit.studies import services as studies

REPO = Path(__file__).resolve().parents[2]
RA1 = REPO / "instruments" / "ra1-duty-bearers.yaml"
VECTORS = json.loads((REPO / "tests" / "relevance_vectors.json").read_text(encoding="utf-8"))["cases"]
TABLET = {"width": 800, "height": 1280}  # a 10-inch tablet, portrait
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
    assert page.locator("text=No instrument downloaded yet").count() == 0


def wait_for_worker(page: Any) -> None:
    page.wait_for_function(
        "navigator.serviceWorker && navigator.serviceWorker.controller !== null", timeout=20_000
    )


def reserve_and_start(page: Any) -> str:
    page.get_by_role("link", name="New interview").click()
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


def test_journey_1_offline_interview_survives_reload_and_reopening(
    field: Any, new_context: Any, tmp_path: Path, screenshot: Any, assert_accessible: Any
) -> None:
    device_id, code = enrolment_code(field, "wanjiru")
    profile = tmp_path / "profile"
    context = new_context(user_data_dir=profile, viewport=TABLET)
    page = open_app(context, field.url)
    screenshot(page, "field-app-enrol")
    assert_accessible(page)
    enrol(page, code)
    wait_for_worker(page)
    download_instruments(page)
    uuid = reserve_and_start(page)

    context.set_offline(True)
    page.reload()
    page.wait_for_selector("#interview-title")
    fill_metadata(page)
    screenshot(page, "field-app-metadata")
    page.get_by_role("link", name="Government ministries/agencies").click()
    page.fill("#q-gov_capacity", ANSWER)
    quote(page, "gov_capacity", "There is no focal point yet", "capacity, focal point")
    quote(page, "gov_capacity", "budgets are thin", "budget", by="B")
    page.locator("#block-budget_line_exists label.option", has_text="Yes").click()
    page.fill("#q-budget_line_details", "A small line for the hotline since 2025.")
    quote(page, "budget_line_details", "small line for the hotline", "budget")
    page.get_by_role("link", name="Public awareness").click()
    page.fill("#q-pa_understanding", "Officials know little; parents less.")
    screenshot(page, "field-app-question")
    assert_accessible(page)
    page.get_by_role("button", name="Mark complete").click()
    page.wait_for_selector("text=Reopen as draft")
    context.close()

    reopened = new_context(user_data_dir=profile, viewport=TABLET, offline=True)
    page = open_app(reopened, field.url)
    page.wait_for_selector("#interview-list")
    row = page.locator(f"[data-uuid='{uuid}']")
    assert "complete" in row.inner_text() and "not sent" in row.inner_text()
    row.locator("a").click()
    page.get_by_role("link", name="Government ministries/agencies").click()
    assert page.locator("#q-gov_capacity").input_value() == ANSWER
    assert page.locator("#quotes-gov_capacity li.quote").count() == 2
    assert db_rows(field, "SELECT uuid FROM interviews") == []
