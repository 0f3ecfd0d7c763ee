"""The instrument studio in a real browser: a YAML file with a mistake, the problem shown on its
line, the corrected file, the preview in two languages, the comparison with the current version,
publishing, and the new version listed; then an XLSForm workbook written here with openpyxl,
uploaded and previewed. Each page is checked with axe-core; the screenshots illustrate
docs/console-studio.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from console_helpers import accept_confirmations
from openpyxl import Workbook
from playwright.sync_api import expect

from surveykit.instruments import services as instruments

PASSWORD = "studio password 12"
SLUG = "studio-debrief"
# Version 1 as published; the draft rewords `details`, adds `later` and `answer`, and (first) has a
# mistake: the relevance of `details` reads `later`, a question asked after it.
VERSION_1 = """\
slug: studio-debrief
study: ocsea
activity: RA1
title:
  en: Studio debrief
  pt: Balanço do estúdio
default_language: en
languages: [en, pt]
sections:
  - id: first
    title:
      en: First contact
      pt: Primeiro contacto
    questions:
      - id: consent
        type: yes_no
        prompt:
          en: Was consent given?
          pt: Foi dado consentimento?
      - id: details
        type: long_text
        relevance: $consent == true
        prompt:
          en: Describe what happened, briefly.
          pt: Descreva o que aconteceu, em resumo.
"""
WITH_MISTAKE = (
    VERSION_1.replace("relevance: $consent == true", "relevance: $later == true")
    .replace("en: Describe what happened, briefly.", "en: Describe what happened.")
    .replace("          pt: Descreva o que aconteceu, em resumo.\n", "")
    + """\
      - id: later
        type: yes_no
        prompt:
          en: Anything else to add?
          pt: Mais alguma coisa a acrescentar?
      - id: answer
        type: single_choice
        prompt:
          en: How was the interview held?
          pt: Como decorreu a entrevista?
        choices:
          - value: in_person
            label: {en: In person, pt: Presencial}
          - value: phone
            label: {en: By phone, pt: Por telefone}
