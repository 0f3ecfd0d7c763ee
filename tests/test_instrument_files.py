"""Instrument files in (YAML 1.2, JSON, uploads), problems with line and column out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import webtest
from click.testing import CliRunner
from instrument_samples import minimal_definition
from sqlalchemy import select
from sqlalchemy.orm import Session
from support_db import bind_to_connection

from surveykit import make_app
from surveykit.audit.models import AuditEvent
from surveykit.cli import cli
from surveykit.instruments import files, services

VALIDATE = "/api/v1/instruments/validate"
PUBLISH = "/api/v1/instruments"

GOOD_YAML = """\
slug: yaml-sample
title: {en: Yes and no, pt: Sim e não}
activity: RA1
default_language: en
languages: [en, pt]
sections:
  - id: first
    title: First
    questions:
      - id: agreed
        type: single_choice
        prompt: on
        choices:
          - value: "yes"
            label: yes
          - value: "no"
            label: no
          - value: off_site
            label: off
      - id: why
        type: long_text
        prompt: Why?
        relevance: $agreed == 'no'
"""

# Each mistake sits on a line whose text is unique, so the expected line is found by searching.
BAD_YAML = """\
slug: bad-sample
title: Bad sample
activity: RA1
default_language: en
languages: [en]
sections:
  - id: first
    title: First
    questions:
      - id: agreed
        type: yes_no
        prompt: Agreed?
      - id: why
        type: long_text
        prompt: Why?
        relevance: $agreed == true and $later == 1
      - id: agreed
        type: short_text
        prompt: Again?
      - id: colour
        type: short_text
        colour: blue
        prompt: Colour?
      - id: count
        type: number
        prompt: How many?
        required: maybe
