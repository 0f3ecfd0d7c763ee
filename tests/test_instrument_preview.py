"""Previewing an instrument as the interviewer will see it (surveykit.instruments.preview), over the
API (a published version, a draft) and as the printable interview guide (a console page)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import webtest
from console_support import HTML, sign_in
from instrument_samples import RA1_FILE, RA1_SLUG, minimal_definition
from sqlalchemy.orm import Session

from surveykit.instruments import services
from surveykit.instruments.preview import count_fallbacks, preview

ENVELOPE_KEYS = {"status", "code", "message", "details"}


@pytest.fixture(scope="module")
def ra1() -> dict[str, Any]:
    return services.validate_definition(services.read_definition_file(RA1_FILE))


def _question(outline: dict[str, Any], qid: str) -> dict[str, Any]:
    def walk(sections: list[dict[str, Any]]) -> Any:
        for section in sections:
            for question in section["questions"]:
                if question["id"] == qid:
                    return question
            found = walk(section["sections"])
            if found is not None:
                return found
        return None

    found = next((q for q in outline["metadata"] if q["id"] == qid), None) or walk(outline["sections"])
    assert found is not None, qid
    return found


def _marks(value: Any) -> list[tuple[str, str, bool]]:
    """Every localised text in ``value``: (text, lang, fallback), in document order."""
    if isinstance(value, dict):
        if set(value) == {"text", "lang", "fallback"}:
            return [(value["text"], value["lang"], value["fallback"])]
        return [mark for item in value.values() for mark in _marks(item)]
    if isinstance(value, list):
        return [mark for item in value for mark in _marks(item)]
    return []


# --- the outline ----------------------------------------------------------------------------------


def test_the_ra1_outline_keeps_the_schedules_order(ra1: dict[str, Any]) -> None:
    outline = preview(ra1, "en")
    assert [q["id"] for q in outline["metadata"]] == [
        "agency",
        "position",
        "interview_date",
        "mode",
        "interview_language",
        "consent_given",
        "consent_date",
        "consent_recorded_how",
    ]
    assert [s["id"] for s in outline["sections"]] == [
        "public_awareness",
        "government_agencies",
        "policies_laws",
        "law_enforcement",
        "successes",
        "challenges",
    ]
    agencies = outline["sections"][1]
    assert agencies["depth"] == 1 and [s["depth"] for s in agencies["sections"]] == [2, 2, 2]
    assert [s["id"] for s in agencies["sections"]] == ["capacity", "budget", "good_practices"]
    assert agencies["questions"] == [] and agencies["sections"][1]["path"] == "sections[1].sections[1]"
    # Questions are numbered in asking order, metadata first.
    numbers = [q["number"] for q in outline["metadata"]]
    assert numbers == list(range(1, 9))
    assert _question(outline, "pa_understanding")["number"] == 9
    mode = _question(outline, "mode")
    assert (mode["type"], mode["required"], mode["binds"]) == ("single_choice", True, "record.mode")
    assert [c["value"] for c in mode["choices"]] == ["in_person", "virtual", "phone"]
    assert mode["choices"][0]["label"] == {"text": "In person", "lang": "en", "fallback": False}


def test_english_is_the_default_and_nothing_falls_back(ra1: dict[str, Any]) -> None:
    outline = preview(ra1)
    assert outline["language"] == "en" and outline["fallbacks"] == 0
    assert all(lang == "en" and not fallback for _, lang, fallback in _marks(outline))


def test_portuguese_marks_the_english_probes_and_notes_as_fallback(ra1: dict[str, Any]) -> None:
    outline = preview(ra1, "pt")
    assert outline["title"] == {
        "text": "Guião de entrevista RA1 para titulares de deveres do governo",
        "lang": "pt",
        "fallback": False,
    }
    understanding = _question(outline, "pa_understanding")
    assert understanding["prompt"]["lang"] == "pt" and not understanding["prompt"]["fallback"]
    assert understanding["prompt"]["text"].startswith("Na sua opinião, até que ponto")
    # The file translates prompts and labels, not probes and notes (its header says so).
    assert understanding["probes"][0] == {
        "text": "How does understanding differ between officials, parents, teachers and children?",
        "lang": "en",
        "fallback": True,
    }
    assert understanding["notes"]["fallback"] is True and understanding["notes"]["lang"] == "en"
    agency = _question(outline, "agency")
    assert agency["prompt"] == {
        "text": "Ministério ou instituição governamental do/a participante",
        "lang": "pt",
        "fallback": False,
    }
    assert agency["notes"] == {
        "text": "Write the full name of the agency, including the parent ministry where relevant.",
        "lang": "en",
        "fallback": True,
    }
    assert _question(outline, "mode")["choices"][0]["label"] == {
        "text": "Presencial",
        "lang": "pt",
        "fallback": False,
    }
    marks = _marks(outline)
    assert outline["fallbacks"] == sum(1 for _, _, fallback in marks if fallback) == count_fallbacks(outline)
    assert outline["fallbacks"] > 0
    # Only English stands in, and only where it is marked.
    assert all((lang == "en") == fallback for _, lang, fallback in marks)


@pytest.mark.parametrize("language", ["en", "pt"])
def test_the_marks_are_the_ones_the_serving_api_gives(
    language: str, ra1: dict[str, Any], testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    services.publish(dbsession, ra1)
    dbsession.flush()
    testapp.authorization = ("Bearer", accounts.token(accounts.user("reader")))
    served = testapp.get(f"/api/v1/instruments/{RA1_SLUG}/versions/1?lang={language}").json["definition"]
    previewed = testapp.get(f"/api/v1/instruments/{RA1_SLUG}/versions/1/preview?lang={language}").json
    # The served definition lists the same texts in the same order, with the same marks.
    assert sorted(_marks(previewed)) == sorted(_marks(served))
    assert previewed["fallbacks"] == sum(1 for _, _, fallback in _marks(served) if fallback)


def test_relevance_lists_the_questions_it_depends_on(ra1: dict[str, Any]) -> None:
    outline = preview(ra1, "en")
    assert _question(outline, "consent_date")["depends_on"] == ["consent_given"]
    assert _question(outline, "consent_date")["relevance"] == "$consent_given == true"
    assert _question(outline, "budget_line_details")["depends_on"] == ["budget_line_exists"]
    assert (
        _question(outline, "agency")["depends_on"] == [] and _question(outline, "agency")["relevance"] is None
    )

    data = minimal_definition()
    data["sections"][1]["sections"][0]["questions"][0]["relevance"] = (
        "selected($mode, 'phone') and ($agency != null or not answered($details)) and $consent == true"
    )
    outline = preview(services.validate_definition(data))
    # In asking order (metadata first), each id once.
    assert _question(outline, "people")["depends_on"] == ["agency", "consent", "details", "mode"]


def test_a_language_not_offered_is_refused(ra1: dict[str, Any]) -> None:
    with pytest.raises(services.LanguageNotOffered) as refused:
        preview(ra1, "fr")
    assert refused.value.offered == ["en", "pt"]


# --- the API ----------------------------------------------------------------------------------------


@pytest.fixture
def published(dbsession: Session, accounts: Any) -> dict[str, Any]:
    """ocsea-debrief (study ocsea, versions 1 and 2) and other-debrief (study other)."""
    accounts.study("ocsea", ("KE",))
    accounts.study("other", ("KE",))
    data = minimal_definition("ocsea-debrief")
    data["study"] = "ocsea"
    services.publish(dbsession, services.validate_definition(data))
    data["sections"][0]["questions"][1]["probes"].append({"en": "Who decided?", "pt": "Quem decidiu?"})
    services.publish(dbsession, services.validate_definition(data))
    other = minimal_definition("other-debrief")
    other["study"] = "other"
    services.publish(dbsession, services.validate_definition(other))
    dbsession.flush()
    return data


def _envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    assert response.content_type == "application/json"
    body = response.json
    assert set(body) == ENVELOPE_KEYS and (body["status"], body["code"]) == (status, code)
    return body


def test_a_published_version_is_previewed_in_the_language_asked_for(
    testapp: webtest.TestApp, accounts: Any, published: dict[str, Any]
) -> None:
    testapp.authorization = (
        "Bearer",
        accounts.token(accounts.user("ke-walker", "fieldworker", "ocsea", ["KE"])),
    )
    first = testapp.get("/api/v1/instruments/ocsea-debrief/versions/1/preview?lang=pt").json
    second = testapp.get("/api/v1/instruments/ocsea-debrief/versions/2/preview?lang=pt").json
    assert (first["version"], first["draft"], first["language"]) == (1, False, "pt")
    details_1, details_2 = _question(first, "details"), _question(second, "details")
    assert [p["text"] for p in details_1["probes"]] == ["Who was there?"]
    assert details_2["probes"][1] == {"text": "Quem decidiu?", "lang": "pt", "fallback": False}
    assert details_2["probes"][0] == {"text": "Who was there?", "lang": "en", "fallback": True}
    assert first["content_hash"] != second["content_hash"]
    default = testapp.get("/api/v1/instruments/ocsea-debrief/versions/2/preview").json
    assert default["language"] == "en" and default["fallbacks"] == 0


def test_preview_errors(testapp: webtest.TestApp, accounts: Any, published: dict[str, Any]) -> None:
    base = "/api/v1/instruments/ocsea-debrief/versions"
    anonymous = testapp.get(f"{base}/1/preview", expect_errors=True)
    _envelope(anonymous, 401, "unauthenticated")
    testapp.authorization = (
        "Bearer",
        accounts.token(accounts.user("ke-coord", "coordinator", "ocsea", ["KE"])),
    )
    body = _envelope(testapp.get(f"{base}/1/preview?lang=fr", expect_errors=True), 400, "bad_request")
    assert body["details"][0]["path"] == "lang" and body["details"][0]["location"] == "querystring"
    assert "en, pt" in body["details"][0]["message"] and "en, pt" in body["message"]
    body = _envelope(
        testapp.get(f"{base}/1/preview?lang=not%20a%20code", expect_errors=True), 400, "bad_request"
    )
    assert body["details"][0]["path"] == "lang"
    body = _envelope(testapp.get(f"{base}/1/preview?lnag=pt", expect_errors=True), 400, "bad_request")
    assert "lnag" in body["details"][0]["message"]
    _envelope(testapp.get(f"{base}/3/preview", expect_errors=True), 404, "version_not_found")
    _envelope(testapp.get(f"{base}/0/preview", expect_errors=True), 404, "version_not_found")
    _envelope(
        testapp.get("/api/v1/instruments/no-such/versions/1/preview", expect_errors=True),
        404,
        "instrument_not_found",
    )
    # Another study's instrument: refused, as reading it is.
    _envelope(
        testapp.get("/api/v1/instruments/other-debrief/versions/1/preview", expect_errors=True),
        403,
        "forbidden",
    )


def test_a_draft_is_previewed_without_being_stored(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    draft = minimal_definition("draft-debrief")
    _envelope(
        testapp.post_json("/api/v1/instruments/preview", draft, expect_errors=True), 401, "unauthenticated"
    )
    testapp.authorization = ("Bearer", accounts.token(accounts.user("reader")))
    outline = testapp.post_json("/api/v1/instruments/preview?lang=pt", draft).json
    assert (outline["draft"], outline["version"], outline["slug"]) == (True, None, "draft-debrief")
    assert outline["content_hash"] == services.content_hash(
        services.validate_definition(copy.deepcopy(draft))
    )
    assert _question(outline, "details")["prompt"] == {
        "text": "Describe what happened.",
        "lang": "en",
        "fallback": True,
    }
    assert _question(outline, "details")["depends_on"] == ["consent"]
    with pytest.raises(services.InstrumentNotFound):
        services.find_version(dbsession, "draft-debrief")
    body = _envelope(
        testapp.post_json("/api/v1/instruments/preview?lang=fr", draft, expect_errors=True),
        400,
        "bad_request",
    )
    assert body["details"][0]["path"] == "lang"


def test_an_invalid_draft_gets_the_validate_endpoints_answer(testapp: webtest.TestApp, accounts: Any) -> None:
    testapp.authorization = ("Bearer", accounts.token(accounts.user("reader")))
    broken = minimal_definition("draft-debrief")
    broken["sections"][0]["questions"][1]["relevance"] = "$later == true"
    broken["sections"][0]["questions"][0]["type"] = "yes"
    previewed = testapp.post_json("/api/v1/instruments/preview", broken, expect_errors=True)
    validated = testapp.post_json("/api/v1/instruments/validate", broken, expect_errors=True)
    body = _envelope(previewed, 422, "invalid_input")
    assert body == validated.json
    assert [d["path"] for d in body["details"]] == ["sections[0].questions[0].type"]


# --- the printable interview guide ---------------------------------------------------------------


def test_the_guide_is_a_printable_page_for_a_signed_in_coordinator(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session, ra1: dict[str, Any]
) -> None:
    services.publish(dbsession, ra1)
    dbsession.flush()
    coordinator = accounts.user("lulu", "coordinator", "ocsea", ["KE"])
    sign_in(testapp, accounts, coordinator)
    page = testapp.get(f"/console/instruments/{RA1_SLUG}/versions/1/guide?lang=pt", headers=HTML)
    assert page.status_int == 200 and page.content_type == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.text
    # No inline style or script (the CSP forbids them): the print stylesheet is a file.
    assert " style=" not in html and "<style" not in html
    assert all('src="' in tag for tag in re.findall(r"<script[^>]*>", html))
    assert "/console/static/guide.css" in html
    css = testapp.get("/console/static/guide.css").text
    assert "@media print" in css and "break-before: page" in css
    # Portuguese prompts; English probes and notes marked as not translated.
    assert "Na sua opinião, até que ponto" in html
    probe = "How does understanding differ between officials, parents, teachers and children?"
    assert re.search(
        rf'<span class="fallback" lang="en">{re.escape(probe)} '
        r'<span class="fallback-mark">\[not translated: en\]',
        html,
    )
    assert '<span lang="pt">Presencial</span>' in html
    fallback_marks = html.count('class="fallback-mark"')
    assert fallback_marks == preview(ra1, "pt")["fallbacks"]
    # Probes are tick boxes, and every question leaves room to write.
    assert html.count('class="probes"') == sum(1 for q in _all_questions(preview(ra1, "pt")) if q["probes"])
    # (A choice question is answered by ticking a choice.)
    unchosen = [q for q in _all_questions(preview(ra1, "pt")) if not q["choices"]]
    assert html.count('class="answer-space answer-long"') == sum(
        1 for q in unchosen if q["type"] == "long_text"
    )
    assert html.count('class="answer-space') == len(unchosen) < len(_all_questions(preview(ra1, "pt")))
    # Each section starts a new printed page: one section element per section of the outline.
    assert html.count('class="guide-section depth-1"') == 6
    assert "asked only if" in html and 'href="#q-consent_given"' in html
    english = testapp.get(f"/console/instruments/{RA1_SLUG}/versions/1/guide", headers=HTML).text
    assert 'class="fallback-mark"' not in english and "In your view, how well" in english


def _all_questions(outline: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(outline["metadata"])

    def walk(sections: list[dict[str, Any]]) -> None:
        for section in sections:
            found.extend(section["questions"])
            walk(section["sections"])

    walk(outline["sections"])
    return found


def test_the_guide_refuses_and_explains_like_other_console_pages(
    testapp: webtest.TestApp, accounts: Any, published: dict[str, Any]
) -> None:
    url = "/console/instruments/ocsea-debrief/versions/1/guide"
    anonymous = testapp.get(url, headers=HTML)
    assert anonymous.status_int == 303 and "/console/sign-in?next=" in anonymous.headers["Location"]
    sign_in(testapp, accounts, accounts.user("ke-coord", "coordinator", "ocsea", ["KE"]))
    assert testapp.get(url, headers=HTML).status_int == 200
    refused = testapp.get("/console/instruments/other-debrief/versions/1/guide", headers=HTML, status=403)
    assert refused.content_type == "text/html"
    missing = testapp.get("/console/instruments/ocsea-debrief/versions/9/guide", headers=HTML, status=404)
    assert missing.content_type == "text/html" and "has no version 9" in missing.text
    testapp.get("/console/instruments/ocsea-debrief/versions/x/guide", headers=HTML, status=404)
    language = testapp.get(f"{url}?lang=fr", headers=HTML, status=400)
    assert language.content_type == "text/html" and "en, pt" in language.text
    malformed = testapp.get(f"{url}?lang=<b>", headers=HTML, status=400)
    assert (
        malformed.content_type == "text/html" and "lang: " in malformed.text and "<b>" not in malformed.text
    )


def test_an_instrument_called_preview_is_still_read_at_its_own_url(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    """Only POST previews a draft at /api/v1/instruments/preview; GET there reads the instrument."""
    services.publish(dbsession, services.validate_definition(minimal_definition("preview")))
    dbsession.flush()
    testapp.authorization = ("Bearer", accounts.token(accounts.user("reader")))
    served = testapp.get("/api/v1/instruments/preview").json
    assert (served["slug"], served["version"]) == ("preview", 1)
    assert testapp.post_json("/api/v1/instruments/preview", minimal_definition("other")).json["draft"] is True
