"""HTTP views for the participant registry and device number blocks: thin wrappers over ``services``."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.view import view_config

from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.participants import importer, schemas, services
from surveykit.security import Permission
from surveykit.studies import services as studies
from surveykit.studies.models import Study
from surveykit.studies.views import load_study
from surveykit.web import (
    JSON_CONTENT_TYPES,
    form_or_query_params,
    json_body,
    query_params,
    uploaded_table,
)


def _scope_error(exc: LookupError, field: str, location: str = "path") -> APIError:
    code = {
        studies.CountryNotFound: ErrorCode.COUNTRY_NOT_FOUND,
        studies.ActivityNotFound: ErrorCode.ACTIVITY_NOT_FOUND,
        studies.StudyNotFound: ErrorCode.STUDY_NOT_FOUND,
    }[type(exc)]
    return APIError(404, code, str(exc), [field_error(field, str(exc), location)])


def _check_scope(request: Request, study: Study, activity: str, activity_location: str) -> None:
    try:
        studies.get_country(request.dbsession, study, request.matchdict["cc"])
    except studies.CountryNotFound as exc:
        raise _scope_error(exc, "cc") from exc
    try:
        studies.get_activity(request.dbsession, study, activity)
    except studies.ActivityNotFound as exc:
        raise _scope_error(exc, "activity", activity_location) from exc


def _registry_error(exc: services.RegistryError) -> APIError:
    if isinstance(exc, services.InvalidTransition):
        return APIError(409, ErrorCode.INVALID_STATUS_TRANSITION, str(exc), [field_error("status", str(exc))])
    details = [field_error(exc.field or "", str(exc), "body")]
    if isinstance(exc, services.NumbersExhausted):
        return APIError(409, ErrorCode.NUMBERS_EXHAUSTED, str(exc), details)
    if isinstance(exc, services.UnusedNumbersLimit):
        return APIError(409, ErrorCode.UNUSED_NUMBERS_LIMIT, str(exc), details)
    return APIError(422, ErrorCode.INVALID_INPUT, str(exc), [field_error(exc.field or "", str(exc))])


# ------------------------------------------------------------------------------------ participants


@view_config(
    route_name="participants", request_method="GET", renderer="json", permission=Permission.PARTICIPANTS_READ
)
def list_participants(request: Request) -> dict[str, Any]:
    query = query_params(request, schemas.ListQuerySchema())
    study = load_study(request)
    country = request.matchdict["cc"]
    try:
        studies.get_country(request.dbsession, study, country)
    except studies.CountryNotFound as exc:
        raise _scope_error(exc, "cc") from exc
    filters = services.ParticipantFilter(
        activity=query["activity"],
        status=query["status"],
        withdrawn=query["withdrawn"],
        id_prefix=query["id_prefix"],
        agency=query["agency"],
        position=query["position"],
    )
    page = services.participant_page(
        request.dbsession, study, country, filters, query["after"], query["limit"]
    )
    body: dict[str, Any] = {
        "participants": [services.describe_participant(row, study.slug) for row in page.participants]
    }
    if page.next_after is not None:
        body["next_after"] = page.next_after
        params = {key: value for key, value in request.GET.items() if key != "after"}
        body["next"] = request.route_path(
            "participants", study=study.slug, cc=country, _query={**params, "after": page.next_after}
        )
    return body


@view_config(
    route_name="participants",
    request_method="POST",
    renderer="json",
    permission=Permission.PARTICIPANTS_WRITE,
)
def register(request: Request) -> dict[str, Any]:
    """One planned interview: the next interview number and participants lettered A, B, ..."""
    study = load_study(request)
    body = json_body(request, schemas.RegisterSchema())
    _check_scope(request, study, body["activity"], "body")
    people = [services.NewParticipant(p["agency"], p["position"]) for p in body["participants"]]
    try:
        created = services.register_interview(
            request.dbsession,
            study,
            request.matchdict["cc"],
            body["activity"],
            people,
            request.identity.actor,
        )
    except services.RegistryError as exc:
        raise _registry_error(exc) from exc
    first = created[0]
    audit.record_in_request(
        request,
        "participant.register",
        target=f"{study.slug}/{first.activity}-{first.country_code}-{first.interview_number:02d}",
        pids=[person.pid for person in created],
    )
    request.response.status = 201
    return {
        "interview_number": first.interview_number,
        "participants": [services.describe_participant(person, study.slug) for person in created],
    }


@view_config(
    route_name="participants_import",
    request_method="POST",
    renderer="json",
    permission=Permission.PARTICIPANTS_WRITE,
)
def import_participants(request: Request) -> dict[str, Any]:
    """A planned sample from a CSV or XLSX sheet (or JSON rows): all rows, or none with a report
    per bad row."""
    study = load_study(request)
    kind, plan, params = _read_plan(request, study)
    summary = {
        "dry_run": params["dry_run"],
        "file_type": kind,
        "rows": plan.rows,
        "interview_count": len(plan.interviews),
        "participant_count": plan.participants,
    }
    country, activity = request.matchdict["cc"], params["activity"]
    try:
        if params["dry_run"]:
            services.check_import(request.dbsession, study, country, activity, plan)
            return summary
        created = services.import_plan(
            request.dbsession, study, country, activity, plan, request.identity.actor
        )
    except importer.ImportRejected as exc:
        raise _import_rejected(exc) from exc
    except services.RegistryError as exc:
        raise _registry_error(exc) from exc
    numbers = [rows[0].interview_number for rows in created]
    audit.record_in_request(
        request,
        "participant.import",
        target=f"{study.slug}/{country}/{activity}",
        file_type=kind,
        rows=plan.rows,
        interviews=len(created),
        participants=plan.participants,
        first_number=min(numbers),
        last_number=max(numbers),
        known_ids=sum(len(interview) for interview in plan.interviews if interview[0].number is not None),
    )
    request.response.status = 201
    return {
        **summary,
        "participants": [
            services.describe_participant(person, study.slug) for rows in created for person in rows
        ],
    }


def _read_plan(request: Request, study: Study) -> tuple[str, importer.ImportPlan, dict[str, Any]]:
    """The sheet (multipart, raw CSV or XLSX) or JSON rows, checked all the way: (type, plan, params)."""
    if request.content_type in JSON_CONTENT_TYPES:
        rows = json_body(request, schemas.ImportRowsSchema())["rows"]
        data, content_type, filename, form = b"", None, None, {}
    else:
        data, content_type, filename, form = uploaded_table(request, "sheet")
    params = form_or_query_params(request, form, schemas.ImportQuerySchema())
    _check_scope(request, study, params["activity"], "querystring")
    scope = (params["activity"], request.matchdict["cc"])
    try:
        if request.content_type in JSON_CONTENT_TYPES:
            return "json", importer.parse_records(rows, scope), params
        kind = importer.file_kind(data, content_type, filename)
        return kind, importer.parse(data, kind, scope=scope), params
    except importer.UnsupportedFile as exc:
        raise APIError(
            415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, str(exc), [error.as_detail() for error in exc.errors]
        ) from exc
    except importer.ImportRejected as exc:
        raise _import_rejected(exc) from exc


def _import_rejected(exc: importer.ImportRejected) -> APIError:
    return APIError(
        422,
        ErrorCode.IMPORT_INVALID,
        f"nothing was imported: {exc}",
        [error.as_detail() for error in exc.errors],
    )


@view_config(
    route_name="participant", request_method="GET", renderer="json", permission=Permission.PARTICIPANTS_READ
)
def get_participant(request: Request) -> dict[str, Any]:
    study = load_study(request)
    participant = _load_participant(request, study)
    return services.describe_participant(participant, study.slug)


@view_config(
    route_name="participant",
    request_method="PATCH",
    renderer="json",
    permission=Permission.PARTICIPANTS_WRITE,
)
def update_participant(request: Request) -> dict[str, Any]:
    study = load_study(request)
    body = json_body(request, schemas.ParticipantUpdateSchema())
    participant = _load_participant(request, study, for_update=True)
    try:
        changed = services.update_participant(request.dbsession, participant, body)
    except services.RegistryError as exc:
        raise _registry_error(exc) from exc
    if changed:
        audit.record_in_request(request, "participant.update", target=participant.pid, changed=changed)
    return services.describe_participant(participant, study.slug)


def _load_participant(request: Request, study: Study, for_update: bool = False) -> Any:
    pid = request.matchdict["pid"]
    if request.context.country is None:
        raise APIError(
            404,
            ErrorCode.PARTICIPANT_NOT_FOUND,
            f"{pid!r} is not a participant ID like RA1-KE-04-B",
            [field_error("pid", "not an ID like RA1-KE-04-B", "path")],
        )
    try:
        return services.get_participant(request.dbsession, study, pid, for_update=for_update)
    except services.ParticipantNotFound as exc:
        raise APIError(404, ErrorCode.PARTICIPANT_NOT_FOUND, str(exc)) from exc


# ----------------------------------------------------------------------------------- number blocks


@view_config(
    route_name="blocks", request_method="POST", renderer="json", permission=Permission.BLOCKS_RESERVE
)
def reserve_block(request: Request) -> dict[str, Any]:
    body = json_body(request, schemas.BlockRequestSchema())
    identity = request.identity
    study_slug, country, activity = body["study"], body["country"], body["activity"]
    target = f"{study_slug}/{country}/{activity}"
    if not identity.has_role("fieldworker", study_slug, country):
        audit.record_refusal(request, "block.reserve", target=target, reason="out_of_scope")
        raise APIError(
            403,
            ErrorCode.FORBIDDEN,
            f"this device's fieldworker grants do not cover {country} in {study_slug}",
        )
    try:
        study = studies.get_study(request.dbsession, study_slug)
    except studies.StudyNotFound as exc:
        raise _scope_error(exc, "study", "body") from exc
    settings = request.registry.settings
    size = body["size"] or settings["surveykit.block_size"]
    try:
        block = services.reserve_block(
            request.dbsession,
            identity.device_id,
            study,
            country,
            activity,
            size,
            settings["surveykit.max_unused_numbers"],
        )
    except (studies.CountryNotFound, studies.ActivityNotFound) as exc:
        field = "country" if isinstance(exc, studies.CountryNotFound) else "activity"
        raise _scope_error(exc, field, "body") from exc
    except services.RegistryError as exc:
        if isinstance(exc, services.NumbersExhausted | services.UnusedNumbersLimit):
            reason = "numbers_exhausted" if isinstance(exc, services.NumbersExhausted) else "unused_limit"
            audit.record_refusal(request, "block.reserve", target=target, reason=reason, size=size)
        raise _registry_error(exc) from exc
    audit.record_in_request(
        request,
        "block.reserve",
        target=target,
        block=block.id,
        first_number=block.first_number,
        last_number=block.last_number,
    )
    request.response.status = 201
    return services.describe_block(block, study.slug)


@view_config(route_name="blocks", request_method="GET", renderer="json", permission=Permission.BLOCKS_READ)
def list_blocks(request: Request) -> dict[str, Any]:
    query = query_params(request, schemas.BlockQuerySchema())
    rows = services.list_blocks(
        request.dbsession, request.identity.device_id, query["study"], query["country"], query["activity"]
    )
    return {"blocks": [services.describe_block(block, slug) for block, slug in rows]}


# ---------------------------------------------------------------- blocks held in a country (staff)


@view_config(
    route_name="country_blocks",
    request_method="GET",
    renderer="json",
    permission=Permission.PARTICIPANTS_WRITE,
)
def list_country_blocks(request: Request) -> dict[str, Any]:
    """The number blocks devices hold in this country, with their used and unused counts."""
    query = query_params(request, schemas.CountryBlocksQuerySchema())
    study = load_study(request)
    _check_country(request, study)
    rows = services.country_blocks(
        request.dbsession, study, request.matchdict["cc"], query["device_id"], query["activity"]
    )
    described = [
        services.describe_held_block(block, study.slug, used, unused) for block, used, unused in rows
    ]
    return {"blocks": described}


@view_config(
    route_name="country_blocks_release",
    request_method="POST",
    renderer="json",
    permission=Permission.PARTICIPANTS_WRITE,
)
def release_blocks(request: Request) -> dict[str, Any]:
    """Release a device's blocks in this country: it mints no more IDs from them, and their unused
    numbers stay gaps (numbers are never reused)."""
    study = load_study(request)
    body = json_body(request, schemas.BlockReleaseSchema())
    country, device_id, activity = request.matchdict["cc"], body["device_id"], body["activity"]
    _check_country(request, study)
    if activity is not None:
        try:
            studies.get_activity(request.dbsession, study, activity)
        except studies.ActivityNotFound as exc:
            raise _scope_error(exc, "activity", "body") from exc
    if not services.country_blocks(request.dbsession, study, country, device_id, activity):
        message = f"device {device_id} holds no number blocks in {study.slug}/{country}"
        raise APIError(404, ErrorCode.DEVICE_NOT_FOUND, message, [field_error("device_id", message, "body")])
    release = services.release_blocks(
        request.dbsession, device_id, study, country, activity, request.identity.actor
    )
    if release.blocks:
        audit.record_in_request(
            request,
            "block.release",
            target=f"{study.slug}/{country}/{device_id}",
            device=device_id,
            activity=activity,
            blocks=[block.id for block in release.blocks],
            released_numbers=release.released_numbers,
        )
    return {
        "device_id": device_id,
        "released_numbers": release.released_numbers,
        "blocks": [
            services.describe_held_block(block, study.slug, _size(block) - len(gaps), 0)
            for block, gaps in release.gaps
        ],
    }


def _size(block: Any) -> int:
    return block.last_number - block.first_number + 1


def _check_country(request: Request, study: Study) -> None:
    try:
        studies.get_country(request.dbsession, study, request.matchdict["cc"])
    except studies.CountryNotFound as exc:
        raise _scope_error(exc, "cc") from exc
