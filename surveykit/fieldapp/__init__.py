"""The field app: the offline web app field researchers run on their tablets, served at ``/app/``.

It is plain files (ES modules, a service worker, a stylesheet) under ``static/``, with no build step;
this package only serves them with the headers an offline app needs (docs/field-app.md). The app
itself speaks nothing but the documented API, as any other tablet app would.
"""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow, Everyone

from surveykit.security import Permission


class FieldAppResource:
    __acl__ = [(Allow, Everyone, Permission.PUBLIC)]

    def __init__(self, request: Any) -> None:
        self.request = request


def includeme(config: Any) -> None:
    # The service worker first: the catch-all file route would match /app/sw.js too.
    config.add_route("fieldapp_index", "/app/", factory=FieldAppResource)
    config.add_route("fieldapp_service_worker", "/app/sw.js", factory=FieldAppResource)
    config.add_route("fieldapp_file", "/app/{subpath:.+}", factory=FieldAppResource)
    config.scan("surveykit.fieldapp.views")
