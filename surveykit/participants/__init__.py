"""The participant registry: anonymised IDs allocated by the server or minted offline from blocks.

Who may do what, by the principals of ``surveykit.accounts.identity`` (``role:R:STUDY:COUNTRY``):
- read a country's participants: its coordinators, analysts, admins and fieldworkers (tablets need
  the planned sample);
- register, import and update participants: coordinators and admins of that study and country;
- reserve and list interview-number blocks: device sessions only (the country is checked against
  the device's fieldworker grants in the view, since it comes in the body);
- list the blocks devices hold in a country and release a device's blocks there: coordinators and
  admins of that study and country.
"""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow

from surveykit.participants.ids import InvalidParticipantId, parse_pid
from surveykit.security import Permission

READER_ROLES = ("coordinator", "analyst", "admin", "fieldworker")
WRITER_ROLES = ("coordinator", "admin")


def country_acl(study: str, country: str) -> list[tuple[str, str, str]]:
    """Grants over this country of this study, or over every country of it (``*``)."""
    acl = [
        (Allow, "role:admin:*:*", Permission.PARTICIPANTS_READ),
        (Allow, "role:admin:*:*", Permission.PARTICIPANTS_WRITE),
    ]
    for scope in (country, "*"):
        acl += [
            (Allow, f"role:{role}:{study}:{scope}", Permission.PARTICIPANTS_READ) for role in READER_ROLES
        ]
        acl += [
            (Allow, f"role:{role}:{study}:{scope}", Permission.PARTICIPANTS_WRITE) for role in WRITER_ROLES
        ]
    return acl


def malformed_id_acl(study: str) -> list[tuple[str, str, str]]:
    """For a participant URL whose ID does not parse: grant holders of the study get a plain 404."""
    return [
        (Allow, "role:admin:*", Permission.PARTICIPANTS_READ),
        (Allow, "role:admin:*", Permission.PARTICIPANTS_WRITE),
        (Allow, f"study:{study}", Permission.PARTICIPANTS_READ),
        *[(Allow, f"role:{role}:{study}", Permission.PARTICIPANTS_WRITE) for role in WRITER_ROLES],
    ]


class CountryParticipantsResource:
    """The participants of one country of one study; the ACL comes from the URL alone."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.study: str = request.matchdict["study"]
        self.country: str = request.matchdict["cc"]
        self.__acl__ = country_acl(self.study, self.country)


class ParticipantResource:
    """One participant by ID: the country is part of the ID, so no lookup is needed to authorise."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.study: str = request.matchdict["study"]
        self.pid: str = request.matchdict["pid"]
        try:
            self.country: str | None = parse_pid(self.pid).country
        except InvalidParticipantId:
            self.country = None
        self.__acl__ = (
            country_acl(self.study, self.country)
            if self.country is not None
            else malformed_id_acl(self.study)
        )


class BlocksResource:
    __acl__ = [
        (Allow, "device", Permission.BLOCKS_RESERVE),
        (Allow, "device", Permission.BLOCKS_READ),
    ]

    def __init__(self, request: Any) -> None:
        self.request = request


def includeme(config: Any) -> None:
    config.add_route(
        "participants",
        "/api/v1/studies/{study}/countries/{cc}/participants",
        factory=CountryParticipantsResource,
    )
    config.add_route(
        "participants_import",
        "/api/v1/studies/{study}/countries/{cc}/participants/import",
        factory=CountryParticipantsResource,
    )
    config.add_route("participant", "/api/v1/studies/{study}/participants/{pid}", factory=ParticipantResource)
    config.add_route("blocks", "/api/v1/blocks", factory=BlocksResource)
    config.add_route(
        "country_blocks", "/api/v1/studies/{study}/countries/{cc}/blocks", factory=CountryParticipantsResource
    )
    config.add_route(
        "country_blocks_release",
        "/api/v1/studies/{study}/countries/{cc}/blocks/release",
        factory=CountryParticipantsResource,
    )
    config.scan(".views")
