"""Publishing immutable versions: the services and `surveykit instruments publish|list|retire`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from instrument_samples import RA1_FILE, RA1_SLUG, minimal_definition, reversed_keys, write_json, write_yaml
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from surveykit.cli import cli
from surveykit.instruments import services
from surveykit.instruments.models import Instrument, InstrumentVersion


def _valid(data: dict[str, Any]) -> dict[str, Any]:
    return services.validate_definition(data)


def _versions(session: Session, slug: str = "sample-debrief") -> list[tuple[int, str]]:
    return list(
        session.execute(
            select(InstrumentVersion.version, InstrumentVersion.content_hash)
            .join(Instrument)
            .where(Instrument.slug == slug)
            .order_by(InstrumentVersion.version)
        )
    )


def _version_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(InstrumentVersion))


def _people(data: dict[str, Any]) -> dict[str, Any]:
    return data["sections"][1]["sections"][0]["questions"][0]


def test_first_publish_is_version_1(dbsession: Session) -> None:
    definition = _valid(minimal_definition())
    result = services.publish(dbsession, definition, "tester")
    assert result == services.PublishResult("sample-debrief", 1, services.content_hash(definition), True)
    instrument = services.get_instrument(dbsession, "sample-debrief")
    assert (instrument.title, instrument.activity, instrument.current_version) == ("Sample debrief", "RA1", 1)
    assert instrument.retired is False
    [stored] = instrument.versions
    assert (stored.version, stored.content_hash, stored.published_by) == (1, result.content_hash, "tester")
    assert stored.definition == definition
    assert stored.published_at.tzinfo is not None


def test_identical_content_changes_nothing(dbsession: Session) -> None:
    first = services.publish(dbsession, _valid(minimal_definition()))
    again = services.publish(dbsession, _valid(minimal_definition()))
    assert again == services.PublishResult(first.slug, 1, first.content_hash, created=False)
    assert _version_count(dbsession) == 1


def test_reformatted_files_are_the_same_content(dbsession: Session, tmp_path: Path) -> None:
    data = minimal_definition()
    first = services.publish_file(dbsession, write_yaml(tmp_path / "sample.yaml", data))
    assert first.created

    as_json = services.publish_file(dbsession, write_json(tmp_path / "sample.json", reversed_keys(data)))
    # Plain strings and single-language mappings in the default language are the same text.
    spelled_out = minimal_definition()
    spelled_out["sections"][1]["title"] = {"en": "Second"}
    spelled_out["sections"][0]["questions"][1]["probes"] = [{"en": "Who was there?"}]
    spelled_out["sections"][0]["title"] = {"pt": "Primeira", "en": "First"}
    commented = tmp_path / "commented.yml"
    commented.write_text(
        "# a comment changes nothing\n"
        + write_yaml(tmp_path / "x.yaml", spelled_out).read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    as_yml = services.publish_file(dbsession, commented)

    for result in (as_json, as_yml):
        assert (result.version, result.content_hash, result.created) == (1, first.content_hash, False)
    assert _versions(dbsession) == [(1, first.content_hash)]


def test_changed_content_is_the_next_version(dbsession: Session) -> None:
    first = services.publish(dbsession, _valid(minimal_definition()))
    data = minimal_definition()
    data["sections"][0]["questions"][1]["probes"].append("What happened next?")
    second = services.publish(dbsession, _valid(data))
    assert (second.version, second.created) == (2, True)
    assert second.content_hash != first.content_hash
    assert _versions(dbsession) == [(1, first.content_hash), (2, second.content_hash)]
    assert services.get_instrument(dbsession, "sample-debrief").current_version == 2
    # The first version is still there, unchanged.
    assert services.load_definition(dbsession, "sample-debrief", 1) == _valid(minimal_definition())


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d["sections"].reverse(), id="order"),
        pytest.param(lambda d: d["title"].update(pt="Outro título"), id="translation"),
        pytest.param(
            lambda d: d["sections"][0]["questions"][1].update(relevance="$consent == false"), id="relevance"
        ),
        pytest.param(lambda d: d["sections"][0]["questions"][2]["choices"].pop(), id="choices"),
        pytest.param(lambda d: d["sections"][0]["questions"].pop(1), id="dropped question"),
    ],
)
def test_any_content_change_is_a_new_version(dbsession: Session, change: Callable[[dict], Any]) -> None:
    services.publish(dbsession, _valid(minimal_definition()))
    data = minimal_definition()
    change(data)
    assert services.publish(dbsession, _valid(data)).version == 2


def test_a_question_keeps_its_type_across_versions(dbsession: Session) -> None:
    first = services.publish(dbsession, _valid(minimal_definition()))
    data = minimal_definition()
    data["sections"][0]["questions"][0]["type"] = "short_text"
    with pytest.raises(services.DefinitionError) as caught:
        services.publish(dbsession, _valid(data))
    [(path, message)] = caught.value.errors
    assert path == "sections[0].questions[0].type"
    assert "'consent'" in message and "yes_no" in message and "short_text" in message
    assert "version 1" in message
    assert _versions(dbsession) == [(1, first.content_hash)]
    assert services.get_instrument(dbsession, "sample-debrief").current_version == 1


def test_a_dropped_question_cannot_come_back_with_another_type(dbsession: Session) -> None:
    services.publish(dbsession, _valid(minimal_definition()))
    without_people = minimal_definition()
    without_people["sections"][1]["sections"][0]["questions"] = [
        {"id": "place", "type": "short_text", "prompt": "Where?"}
    ]
    assert services.publish(dbsession, _valid(without_people)).version == 2

    retyped = minimal_definition()
    _people(retyped).update(type="short_text")
    del _people(retyped)["min"], _people(retyped)["max"]
    with pytest.raises(services.DefinitionError) as caught:
        services.publish(dbsession, _valid(retyped))
    message = str(caught.value)
    assert "'people'" in message and "number" in message and "short_text" in message
    assert [version for version, _ in _versions(dbsession)] == [1, 2]

    # Coming back with the same type is fine.
    assert services.publish(dbsession, _valid(minimal_definition())).version == 3


def test_type_change_from_a_file_names_the_file(dbsession: Session, tmp_path: Path) -> None:
    services.publish_file(dbsession, write_yaml(tmp_path / "v1.yaml", minimal_definition()))
    data = minimal_definition()
    data["metadata"][0]["type"] = "long_text"
    file = write_yaml(tmp_path / "v2.yaml", data)
    with pytest.raises(services.DefinitionError) as caught:
        services.publish_file(dbsession, file)
    assert caught.value.source == str(file)
    assert str(caught.value).startswith(f"{file}: metadata[0].type: question 'agency' was short_text")


def test_two_instruments_are_versioned_separately(dbsession: Session) -> None:
    services.publish(dbsession, _valid(minimal_definition("one-instrument")))
    other = minimal_definition("other-instrument")
    other["sections"][0]["questions"][0]["type"] = "short_text"
    assert services.publish(dbsession, _valid(other)).version == 1


# --- immutability, enforced by the database ---------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(
            lambda: update(InstrumentVersion.__table__).values(content_hash="0" * 64), id="update-hash"
        ),
        pytest.param(
            lambda: update(InstrumentVersion.__table__).values(definition={"rewritten": True}),
            id="update-definition",
        ),
        pytest.param(lambda: delete(InstrumentVersion.__table__), id="delete"),
    ],
)
def test_the_database_refuses_to_change_a_published_version(
    dbsession: Session, connection: Any, statement: Callable[[], Any]
) -> None:
    result = services.publish(dbsession, _valid(minimal_definition()))
    dbsession.flush()
    with pytest.raises(DBAPIError, match="immutable"):
        with connection.begin_nested():
            connection.execute(statement())
    assert list(connection.execute(select(InstrumentVersion.version, InstrumentVersion.content_hash))) == [
        (1, result.content_hash)
    ]


# --- retiring ---------------------------------------------------------------------------------


def test_retire_hides_the_instrument_but_keeps_its_versions(dbsession: Session) -> None:
    services.publish(dbsession, _valid(minimal_definition("kept-instrument")))
    first = services.publish(dbsession, _valid(minimal_definition()))
    data = minimal_definition()
    data["title"]["en"] = "Sample debrief, revised"
    second = services.publish(dbsession, _valid(data))

    instrument = services.retire(dbsession, "sample-debrief")
    retired_at = instrument.retired_at
    assert retired_at is not None
    assert services.retire(dbsession, "sample-debrief").retired_at == retired_at

    assert [row["slug"] for row in services.list_instruments(dbsession)] == ["kept-instrument"]
    listed = {row["slug"]: row for row in services.list_instruments(dbsession, include_retired=True)}
    assert listed["sample-debrief"]["retired"] is True
    assert listed["sample-debrief"]["current_version"] == 2
    assert listed["sample-debrief"]["title"] == "Sample debrief, revised"

    ref = services.find_version(dbsession, "sample-debrief", 1)
    assert (ref.version, ref.content_hash, ref.retired) == (1, first.content_hash, True)
    assert services.find_version(dbsession, "sample-debrief").content_hash == second.content_hash
    assert services.load_definition(dbsession, "sample-debrief", 2) == _valid(data)


def test_retiring_an_unknown_instrument_fails(dbsession: Session) -> None:
    with pytest.raises(services.InstrumentNotFound):
        services.retire(dbsession, "never-published")


def test_list_instruments_fields(dbsession: Session) -> None:
    result = services.publish_file(dbsession, RA1_FILE)
    [row] = services.list_instruments(dbsession)
    assert row["slug"] == RA1_SLUG
    assert row["title"] == "RA1 interview schedule for government duty bearers"
    assert (row["activity"], row["current_version"], row["languages"]) == ("RA1", 1, ["en", "pt"])
    assert (row["default_language"], row["content_hash"], row["retired"]) == (
        "en",
        result.content_hash,
        False,
    )


def test_find_version_distinguishes_unknown_instrument_and_version(dbsession: Session) -> None:
    services.publish(dbsession, _valid(minimal_definition()))
    with pytest.raises(services.VersionNotFound):
        services.find_version(dbsession, "sample-debrief", 2)
    with pytest.raises(services.InstrumentNotFound):
        services.find_version(dbsession, "nobody", 1)
    with pytest.raises(services.InstrumentNotFound):
        services.find_version(dbsession, "nobody")


# --- the CLI, against a database it migrated itself --------------------------------------------


def _run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args])


@pytest.fixture
def cli_database(fresh_database: Callable[[], str]) -> str:
    url = fresh_database()
    result = _run(url, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "database at revision" in result.output
    return url


def test_cli_publish_list_and_retire(cli_database: str, tmp_path: Path) -> None:
    sample = write_yaml(tmp_path / "sample.yaml", minimal_definition())

    published = _run(cli_database, "instruments", "publish", str(RA1_FILE), str(sample))
    assert published.exit_code == 0, published.output
    assert f"{RA1_FILE}: {RA1_SLUG} published as new version 1" in published.output
    assert f"{sample}: sample-debrief published as new version 1" in published.output

    again = _run(cli_database, "instruments", "publish", str(sample))
    assert again.exit_code == 0, again.output
    assert f"{sample}: sample-debrief unchanged, still version 1" in again.output

    revised = minimal_definition()
    revised["title"]["en"] = "Sample debrief, revised"
    write_yaml(sample, revised)
    assert "published as new version 2" in _run(cli_database, "instruments", "publish", str(sample)).output

    listed = _run(cli_database, "instruments", "list")
    assert listed.exit_code == 0, listed.output
    header, rule, *rows = listed.output.splitlines()
    assert header.split()[:6] == ["slug", "activity", "version", "languages", "hash", "status"]
    assert set(rule) <= {"-", " "}
    assert [row.split()[:3] + [row.split()[5]] for row in rows] == [
        [RA1_SLUG, "RA1", "1", "active"],
        ["sample-debrief", "RA1", "2", "active"],
    ]

    retired = _run(cli_database, "instruments", "retire", "sample-debrief")
    assert retired.exit_code == 0, retired.output
    assert "sample-debrief retired" in retired.output
    visible = _run(cli_database, "instruments", "list").output
    assert RA1_SLUG in visible and "sample-debrief" not in visible
    everything = _run(cli_database, "instruments", "list", "--all").output
    assert any(line.startswith("sample-debrief") and "retired" in line for line in everything.splitlines())


def test_cli_publish_is_all_or_nothing(cli_database: str, tmp_path: Path) -> None:
    good = write_yaml(tmp_path / "good.yaml", minimal_definition())
    bad_data = minimal_definition("second-instrument")
    bad_data["sections"][0]["questions"][0]["type"] = "essay"
    bad = write_yaml(tmp_path / "bad.yaml", bad_data)

    result = _run(cli_database, "instruments", "publish", str(good), str(bad))
    assert result.exit_code == 1
    assert f"{bad} is not valid:" in result.output
    assert "sections[0].questions[0].type" in result.output
    assert "nothing was published" in result.output
    assert _run(cli_database, "instruments", "list", "--all").output.strip() == "no instruments published"


def test_cli_publish_refuses_a_type_change_within_one_run(cli_database: str, tmp_path: Path) -> None:
    first = write_yaml(tmp_path / "first.yaml", minimal_definition())
    changed = minimal_definition()
    changed["sections"][0]["questions"][0]["type"] = "long_text"
    second = write_yaml(tmp_path / "second.yaml", changed)

    result = _run(cli_database, "instruments", "publish", str(first), str(second))
    assert result.exit_code == 1
    assert f"{second} is not valid:" in result.output
    assert "question 'consent' was yes_no in version 1 and cannot become long_text" in result.output
    assert "nothing was published" in result.output
    assert "no instruments published" in _run(cli_database, "instruments", "list", "--all").output


def test_cli_publish_of_a_missing_file_publishes_nothing(cli_database: str, tmp_path: Path) -> None:
    result = _run(cli_database, "instruments", "publish", str(RA1_FILE), str(tmp_path / "absent.yaml"))
    assert result.exit_code == 1
    assert "file not found" in result.output and "nothing was published" in result.output
    assert "no instruments published" in _run(cli_database, "instruments", "list").output


def test_cli_retire_of_an_unknown_slug_fails(cli_database: str) -> None:
    result = _run(cli_database, "instruments", "retire", "never-published")
    assert result.exit_code == 1
    assert "no instrument 'never-published'" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("instruments", "list"),
        ("instruments", "publish", str(RA1_FILE)),
        ("instruments", "retire", RA1_SLUG),
    ],
    ids=["list", "publish", "retire"],
)
def test_cli_commands_need_the_schema(fresh_database: Callable[[], str], args: tuple[str, ...]) -> None:
    url = fresh_database()
    result = _run(url, *args)
    assert result.exit_code == 1
    assert "the database schema is not up to date: run `surveykit db upgrade` first" in result.output
    assert "Traceback" not in result.output
    current = _run(url, "db", "current")
    assert current.exit_code == 0, current.output
    assert "current: (empty)" in current.output and "behind" in current.output