"""
)
MISTAKE_LINE = WITH_MISTAKE.splitlines().index("        relevance: $later == true") + 1
CORRECTED = WITH_MISTAKE.replace("relevance: $later == true", "relevance: $consent == true")


@pytest.fixture(scope="module")
def site(live_server: Any) -> None:
    """Study ocsea with a coordinator, and version 1 of the instrument published."""
    with live_server.accounts() as accounts:
        accounts.study("ocsea", ("KE", "TZ"))
        accounts.user("cora", "coordinator", "ocsea", ["KE"], password=PASSWORD)
        definition = instruments.validate_definition(yaml.safe_load(VERSION_1))
        instruments.publish(accounts.session, definition, "cora")


def sign_in(page: Any, live_server: Any) -> None:
    page.goto(f"{live_server.url}/console/sign-in")
    page.fill("#field-username", "cora")
    page.fill("#field-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/$"))


def test_upload_fix_preview_compare_and_publish(
    live_server: Any, site: None, page: Any, tmp_path: Path, assert_accessible: Any, screenshot: Any
) -> None:
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/console/instruments")
    page.click("text=Upload an instrument file")
    expect(page.locator("h1")).to_have_text("Upload an instrument file")
    assert_accessible(page)
    first = tmp_path / "studio-debrief.yaml"
    first.write_text(WITH_MISTAKE, encoding="utf-8")
    page.set_input_files("#field-file", str(first))
    page.click("text=Upload and check")

    # The problem, next to the line that caused it.
    row = page.locator("tr.problem-row")
    expect(row).to_have_count(1)
    expect(row.locator("th")).to_contain_text(f"line {MISTAKE_LINE}")
    expect(row.locator("code.excerpt")).to_have_text("relevance: $later == true")
    expect(row).to_contain_text("not an earlier question")
    expect(page.locator("button", has_text="Publish")).to_be_disabled()
    assert_accessible(page)
    screenshot(page, "console-studio-problem", full_page=True)

    # The corrected file replaces the draft's and is checked again.
    fixed = tmp_path / "studio-debrief-fixed.yaml"
    fixed.write_text(CORRECTED, encoding="utf-8")
    page.set_input_files("#field-file", str(fixed))
    page.click("text=Upload and check again")
    expect(page.locator(".flash-success")).to_contain_text("no problems found")
    expect(page.locator("tr.problem-row")).to_have_count(0)
    expect(page.locator("#translations-title").locator("xpath=..")).to_contain_text("1 missing")
    assert_accessible(page)
    screenshot(page, "console-studio-draft", full_page=True)
    draft_url = page.url

    # The preview, in English then in Portuguese, with the untranslated prompt marked.
    page.get_by_role("link", name="Preview", exact=True).click()
    expect(page.locator("nav.languages [aria-current=page]")).to_have_text("en")
    expect(page.locator("#q-details .relevance a")).to_have_text("consent")
    assert_accessible(page)
    page.locator("nav.languages").get_by_role("link", name="pt", exact=True).click()
    expect(page.locator("nav.languages [aria-current=page]")).to_have_text("pt")
    expect(page.locator("#q-consent .prompt")).to_contain_text("Foi dado consentimento?")
    expect(page.locator("#q-details .fallback")).to_contain_text("Describe what happened.")
    expect(page.locator("#q-details .fallback-mark")).to_contain_text("not translated")
    assert_accessible(page)
    screenshot(page, "console-studio-preview", full_page=True)

    # The comparison with version 1, before publishing.
    page.goto(draft_url)
    page.get_by_role("link", name="Compare with version 1").click()
    table = page.locator("main table tbody")
    expect(table.locator("tr", has_text="answer").first).to_contain_text("added")
    expect(table.locator("tr", has_text="reworded").first).to_contain_text("Describe what happened.")
    expect(page.locator("button", has_text="Publish")).to_be_enabled()
    assert_accessible(page)
    screenshot(page, "console-studio-compare", full_page=True)

    asked = accept_confirmations(page)
    page.click("button:has-text('Publish')")
    expect(page.locator(".flash-success")).to_contain_text(f"{SLUG} version 2 is published.")
    assert asked and asked[0].startswith("Publish this draft")
    expect(page.locator("main table tbody tr")).to_have_count(2)
    expect(page.locator("main table tbody tr").first).to_contain_text("current")
    assert_accessible(page)
    screenshot(page, "console-studio-published", full_page=True)
    with live_server.session() as session:
        assert instruments.find_version(session, SLUG).version == 2


def xlsform_workbook(path: Path) -> None:
    """A small XLSForm workbook, English and Portuguese in their own columns."""
    book = Workbook()
    book.remove(book.active)
    sheets = {
        "survey": [
            ["type", "name", "label::English (en)", "label::Portuguese (pt)", "relevant"],
            ["begin group", "visit", "The visit", "A visita", None],
            ["text", "office", "Which office was visited?", "Que gabinete foi visitado?", None],
            ["select_one mode", "mode", "How was the interview held?", "Como decorreu a entrevista?", None],
            ["text", "line_quality", "Was the line clear?", None, "${mode} = 'phone'"],
            ["end group", None, None, None, None],
        ],
        "choices": [
            ["list_name", "name", "label::English (en)", "label::Portuguese (pt)"],
            ["mode", "in_person", "In person", "Presencial"],
            ["mode", "phone", "By phone", "Por telefone"],
        ],
        "settings": [
            [
                "form_id",
                "form_title::English (en)",
                "form_title::Portuguese (pt)",
                "default_language",
                "surveykit::activity",
                "surveykit::study",
            ],
            ["office-visit", "Office visit", "Visita ao gabinete", "English (en)", "RA1", "ocsea"],
        ],
    }
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)


def test_an_xlsform_workbook_is_uploaded_and_previewed(
    live_server: Any, site: None, page: Any, tmp_path: Path, assert_accessible: Any, screenshot: Any
) -> None:
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/console/instruments/new")
    workbook = tmp_path / "office-visit.xlsx"
    xlsform_workbook(workbook)
    page.set_input_files("#field-file", str(workbook))
    page.click("text=Upload and check")
    expect(page.locator(".flash-success")).to_contain_text("no problems found")
    expect(page.locator("main dl.facts")).to_contain_text("XLSForm workbook")
    page.get_by_role("link", name="Preview", exact=True).click()
    page.locator("nav.languages").get_by_role("link", name="pt", exact=True).click()
    expect(page.locator("nav.languages [aria-current=page]")).to_have_text("pt")
    expect(page.locator("#q-office .prompt")).to_contain_text("Que gabinete foi visitado?")
    expect(page.locator("#q-line_quality .fallback")).to_contain_text("Was the line clear?")
    expect(page.locator("#q-line_quality .relevance a")).to_have_text("mode")
    assert_accessible(page)
    screenshot(page, "console-studio-xlsform-preview", full_page=True)
