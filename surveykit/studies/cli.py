"""``surveykit studies``: create and configure studies, countries and research activities (audited)."""

from __future__ import annotations

from typing import Any

import click

from surveykit.audit import services as audit
from surveykit.studies import services as studies
from surveykit.terminal import echo_json, format_table, json_option, operator


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group("studies")
def studies_group() -> None:
    """Studies, their countries and research activities (the scope of every grant)."""


@studies_group.command("add")
@click.argument("slug")
@click.option("--name", help="Full name of the study.")
@click.pass_obj
def studies_add(obj: Any, slug: str, name: str | None) -> None:
    """Create the study SLUG."""
    obj.require_schema()
    try:
        with obj.session() as session:
            studies.create_study(session, slug, name)
            audit.record(session, "study.create", actor=operator(), target=slug)
    except studies.StudyError as exc:
        raise _fail(exc) from exc
    click.echo(f"study {slug} created")


@studies_group.command("add-country")
@click.argument("slug")
@click.argument("code")
@click.option("--name", required=True, help="The country's name, e.g. Kenya.")
@click.option("--region", help="The region it belongs to, e.g. Eastern Africa.")
@click.option("--language", "languages", multiple=True, help="Interview language code (repeatable).")
@click.pass_obj
def studies_add_country(
    obj: Any, slug: str, code: str, name: str, region: str | None, languages: tuple[str, ...]
) -> None:
    """Add country CODE (the study's own two capital letters, not necessarily ISO) to study SLUG."""
    obj.require_schema()
    try:
        with obj.session() as session:
            study = studies.get_study(session, slug)
            country = studies.add_country(session, study, code, name, region, list(languages))
            audit.record(
                session,
                "study.add_country",
                actor=operator(),
                target=f"{slug}/{code}",
                details=studies.describe_country(country),
            )
    except (studies.StudyError, studies.StudyNotFound) as exc:
        raise _fail(exc) from exc
    click.echo(f"{slug}: country {code} ({name}) added")


@studies_group.command("add-activity")
@click.argument("slug")
@click.argument("code")
@click.option("--name", required=True, help="e.g. 'Interviews with government duty bearers'.")
@click.pass_obj
def studies_add_activity(obj: Any, slug: str, code: str, name: str) -> None:
    """Add research activity CODE (RA1 to RA9) to study SLUG."""
    obj.require_schema()
    try:
        with obj.session() as session:
            study = studies.get_study(session, slug)
            activity = studies.add_activity(session, study, code, name)
            audit.record(
                session,
                "study.add_activity",
                actor=operator(),
                target=f"{slug}/{code}",
                details={"name": activity.name},
            )
    except (studies.StudyError, studies.StudyNotFound) as exc:
        raise _fail(exc) from exc
    click.echo(f"{slug}: research activity {code} ({activity.name}) added")


@studies_group.command("list")
@json_option()
@click.pass_obj
def studies_list(obj: Any, as_json: bool) -> None:
    """Studies with their countries."""
    obj.require_schema()
    with obj.session() as session:
        if as_json:
            echo_json({"studies": studies.summarise_studies(session, studies.list_studies(session))})
            return
        rows = [["study", "name", "countries"]]
        for study in studies.list_studies(session):
            rows.append([study.slug, study.name, " ".join(c.code for c in study.countries) or "-"])
    click.echo(format_table(rows) if len(rows) > 1 else "no studies")


@studies_group.command("show")
@click.argument("slug")
@click.pass_obj
def studies_show(obj: Any, slug: str) -> None:
    """Show study SLUG with its research activities and countries."""
    obj.require_schema()
    try:
        with obj.session() as session:
            described = studies.describe_study(session, studies.get_study(session, slug))
    except studies.StudyNotFound as exc:
        raise _fail(exc) from exc
    click.echo(f"{described['slug']}: {described['name']}")
    click.echo("")
    activities = [["activity", "name"]] + [[a["code"], a["name"]] for a in described["activities"]]
    click.echo(format_table(activities) if len(activities) > 1 else "no research activities")
    click.echo("")
    countries = [["country", "name", "region", "languages"]] + [
        [c["code"], c["name"], c["region"] or "-", ",".join(c["languages"]) or "-"]
        for c in described["countries"]
    ]
    click.echo(format_table(countries) if len(countries) > 1 else "no countries")


COMMANDS = [studies_group]
