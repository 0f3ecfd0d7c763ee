"""XLSForm workbooks (docs/xlsform.md): import compared field by field, refusals by sheet, row and
column, the round trip to the same content hash, the CLI commands and the workbook route."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import webtest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from instrument_samples import RA1_FILE, RA1_SLUG, minimal_definition
from openpyxl import Workbook, load_workbook
from sqlalchemy.orm import Session

from surveykit.cli import cli
from surveykit.instruments import services
from surveykit.instruments.xlsform import SheetProblem, read_xlsform, write_xlsform

Rows = list[list[Any]]


def workbook(
    survey: Rows, choices: Rows | None = None, settings_rows: Rows | None = None, **extra: Rows
) -> bytes:
    """A workbook with the given sheets, each a header row then data rows (None: an empty cell)."""
    book = Workbook()
    sheets = {"survey": survey, "choices": choices, "settings": settings_rows, **extra}
    book.remove(book.active)
    for name, rows in sheets.items():
        if rows is None:
            continue
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = BytesIO()
    book.save(out)
    return out.getvalue()


ENGLISH_SETTINGS = [
    ["form_id", "form_title", "default_language", "surveykit::activity"],
    ["school-visit", "School visit", "English (en)", "RA2"],
]


def imported(data: bytes) -> dict[str, Any]:
    raw, problems = read_xlsform(data)
    assert problems == [], [str(problem) for problem in problems]
    assert raw is not None
    return raw


def problems_of(data: bytes) -> list[tuple[str, int | None, str | None]]:
    raw, problems = read_xlsform(data)
    assert raw is None and problems
    assert all(isinstance(problem, SheetProblem) and problem.message for problem in problems)
    return [(problem.sheet, problem.row, problem.column) for problem in problems]


def one_problem(data: bytes) -> SheetProblem:
    raw, problems = read_xlsform(data)
    assert raw is None and len(problems) == 1, [str(problem) for problem in problems]
    return problems[0]


# --- every supported row type, one language in plain columns ----------------------------------


def test_a_single_language_workbook_imports_field_by_field() -> None:
    survey = [
        ["type", "name", "label", "hint", "required", "relevant", "appearance"],
        ["text", "visitor", "Name of the visitor", None, "yes", None, None],
        ["date", "visit_date", "Date of the visit", "As on the register", "TRUE", None, None],
        ["begin group", "school", "The school", None, None, None, None],
        ["note", "school_intro", "Ask the head teacher.", None, None, None, None],
        ["integer", "pupils", "How many pupils?", None, "no", None, None],
        ["decimal", "ratio", "Pupils per teacher", None, None, "${pupils} > 0", None],
        ["select_one yn", "library", "Is there a library?", None, None, None, None],
        ["select_multiple media", "media", "Which media are used?", None, None, "${library} = 'yes'", None],
        ["text", "remarks", "Remarks", None, None, "count-selected(${media}) >= 2", "multiline"],
        ["begin group", "staff", "Staff", None, None, None, None],
        ["text", "head", "Head teacher", None, None, "not(${remarks} = '')", None],
        ["end group", None, None, None, None, None, None],
        ["end group", "school", None, None, None, None, None],
    ]
    choices = [
        ["list_name", "name", "label"],
        ["yn", "yes", "Yes"],
        ["yn", "no", "No"],
        [None, None, None],
        ["media", "radio", "Radio"],
        ["media", "tv", "Television"],
    ]
    raw = imported(workbook(survey, choices, ENGLISH_SETTINGS))
    assert raw["slug"] == "school-visit"
    assert raw["title"] == {"en": "School visit"}
    assert raw["activity"] == "RA2"
    assert raw["default_language"] == "en"
    assert raw["languages"] == ["en"]
    assert "study" not in raw and "description" not in raw
    assert raw["metadata"] == [
        {"id": "visitor", "type": "short_text", "prompt": {"en": "Name of the visitor"}, "required": True},
        {
            "id": "visit_date",
            "type": "date",
            "prompt": {"en": "Date of the visit"},
            "notes": {"en": "As on the register"},
            "required": True,
        },
    ]
    [school] = raw["sections"]
    assert (school["id"], school["title"], school["intro"]) == (
        "school",
        {"en": "The school"},
        {"en": "Ask the head teacher."},
    )
    assert school["questions"] == [
        {"id": "pupils", "type": "number", "prompt": {"en": "How many pupils?"}, "required": False},
        {
            "id": "ratio",
            "type": "number",
            "prompt": {"en": "Pupils per teacher"},
            "relevance": "${pupils} > 0",
        },
        {
            "id": "library",
            "type": "single_choice",
            "prompt": {"en": "Is there a library?"},
            "choices": [{"value": "yes", "label": {"en": "Yes"}}, {"value": "no", "label": {"en": "No"}}],
        },
        {
            "id": "media",
            "type": "multiple_choice",
            "prompt": {"en": "Which media are used?"},
            "relevance": "${library} = 'yes'",
            "choices": [
                {"value": "radio", "label": {"en": "Radio"}},
                {"value": "tv", "label": {"en": "Television"}},
            ],
        },
        {
            "id": "remarks",
            "type": "long_text",
            "prompt": {"en": "Remarks"},
            "relevance": "count-selected(${media}) >= 2",
        },
    ]
    [staff] = school["sections"]
    assert staff == {
        "id": "staff",
        "title": {"en": "Staff"},
        "questions": [
            {
                "id": "head",
                "type": "short_text",
                "prompt": {"en": "Head teacher"},
                "relevance": "not(${remarks} = '')",
            }
        ],
    }
    services.validate_definition(raw)


def test_several_label_language_columns_and_surveykit_columns_import_field_by_field() -> None:
    survey = [
        [
            "type",
            "name",
            "label::English (en)",
            "label::Portuguese (pt)",
            "hint::English (en)",
            "surveykit::probe_1::English (en)",
            "surveykit::probe_1::Portuguese (pt)",
            "surveykit::probe_2",
            "surveykit::binds",
            "surveykit::type",
            "surveykit::min",
            "surveykit::max",
        ],
        [
            "text",
            "agency",
            "Agency",
            "Instituição",
            None,
            None,
            None,
            None,
            "participant.agency",
            None,
            None,
            None,
        ],
        ["begin group", "main", "Main", "Principal", None, None, None, None, None, None, None, None],
        [
            "select_one surveykit-yes-no",
            "consent",
            "Consent?",
            "Consentimento?",
            None,
            None,
            None,
            None,
            None,
            "yes_no",
            None,
            None,
        ],
        [
            "integer",
            "people",
            "How many?",
            "Quantos?",
            "Count adults only",
            "Who?",
            "Quem?",
            "Since when?",
            None,
            None,
            0,
            "12.5",
        ],
        ["end group", None, None, None, None, None, None, None, None, None, None, None],
    ]
    settings_rows = [
        [
            "form_id",
            "form_title",
            "form_title::Portuguese (pt)",
            "default_language",
            "surveykit::activity",
            "surveykit::study",
            "surveykit::description::Portuguese (pt)",
            "surveykit::description",
        ],
        [
            "two-languages",
            "Two languages",
            "Duas línguas",
            "English (en)",
            "RA1",
            "ocsea",
            "Descrição",
            "Description",
        ],
    ]
    raw = imported(workbook(survey, [["list_name", "name", "label"]], settings_rows))
    assert raw["title"] == {"en": "Two languages", "pt": "Duas línguas"}
    assert raw["description"] == {"en": "Description", "pt": "Descrição"}
    assert raw["study"] == "ocsea"
    assert raw["languages"] == ["en", "pt"]
    assert raw["metadata"] == [
        {
            "id": "agency",
            "type": "short_text",
            "prompt": {"en": "Agency", "pt": "Instituição"},
            "binds": "participant.agency",
        }
    ]
    [main] = raw["sections"]
    assert main["title"] == {"en": "Main", "pt": "Principal"}
    consent, people = main["questions"]
    assert consent == {
        "id": "consent",
        "type": "yes_no",
        "prompt": {"en": "Consent?", "pt": "Consentimento?"},
    }
    assert people == {
        "id": "people",
        "type": "number",
        "prompt": {"en": "How many?", "pt": "Quantos?"},
        "notes": {"en": "Count adults only"},
        "probes": [{"en": "Who?", "pt": "Quem?"}, {"en": "Since when?"}],
        "min": 0,
        "max": 12.5,
    }
    assert isinstance(people["min"], int)
    services.validate_definition(raw)


def test_a_workbook_in_one_named_language_needs_no_default_language_setting() -> None:
    survey = [
        ["type", "name", "label::Portuguese (pt)"],
        ["begin group", "s", "Secção"],
        ["text", "q", "Pergunta"],
        ["end group", None, None],
    ]
    settings_rows = [
        ["form_id", "form_title::Portuguese (pt)", "surveykit::activity"],
        ["so-pt", "Só português", "RA3"],
    ]
    raw = imported(workbook(survey, None, settings_rows))
    assert (raw["default_language"], raw["languages"], raw["title"]) == ("pt", ["pt"], {"pt": "Só português"})


# --- refusals, by sheet, row and column ----------------------------------------------------------

HEADER = ["type", "name", "label"]
GROUP = ["begin group", "g", "Group"]
END = ["end group", None, None]


def _in_group(*rows: list[Any], header: list[str] = HEADER) -> Rows:
    return [header, GROUP, *rows, END]


@pytest.mark.parametrize(
    ("survey", "where", "message"),
    [
        (
            _in_group(["geopoint", "where", "Where?"]),
            ("survey", 3, "type"),
            "type `geopoint` is not supported",
        ),
        (_in_group(["calculate", "c", None]), ("survey", 3, "type"), "type `calculate` is not supported"),
        (_in_group(["image", "photo", "Photo"]), ("survey", 3, "type"), "type `image` is not supported"),
        (_in_group(["start", "start", None]), ("survey", 3, "type"), "type `start` is not supported"),
        (
            _in_group(["begin repeat", "r", "R"]),
            ("survey", 3, "type"),
            "type `begin repeat` is not supported",
        ),
        (
            _in_group(["integer", "n", "N", ". > 0"], header=[*HEADER, "constraint"]),
            ("survey", 3, "constraint"),
            "column `constraint` is not supported",
        ),
        (
            _in_group(["text", "t", "T", "5"], header=[*HEADER, "default"]),
            ("survey", 3, "default"),
            "column `default` is not supported",
        ),
        (
            _in_group(["integer", "n", "N", "numbers"], header=[*HEADER, "appearance"]),
            ("survey", 3, "appearance"),
            "appearance `numbers` is not supported",
        ),
        (
            _in_group(["text", "t", "T", "sometimes"], header=[*HEADER, "required"]),
            ("survey", 3, "required"),
            "write yes or no",
        ),
        (_in_group(["select_one yn or_other", "s", "S"]), ("survey", 3, "type"), "or_other is not supported"),
        (
            _in_group(["select_one missing", "s", "S"]),
            ("survey", 3, "type"),
            "choice list `missing` has no rows",
        ),
        (
            _in_group(["text", "t", "T"], ["note", "n", "Late note"]),
            ("survey", 4, "type"),
            "first row of a group",
        ),
        ([HEADER, GROUP, ["text", "t", "T"]], ("survey", 2, "type"), "group `g` has no `end group`"),
        ([HEADER, ["end group", None, None]], ("survey", 2, "type"), "without a `begin group`"),
        (
            [HEADER, GROUP, ["text", "t", "T"], END, ["text", "late", "Late"]],
            ("survey", 5, "type"),
            "a question outside any group after the first group",
        ),
        (
            _in_group(["begin group", "sub", "Sub"], ["text", "a", "A"], END, ["text", "after", "After"]),
            ("survey", 6, "type"),
            "a question after a sub-group",
        ),
        (_in_group(["text", None, "No name"]), ("survey", 3, "name"), "a question needs a name"),
        (
            _in_group(["text", "t", "T", "quietly"], header=[*HEADER, "surveykit::type"]),
            ("survey", 3, "surveykit::type"),
            "quietly",
        ),
        # Problems validate_definition finds are placed back on their row and column.
        (
            _in_group(["text", "a", "A"], ["text", "b", "B", "${a} != '' and"], header=[*HEADER, "relevant"]),
            ("survey", 4, "relevant"),
            "bad relevance expression",
        ),
        (
            _in_group(
                ["text", "b", "B", "${later} = 1"],
                ["text", "later", "Later", None],
                header=[*HEADER, "relevant"],
            ),
            ("survey", 3, "relevant"),
            "not an earlier question",
        ),
        (_in_group(["text", "a", "A"], ["text", "a", "Again"]), ("survey", 4, "name"), "is already used"),
        (_in_group(["text", "Bad-Id", "A"]), ("survey", 3, "name"), "must start with a lower-case letter"),
        (_in_group(["text", "a", None]), ("survey", 3, "label"), "prompt"),
        (
            _in_group(["text", "a", "A", "participant.age"], header=[*HEADER, "surveykit::binds"]),
            ("survey", 3, "surveykit::binds"),
            "must be one of",
        ),
        (
            _in_group(["decimal", "a", "A", "lots"], header=[*HEADER, "surveykit::min"]),
            ("survey", 3, "surveykit::min"),
            "is not a number",
        ),
        (
            _in_group(["text", "a", "A", "3"], header=[*HEADER, "surveykit::max"]),
            ("survey", 3, "surveykit::max"),
            "only number questions",
        ),
    ],
)
def test_refusals_name_sheet_row_and_column(survey: Rows, where: tuple[str, int, str], message: str) -> None:
    choices = [["list_name", "name", "label"], ["yn", "yes", "Yes"]]
    problem = one_problem(workbook(survey, choices, ENGLISH_SETTINGS))
    assert (problem.sheet, problem.row, problem.column) == where
    assert message in problem.message
    assert str(problem).startswith(f"{where[0]} row {where[1]}, column ")


def test_column_letters_are_given_with_the_header() -> None:
    survey = _in_group(["text", "t", "T", "x > 1"], header=[*HEADER, "constraint"])
    problem = one_problem(workbook(survey, None, ENGLISH_SETTINGS))
    assert (problem.column, problem.letter) == ("constraint", "D")
    assert (
        str(problem) == "survey row 3, column D (constraint): "
        "column `constraint` is not supported (surveykit has no equivalent)"
    )
    assert problem.as_dict() == {
        "sheet": "survey",
        "row": 3,
        "column": "constraint",
        "message": problem.message,
    }


def test_choice_problems_point_at_the_choices_sheet() -> None:
    survey = _in_group(["select_one colours", "colour", "Colour"])
    choices = [
        ["list_name", "name", "label", "filter"],
        ["colours", "red", "Red", None],
        ["colours", "Blue!", "Blue", None],
        ["colours", "green", "Green", "x"],
    ]
    where = problems_of(workbook(survey, choices, ENGLISH_SETTINGS))
    assert ("choices", 4, "filter") in where
    # Reported before validation, so the invalid value waits for the next import.
    assert len(where) == 1
    choices[3][3] = None
    problem = one_problem(workbook(survey, choices, ENGLISH_SETTINGS))
    assert (problem.sheet, problem.row, problem.column) == ("choices", 3, "name")


def test_settings_problems_point_at_the_settings_sheet() -> None:
    survey = _in_group(["text", "t", "T"])
    bad = [
        ["form_id", "form_title", "default_language", "surveykit::activity", "style"],
        ["validate", "T", "English (en)", "RA10", "pages"],
    ]
    where = problems_of(workbook(survey, None, bad))
    assert where == [("settings", 2, "style")]
    bad[1][4] = None
    assert sorted(problems_of(workbook(survey, None, bad))) == [
        ("settings", 2, "form_id"),
        ("settings", 2, "surveykit::activity"),
    ]
    no_language = [["form_id", "form_title", "surveykit::activity"], ["plain", "T", "RA1"]]
    assert problems_of(workbook(survey, None, no_language)) == [("settings", 2, "default_language")]


def test_a_workbook_without_sections_or_not_a_workbook_is_refused() -> None:
    assert problems_of(workbook([HEADER, ["text", "t", "T"]], None, ENGLISH_SETTINGS)) == [
        ("survey", None, None)
    ]
    assert read_xlsform(b"slug: not a workbook")[0] is None
    [problem] = read_xlsform(b"PK\x03\x04 broken")[1]
    assert problem.sheet == "" and "workbook" in problem.message
    entities = workbook(
        _in_group(["text", "t", "T"]), None, ENGLISH_SETTINGS, entities=[["list_name"], ["people"]]
    )
    assert problems_of(entities) == [("entities", None, None)]


# --- round trip --------------------------------------------------------------------------------


def round_trip(definition: dict[str, Any]) -> dict[str, Any]:
    raw = imported(write_xlsform(definition))
    return services.validate_definition(raw)


def test_the_ra1_schedule_round_trips_to_the_same_content_hash() -> None:
    definition = services.validate_definition(services.read_definition_file(RA1_FILE))
    again = round_trip(definition)
    assert again == definition
    assert services.content_hash(again) == services.content_hash(definition)


def test_the_written_workbook_is_an_xlsform_with_language_columns() -> None:
    definition = services.validate_definition(services.read_definition_file(RA1_FILE))
    book = load_workbook(BytesIO(write_xlsform(definition)))
    assert book.sheetnames == ["survey", "choices", "settings"]
    header = [cell.value for cell in book["survey"][1]]
    assert header[:4] == ["type", "name", "label::English (en)", "label::Portuguese (pt)"]
    assert "hint::English (en)" in header and "surveykit::binds" in header
    assert book["survey"]["A2"].value == "text" and book["survey"]["B2"].value == "agency"
    settings_row = dict(
        zip([c.value for c in book["settings"][1]], [c.value for c in book["settings"][2]], strict=True)
    )
    assert settings_row["form_id"] == RA1_SLUG and settings_row["default_language"] == "English (en)"


def test_text_that_looks_like_a_formula_stays_text() -> None:
    data = minimal_definition()
    data["sections"][0]["questions"][1]["prompt"] = "=SUM(A1:A3) is not a formula here"
    data["sections"][1]["sections"][0]["questions"][0]["max"] = 10.0
    definition = services.validate_definition(data)
    again = round_trip(definition)
    assert again == definition
    assert isinstance(again["sections"][1]["sections"][0]["questions"][0]["max"], float)


TEXT = (
    st.text(
        alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:?!'\"()=-+/ãçéñ€ក់ไทย\n"),
        min_size=1,
        max_size=30,
    )
    .map(str.strip)
    .filter(bool)
)


@st.composite
def instruments(draw: st.DrawFn) -> dict[str, Any]:
    languages = draw(st.permutations(["en", "pt", "fr"]).map(lambda langs: langs[: draw(st.integers(1, 3))]))
    default = draw(st.sampled_from(languages))
    counter = iter(range(1000))

    def text() -> dict[str, str]:
        others = draw(st.lists(st.sampled_from(languages), unique=True))
        return {language: draw(TEXT) for language in {default, *others}}

    asked: list[tuple[str, str]] = []

    def question() -> dict[str, Any]:
        qtype = draw(
            st.sampled_from(
                ["long_text", "short_text", "single_choice", "multiple_choice", "yes_no", "number", "date"]
            )
        )
        qid = f"q{next(counter)}"
        out: dict[str, Any] = {"id": qid, "type": qtype, "prompt": text()}
        if draw(st.booleans()):
            out["notes"] = text()
        out["probes"] = [text() for _ in range(draw(st.integers(0, 2)))]
        out["required"] = draw(st.booleans())
        if qtype in ("single_choice", "multiple_choice"):
            values = draw(
                st.lists(
                    st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True), min_size=1, max_size=4, unique=True
                )
            )
            out["choices"] = [{"value": value, "label": text()} for value in values]
        if qtype == "number":
            bounds = sorted(
                draw(
                    st.lists(
                        st.integers(-1000, 1000)
                        | st.floats(-1000, 1000, allow_nan=False).map(lambda f: round(f, 3)),
                        min_size=2,
                        max_size=2,
                    )
                )
            )
            if draw(st.booleans()):
                out["min"] = bounds[0]
            if draw(st.booleans()):
                out["max"] = bounds[1]
        if asked and draw(st.booleans()):
            earlier, earlier_type = draw(st.sampled_from(asked))
            spelled = {
                "yes_no": [f"${earlier} == true", f"${{{earlier}}} = false"],
                "multiple_choice": [f"count(${earlier}) >= 1", f"count-selected(${{{earlier}}}) = 0"],
            }.get(
                earlier_type, [f"answered(${earlier})", f"${{{earlier}}} != ''", f"not(${{{earlier}}} = '')"]
            )
            out["relevance"] = draw(st.sampled_from(spelled))
        asked.append((qid, qtype))
        return out

    def section(depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {"id": f"s{next(counter)}", "title": text()}
        if draw(st.booleans()):
            out["intro"] = text()
        out["questions"] = [question() for _ in range(draw(st.integers(1, 3)))]
        out["sections"] = [section(depth + 1) for _ in range(draw(st.integers(0, 2 if depth < 2 else 0)))]
        return out

    definition: dict[str, Any] = {
        "slug": "generated",
        "title": text(),
        "activity": draw(st.sampled_from(["RA1", "RA4"])),
        "default_language": default,
        "languages": languages,
    }
    if draw(st.booleans()):
        definition["description"] = text()
    if draw(st.booleans()):
        definition["study"] = "ocsea"
    definition["metadata"] = [question() for _ in range(draw(st.integers(0, 2)))]
    definition["sections"] = [section(0) for _ in range(draw(st.integers(1, 3)))]
    return services.validate_definition(definition)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instruments())
def test_generated_instruments_round_trip_to_the_same_content_hash(definition: dict[str, Any]) -> None:
    again = round_trip(definition)
    assert services.content_hash(again) == services.content_hash(definition), (again, definition)


# --- CLI -----------------------------------------------------------------------------------------


class Runner:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url
        self.env = {"SURVEYKIT_DATA_DIR": str(data_dir), "SURVEYKIT_ENV": "test"}

    def __call__(self, *args: str) -> Any:
        return CliRunner().invoke(cli, ["--database-url", self.url, *args], env=self.env)


@pytest.fixture
def run(fresh_database: Callable[[], str], tmp_path: Path) -> Runner:
    runner = Runner(fresh_database(), tmp_path / "data")
    assert runner("db", "upgrade").exit_code == 0
    return runner


def test_cli_exports_imports_and_publishes_a_workbook(run: Runner, tmp_path: Path) -> None:
    published = run("instruments", "publish", str(RA1_FILE))
    assert published.exit_code == 0, published.output
    xlsx = tmp_path / "ra1.xlsx"
    exported = run("instruments", "export-xlsform", RA1_SLUG, "1", "-o", str(xlsx))
    assert exported.exit_code == 0, exported.output
    assert exported.output.strip() == f"{RA1_SLUG} version 1 written to {xlsx}"
    definition = services.validate_definition(services.read_definition_file(RA1_FILE))
    digest = services.content_hash(definition)

    checked = run("instruments", "import-xlsform", str(xlsx))
    assert checked.exit_code == 0, checked.output
    assert checked.output.strip() == f"{xlsx}: valid ({RA1_SLUG}, 28 questions, hash {digest[:12]})"

    out = tmp_path / "ra1.yaml"
    written = run("instruments", "import-xlsform", str(xlsx), "--out", str(out))
    assert written.exit_code == 0, written.output
    assert (
        services.content_hash(services.validate_definition(yaml.safe_load(out.read_text("utf-8")))) == digest
    )

    again = run("instruments", "import-xlsform", str(xlsx), "--publish")
    assert again.exit_code == 0, again.output
    assert again.output.strip() == f"{xlsx}: {RA1_SLUG} unchanged, still version 1"

    book = load_workbook(xlsx)
    book["settings"]["B2"].value = "RA1 schedule, edited in a spreadsheet"
    assert book["settings"]["A1"].value == "form_id" and book["settings"]["B1"].value == "form_title"
    book.save(xlsx)
    edited = run("instruments", "import-xlsform", str(xlsx), "--publish")
    assert edited.exit_code == 0, edited.output
    assert edited.output.strip() == f"{xlsx}: {RA1_SLUG} published as new version 2"


def test_cli_lists_sheet_problems_as_a_table_and_refuses_unknown_versions(
    run: Runner, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(workbook(_in_group(["geopoint", "where", "Where?"]), None, ENGLISH_SETTINGS))
    result = run("instruments", "import-xlsform", str(bad), "--publish")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == f"Error: {bad} is not valid:"
    assert lines[1].split() == ["sheet", "row", "column", "problem"]
    assert set(lines[2]) <= {"-", " "}
    assert lines[3].split()[:5] == ["survey", "3", "A", "(type)", "type"]
    assert "`geopoint` is not supported" in lines[3]
    assert run("instruments", "list").output.strip() == "no instruments published"

    missing = run("instruments", "export-xlsform", "nothing-here", "1", "-o", str(tmp_path / "x.xlsx"))
    assert missing.exit_code == 1 and "no instrument 'nothing-here'" in missing.output
    assert run("instruments", "publish", str(RA1_FILE)).exit_code == 0
    late = run("instruments", "export-xlsform", RA1_SLUG, "2", "-o", str(tmp_path / "x.xlsx"))
    assert late.exit_code == 1 and "has no version 2" in late.output
    assert not (tmp_path / "x.xlsx").exists()


# --- API -------------------------------------------------------------------------------------------

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _publish(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    definition = services.validate_definition(data)
    services.publish(session, definition)
    session.flush()
    return definition


def test_the_workbook_route_serves_a_version_that_imports_to_its_hash(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    definition = _publish(dbsession, services.read_definition_file(RA1_FILE))
    path = f"/api/v1/instruments/{RA1_SLUG}/versions/1.xlsx"
    assert testapp.get(path, status=401).json["code"]
    testapp.authorization = ("Bearer", accounts.token(accounts.user("reader")))
    response = testapp.get(path)
    assert response.content_type == XLSX
    assert response.headers["Content-Disposition"] == f'attachment; filename="{RA1_SLUG}-v1.xlsx"'
    again = services.validate_definition(imported(response.body))
    assert services.content_hash(again) == services.content_hash(definition)
    # The JSON form of the version is unchanged beside it.
    assert testapp.get(f"/api/v1/instruments/{RA1_SLUG}/versions/1").json["version"] == 1
    assert (
        testapp.get(f"/api/v1/instruments/{RA1_SLUG}/versions/2.xlsx", status=404).json["code"]
        == "version_not_found"
    )
    assert (
        testapp.get(f"/api/v1/instruments/{RA1_SLUG}/versions/x.xlsx", status=404).json["code"]
        == "version_not_found"
    )
    assert (
        testapp.get("/api/v1/instruments/nothing-here/versions/1.xlsx", status=404).json["code"]
        == "instrument_not_found"
    )


def test_the_workbook_route_keeps_to_the_callers_studies(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    data = minimal_definition("study-only")
    data["study"] = "ocsea"
    _publish(dbsession, data)
    path = "/api/v1/instruments/study-only/versions/1.xlsx"
    testapp.authorization = (
        "Bearer",
        accounts.token(accounts.user("outsider", "fieldworker", "other", ["KE"])),
    )
    assert testapp.get(path, status=403).content_type == "application/json"
    testapp.authorization = (
        "Bearer",
        accounts.token(accounts.user("insider", "fieldworker", "ocsea", ["KE"])),
    )
    assert imported(testapp.get(path).body)["slug"] == "study-only"
