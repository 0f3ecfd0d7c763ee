"""REFI-QDA exchange (docs/refi-qda.md): .qdpx projects and .qdc codebooks written, validated against
the standard's schemas, read back, downloaded, and imported from a QDA tool."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from typing import Any

import pytest
import webtest
import xmlschema
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from support_db import Accounts
from test_export_support import STUDY, ExportWorld

from surveykit.analysis import exchange, refi_read, refi_write
from surveykit.analysis import refi_model as refi
from surveykit.analysis.models import Code, Coding
from surveykit.audit.models import AuditEvent
from surveykit.cli import cli

KE_QDPX = f"/api/v1/studies/{STUDY}/countries/KE/analysis.qdpx"
TZ_QDPX = f"/api/v1/studies/{STUDY}/countries/TZ/analysis.qdpx"
STUDY_QDPX = f"/api/v1/studies/{STUDY}/analysis.qdpx"
QDC = f"/api/v1/studies/{STUDY}/codebook.qdc"
ZIP = "application/zip"
XML = "application/xml"

AWARENESS = "A campanha do Ministério chega às escolas 😀, mas não aos pais."
QUOTED = "chega às escolas 😀"
QUOTE_START = AWARENESS.index(QUOTED)
QUOTE_END = QUOTE_START + len(QUOTED)
LAWS = "The Computer Misuse and Cybercrimes Act 2018 covers grooming only in part."


def schema_of(name: str) -> xmlschema.XMLSchema:
    return refi_read.schema(refi.PROJECT_NAMESPACE if name == "Project" else refi.CODEBOOK_NAMESPACE)


class World:
    """Study ``exp`` (KE, TZ, ...) with one coded KE interview of two participants and one TZ one."""

    def __init__(self, session: Session, accounts: Any) -> None:
        self.session = session
        self.accounts = accounts
        self.exports = ExportWorld(session, accounts)
        self.study = self.exports.study
        self.coder = accounts.user("coder-ke", "analyst", STUDY, ["KE"])
        self.ke = self.exports.interview(
            "KE",
            [("Ministério da Educação", "Diretora"), ("Ministry of ICT", None)],
            answers={"awareness_main": AWARENESS, "laws_main": LAWS, "training": "None yet."},
            quotes=[
                {
                    "question_id": "awareness_main",
                    "participant": "B",
                    "text": QUOTED,
                    "start": QUOTE_START,
                    "end": QUOTE_END,
                    "tags": ["awareness", "schools"],
                },
            ],
        )
        self.tz = self.exports.interview("TZ", [("Police", "Inspector")], answers={"awareness_main": "Low."})
        self.theme = self.code(
            "Public awareness", definition="How well the issue is understood", colour="#1f77b4"
        )
        self.schools = self.code("Schools", parent=self.theme, colour="#ff7f0e")
        self.laws = self.code("Laws", colour="#2ca02c")
        start = AWARENESS.index("Ministério")
        self.coding = self.code_passage(
            self.theme, "awareness_main", start, start + len("Ministério"), memo="key"
        )
        quote = self.ke.record["quotes"][0]
        self.quote_coding = self.code_passage(
            self.schools, "awareness_main", QUOTE_START, QUOTE_END, quote_id=quote["id"]
        )
        session.flush()

    def code(
        self, name: str, *, parent: Code | None = None, definition: str = "", colour: str = "#808080"
    ) -> Code:
        code = Code(
            guid=str(uuid.uuid4()),
            study_id=self.study.id,
            parent_id=parent.id if parent else None,
            name=name,
            definition=definition,
            colour=colour,
            created_by="tests",
        )
        self.session.add(code)
        self.session.flush()
        return code

    def code_passage(
        self,
        code: Code,
        question_id: str,
        start: int,
        end: int,
        *,
        memo: str = "",
        quote_id: str | None = None,
    ) -> Coding:
        text = self.ke.record["answers"][question_id]
        coding = Coding(
            guid=str(uuid.uuid4()),
            study_id=self.study.id,
            country_code="KE",
            code_id=code.id,
            interview_uuid=self.ke.uuid,
            question_id=question_id,
            quote_id=quote_id,
            start_offset=start,
            end_offset=end,
            text=text[start:end],
            memo=memo,
            coder_id=self.coder.id,
            coder=self.coder.username,
            anchored_revision=1,
        )
        self.session.add(coding)
        self.session.flush()
        return coding

    def codings(self) -> int:
        self.session.expire_all()
        return self.session.scalar(select(func.count()).select_from(Coding))

    def codes(self) -> dict[str, Code]:
        self.session.expire_all()
        return {c.guid: c for c in self.session.scalars(select(Code).where(Code.study_id == self.study.id))}


@pytest.fixture
def world(dbsession: Session, accounts: Any) -> World:
    return World(dbsession, accounts)


def project_of(world: World, country: str | None = "KE") -> refi.Project:
    return exchange.build_project(world.session, exchange.resolve_scope(world.session, STUDY, country))


def events(session: Session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(
        session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def rezip(data: bytes, replace: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info.filename, replace.pop(info.filename, old.read(info.filename)))
        for name, content in replace.items():
            new.writestr(name, content)
    return out.getvalue()


# ------------------------------------------------------------------------------ writing and reading


def test_the_written_project_and_codebook_are_valid_against_the_standards_schemas(world: World) -> None:
    project = project_of(world)
    with zipfile.ZipFile(io.BytesIO(refi_write.qdpx_bytes(project))) as archive:
        names = archive.namelist()
        qde = archive.read("project.qde")
        assert names[0] == "project.qde"
        assert sorted(names[1:]) == sorted(f"sources/{source.guid}.txt" for source in project.sources)
    schema_of("Project").validate(io.BytesIO(qde))
    schema_of("Codebook").validate(
        io.BytesIO(refi_write.codebook_xml(exchange.build_codebook(world.session, world.study.id)))
    )
    # The vendored schemas are the standard's own, not something that accepts anything.
    assert not schema_of("Project").is_valid(io.BytesIO(qde.replace(b'startPosition="', b'startPosition="x')))


def test_what_goes_where_in_the_project(world: World) -> None:
    project = project_of(world)
    sources = {source.name: source for source in project.sources}
    label = f"RA1-KE-{world.ke.number:02d}"
    assert set(sources) == {f"{label} awareness_main", f"{label} laws_main", f"{label} training"}
    awareness = sources[f"{label} awareness_main"]
    assert awareness.guid == exchange.source_guid(world.ke.uuid, "awareness_main")
    assert awareness.text == AWARENESS
    assert awareness.description == "Public awareness: " + awareness.description.split(": ", 1)[1]
    by_guid = {selection.guid: selection for selection in awareness.selections}
    quote = world.ke.record["quotes"][0]
    quoted = by_guid[quote["id"]]
    assert AWARENESS[quoted.start : quoted.end] == "chega às escolas 😀"
    assert [c.guid for c in quoted.codings] == [world.quote_coding.guid]
    (tags,) = [note for note in project.notes if note.guid in quoted.note_guids]
    assert tags.text == "awareness, schools"
    (coded,) = [s for s in awareness.selections if s.codings and s.codings[0].guid == world.coding.guid]
    assert AWARENESS[coded.start : coded.end] == "Ministério" and coded.description == "key"
    assert coded.codings[0].code_guid == world.theme.guid
    assert [user.name for user in project.users] == ["coder-ke"]
    cases = {case.name: case for case in project.cases}
    first, second = world.ke.pids
    assert set(cases) == {first, second}
    agency, position = exchange.AGENCY_VARIABLE.guid, exchange.POSITION_VARIABLE.guid
    assert cases[first].values == {agency: "Ministério da Educação", position: "Diretora"}
    assert cases[second].values == {agency: "Ministry of ICT"}
    assert cases[second].selection_guids == [quote["id"]] and cases[first].selection_guids == []
    assert set(cases[first].source_guids) == {source.guid for source in project.sources}
    theme, laws = project.codes
    assert laws.guid == world.laws.guid and laws.children == []
    assert (theme.guid, theme.name, theme.color, theme.description) == (
        world.theme.guid,
        "Public awareness",
        "#1f77b4",
        "How well the issue is understood",
    )
    assert [child.guid for child in theme.children] == [world.schools.guid]
    # The re-export keeps every guid: a QDA tool merges it instead of doubling it.
    assert refi_write.qdpx_bytes(project_of(world)) == refi_write.qdpx_bytes(project)


def test_write_then_read_gives_the_same_codes_sources_selections_and_offsets(world: World) -> None:
    project = project_of(world, None)
    back = refi_read.read_qdpx(refi_write.qdpx_bytes(project))
    assert back == project
    for source in back.sources:
        for selection in source.selections:
            original = next(s for s in project.sources if s.guid == source.guid)
            assert (
                source.text[selection.start : selection.end] == original.text[selection.start : selection.end]
            )
    codebook = exchange.build_codebook(world.session, world.study.id)
    assert refi_read.read_qdc(refi_write.codebook_xml(codebook)).codes == codebook.codes


def test_an_answer_beginning_with_a_byte_order_mark_keeps_its_offsets() -> None:
    # Text pasted from Windows files may begin with U+FEFF; the source must come back whole.
    text = "\ufeffOs pais não sabem."
    code = refi.Code(str(uuid.uuid4()), "Awareness")
    selection = refi.Selection(str(uuid.uuid4()), 1, 4, codings=[refi.Coding(str(uuid.uuid4()), code.guid)])
    source = refi.Source(str(uuid.uuid4()), "RA1-KE-01 awareness_main", text, selections=[selection])
    project = refi.Project(name="bom", codes=[code], sources=[source])
    (back,) = refi_read.read_qdpx(refi_write.qdpx_bytes(project)).sources
    assert back.text == text and back.text[1:4] == "Os "


def streamed(world: World, country: str | None) -> tuple[bytes, exchange.ProjectStats]:
    out = io.BytesIO()
    stats = exchange.write_project_qdpx(
        world.session, exchange.resolve_scope(world.session, STUDY, country), out
    )
    return out.getvalue(), stats


@pytest.mark.parametrize("batch", [1, 2, exchange.BATCH])
@pytest.mark.parametrize("country", ["KE", None])
def test_the_streamed_export_writes_the_same_bytes_as_the_in_memory_writer(
    world: World, monkeypatch: pytest.MonkeyPatch, batch: int, country: str | None
) -> None:
    world.exports.interview("KE", [("Ministry of Health", None)], answers={"laws_main": "Not in force."})
    monkeypatch.setattr(exchange, "BATCH", batch)
    project = project_of(world, country)
    data, stats = streamed(world, country)
    assert data == refi_write.qdpx_bytes(project)
    assert stats.sentence() in project.description
    assert stats.sources == len(project.sources) >= 3 and stats.cases == len(project.cases) >= 3
    assert stats.selections == sum(len(source.selections) for source in project.sources)


def test_the_streamed_writer_matches_the_in_memory_one_on_awkward_content() -> None:
    awkward = "a & b < c > d \"e\" 'f'\t\n\r g\x01 \u00e9 😀"
    code = refi.Code(str(uuid.uuid4()), awkward, color="#aa00ff", description=awkward)
    user = refi.User(str(uuid.uuid4()), awkward)
    selection = refi.Selection(
        str(uuid.uuid4()),
        0,
        3,
        name=awkward,
        description=awkward,
        creating_user=user.guid,
        codings=[refi.Coding(str(uuid.uuid4()), code.guid, user.guid)],
        note_guids=[str(uuid.uuid4())],
    )
    variable = refi.Variable(str(uuid.uuid4()), "agency", awkward)
    sources = [
        refi.Source(str(uuid.uuid4()), awkward, awkward, awkward, [selection]),
        refi.Source(str(uuid.uuid4()), "plain", "x"),
    ]
    case = refi.Case(
        str(uuid.uuid4()), awkward, awkward, {variable.guid: ""}, [sources[0].guid], [selection.guid]
    )
    note = refi.Note(selection.note_guids[0], awkward, "")
    full = refi.Project(
        awkward, awkward, [user], [code], [variable], [case, refi.Case("c2", "bare")], sources, [note]
    )
    for project in (full, refi.Project("empty"), refi.Project("sources only", sources=sources)):
        parts = [
            refi_write.ProjectPart(project.cases[:1], project.sources[:1], project.notes),
            refi_write.ProjectPart(),
            refi_write.ProjectPart(project.cases[1:], project.sources[1:]),
        ]
        head = refi.Project(
            project.name, project.description, project.users, project.codes, project.variables
        )
        out = io.BytesIO()
        refi_write.write_qdpx_streamed(out, parts, lambda head=head: head)
        assert out.getvalue() == refi_write.qdpx_bytes(project), project.name


def test_the_streamed_writer_matches_beyond_the_zip_member_count_of_zip64() -> None:
    # Past 65,535 members the archive ends with zip64 records, written from the spooled directory.
    sources = [
        refi.Source(refi.derived_guid("source", str(n)), f"s{n}", "x")
        for n in range(zipfile.ZIP_FILECOUNT_LIMIT + 1)
    ]
    out = io.BytesIO()
    refi_write.write_qdpx_streamed(
        out, [refi_write.ProjectPart(sources=sources)], lambda: refi.Project("many")
    )
    assert out.getvalue() == refi_write.qdpx_bytes(refi.Project("many", sources=sources))


def test_a_coding_whose_text_moved_is_left_out_and_counted(world: World) -> None:
    world.coding.start_offset += 1
    world.session.flush()
    project = project_of(world)
    guids = {c.guid for s in project.sources for sel in s.selections for c in sel.codings}
    assert world.coding.guid not in guids and world.quote_coding.guid in guids
    assert "moved or vanished from the current answer: 1." in project.description


# ---------------------------------------------------------------------------------------- downloads


def test_an_analyst_downloads_the_country_project_with_etag_and_304_and_it_is_audited(
    testapp: webtest.TestApp, world: World, accounts: Any
) -> None:
    headers = accounts.headers("analyst", STUDY, ["KE"], username="analyst-ke")
    response = testapp.get(KE_QDPX, headers=headers)
    assert response.content_type == "application/vnd.refi-qda.qdpx+zip"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{STUDY}-KE-analysis.qdpx"'
    etag = response.headers["ETag"]
    assert response.body == refi_write.qdpx_bytes(project_of(world))
    assert response.content_length == len(response.body)
    assert etag == f'"{hashlib.sha256(response.body).hexdigest()}"'
    again = testapp.get(KE_QDPX, headers={**headers, "If-None-Match": etag}, status=304)
    assert again.body == b"" and again.headers["ETag"] == etag
    world.code_passage(world.laws, "laws_main", 4, 12)
    assert (
        testapp.get(KE_QDPX, headers={**headers, "If-None-Match": etag}, status=200).headers["ETag"] != etag
    )
    downloads = events(world.session, "analysis.exchange_download")
    assert [(e.actor, e.target, e.details["not_modified"]) for e in downloads] == [
        ("analyst-ke", f"{STUDY}/KE", False),
        ("analyst-ke", f"{STUDY}/KE", True),
        ("analyst-ke", f"{STUDY}/KE", False),
    ]


def test_the_study_project_needs_a_study_wide_grant_and_the_codebook_any_grant_in_the_study(
    testapp: webtest.TestApp, world: World, accounts: Any
) -> None:
    country = accounts.headers("analyst", STUDY, ["KE"])
    study = accounts.headers("analyst", STUDY, None)
    testapp.get(STUDY_QDPX, headers=country, status=403)
    # The codebook is one per study: a country's analyst reads it, as the JSON codebook.
    assert refi_read.read_qdc(testapp.get(QDC, headers=country).body).all_codes()
    testapp.get(QDC, headers=accounts.headers("fieldworker", STUDY, ["KE"]), status=403)
    project = refi_read.read_qdpx(testapp.get(STUDY_QDPX, headers=study).body)
    assert {source.name.split()[0][:6] for source in project.sources} == {"RA1-KE", "RA1-TZ"}
    codebook = refi_read.read_qdc(testapp.get(QDC, headers=study).body)
    assert [code.guid for code in codebook.all_codes()] == [
        world.theme.guid,
        world.schools.guid,
        world.laws.guid,
    ]


def test_another_country_is_refused_and_an_unknown_one_is_not_found(
    testapp: webtest.TestApp, world: World, accounts: Any
) -> None:
    headers = accounts.headers("analyst", STUDY, ["KE"])
    assert testapp.get(TZ_QDPX, headers=headers, status=403).json["code"] == "forbidden"
    data = refi_write.qdpx_bytes(project_of(world))
    testapp.post(TZ_QDPX, data, headers={**headers, "Content-Type": ZIP}, status=403)
    admin = accounts.headers("admin")
    response = testapp.get(f"/api/v1/studies/{STUDY}/countries/ZZ/analysis.qdpx", headers=admin, status=404)
    assert response.json["code"] == "country_not_found"
    assert testapp.get("/api/v1/studies/nope/analysis.qdpx", headers=admin, status=404).json["code"] == (
        "study_not_found"
    )
    testapp.get(KE_QDPX, headers=accounts.headers("fieldworker", STUDY, ["KE"]), status=403)


# ------------------------------------------------------------------------------------------ imports


def test_a_codebook_is_imported_by_guid_with_a_dry_run_first(
    testapp: webtest.TestApp, world: World, accounts: Any
) -> None:
    headers = {**accounts.headers("coordinator", STUDY, None, username="coord-all"), "Content-Type": XML}
    new_guid = str(uuid.uuid4())
    codebook = refi.Codebook(
        codes=[
            refi.Code(
                world.theme.guid.upper(),  # tools may write guids in upper case
                "Awareness",
                "#F00",
                "Renamed in ATLAS.ti",
                children=[refi.Code(new_guid, "Parents", "#00ff00", "New in the tool")],
            ),
            refi.Code(world.laws.guid, "Laws", "#2ca02c"),
        ]
    )
    body = refi_write.codebook_xml(codebook)
    before = {guid: (c.name, c.version) for guid, c in world.codes().items()}
    dry = testapp.post(f"{QDC}?dry_run=true", body, headers=headers).json
    assert dry["dry_run"] is True
    assert [c["guid"] for c in dry["created"]] == [new_guid]
    assert [(u["guid"], u["fields"]) for u in dry["updated"]] == [
        (world.theme.guid, ["colour", "definition", "name"])
    ]
    assert dry["unchanged"] == 1
    assert {guid: (c.name, c.version) for guid, c in world.codes().items()} == before

    done = testapp.post(QDC, body, headers=headers).json
    assert {**done, "dry_run": True} == dry
    codes = world.codes()
    theme, parents = codes[world.theme.guid], codes[new_guid]
    assert (theme.name, theme.colour, theme.definition, theme.version) == (
        "Awareness",
        "#ff0000",
        "Renamed in ATLAS.ti",
        2,
    )
    assert (parents.parent_id, parents.created_by, parents.definition) == (
        theme.id,
        "coord-all",
        "New in the tool",
    )
    # Nothing is deleted: the code the file left out is still there, under its parent.
    assert codes[world.schools.guid].parent_id == theme.id
    (event,) = events(world.session, "analysis.codebook_import")
    assert event.details["created"] == [new_guid] and event.details["updated"] == [world.theme.guid]
    # The same file again changes nothing.
    again = testapp.post(QDC, body, headers=headers).json
    assert again["created"] == [] and again["updated"] == [] and again["unchanged"] == 3


def test_a_country_analyst_cannot_import_a_codebook(
    testapp: webtest.TestApp, world: World, accounts: Any
) -> None:
    headers = {**accounts.headers("analyst", STUDY, ["KE"]), "Content-Type": XML}
    body = refi_write.codebook_xml(refi.Codebook(codes=[refi.Code(str(uuid.uuid4()), "X")]))
    testapp.post(QDC, body, headers=headers, status=403)


def test_codings_made_in_a_qda_tool_come_back_once(
    testapp: webtest.TestApp, world: World, accounts: Any
) -> None:
    headers = accounts.headers("analyst", STUDY, ["KE"], username="analyst-ke")
    exported = testapp.get(KE_QDPX, headers=headers).body
    project = refi_read.read_qdpx(exported)
    laws = next(source for source in project.sources if source.name.endswith("laws_main"))
    start = LAWS.index("grooming")
    tool_coding = str(uuid.uuid4())
    laws.selections.append(
        refi.Selection(
            str(uuid.uuid4()).upper(),
            start,
            start + len("grooming"),
            description="coded in QualCoder",
            codings=[refi.Coding(tool_coding, world.laws.guid)],
        )
    )
    changed = refi_write.qdpx_bytes(project)
    upload = {**headers, "Content-Type": ZIP}
    before = world.codings()
    dry = testapp.post(f"{KE_QDPX}?dry_run=true", changed, headers=upload).json
    assert [c["guid"] for c in dry["created"]] == [tool_coding] and world.codings() == before

    done = testapp.post(KE_QDPX, changed, headers=upload).json
    assert done["created"] == [
        {"guid": tool_coding, "code": world.laws.guid, "source": laws.name, "start": start, "end": start + 8}
    ]
    # The codings surveykit exported are recognised by their guids.
    assert done["already_there"] == 2
    world.session.expire_all()
    coding = world.session.scalar(select(Coding).where(Coding.guid == tool_coding))
    assert (coding.text, coding.memo, coding.coder, coding.interview_uuid, coding.question_id) == (
        "grooming",
        "coded in QualCoder",
        "analyst-ke",
        world.ke.uuid,
        "laws_main",
    )
    assert (coding.anchor, coding.anchored_revision, coding.country_code, coding.quote_id) == (
        "current",
        1,
        "KE",
        None,
    )
    (event,) = events(world.session, "analysis.codings_import")
    assert event.details["created"] == [tool_coding] and event.target == f"{STUDY}/KE"
    # The same file again creates nothing.
    again = testapp.post(KE_QDPX, changed, headers=upload).json
    assert again["created"] == [] and again["already_there"] == 3
    assert world.codings() == before + 1
    # And the next export carries the new coding with its guid.
    reexported = refi_read.read_qdpx(testapp.get(KE_QDPX, headers=headers).body)
    assert tool_coding in {c.guid for s in reexported.sources for sel in s.selections for c in sel.codings}


def test_a_coding_on_a_quote_becomes_a_coding_of_that_quote(
    testapp: webtest.TestApp, world: World, accounts: Any
) -> None:
    headers = accounts.headers("analyst", STUDY, ["KE"], username="analyst-quotes")
    project = refi_read.read_qdpx(testapp.get(KE_QDPX, headers=headers).body)
    quote_id = world.ke.record["quotes"][0]["id"]
    quoted = next(sel for s in project.sources for sel in s.selections if sel.guid == quote_id)
    quoted.codings.append(refi.Coding(str(uuid.uuid4()), world.theme.guid))
    done = testapp.post(
        KE_QDPX, refi_write.qdpx_bytes(project), headers={**headers, "Content-Type": ZIP}
    ).json
    (created,) = done["created"]
    world.session.expire_all()
    coding = world.session.scalar(select(Coding).where(Coding.guid == created["guid"]))
    assert coding.quote_id == quote_id and coding.text == "chega às escolas 😀"


# ------------------------------------------------------------------------------------ bad uploads


def _bad_qdpx_cases(world: World) -> dict[str, tuple[bytes, str, str]]:
    """name -> (upload, the start of the problem's path, a word of its message)."""
    good = refi_write.qdpx_bytes(project_of(world))
    qde = refi_write.project_xml(project_of(world))
    slip = io.BytesIO()
    with zipfile.ZipFile(slip, "w") as archive:
        archive.writestr("project.qde", qde)
        archive.writestr("../../etc/evil.txt", b"x")
    project = project_of(world)
    project.sources[0].selections.append(
        refi.Selection(str(uuid.uuid4()), 0, 3, codings=[refi.Coding(str(uuid.uuid4()), str(uuid.uuid4()))])
    )
    unknown_code = refi_write.qdpx_bytes(project)
    project = project_of(world)
    project.sources[0].text = project.sources[0].text + " (edited)"
    project.sources[0].selections.append(
        refi.Selection(str(uuid.uuid4()), 0, 3, codings=[refi.Coding(str(uuid.uuid4()), world.laws.guid)])
    )
    edited = refi_write.qdpx_bytes(project)
    return {
        "not a zip": (b"PK\x03\x04 but not really a zip", "archive", "zip"),
        "zip slip": (slip.getvalue(), "archive:../../etc/evil.txt", "leaves the archive"),
        "wrong namespace": (
            rezip(good, {"project.qde": qde.replace(b"urn:QDA-XML:project:1.0", b"urn:QDA-XML:project:1:0")}),
            "project.qde:/Project",
            "urn:QDA-XML:project:1:0",
        ),
        "schema invalid": (
            rezip(good, {"project.qde": qde.replace(b'startPosition="', b'startPosition="-x', 1)}),
            "project.qde:/Project/Sources[1]/TextSource[",
            "startPosition",
        ),
        "entities": (
            rezip(good, {"project.qde": b'<!DOCTYPE p [<!ENTITY a "aaaa">]>' + qde.split(b"?>", 1)[1]}),
            "project.qde",
            "DTD",
        ),
        "no project.qde": (
            rezip(good, {}).replace(b"project.qde", b"project.qdx"),
            "archive:project.qde",
            "missing",
        ),
        "unknown code": (
            unknown_code,
            "project.qde:/Project/Sources[1]/TextSource[1]/PlainTextSelection[",
            "codebook",
        ),
        "answer changed": (edited, "project.qde:/Project/Sources[1]/TextSource[1]", "differs"),
    }


def test_bad_archives_and_xml_are_422_with_a_path_and_change_nothing(
    testapp: webtest.TestApp, world: World, accounts: Any
) -> None:
    headers = {**accounts.headers("analyst", STUDY, ["KE"]), "Content-Type": ZIP}
    before = world.codings()
    for name, (upload, path, word) in _bad_qdpx_cases(world).items():
        response = testapp.post(KE_QDPX, upload, headers=headers, status=422)
        body = response.json
        assert response.content_type == "application/json", name
        assert body["code"] == "import_invalid", name
        assert any(d["path"].startswith(path) for d in body["details"]), (name, body)
        assert word in body["message"] + " ".join(d["message"] for d in body["details"]), (name, body)
    assert world.codings() == before
    assert not events(world.session, "analysis.codings_import")


def test_bad_codebooks_are_422_with_the_element_and_line(
    testapp: webtest.TestApp, world: World, accounts: Any
) -> None:
    headers = {**accounts.headers("coordinator", STUDY, None), "Content-Type": XML}
    good = refi_write.codebook_xml(refi.Codebook(codes=[refi.Code(world.theme.guid, "Renamed")]))
    before = {guid: c.name for guid, c in world.codes().items()}
    invalid = good.replace(b'isCodable="true"', b'isCodable="perhaps"')
    body = testapp.post(QDC, invalid, headers=headers, status=422).json
    (detail,) = body["details"]
    assert detail["path"] == "codebook:/CodeBook/Codes[1]/Code[1] (line 4)"
    assert "isCodable" in detail["message"]
    wrong = good.replace(b"urn:QDA-XML:codebook:1.0", b"urn:QDA-XML:project:1.0")
    assert "namespace" in testapp.post(QDC, wrong, headers=headers, status=422).json["message"]
    broken = testapp.post(QDC, good[:-20], headers=headers, status=422).json
    assert broken["details"][0]["path"].startswith("codebook:")
    twice = refi_write.codebook_xml(
        refi.Codebook(codes=[refi.Code(world.laws.guid, "A"), refi.Code(world.laws.guid, "B")])
    )
    assert "twice" in testapp.post(QDC, twice, headers=headers, status=422).json["message"]
    testapp.post(QDC, good, headers={**headers, "Content-Type": "text/plain"}, status=415)
    assert {guid: c.name for guid, c in world.codes().items()} == before


def test_a_codebook_nested_beyond_any_real_tree_is_refused_before_validation() -> None:
    code = '<Code guid="{}" name="x" isCodable="true">'
    deep = "".join(code.format(uuid.uuid4()) for _ in range(5000)) + "</Code>" * 5000
    data = f'<CodeBook xmlns="{refi.CODEBOOK_NAMESPACE}"><Codes>{deep}</Codes></CodeBook>'.encode()
    with pytest.raises(refi_read.RefiError, match="nests elements 5002 deep"):
        refi_read.read_qdc(data)


def test_a_zip_bomb_stops_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.qde", b" " * 5_000_000)
    assert len(bomb.getvalue()) < 20_000
    monkeypatch.setattr(refi_read, "MAX_MEMBER_BYTES", 1_000_000)
    with pytest.raises(refi_read.RefiError) as raised:
        refi_read.read_qdpx(bomb.getvalue())
    assert raised.value.problems == [
        refi_read.Problem("archive:project.qde", "member or archive too large when unpacked")
    ]


# ------------------------------------------------------------------------------------------------ CLI


def test_the_cli_exports_a_project_and_imports_a_codebook(
    fresh_database: Any, tmp_path: Any, settings: dict[str, Any]
) -> None:
    url = fresh_database()
    env = {"SURVEYKIT_DATA_DIR": str(tmp_path / "data"), "SURVEYKIT_ENV": "test"}
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["--database-url", url, *args], env=env)

    assert run("db", "upgrade").exit_code == 0
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            world = World(session, Accounts(session, settings))
            expected = project_of(world)
            theme_guid = world.theme.guid
            session.commit()
        out = tmp_path / "ke.qdpx"
        result = run("analysis", "export-qdpx", "--study", STUDY, "--country", "KE", "--out", str(out))
        assert result.exit_code == 0, result.output
        assert f"wrote {out}" in result.output and expected.description in result.output
        assert out.read_bytes() == refi_write.qdpx_bytes(expected)
        assert not list(tmp_path.glob(".qdpx-*"))
        with Session(engine) as session:
            (export,) = session.scalars(
                select(AuditEvent).where(AuditEvent.action == "analysis.exchange_export")
            )
            assert export.details["etag"] == hashlib.sha256(out.read_bytes()).hexdigest()

        qdc = tmp_path / "codes.qdc"
        qdc.write_bytes(refi_write.codebook_xml(refi.Codebook(codes=[refi.Code(theme_guid, "Awareness")])))
        dry = run("analysis", "import-qdc", "--study", STUDY, "--dry-run", str(qdc))
        assert dry.exit_code == 0 and "would update 1 code(s)" in dry.output, dry.output
        done = run("analysis", "import-qdc", "--study", STUDY, str(qdc))
        assert done.exit_code == 0 and "~ Awareness" in done.output, done.output
        with Session(engine) as session:
            assert session.scalar(select(Code.name).where(Code.guid == theme_guid)) == "Awareness"
            (event,) = session.scalars(
                select(AuditEvent).where(AuditEvent.action == "analysis.codebook_import")
            )
            assert event.actor.startswith("cli") and event.details["updated"] == [theme_guid]

        qdc.write_bytes(b"<CodeBook/>")
        bad = run("analysis", "import-qdc", "--study", STUDY, str(qdc))
        assert bad.exit_code == 1 and "codebook:/CodeBook" in bad.output, bad.output
    finally:
        engine.dispose()
