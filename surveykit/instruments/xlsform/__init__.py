"""XLSForm workbooks: authoring an instrument in a spreadsheet and taking it back out.

``read_xlsform`` turns a workbook into a definition (the shape a YAML instrument file holds) and
names every problem by sheet, row and column; ``write_xlsform`` writes a published definition as
a workbook that reads back to the same content hash. The columns are described in
docs/xlsform.md; ``columns`` holds the names both directions share.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from surveykit.instruments import files, services
from surveykit.instruments.xlsform.columns import SheetProblem
from surveykit.instruments.xlsform.reading import read_xlsform
from surveykit.instruments.xlsform.writing import write_xlsform

__all__ = ["SheetProblem", "read_xlsform", "version_workbook", "write_xlsform"]

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def read_uploaded_workbook(data: bytes) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """``read_xlsform`` as an upload reader (``files.READERS``): problems as dicts."""
    raw, problems = read_xlsform(data)
    return raw, [problem.as_dict() for problem in problems]


# Uploads of XLSX files (validate and publish) are read as XLSForm workbooks.
files.READERS["xlsx"] = read_uploaded_workbook


def version_workbook(session: Session, slug: str, version: int) -> bytes:
    """A published version as a workbook; raises ``services.InstrumentNotFound`` or
    ``services.VersionNotFound`` as ``services.find_version`` does."""
    ref = services.find_version(session, slug, version)
    return write_xlsform(services.load_definition(session, ref.slug, ref.version))