"""


def line_of(text: str, fragment: str) -> int:
    [number] = [number for number, line in enumerate(text.splitlines(), 1) if fragment in line]
    return number


def column_of(text: str, fragment: str) -> int:
    line = text.splitlines()[line_of(text, fragment) - 1]
    return line.index(fragment.strip()) + 1


def _errors(text: str, tmp_path: Path, name: str = "bad.yaml") -> services.DefinitionError:
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    with pytest.raises(services.DefinitionError) as caught:
        services.validate_definition(services.read_definition_file(file), source=str(file))
    return caught.value


# --- YAML 1.2 ---------------------------------------------------------------------------------


def test_yaml_12_keeps_no_yes_on_off_as_text(tmp_path: Path) -> None:
    file = tmp_path / "good.yaml"
    file.write_text(GOOD_YAML, encoding="utf-8")
    definition = services.validate_definition(services.read_definition_file(file))
    question = definition["sections"][0]["questions"][0]
    assert question["prompt"] == {"en": "on"}
    assert [choice["label"] for choice in question["choices"]] == [{"en": "yes"}, {"en": "no"}, {"en": "off"}]
    assert definition["title"] == {"en": "Yes and no", "pt": "Sim e não"}


def test_yaml_12_bare_no_as_a_choice_value_and_id(tmp_path: Path) -> None:
    text = GOOD_YAML.replace('value: "no"', "value: no").replace("id: why", "id: on")
    text = text.replace("slug: yaml-sample", "slug: yes")
    file = tmp_path / "bare.yaml"
    file.write_text(text, encoding="utf-8")
    definition = services.validate_definition(services.read_definition_file(file))
    assert definition["slug"] == "yes"
    assert definition["sections"][0]["questions"][0]["choices"][1]["value"] == "no"
    assert definition["sections"][0]["questions"][1]["id"] == "on"


def test_yaml_true_is_still_a_boolean(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("        prompt: Why?\n", "        prompt: Why?\n        required: true\n")
    file = tmp_path / "required.yaml"
    file.write_text(text, encoding="utf-8")
    definition = services.validate_definition(services.read_definition_file(file))
    assert definition["sections"][0]["questions"][1]["required"] is True


def test_json_and_yaml_of_the_same_content_hash_alike(tmp_path: Path) -> None:
    file = tmp_path / "good.yaml"
    file.write_text(GOOD_YAML, encoding="utf-8")
    from_yaml = services.validate_definition(services.read_definition_file(file))
    as_json = tmp_path / "good.json"
    as_json.write_text(json.dumps(services.read_definition_file(file)), encoding="utf-8")
    from_json = services.validate_definition(services.read_definition_file(as_json))
    assert services.content_hash(from_yaml) == services.content_hash(from_json)


def test_aliases_that_expand_too_far_are_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [*a{n - 1}, *a{n - 1}, *a{n - 1}, *a{n - 1}, *a{n - 1}]" for n in range(1, 10)]
    error = _errors("\n".join(lines) + "\n", tmp_path, "laughs.yaml")
    assert "expands to more than" in error.errors[0][1]


# --- line and column of problems --------------------------------------------------------------


def test_problems_carry_the_line_and_column_of_their_path(tmp_path: Path) -> None:
    problems = {(p["path"], p["message"][:30]): p for p in _errors(BAD_YAML, tmp_path).problems()}
    by_path: dict[str, list[dict[str, Any]]] = {}
    for problem in problems.values():
        by_path.setdefault(problem["path"], []).append(problem)

    # colander (shape) problems come first: only they are reported while the shape is wrong.
    [unknown] = by_path["sections[0].questions[3]"]
    assert "colour" in unknown["message"]
    assert (unknown["line"], unknown["column"]) == (line_of(BAD_YAML, "colour: blue"), 9)
    [wrong_type] = by_path["sections[0].questions[4].required"]
    assert (wrong_type["line"], wrong_type["column"]) == (line_of(BAD_YAML, "required: maybe"), 9)


def test_rule_problems_carry_the_line_of_their_path(tmp_path: Path) -> None:
    text = BAD_YAML.replace("        colour: blue\n", "").replace("required: maybe", "required: false")
    error = _errors(text, tmp_path)
    problems = error.problems()
    relevance = next(p for p in problems if p["path"] == "sections[0].questions[1].relevance")
    assert "$later" in relevance["message"]
    assert (relevance["line"], relevance["column"]) == (line_of(text, "relevance: $agreed"), 9)
    duplicate = next(p for p in problems if p["path"] == "sections[0].questions[2].id")
    assert "already used" in duplicate["message"]
    # The second `- id: agreed` is the duplicate: the key sits after "- " on that line.
    second = [n for n, line in enumerate(text.splitlines(), 1) if "- id: agreed" in line][1]
    assert (duplicate["line"], duplicate["column"]) == (second, 9)


def test_a_missing_field_points_at_its_mapping(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("        prompt: Why?\n", "")
    error = _errors(text, tmp_path)
    [problem] = error.problems()
    assert problem["path"] == "sections[0].questions[1].prompt"
    assert (problem["line"], problem["column"]) == (line_of(text, "- id: why"), 9)


def test_a_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("        prompt: Why?", "       prompt: Why?")
    file = tmp_path / "broken.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(services.DefinitionError) as caught:
        services.read_definition_file(file)
    [problem] = caught.value.problems()
    assert problem["line"] == line_of(text, "       prompt: Why?")
    assert problem["message"].startswith("malformed YAML")


def test_a_repeated_key_is_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("activity: RA1\n", "activity: RA1\nactivity: RA2\n")
    file = tmp_path / "twice.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(services.DefinitionError) as caught:
        services.read_definition_file(file)
    [problem] = caught.value.problems()
    assert problem["line"] == line_of(text, "activity: RA2")
    assert "duplicate key" in problem["message"]


def test_json_files_give_lines_too(tmp_path: Path) -> None:
    data = minimal_definition()
    data["sections"][0]["questions"][1]["relevance"] = "$nobody == 1"
    text = json.dumps(data, indent=2)
    error = _errors(text, tmp_path, "bad.json")
    [problem] = error.problems()
    assert problem["path"] == "sections[0].questions[1].relevance"
    assert problem["line"] == line_of(text, '"relevance": "$nobody == 1"')
    assert problem["column"] == column_of(text, '"relevance"')


def test_cli_validate_prints_file_line_column_path_message(tmp_path: Path) -> None:
    text = BAD_YAML.replace("        colour: blue\n", "").replace("required: maybe", "required: false")
    file = tmp_path / "bad.yaml"
    file.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["instruments", "validate", str(file)])
    assert result.exit_code == 1
    expected = (
        f"{file}:{line_of(text, 'relevance: $agreed')}:9: sections[0].questions[1].relevance: "
        "refers to $later, which is not an earlier question"
    )
    assert expected in [line.strip() for line in result.output.splitlines()]


def test_a_refused_type_change_names_the_line_of_the_type(dbsession: Session, tmp_path: Path) -> None:
    first = tmp_path / "v1.yaml"
    first.write_text(GOOD_YAML, encoding="utf-8")
    services.publish_file(dbsession, first)
    changed = GOOD_YAML.replace("type: long_text", "type: short_text")
    second = tmp_path / "v2.yaml"
    second.write_text(changed, encoding="utf-8")
    with pytest.raises(services.DefinitionError) as caught:
        services.publish_file(dbsession, second)
    [problem] = caught.value.problems()
    assert problem["path"] == "sections[0].questions[1].type"
    assert problem["line"] == line_of(changed, "type: short_text")


# --- format dispatch --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "filename", "fmt"),
    [
        ("application/yaml", None, "yaml"),
        ("text/yaml; charset=utf-8", None, "yaml"),
        ("application/x-yaml", None, "yaml"),
        ("application/json", None, "json"),
        ("application/octet-stream", "schedule.YML", "yaml"),
        ("", "schedule.json", "json"),
        (None, "form.xlsx", "xlsx"),
        (files.XLSX_TYPE, None, "xlsx"),
    ],
)
def test_file_format_by_type_then_name(content_type: str | None, filename: str | None, fmt: str) -> None:
    assert files.file_format(content_type, filename) == fmt


def test_xlsx_goes_to_the_registered_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(files.READERS, "xlsx", raising=False)
    with pytest.raises(files.UnsupportedFileType) as refused:
        files.read_instrument_file(b"PK\x03\x04", files.XLSX_TYPE)
    assert "application/yaml" in refused.value.message
    seen = []

    def reader(data: bytes) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        seen.append(data)
        return None, [{"sheet": "survey", "row": 3, "column": "type", "message": "unknown type"}]

    monkeypatch.setitem(files.READERS, "xlsx", reader)
    upload = files.read_instrument_file(b"PK\x03\x04", files.XLSX_TYPE)
    assert seen == [b"PK\x03\x04"]
    assert upload.definition is None and upload.problems[0]["row"] == 3


# --- the API ----------------------------------------------------------------------------------


@pytest.fixture
def api(testapp: webtest.TestApp, accounts: Any) -> webtest.TestApp:
    testapp.authorization = ("Bearer", accounts.token(accounts.user("reader")))
    return testapp


def _post(client: webtest.TestApp, url: str, body: bytes, content_type: str, status: int) -> Any:
    return client.post(url, body, headers={"Content-Type": content_type}, status=status)


def _envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    body = response.json
    assert response.content_type == "application/json"
    assert set(body) == {"status", "code", "message", "details"}
    assert (body["status"], body["code"]) == (status, code)
    return body


@pytest.mark.parametrize("content_type", sorted(files.YAML_TYPES))
def test_validate_takes_raw_yaml(api: webtest.TestApp, content_type: str) -> None:
    response = _post(api, VALIDATE, GOOD_YAML.encode(), content_type, 200)
    assert response.json["valid"] is True and response.json["slug"] == "yaml-sample"
    assert response.json["translations"]["pt"]["missing"][0]["path"] == "sections[0].title"
    assert api.get(PUBLISH).json == {"instruments": []}


def test_validate_answers_yaml_problems_with_lines(api: webtest.TestApp) -> None:
    text = BAD_YAML.replace("        colour: blue\n", "").replace("required: maybe", "required: false")
    body = _envelope(_post(api, VALIDATE, text.encode(), "application/yaml", 422), 422, "invalid_input")
    relevance = next(d for d in body["details"] if d["path"] == "sections[0].questions[1].relevance")
    assert relevance["location"] == "body"
    assert (relevance["line"], relevance["column"]) == (line_of(text, "relevance: $agreed"), 9)


def test_validate_takes_raw_json_with_lines(api: webtest.TestApp) -> None:
    data = minimal_definition()
    data["sections"][0]["questions"][1]["relevance"] = "$nobody == 1"
    text = json.dumps(data, indent=2)
    body = _envelope(_post(api, VALIDATE, text.encode(), "application/json", 422), 422, "invalid_input")
    [detail] = body["details"]
    assert detail["line"] == line_of(text, '"relevance": "$nobody == 1"')


def test_validate_takes_a_multipart_yaml_file(api: webtest.TestApp) -> None:
    response = api.post(VALIDATE, upload_files=[("file", "schedule.yaml", GOOD_YAML.encode())])
    assert response.json["slug"] == "yaml-sample"
    # A part's own content type wins over its name.
    response = api.post(
        VALIDATE,
        upload_files=[("file", "schedule.txt", GOOD_YAML.encode(), "application/yaml")],
    )
    assert response.json["slug"] == "yaml-sample"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "fragment"),
    [
        (b"", "application/yaml", 400, "bad_request", "empty"),
        (b"  \n", "application/yaml", 400, "bad_request", "empty"),
        (b"slug: caf\xe9\n", "application/yaml", 400, "bad_request", "UTF-8"),
        (b"- a\n- b\n", "application/yaml", 400, "bad_request", "mapping"),
        (b"slug: [unclosed\n", "application/yaml", 400, "bad_request", "malformed YAML"),
        (GOOD_YAML.encode(), "text/plain", 415, "unsupported_media_type", "application/yaml"),
        (b"PK\x03\x04", files.XLSX_TYPE, 422, "invalid_input", "not a readable"),
    ],
)
def test_unreadable_uploads_are_clear_errors_that_change_nothing(
    api: webtest.TestApp, body: bytes, content_type: str, status: int, code: str, fragment: str
) -> None:
    answer = _envelope(_post(api, VALIDATE, body, content_type, status), status, code)
    assert fragment in answer["message"]
    assert api.get(PUBLISH).json == {"instruments": []}


def test_a_syntax_error_in_an_upload_names_its_line(api: webtest.TestApp) -> None:
    response = _post(api, VALIDATE, b"slug: a\ntitle: [x\n", "application/yaml", 400)
    answer = _envelope(response, 400, "bad_request")
    assert answer["details"][0]["line"] >= 2


def test_multipart_without_a_file_part_is_400(api: webtest.TestApp) -> None:
    answer = _envelope(
        api.post(VALIDATE, upload_files=[("other", "x.yaml", GOOD_YAML.encode())], status=400),
        400,
        "bad_request",
    )
    assert "'file'" in answer["message"]
    # A plain form (not multipart) is no file at all.
    _envelope(api.post(VALIDATE, {"file": "slug: x"}, status=415), 415, "unsupported_media_type")


def test_multipart_with_a_text_field_named_file_is_400(api: webtest.TestApp) -> None:
    response = api.post(
        VALIDATE,
        params=[("file", "slug: x")],
        upload_files=[("other", "x.yaml", b"a: b")],
        status=400,
    )
    assert "must be a file" in _envelope(response, 400, "bad_request")["message"]


def test_multipart_file_of_unknown_type_is_415(api: webtest.TestApp) -> None:
    response = api.post(VALIDATE, upload_files=[("file", "schedule.doc", b"slug: x")], status=415)
    assert "schedule.doc" in _envelope(response, 415, "unsupported_media_type")["message"]


def test_a_yaml_upload_over_the_body_limit_is_413(
    settings: dict[str, Any], engine: Any, connection: Any, accounts: Any
) -> None:
    small = make_app({**settings, "surveykit.engine": engine, "surveykit.max_body_bytes": 300})
    bind_to_connection(small.registry, connection)
    client = webtest.TestApp(small, extra_environ={"HTTP_HOST": "surveykit.test"})
    client.authorization = ("Bearer", accounts.token(accounts.user("reader")))
    _envelope(_post(client, VALIDATE, GOOD_YAML.encode(), "application/yaml", 413), 413, "body_too_large")
    response = client.post(VALIDATE, upload_files=[("file", "s.yaml", GOOD_YAML.encode())], status=413)
    _envelope(response, 413, "body_too_large")


def _publish_events(dbsession: Session) -> list[tuple[str, str, str | None]]:
    dbsession.expire_all()
    rows = dbsession.execute(
        select(AuditEvent.action, AuditEvent.outcome, AuditEvent.target)
        .where(AuditEvent.action == "instrument.publish")
        .order_by(AuditEvent.id)
    )
    return [tuple(row) for row in rows]


def _study_yaml(study: str) -> bytes:
    return GOOD_YAML.replace("activity: RA1\n", f"activity: RA1\nstudy: {study}\n").encode()


@pytest.mark.parametrize("how", ["raw", "multipart", "json"])
def test_publishing_a_file_is_authorised_and_audited_like_json(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session, how: str
) -> None:
    def send(headers: dict[str, str], status: int) -> Any:
        body = _study_yaml("ocsea")
        if how == "raw":
            yaml_headers = {**headers, "Content-Type": "text/yaml"}
            return testapp.post(PUBLISH, body, headers=yaml_headers, status=status)
        if how == "multipart":
            upload = [("file", "s.yaml", body)]
            return testapp.post(PUBLISH, upload_files=upload, headers=headers, status=status)
        raw = dict(_load(body))
        return testapp.post_json(PUBLISH, raw, headers=headers, status=status)

    accounts.study("other")
    # A coordinator of another study is refused, and the refusal is audited.
    send(accounts.headers("coordinator", study="other"), 403)
    assert _publish_events(dbsession) == [("instrument.publish", "refused", "yaml-sample")]
    # A reader without grants is refused before the body is read.
    testapp.authorization = None
    response = send({"Authorization": f"Bearer {accounts.token(accounts.user('reader2'))}"}, 403)
    assert response.json["code"] == "forbidden"
    # The study's coordinator publishes; the publication is audited.
    response = send(accounts.headers("coordinator", study="ocsea"), 201)
    assert response.json["version"] == 1 and response.json["created"] is True
    assert _publish_events(dbsession)[-1] == ("instrument.publish", "success", "yaml-sample@1")
    # The same content again changes nothing and is not audited again.
    assert send(accounts.headers("coordinator", study="ocsea"), 200).json["created"] is False
    assert len([e for e in _publish_events(dbsession) if e[1] == "success"]) == 1


def _load(body: bytes) -> dict[str, Any]:
    data, _ = files.parse_text(body.decode(), "yaml")
    return data


def test_publish_conflict_from_an_upload_names_the_line(testapp: webtest.TestApp, accounts: Any) -> None:
    admin = accounts.headers("admin")
    yaml_headers = {**admin, "Content-Type": "application/yaml"}
    testapp.post(PUBLISH, GOOD_YAML.encode(), headers=yaml_headers, status=201)
    changed = GOOD_YAML.replace("type: long_text", "type: short_text")
    response = testapp.post(
        PUBLISH, upload_files=[("file", "v2.yaml", changed.encode())], headers=admin, status=409
    )
    [detail] = _envelope(response, 409, "conflict")["details"]
    assert detail["path"] == "sections[0].questions[1].type"
    assert detail["line"] == line_of(changed, "type: short_text")


def test_yaml_beyond_the_yaml_limit_is_413_and_json_of_that_size_is_read(
    api: webtest.TestApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "MAX_YAML_BYTES", 200)
    response = _post(api, VALIDATE, GOOD_YAML.encode(), "application/yaml", 413)
    assert "at most 200 bytes" in _envelope(response, 413, "body_too_large")["message"]
    # JSON of any size within the body limit is read; beyond the YAML limit, problems carry paths only.
    data = minimal_definition()
    data["sections"][0]["questions"][1]["relevance"] = "$nobody == 1"
    body = json.dumps(data, indent=2).encode()
    [detail] = _envelope(_post(api, VALIDATE, body, "application/json", 422), 422, "invalid_input")["details"]
    assert detail["path"] == "sections[0].questions[1].relevance" and "line" not in detail


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("slug: !!python/object:os.system ls\n", "tagged"),
        ("slug: !!binary aGVsbG8=\n", "bytes"),
        ("a: " + "[" * 100 + "]" * 100 + "\n", "levels"),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "deeper"),
    ],
)
def test_yaml_beyond_plain_data_is_400(api: webtest.TestApp, text: str, fragment: str) -> None:
    answer = _envelope(_post(api, VALIDATE, text.encode(), "application/yaml", 400), 400, "bad_request")
    assert fragment in answer["message"]


def test_an_empty_uploaded_file_is_400(api: webtest.TestApp) -> None:
    response = api.post(VALIDATE, upload_files=[("file", "empty.yaml", b"")], status=400)
    assert "empty" in _envelope(response, 400, "bad_request")["message"]
    response = api.post(VALIDATE, upload_files=[("file", "empty.json", b"", "application/json")], status=400)
    assert "empty" in _envelope(response, 400, "bad_request")["message"]


def test_an_xlsform_workbook_is_validated_raw_or_as_a_multipart_file(api: webtest.TestApp) -> None:
    from instrument_samples import minimal_definition

    from surveykit.instruments import services
    from surveykit.instruments.xlsform import write_xlsform

    definition = services.validate_definition(minimal_definition("sheet-sample"))
    workbook = write_xlsform(definition)
    answer = _post(api, VALIDATE, workbook, files.XLSX_TYPE, 200).json
    assert answer["slug"] == "sheet-sample"
    assert answer["content_hash"] == services.content_hash(definition)
    answer = api.post(VALIDATE, upload_files=[("file", "sheet-sample.xlsx", workbook)]).json
    assert answer["content_hash"] == services.content_hash(definition)
    assert api.get(PUBLISH).json == {"instruments": []}
