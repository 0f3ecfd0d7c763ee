"""Who pushes and reads sync records: the caller of a sync request and the roles it acts with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from surveykit.accounts.identity import ALL, GrantScope, Identity

PUSH_ROLES_DEVICE = frozenset({"fieldworker"})
PUSH_ROLES_STAFF = frozenset({"coordinator", "admin"})
READ_ROLES = frozenset({"fieldworker", "coordinator", "analyst", "admin"})
MANAGER_ROLES = frozenset({"coordinator", "admin"})


@dataclass(frozen=True)
class Caller:
    user_id: int
    username: str
    device_id: str | None
    grants: tuple[GrantScope, ...]

    @classmethod
    def from_identity(cls, identity: Identity) -> Caller:
        return cls(identity.user_id, identity.username, identity.device_id, identity.grants)

    @property
    def push_roles(self) -> frozenset[str]:
        # A tablet pushes with its owner's fieldworker grants; a person at a desk needs to manage.
        return PUSH_ROLES_DEVICE if self.device_id else PUSH_ROLES_STAFF

    def may_push(self, study: str, country: str) -> bool:
        return any(g.role in self.push_roles and g.covers(study, country) for g in self.grants)

    def countries(self, study: str, roles: Iterable[str]) -> set[str] | None:
        """Countries of ``study`` covered by grants of these roles: None means all, empty none."""
        roles = set(roles)
        found: set[str] = set()
        for grant in self.grants:
            if grant.role in roles and grant.study in (ALL, study):
                if grant.countries is None:
                    return None
                found.update(grant.countries)
        return found


def covers(countries: set[str] | None, country: str) -> bool:
    return countries is None or country in countries
