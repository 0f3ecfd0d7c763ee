"""``surveykit analysis``: the qualitative analysis commands (each part adds its own)."""

from __future__ import annotations

import click

from surveykit.analysis.exchange_cli import export_qdpx_command, import_qdc_command


@click.group("analysis")
def analysis_group() -> None:
    """Codebook and codings: exchange with QDA tools (REFI-QDA .qdpx and .qdc)."""


analysis_group.add_command(export_qdpx_command)
analysis_group.add_command(import_qdc_command)

COMMANDS = [analysis_group]
