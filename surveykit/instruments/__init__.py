"""Interview instruments: definitions, immutable published versions, and serving them to tablets."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pyramid.authorization import Allow, Authenticated

from surveykit.security import Permission


@lru_cache(maxsize=256)
def instrument_acl(study: str | None) -> tuple[tuple[str, str, str], ...]:
    """Grant holders of the instrument's study read it; its coordinators and admins publish and retire.

    A shared instrument (no study) is read by every authenticated caller and published by global admins.
    """
    acl = [
        (Allow, "role:admin:*", Permission.INSTRUMENTS_READ),
        (Allow, "role:admin:*", Permission.INSTRUMENTS_PUBLISH),
    ]
    if study is None:
        acl.append((Allow, Authenticated, Permission.INSTRUMENTS_READ))
    else:
        acl += [
            (Allow, f"study:{study}", Permission.INSTRUMENTS_READ),
            (Allow, f"role:coordinator:{study}", Permission.INSTRUMENTS_PUBLISH),
            (Allow, f"role:admin:{study}", Permission.INSTRUMENTS_PUBLISH),
        ]
    return tuple(acl)


class InstrumentsResource:
    """The instrument collection: listing is filtered per study by the view, publishing re-checks
    against the study named in the definition."""

    __acl__ = [
        (Allow, Authenticated, Permission.INSTRUMENTS_READ),
        (Allow, Authenticated, Permission.INSTRUMENTS_VALIDATE),
        (Allow, "role:coordinator", Permission.INSTRUMENTS_PUBLISH),
        (Allow, "role:admin", Permission.INSTRUMENTS_PUBLISH),
    ]

    def __init__(self, request: Any) -> None:
        self.request = request


class StudyInstrumentContext:
    """An instrument seen through the study it belongs to (None: shared)."""

    def __init__(self, study: str | None) -> None:
        self.study = study
        self.__acl__ = instrument_acl(study)


class InstrumentResource:
    """One instrument by slug; its ACL comes from its study. One lookup, made when first needed,
    answers both the access check and the current version the view serves; it is remembered
    between requests under the cache epoch (``surveykit.cache_epoch``), so a tablet's re-check
    usually costs no query beyond reading the epoch."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.slug = request.matchdict["slug"]
        self._looked_up = False
        self._current: Any = None

    def current(self) -> Any:
        """The instrument's study and current version (``services.CurrentInstrument``), or None."""
        if not self._looked_up:
            from surveykit.cache_epoch import MISSING
            from surveykit.instruments.services import current_instrument

            request = self.request
            remembered = request.registry["current_instruments"]
            epoch = request.cache_epoch
            current = remembered.get(self.slug, epoch)
            if current is MISSING:
                current = current_instrument(request.dbsession, self.slug)
                remembered.put(self.slug, epoch, current)
            self._current = current
            self._looked_up = True
        return self._current

    @property
    def __acl__(self) -> tuple[tuple[str, str, str], ...]:
        current = self.current()
        # An unknown slug gets the shared ACL, so the view can answer a plain 404.
        return instrument_acl(current.study if current is not None else None)


def includeme(config: Any) -> None:
    from surveykit.cache_epoch import EpochCache
    from surveykit.instruments import xlsform  # noqa: F401 - registers the .xlsx upload reader

    config.registry["current_instruments"] = EpochCache(max_entries=1000)
    # A tablet's re-check answered from memory when it can be (see ``from_memory``): inside the
    # access log, before the transaction and everything after it.
    config.add_tween(
        "surveykit.instruments.from_memory.from_memory_tween_factory",
        under="surveykit.logs.access_log_tween_factory",
        over="pyramid_tm.tm_tween_factory",
    )
    config.add_route("instruments", "/api/v1/instruments", factory=InstrumentsResource)
    config.add_route("instruments_validate", "/api/v1/instruments/validate", factory=InstrumentsResource)
    # Before the instrument route, which would take "preview" for a slug; only POST previews, so a
    # GET of an instrument that happens to be called "preview" still reaches it.
    config.add_route(
        "instruments_preview",
        "/api/v1/instruments/preview",
        factory=InstrumentsResource,
        request_method="POST",
    )
    config.add_route("instrument", "/api/v1/instruments/{slug}", factory=InstrumentResource)
    # Before instrument_version, whose {version} would otherwise take "3.xlsx".
    config.add_route(
        "instrument_version_xlsx",
        "/api/v1/instruments/{slug}/versions/{version}.xlsx",
        factory=InstrumentResource,
    )
    config.add_route(
        "instrument_version", "/api/v1/instruments/{slug}/versions/{version}", factory=InstrumentResource
    )
    config.add_route("instrument_retire", "/api/v1/instruments/{slug}/retire", factory=InstrumentResource)
    config.add_route(
        "instrument_preview",
        "/api/v1/instruments/{slug}/versions/{version}/preview",
        factory=InstrumentResource,
    )
    config.add_route("instrument_compare", "/api/v1/instruments/{slug}/compare", factory=InstrumentResource)
    config.scan(".views")
    config.scan(".studio_views")
