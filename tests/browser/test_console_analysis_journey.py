"""The analysts' pages in a real browser: an analyst of the whole study opens the codebook and adds
a code with its colour, opens an interview, selects a passage that follows "Ministério" and an emoji,
applies a code, sees it highlighted in its colour and stored at the right code point offsets, codes
another passage with the new code, then compares their coding with a colleague's. Each page is
checked with axe-core; the screenshots illustrate docs/console-analysis.md."""

from __future__ import annotations

from typing import Any

import pytest
from analysis_console_support import DETAILS, PASSAGE, add_code, add_interview, publish_instrument
from console_helpers import console_login
from playwright.sync_api import expect
from sqlalchemy import select

from surveykit.analysis import coding as coding_services
from surveykit.analysis.models import Coding

PASSWORD = "analysis password 1"
SELECT_PASSAGE = """([passage]) => {
  const answer = document.querySelector(".answer-text[data-question='details']");
  const text = answer.firstChild;
  const start = text.data.indexOf(passage);  // UTF-16 units, as the browser counts
  const range = document.createRange();
  range.setStart(text, start);
  range.setEnd(text, start + passage.length);
  const selection = document.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  return start;
}"""


@pytest.fixture(scope="module")
def site(live_server: Any) -> dict[str, Any]:
    """Study ocsea with the analyst ana (of the whole study: she edits the codebook), her colleague
    ben who has coded already, two interviews of Kenya and a small codebook."""
    with live_server.accounts() as accounts:
        study = accounts.study("ocsea", ("KE", "TZ"))
        ana = accounts.user("ana", "analyst", "ocsea", None, password=PASSWORD)
        ben = accounts.user("ben", "analyst", "ocsea", ["KE"])
        publish_instrument(accounts.session, "ocsea")
        first = add_interview(accounts.session, study, "KE", ana.id)
        second = add_interview(accounts.session, study, "KE", ana.id, "Não há orçamento para isto.")
        capacity = add_code(
            accounts.session, study, "Capacity", "#2e7d32", definition="Staff, training, tools"
        )
        training = add_code(
            accounts.session,
            study,
            "Training",
            "#c62828",
            parent=capacity,
            definition="Courses for officials",
        )
        budget = add_code(
            accounts.session, study, "Budget", "#1565c0", definition="Money set aside for the issue"
        )
        add_code(accounts.session, study, "Awareness (old)", "#6a1b9a", status="retired")
        start = DETAILS.index(PASSAGE)
        coding_services.create_coding(
            accounts.session,
            study,
            "KE",
            coding_services.Coder(ben.id, "ben"),
            coding_services.Passage(first.uuid, "details", start, start + len(PASSAGE)),
            training,
        )
        coding_services.create_coding(
            accounts.session,
            study,
            "KE",
            coding_services.Coder(ben.id, "ben"),
            coding_services.Passage(second.uuid, "details", 7, 16),
            budget,
        )
        return {"interview": first.uuid, "training": training}


