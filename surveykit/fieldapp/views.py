"""Serving the field app's files: a strict Content-Security-Policy, revalidation, and a service
worker whose version changes with any file, so a new release is installed as one piece."""

from __future__ import annotations

import gzip
import hashlib
import json
import mimetypes
from functools import cache
from pathlib import Path

from pyramid.httpexceptions import HTTPNotFound
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from surveykit.security import Permission
from surveykit.web import Representation, representation

STATIC = Path(__file__).parent / "static"
SERVICE_WORKER = "sw.js"
# Nothing but this origin: no inline script or style, no other host to connect to, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; manifest-src 'self'; worker-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Files are revalidated on every fetch (a 304 costs no body); the service worker keeps its own
# versioned copy for offline use, so the browser's HTTP cache never decides what the app runs.
CACHE_CONTROL = "no-cache"


def _load(name: str, body: bytes) -> Representation:
    suffix = Path(name).suffix
    content_type = TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    etag = hashlib.sha256(body).hexdigest()[:32]
    return Representation(etag, body, gzip.compress(body, 9, mtime=0), content_type)


@cache
def app_files() -> dict[str, Representation]:
    """Every file of the app by its path under /app/, the service worker carrying the version."""
    files = {
        path.relative_to(STATIC).as_posix(): path.read_bytes()
        for path in sorted(STATIC.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }
    digest = hashlib.sha256()
    for name, body in files.items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    version = digest.hexdigest()[:16]
    cached = ["./", *(name for name in files if name not in (SERVICE_WORKER, "index.html"))]
    prelude = f"const APP_VERSION = {json.dumps(version)};\nconst APP_FILES = {json.dumps(cached)};\n"
    files[SERVICE_WORKER] = prelude.encode() + files[SERVICE_WORKER]
    return {name: _load(name, body) for name, body in files.items()}


def app_version() -> str:
    """The release the served files make up (the service worker names its caches after it)."""
    first_line = app_files()[SERVICE_WORKER].body.split(b"\n", 1)[0].decode()
    return json.loads(first_line.removeprefix("const APP_VERSION = ").removesuffix(";"))


def _serve(request: Request, name: str) -> Response:
    found = app_files().get(name)
    if found is None:
        raise HTTPNotFound()
    response = representation(request, found, CACHE_CONTROL)
    response.headers["Vary"] = "Accept-Encoding"
    textual = found.content_type.startswith("text/") or "json" in found.content_type
    if response.status_code == 200 and textual:
        response.charset = "utf-8"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if name == SERVICE_WORKER:
        response.headers["Service-Worker-Allowed"] = "/app/"
    return response


@view_config(route_name="fieldapp_index", request_method="GET", permission=Permission.PUBLIC)
def index(request: Request) -> Response:
    return _serve(request, "index.html")


@view_config(route_name="fieldapp_service_worker", request_method="GET", permission=Permission.PUBLIC)
def service_worker(request: Request) -> Response:
    return _serve(request, SERVICE_WORKER)


@view_config(route_name="fieldapp_file", request_method="GET", permission=Permission.PUBLIC)
def app_file(request: Request) -> Response:
    subpath = request.matchdict["subpath"]
    if subpath in ("index.html", SERVICE_WORKER):
        raise HTTPNotFound()  # one address each: /app/ and /app/sw.js
    return _serve(request, subpath)
