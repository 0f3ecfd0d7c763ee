"""Missing and stale translations, listed per language before publishing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import webtest
from click.testing import CliRunner
from instrument_samples import write_yaml
from sqlalchemy.orm import Session

from surveykit.cli import cli
from surveykit.instruments import services
from surveykit.instruments.translations import translation_report

VALIDATE = "/api/v1/instruments/validate"


def hand_made(study: str | None = None) -> dict[str, Any]:
    """Everything translated into Portuguese, except where a test removes or rewords a text."""
    data: dict[str, Any] = {
        "slug": "translated",
        "title": {"en": "Translated", "pt": "Traduzido"},
        "activity": "RA1",
        "default_language": "en",
        "languages": ["en", "pt", "sw"],
        "sections": [
            {
                "id": "only",
                "title": {"en": "Only", "pt": "Única", "sw": "Pekee"},
                "questions": [
                    {
                        "id": "agency",
                        "type": "short_text",
                        "prompt": {"en": "Which agency?", "pt": "Qual instituição?", "sw": "Shirika gani?"},
                        "probes": [{"en": "Since when?", "pt": "Desde quando?", "sw": "Tangu lini?"}],
                    },
                    {
                        "id": "mode",
                        "type": "single_choice",
                        "prompt": {"en": "Mode", "pt": "Modalidade", "sw": "Njia"},
                        "choices": [
                            {"value": "phone", "label": {"en": "Phone", "pt": "Telefone", "sw": "Simu"}},
                            {"value": "visit", "label": {"en": "Visit", "pt": "Visita", "sw": "Ziara"}},
                        ],
                    },
                ],
            }
        ],
    }
    if study:
        data["study"] = study
    return data


def _definition(data: dict[str, Any]) -> dict[str, Any]:
    return services.validate_definition(copy.deepcopy(data))


def _revised() -> dict[str, Any]:
    """One Portuguese text missing, one made stale (its English source reworded, the translation kept)."""
    data = hand_made()
    del data["sections"][0]["questions"][0]["probes"][0]["pt"]
    data["sections"][0]["questions"][1]["prompt"]["en"] = "How was the interview held?"
    return data


def test_a_new_instrument_lists_missing_texts_only() -> None:
    definition = _definition(_revised())
    report = translation_report(definition)
    assert report["pt"] == {
        "missing": [{"path": "sections[0].questions[0].probes[0]", "source": "Since when?"}],
        "stale": [],
    }
    # Without a title in Swahili, the title falls back to English.
    assert report["sw"]["missing"] == [{"path": "title", "source": "Translated"}]
    assert "en" not in report


def test_one_missing_and_one_stale_against_the_published_version() -> None:
    published = _definition(hand_made())
    report = translation_report(_definition(_revised()), [published])
    assert report["pt"] == {
        "missing": [{"path": "sections[0].questions[0].probes[0]", "source": "Since when?"}],
        "stale": [
            {
                "path": "sections[0].questions[1].prompt",
                "source": "How was the interview held?",
                "translation": "Modalidade",
                "translated_from": "Mode",
            }
        ],
    }
    # Swahili has the same stale prompt, and only its title missing.
    assert [item["path"] for item in report["sw"]["stale"]] == ["sections[0].questions[1].prompt"]
    assert [item["path"] for item in report["sw"]["missing"]] == ["title"]


def test_a_stale_translation_stays_stale_in_later_versions_until_retranslated() -> None:
    v1 = _definition(hand_made())
    v2 = _definition(_revised())  # published with the stale translation
    draft = _revised()
    draft["title"]["en"] = "Translated, again"
    report = translation_report(_definition(draft), [v1, v2])
    assert {item["path"] for item in report["pt"]["stale"]} == {"sections[0].questions[1].prompt", "title"}
    # Retranslating clears it.
    draft["sections"][0]["questions"][1]["prompt"]["pt"] = "Como foi feita a entrevista?"
    report = translation_report(_definition(draft), [v1, v2])
    assert {item["path"] for item in report["pt"]["stale"]} == {"title"}


def test_texts_are_followed_by_id_not_by_position() -> None:
    v1 = _definition(hand_made())
    moved = hand_made()
    questions = moved["sections"][0]["questions"]
    questions.reverse()
    questions[0]["choices"].reverse()
    report = translation_report(_definition(moved), [v1])
    assert report["pt"] == {"missing": [], "stale": []}
    # A reworded choice label is found at its new place.
    questions[0]["choices"][0]["label"]["en"] = "A visit"
    report = translation_report(_definition(moved), [v1])
    assert [item["path"] for item in report["pt"]["stale"]] == ["sections[0].questions[0].choices[0].label"]


def test_a_translation_rewritten_with_its_source_is_not_stale() -> None:
    v1 = _definition(hand_made())
    data = hand_made()
    data["sections"][0]["questions"][1]["prompt"] = {"en": "Interview mode", "pt": "Modo da entrevista"}
    report = translation_report(_definition(data), [v1])
    assert report["pt"]["stale"] == []


def test_a_text_that_lost_its_translation_and_got_it_back_is_judged_from_then() -> None:
    v1 = _definition(hand_made())
    v2 = _definition(_revised())  # pt probe missing here
    data = _revised()
    data["sections"][0]["questions"][0]["probes"][0] = {"en": "Since when, roughly?", "pt": "Desde quando?"}
    report = translation_report(_definition(data), [v1, v2])
    # The translation reappeared in this draft, written against today's source: not stale.
    assert "sections[0].questions[0].probes[0]" not in {item["path"] for item in report["pt"]["stale"]}


# --- through the API and the CLI --------------------------------------------------------------


def test_validate_answers_the_translations_against_the_published_versions(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    services.publish(dbsession, _definition(hand_made("ocsea")))
    dbsession.flush()
    revised = _revised()
    revised["study"] = "ocsea"
    coordinator = accounts.headers("coordinator", study="ocsea")
    answer = testapp.post_json(VALIDATE, revised, headers=coordinator).json
    assert answer["translations"]["pt"]["missing"] == [
        {"path": "sections[0].questions[0].probes[0]", "source": "Since when?"}
    ]
    assert [item["translated_from"] for item in answer["translations"]["pt"]["stale"]] == ["Mode"]
    # A caller who may not read that study's instrument learns nothing of its published history.
    accounts.study("other")
    outsider = accounts.headers("coordinator", study="other")
    answer = testapp.post_json(VALIDATE, revised, headers=outsider).json
    assert answer["translations"]["pt"]["stale"] == []
    assert len(answer["translations"]["pt"]["missing"]) == 1


def test_cli_validate_prints_the_translation_table(tmp_path: Path) -> None:
    file = write_yaml(tmp_path / "revised.yaml", _revised())
    result = CliRunner().invoke(cli, ["instruments", "validate", str(file)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "translations: pt: 1 missing, sw: 1 missing" in lines[1]
    assert "stale translations not checked" in lines[2]
    header = next(index for index, line in enumerate(lines) if line.split()[:2] == ["language", "state"])
    rows = [line.split(None, 3) for line in lines[header + 2 :]]
    assert ["pt", "missing", "sections[0].questions[0].probes[0]", "Since when?"] in rows
    assert ["sw", "missing", "title", "Translated"] in rows


def test_cli_validate_published_lists_stale_translations(
    tmp_path: Path, fresh_database: Callable[[], str]
) -> None:
    url = fresh_database()
    runner = CliRunner()
    assert runner.invoke(cli, ["--database-url", url, "db", "upgrade"]).exit_code == 0
    published = write_yaml(tmp_path / "v1.yaml", hand_made())
    result = runner.invoke(cli, ["--database-url", url, "instruments", "publish", str(published)])
    assert result.exit_code == 0, result.output
    file = write_yaml(tmp_path / "revised.yaml", _revised())
    result = runner.invoke(cli, ["--database-url", url, "instruments", "validate", "--published", str(file)])
    assert result.exit_code == 0, result.output
    assert "pt: 1 missing, 1 stale" in result.output
    rows = [line.split(None, 3) for line in result.output.splitlines()]
    assert ["pt", "stale", "sections[0].questions[1].prompt", "How was the interview held?"] in rows
