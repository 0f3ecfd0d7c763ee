"""Reading and validating instrument definitions: the services and `surveykit instruments validate`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from instrument_samples import RA1_FILE, RA1_SLUG, minimal_definition, write_json, write_yaml
from sqlalchemy import func, select

from surveykit.cli import cli
from surveykit.instruments import services
from surveykit.instruments.models import Instrument, InstrumentVersion

Mutation = Callable[[dict[str, Any]], None]


def _question(data: dict[str, Any], section: int, index: int) -> dict[str, Any]:
    return data["sections"][section]["questions"][index]


def _sub_question(data: dict[str, Any]) -> dict[str, Any]:
    return data["sections"][1]["sections"][0]["questions"][0]


def _set(getter: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        getter(data)[key] = value

    return mutate


def _delete(getter: Callable[[dict[str, Any]], dict[str, Any]], key: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        del getter(data)[key]

    return mutate


def _top(data: dict[str, Any]) -> dict[str, Any]:
    return data


def _consent(data: dict[str, Any]) -> dict[str, Any]:
    return _question(data, 0, 0)


def _details(data: dict[str, Any]) -> dict[str, Any]:
    return _question(data, 0, 1)


def _mode(data: dict[str, Any]) -> dict[str, Any]:
    return _question(data, 0, 2)


def _first_section(data: dict[str, Any]) -> dict[str, Any]:
    return data["sections"][0]


def _sub_section(data: dict[str, Any]) -> dict[str, Any]:
    return data["sections"][1]["sections"][0]


def _agency(data: dict[str, Any]) -> dict[str, Any]:
    return data["metadata"][0]


# (mutation, path of the reported error, a fragment of its message)
BAD_DEFINITIONS: dict[str, tuple[Mutation, str, str]] = {
    "unknown question type": (_set(_consent, "type", "essay"), "sections[0].questions[0].type", "essay"),
    "duplicate question id in another section": (
        _set(_sub_question, "id", "consent"),
        "sections[1].sections[0].questions[0].id",
        "question id 'consent' is already used at sections[0].questions[0]",
    ),
    "section question reusing a metadata id": (
        _set(_mode, "id", "agency"),
        "sections[0].questions[2].id",
        "question id 'agency' is already used at metadata[0]",
    ),
    "duplicate section id": (
        _set(_sub_section, "id", "first"),
        "sections[1].sections[0].id",
        "section id 'first' is already used at sections[0]",
    ),
    "choice question without choices": (
        _delete(_mode, "choices"),
        "sections[0].questions[2].choices",
        "needs at least one choice",
    ),
    "choice question with an empty choice list": (
        _set(_mode, "choices", []),
        "sections[0].questions[2].choices",
        "needs at least one choice",
    ),
    "choices on a non-choice question": (
        _set(_consent, "choices", [{"value": "yes", "label": "Yes"}]),
        "sections[0].questions[0].choices",
        "a yes_no question cannot have choices",
    ),
    "repeated choice value": (
        _set(_mode, "choices", [{"value": "phone", "label": "A"}, {"value": "phone", "label": "B"}]),
        "sections[0].questions[2].choices[1].value",
        "'phone' is repeated",
    ),
    "relevance syntax error": (
        _set(_details, "relevance", "$consent =="),
        "sections[0].questions[1].relevance",
        "bad relevance expression",
    ),
    "relevance referring to a later question": (
        _set(_consent, "relevance", "answered($details)"),
        "sections[0].questions[0].relevance",
        "refers to $details, which is not an earlier question",
    ),
    "metadata relevance referring to a section question": (
        _set(_agency, "relevance", "$consent == true"),
        "metadata[0].relevance",
        "refers to $consent",
    ),
    "relevance referring to an unknown question": (
        _set(_details, "relevance", "$nobody == 1"),
        "sections[0].questions[1].relevance",
        "refers to $nobody",
    ),
    "relevance referring to the question itself": (
        _set(_details, "relevance", "answered($details)"),
        "sections[0].questions[1].relevance",
        "refers to $details",
    ),
    "translation in a language not listed": (
        _set(_top, "title", {"en": "Sample", "fr": "Exemple"}),
        "title",
        "translation 'fr' is not in languages ['en', 'pt']",
    ),
    "translation mapping without the default language": (
        _set(_first_section, "title", {"pt": "Primeira"}),
        "sections[0].title",
        "has no text in the default language 'en'",
    ),
    "probe translation in a language not listed": (
        _set(_details, "probes", ["Fine", {"en": "Who?", "sw": "Nani?"}]),
        "sections[0].questions[1].probes[1]",
        "translation 'sw' is not in languages",
    ),
    "default language not in languages": (
        _set(_top, "languages", ["pt"]),
        "languages",
        "must include the default language 'en'",
    ),
    "language listed twice": (_set(_top, "languages", ["en", "pt", "en"]), "languages", "listed twice"),
    "unknown key in a question": (_set(_consent, "promt", "Typo"), "sections[0].questions[0]", "promt"),
    "unknown key in a choice": (
        _set(lambda data: _mode(data)["choices"][0], "lable", "Typo"),
        "sections[0].questions[2].choices[0]",
        "lable",
    ),
    "unknown key in a section": (
        _set(_sub_section, "intro_text", "x"),
        "sections[1].sections[0]",
        "intro_text",
    ),
    "unknown key at the top level": (_set(_top, "colour", "blue"), "", "colour"),
    "boolean where text is expected": (
        _set(_consent, "prompt", True),
        "sections[0].questions[0].prompt",
        "must be text or a mapping",
    ),
    "number given for a prompt": (
        _set(_details, "prompt", 12),
        "sections[0].questions[1].prompt",
        "must be text or a mapping",
    ),
    "number given for the slug": (_set(_top, "slug", 2024), "slug", "must be text, not int"),
    "text given for required": (
        _set(_consent, "required", "yes"),
        "sections[0].questions[0].required",
        "must be true or false",
    ),
    "text given for a number bound": (
        _set(_sub_question, "max", "ten"),
        "sections[1].sections[0].questions[0].max",
        "must be a number",
    ),
    "bounds on a non-number question": (
        _set(_details, "min", 1),
        "sections[0].questions[1].min",
        "only number questions take min",
    ),
    "min greater than max": (
        _set(_sub_question, "min", 20),
        "sections[1].sections[0].questions[0].min",
        "min is greater than max",
    ),
    "empty translation": (
        _set(_first_section, "title", {"en": "First", "pt": "  "}),
        "sections[0].title",
        "must be non-empty text",
    ),
    "bad slug": (_set(_top, "slug", "Not A Slug"), "slug", "lower-case"),
    "slug the API reserves": (_set(_top, "slug", "validate"), "slug", "reserved by the API"),
    "bad activity": (_set(_top, "activity", "RA10"), "activity", "RA1 to RA9"),
    "bad question id": (_set(_consent, "id", "Consent"), "sections[0].questions[0].id", "lower-case"),
    "no sections": (_set(_top, "sections", []), "sections", "at least one section"),
    "empty section": (_set(_first_section, "questions", []), "sections[0]", "questions or sub-sections"),
    "missing prompt": (_delete(_consent, "prompt"), "sections[0].questions[0].prompt", "Required"),
}


def _bad(case: str) -> dict[str, Any]:
    data = minimal_definition()
    BAD_DEFINITIONS[case][0](data)
    return data


def _stored_rows(session: Any) -> tuple[int, int]:
    return (
        session.scalar(select(func.count()).select_from(Instrument)),
        session.scalar(select(func.count()).select_from(InstrumentVersion)),
    )


def test_the_sample_definition_is_valid() -> None:
    definition = services.validate_definition(minimal_definition())
    assert definition["slug"] == "sample-debrief"
    # Plain strings are stored under the default language.
    assert definition["sections"][1]["title"] == {"en": "Second"}
    assert definition["sections"][0]["questions"][1]["probes"] == [{"en": "Who was there?"}]
    assert [(path, question["id"]) for path, question in services.iter_questions(definition)] == [
        ("metadata[0]", "agency"),
        ("sections[0].questions[0]", "consent"),
        ("sections[0].questions[1]", "details"),
        ("sections[0].questions[2]", "mode"),
        ("sections[1].sections[0].questions[0]", "people"),
    ]


@pytest.mark.parametrize("case", sorted(BAD_DEFINITIONS))
def test_bad_definition_is_reported_with_its_path(case: str) -> None:
    _, path, fragment = BAD_DEFINITIONS[case]
    with pytest.raises(services.DefinitionError) as caught:
        services.validate_definition(_bad(case), source="sample.yaml")
    error = caught.value
    assert error.source == "sample.yaml"
    matching = [message for where, message in error.errors if where == path]
    assert matching, f"no error at {path!r}: {error.errors}"
    assert any(fragment in message for message in matching), error.errors
    # The exception text carries the file and the path, so a log line alone is enough to fix the file.
    assert str(error).startswith("sample.yaml: ")
    assert (path or "(top level)") in str(error)
    details = error.as_details()
    assert {"location": "body", "path": path} in [{k: d[k] for k in ("location", "path")} for d in details]


@pytest.mark.parametrize("case", sorted(BAD_DEFINITIONS))
def test_bad_definition_file_stores_nothing(case: str, tmp_path: Path, dbsession: Any) -> None:
    _, path, _ = BAD_DEFINITIONS[case]
    file = write_yaml(tmp_path / "bad.yaml", _bad(case))
    with pytest.raises(services.DefinitionError) as caught:
        services.publish_file(dbsession, file)
    assert caught.value.source == str(file)
    assert path in [where for where, _ in caught.value.errors]
    assert _stored_rows(dbsession) == (0, 0)


@pytest.mark.parametrize(
    "case",
    [
        "unknown question type",
        "duplicate question id in another section",
        "duplicate section id",
        "relevance referring to a later question",
        "unknown key in a question",
        "translation mapping without the default language",
    ],
)
def test_cli_validate_reports_the_file_and_path(case: str, tmp_path: Path) -> None:
    _, path, fragment = BAD_DEFINITIONS[case]
    file = write_yaml(tmp_path / "bad.yaml", _bad(case))
    result = CliRunner().invoke(cli, ["instruments", "validate", str(file)])
    assert result.exit_code == 1, result.output
    assert f"{file} is not valid:" in result.output
    # Each problem as file:line:column: path: message.
    line = next(line for line in result.output.splitlines() if f": {path}: " in line)
    assert re.match(rf"{re.escape(str(file))}:\d+:\d+: ", line.strip()), line
    assert fragment in line


def test_every_problem_is_reported_not_only_the_first() -> None:
    data = minimal_definition()
    _consent(data)["type"] = "essay"
    _details(data)["promt"] = "x"
    data["activity"] = "RA0"
    with pytest.raises(services.DefinitionError) as caught:
        services.validate_definition(data)
    paths = {path for path, _ in caught.value.errors}
    assert {"sections[0].questions[0].type", "sections[0].questions[1]", "activity"} <= paths


def test_yaml_12_keeps_bare_yes_as_text_but_refuses_a_number_prompt(tmp_path: Path) -> None:
    # Files are read as YAML 1.2: a bare `yes` is text (YAML 1.1 made it true), while `12` is
    # still an integer and may not become a prompt.
    data = minimal_definition()
    _consent(data)["prompt"] = "@YES@"
    _details(data)["prompt"] = "@TWELVE@"
    text = yaml.safe_dump(data, sort_keys=False).replace("'@YES@'", "yes").replace("'@TWELVE@'", "12")
    assert "prompt: yes" in text and "prompt: 12" in text
    file = tmp_path / "yes.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(services.DefinitionError) as caught:
        services.validate_definition(services.read_definition_file(file), source=str(file))
    assert dict(caught.value.errors) == {
        "sections[0].questions[1].prompt": "must be text or a mapping of language code to text",
    }


def test_quoted_yes_is_text(tmp_path: Path) -> None:
    data = minimal_definition()
    _consent(data)["prompt"] = "yes"
    file = write_yaml(tmp_path / "quoted.yaml", data)
    assert "prompt: 'yes'" in file.read_text(encoding="utf-8")
    definition = services.validate_definition(services.read_definition_file(file))
    assert _consent(definition)["prompt"] == {"en": "yes"}


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_number_bound_is_refused(tmp_path: Path, value: str) -> None:
    data = minimal_definition()
    _sub_question(data)["max"] = "@BOUND@"
    file = tmp_path / "bound.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False).replace("'@BOUND@'", value), encoding="utf-8")
    with pytest.raises(services.DefinitionError) as caught:
        services.validate_definition(services.read_definition_file(file))
    assert caught.value.errors[0][0] == "sections[1].sections[0].questions[0].max"
    assert "finite" in caught.value.errors[0][1]


def test_sections_nested_too_deep_are_refused() -> None:
    data = minimal_definition()
    innermost: dict[str, Any] = _sub_section(data)
    for depth in range(5):
        child = {
            "id": f"deeper_{depth}",
            "title": "Deeper",
            "questions": [dict(_sub_question(data), id=f"q_{depth}")],
        }
        innermost["sections"] = [child]
        innermost = child
    with pytest.raises(services.DefinitionError) as caught:
        services.validate_definition(data)
    assert any("sections" in message for _, message in caught.value.errors)


# --- files ------------------------------------------------------------------------------------


def _file_error(file: Path) -> services.DefinitionError:
    with pytest.raises(services.DefinitionError) as caught:
        services.read_definition_file(file)
    assert caught.value.source == str(file)
    assert str(caught.value).startswith(f"{file}: ")
    return caught.value


def test_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text(
        "slug: broken\ntitle: Broken\nsections:\n  - id: a\n   title: misaligned\n", encoding="utf-8"
    )
    error = _file_error(file)
    [(path, message)] = error.errors
    assert path == ""
    assert message.startswith("malformed YAML: ")
    assert re.search(r"at line 5 column \d+$", message), message


def test_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "broken.json"
    file.write_text('{\n  "slug": "broken",\n  "title": \n}\n', encoding="utf-8")
    error = _file_error(file)
    assert error.errors == [("", "malformed JSON: Expecting value at line 4 column 1")]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("list.yaml", "- slug: a\n- slug: b\n"),
        ("scalar.yml", "just some text\n"),
        ("empty.yaml", ""),
        ("list.json", "[1, 2, 3]"),
        ("string.json", '"slug"'),
    ],
)
def test_file_that_is_not_a_mapping_is_refused(tmp_path: Path, name: str, content: str) -> None:
    file = tmp_path / name
    file.write_text(content, encoding="utf-8")
    error = _file_error(file)
    assert error.errors == [("", "the file must hold a mapping (slug, title, sections, ...)")]


@pytest.mark.parametrize("name", ["schedule.txt", "schedule.xml", "schedule", "schedule.yaml.bak"])
def test_unsupported_suffix_is_refused(tmp_path: Path, name: str) -> None:
    file = write_json(tmp_path / name, minimal_definition())
    error = _file_error(file)
    [(path, message)] = error.errors
    assert path == ""
    assert message.startswith("unsupported file type")
    assert ".yaml, .yml or .json" in message


def test_missing_file_is_reported(tmp_path: Path) -> None:
    error = _file_error(tmp_path / "absent.yaml")
    assert error.errors == [("", "file not found")]


def test_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes("slug: café\n".encode("latin-1"))
    error = _file_error(file)
    assert error.errors[0][1].startswith("not UTF-8 text")


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json", ".YAML"])
def test_every_supported_suffix_reads_the_same_definition(tmp_path: Path, suffix: str) -> None:
    data = minimal_definition()
    writer = write_json if suffix == ".json" else write_yaml
    file = writer(tmp_path / f"sample{suffix}", data)
    assert services.read_definition_file(file) == data


def test_cli_validate_reports_file_errors_and_valid_files_together(tmp_path: Path) -> None:
    good = write_yaml(tmp_path / "good.yaml", minimal_definition())
    broken = tmp_path / "broken.json"
    broken.write_text('{"slug": }', encoding="utf-8")
    odd = write_yaml(tmp_path / "odd.txt", minimal_definition())
    result = CliRunner().invoke(cli, ["instruments", "validate", str(good), str(broken), str(odd)])
    assert result.exit_code == 1
    expected_hash = services.content_hash(services.validate_definition(minimal_definition()))
    assert f"{good}: valid (sample-debrief, 5 questions, hash {expected_hash[:12]})" in result.output
    assert f"{broken} is not valid:" in result.output
    assert "malformed JSON: Expecting value at line 1 column 10" in result.output
    assert f"{odd} is not valid:" in result.output
    assert "unsupported file type '.txt'" in result.output


def test_cli_validate_needs_a_file() -> None:
    result = CliRunner().invoke(cli, ["instruments", "validate"])
    assert result.exit_code == 2
    assert "Missing argument" in result.output


# --- the real RA1 schedule --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ra1() -> dict[str, Any]:
    return services.validate_definition(services.read_definition_file(RA1_FILE), source=str(RA1_FILE))


def test_ra1_file_validates_through_the_cli() -> None:
    result = CliRunner().invoke(cli, ["instruments", "validate", str(RA1_FILE)])
    assert result.exit_code == 0, result.output
    assert f"{RA1_FILE}: valid ({RA1_SLUG}, " in result.output


def test_ra1_follows_the_outline_in_order(ra1: dict[str, Any]) -> None:
    outline = [
        (section["title"]["en"], [sub["title"]["en"] for sub in section["sections"]])
        for section in ra1["sections"]
    ]
    assert outline == [
        ("Public awareness", []),
        ("Government ministries/agencies", ["Capacity", "Budget", "Good practices"]),
        ("Policies and laws", ["Assessment", "Challenges and limitations", "Future developments"]),
        ("Law enforcement", ["Law enforcement mechanisms", "Challenges and limitations"]),
        ("Successes", []),
        ("Challenges", []),
    ]
    # Every section and sub-section asks something.
    for _, section in services._iter_sections(ra1):
        assert section["questions"] or section["sections"]


def test_ra1_metadata_records_agency_position_mode_and_consent(ra1: dict[str, Any]) -> None:
    metadata = {question["id"]: question for question in ra1["metadata"]}
    assert {"agency", "position", "mode", "consent_given"} <= set(metadata)
    assert metadata["agency"]["required"] is True
    assert metadata["position"]["required"] is False
    assert {choice["value"] for choice in metadata["mode"]["choices"]} == {"in_person", "virtual", "phone"}
    assert metadata["consent_given"]["type"] == "yes_no"
    assert metadata["consent_given"]["required"] is True
    assert metadata["consent_date"]["relevance"] == "$consent_given == true"


def test_ra1_is_english_and_portuguese_with_english_only_probes(ra1: dict[str, Any]) -> None:
    assert ra1["default_language"] == "en"
    assert ra1["languages"] == ["en", "pt"]
    questions = [question for _, question in services.iter_questions(ra1)]
    assert all(set(question["prompt"]) == {"en", "pt"} for question in questions)
    probes = [probe for question in questions for probe in question["probes"]]
    assert probes and all(set(probe) == {"en"} for probe in probes)


def test_ra1_json_and_yaml_spellings_hash_alike(tmp_path: Path, ra1: dict[str, Any]) -> None:
    as_json = tmp_path / "ra1.json"
    as_json.write_text(json.dumps(services.read_definition_file(RA1_FILE)), encoding="utf-8")
    reread = services.validate_definition(services.read_definition_file(as_json))
    assert reread == ra1
    assert services.content_hash(reread) == services.content_hash(ra1)
