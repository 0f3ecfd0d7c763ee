"""Importing a codebook file from the console, and downloading the codebook as CSV or XLSX
(docs/console-analysis.md#importing-and-exporting-the-codebook).

The import is the API's (``surveykit.analysis.codebook_import``), in two steps: **Check the file**
runs it as a dry run and shows what it would create and change, or every problem as a row of a
table; **Import** sends the checked file back (its bytes in the form) and imports it, all or nothing.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from surveykit.analysis import codebook, codebook_files, codebook_import
from surveykit.audit import services as audit
from surveykit.console.analysis import page_scope
from surveykit.console.codebook import record_changes
from surveykit.console.web import _, console_view, flash, render_page, translate
from surveykit.security import Permission
from surveykit.studies.models import Study

IMPORT_TEMPLATE = "surveykit.console:templates/analysis/codebook_import.jinja2"
CONTENT_TYPES = {
    codebook_files.CSV: "text/csv",
    codebook_files.XLSX: codebook_files.XLSX_CONTENT_TYPE,
}


def _import_page(
    request: Request,
    study: Study,
    country: Any,
    *,
    errors: dict[str, str] | None = None,
    problems: list[codebook_files.RowError] | None = None,
    result: codebook_import.ImportResult | None = None,
    upload: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return render_page(
        IMPORT_TEMPLATE,
        {
            "study": study,
            "country": country,
            "errors": errors or {},
            "problems": problems or [],
            "result": result,
            "upload": upload,
        },
        request=request,
        status=status,
    )


@console_view(route_name="console.codebook_import", request_method="GET", permission=Permission.CODEBOOK_EDIT)
def import_form(request: Request) -> Response:
    study, country = page_scope(request)
    return _import_page(request, study, country)


def _sent_file(request: Request) -> tuple[bytes, str, str | None, str | None]:
    """The file's bytes, name and declared type, or an error for the file field."""
    if request.POST.get("step") == "import":
        try:
            data = base64.b64decode(request.POST.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            data = b""
        return data, request.POST.get("filename", ""), None, None
    upload = request.POST.get("file")
    if not hasattr(upload, "file"):
        return b"", "", None, translate(request, _("Choose the CSV or XLSX codebook file."))
    return upload.file.read(), upload.filename or "", upload.type, None


@console_view(
    route_name="console.codebook_import", request_method="POST", permission=Permission.CODEBOOK_EDIT
)
def import_file(request: Request) -> Response:
    """``step=check``: the dry run, nothing stored; ``step=import``: the checked file, imported."""
    study, country = page_scope(request)
    session = request.dbsession
    dry_run = request.POST.get("step") != "import"
    data, filename, content_type, missing = _sent_file(request)
    if missing is None and not data:
        missing = translate(request, _("The file is empty: choose the file again."))
    if missing is not None:
        return _import_page(request, study, country, errors={"file": missing}, status=422)
    try:
        kind = codebook_files.file_kind(data, content_type, filename)
        rows = codebook_files.read_file(data, kind)
        codebook.lock_codebook(session, study)
        result = codebook_import.import_file(session, study, rows, request.identity.actor, dry_run=dry_run)
    except codebook_files.FileRejected as exc:
        return _import_page(request, study, country, problems=exc.errors, status=422)
    if dry_run:
        upload = {"data": base64.b64encode(data).decode("ascii"), "filename": filename, "kind": kind}
        return _import_page(request, study, country, result=result, upload=upload)
    record_changes(request, result.changes)
    audit.record_in_request(
        request,
        "codebook.imported",
        target=f"{study.slug}/codebook",
        filename=filename or None,
        file_type=kind,
        via="console",
        **result.summary(),
    )
    flash(
        request,
        translate(
            request,
            _("Codebook imported: ${created} codes created, ${updated} changed, ${unchanged} unchanged."),
            created=result.count("created"),
            updated=result.count("updated"),
            unchanged=result.count("unchanged"),
        ),
    )
    return HTTPSeeOther(
        location=request.route_path("console.codebook", study=study.slug, country=country.code)
    )


@console_view(route_name="console.codebook_export", request_method="GET", permission=Permission.ANALYSIS_READ)
def export_file(request: Request) -> Response:
    """The codes that are not merged, as the import reads them back."""
    study, _country = page_scope(request)
    kind = request.matchdict["kind"]
    rows = codebook_import.export_rows(request.dbsession, study)
    body = codebook_files.write_csv(rows) if kind == codebook_files.CSV else codebook_files.write_xlsx(rows)
    response = Response(body=body, content_type=CONTENT_TYPES[kind])
    response.content_disposition = f'attachment; filename="codebook-{study.slug}.{kind}"'
    response.cache_control = "no-store"
    return response