def test_an_analyst_codes_a_passage_and_compares_with_a_colleague(
    live_server: Any, site: dict[str, Any], page: Any, assert_accessible: Any, screenshot: Any
) -> None:
    console_login(page, live_server, "ana", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analysis").click()
    expect(page.locator("h1")).to_have_text("Analysis")
    assert_accessible(page)
    page.get_by_role("link", name="Codebook · Country KE").click()
    expect(page.locator("tr.code-row")).to_have_count(4)
    expect(page.locator("tr.code-row.depth-1")).to_contain_text("Courses for officials")
    expect(page.locator("tr.code-row", has_text="Awareness (old)")).to_contain_text("retired")
    assert_accessible(page)
    screenshot(page, "console-analysis-codebook", full_page=True)

    page.fill("#field-name", "Hotlines")
    page.fill("#field-definition", "Phone lines for reports")
    page.fill("#field-colour", "#ff8800")
    page.select_option("#field-parent_id", label="Capacity")
    page.get_by_role("button", name="Add code").click()
    expect(page.locator(".flash-success")).to_have_text("Code Hotlines added.")
    hotlines = page.locator("tr.code-row", has_text="Hotlines")
    expect(hotlines).to_have_class("code-row depth-1")
    expect(hotlines.locator("rect")).to_have_attribute("fill", "#FF8800")
    hotlines.get_by_role("link", name="Hotlines").click()
    expect(page.locator("#field-colour")).to_have_value("#ff8800")
    expect(page.locator("tr.history-row")).to_contain_text("created (console)")
    assert_accessible(page)
    screenshot(page, "console-analysis-codebook-edit", full_page=True)

    page.locator(".analysis-nav").get_by_role("link", name="Interviews").click()
    expect(page.locator("main table tbody tr")).to_have_count(2)
    expect(page.locator("main table tbody tr").first).to_contain_text("RA1-KE-01-A")
    assert_accessible(page)
    page.get_by_role("link", name="RA1-KE-01").click()
    answer = page.locator(".answer-text[data-question='details']")
    expect(answer).to_have_text(DETAILS)
    # The colleague's coding is kept apart until asked for.
    expect(answer.locator("mark")).to_have_count(0)

    utf16_start = page.evaluate(SELECT_PASSAGE, [PASSAGE])
    start = DETAILS.index(PASSAGE)
    assert utf16_start == start + 1  # the emoji: one code point, two UTF-16 units
    expect(page.locator("#field-question_id")).to_have_value("details")
    expect(page.locator("#field-start")).to_have_value(str(start))
    expect(page.locator("#field-end")).to_have_value(str(start + len(PASSAGE)))
    expect(page.locator("#selected-passage")).to_contain_text(PASSAGE)
    page.select_option("#field-code_id", label="Capacity / Training")
    page.fill("#field-memo", "who is trained")
    page.get_by_role("button", name="Apply code", exact=True).click()

    expect(page.locator(".flash-success")).to_contain_text(f"Code applied to “{PASSAGE}”")
    mark = answer.locator("mark.coded")
    expect(mark).to_have_text(PASSAGE)
    expect(mark).to_have_css("border-bottom-color", "rgb(198, 40, 40)")
    expect(page.locator("tr.coding-row")).to_have_count(1)
    expect(page.locator("tr.coding-row")).to_contain_text("in place")
    assert_accessible(page)
    with live_server.session() as session:
        stored = session.scalars(select(Coding).where(Coding.coder == "ana")).one()  # before Hotlines
        assert (stored.start_offset, stored.end_offset, stored.text) == (start, start + len(PASSAGE), PASSAGE)
        assert (stored.code_id, stored.memo) == (site["training"], "who is trained")

    # The new code, on another passage (typed in, as without JavaScript).
    later = DETAILS.index("todos os anos")
    page.select_option("#field-question_id", "details")
    page.fill("#field-start", str(later))
    page.fill("#field-end", str(later + len("todos os anos")))
    page.select_option("#field-code_id", label="Capacity / Hotlines")
    page.get_by_role("button", name="Apply code", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("Code applied to “todos os anos”")
    expect(answer.locator("mark.coded", has_text="todos os anos")).to_have_css(
        "border-bottom-color", "rgb(255, 136, 0)"
    )
    expect(page.locator("tr.coding-row")).to_have_count(2)

    page.get_by_role("link", name="Show other coders' codings (1)").click()
    expect(page.locator("tr.coding-row")).to_have_count(3)
    expect(page.locator("tr.coding-row", has_text="ben")).not_to_contain_text("Delete")
    screenshot(page, "console-analysis-coding", full_page=True)

    page.locator(".analysis-nav").get_by_role("link", name="Agreement").click()
    expect(page.locator("#field-first")).to_have_value("ana")
    page.select_option("#field-second", "ben")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("main")).to_contain_text("2 answers compared between ana and ben.")
    training = page.locator("tr.agreement-row", has_text="Capacity / Training")
    expect(training).to_contain_text("100.0 %")
    expect(training.locator(".kappa")).to_have_text("1.00")
    budget = page.locator("tr.agreement-row", has_text="Budget")
    expect(budget).to_contain_text("50.0 %")
    expect(budget.locator(".kappa")).to_have_text("0.00")
    assert_accessible(page)
    screenshot(page, "console-analysis-agreement", full_page=True)
