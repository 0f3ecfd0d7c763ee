"""The Summary sheet's charts: interviews by country and mode, and by country and record status.

Both read the Summary's own per-country table (the chart holds references to its cells, not a copy
of the figures), so the chart and the table cannot disagree. openpyxl writes a write-only sheet's
charts when the sheet is closed at save time, so they can be added after the rows.
"""

from __future__ import annotations

from openpyxl.chart import BarChart, Reference

from surveykit.exports.workbook import SheetWriter

# Columns of the per-country table (1-based): Country, ..., In person, Virtual, Phone, Complete, Draft.
COUNTRY_COLUMN = 1
MODE_COLUMNS = (6, 8)
STATUS_COLUMNS = (9, 10)
ANCHOR_COLUMN = "O"
CHART_ROWS = 18


def _stacked(title: str, y_title: str) -> BarChart:
    chart = BarChart()
    chart.type = "col"
    chart.grouping = "stacked"
    chart.overlap = 100
    chart.title = title
    chart.y_axis.title = y_title
    chart.x_axis.title = "Country"
    chart.height = 8.5
    chart.width = 16
    return chart


def add_charts(sheet: SheetWriter, header_row: int, last_row: int) -> int:
    """Add the two charts over the table whose header is ``header_row`` and whose last country row
    is ``last_row``; returns how many were added (none for a table without countries)."""
    if last_row <= header_row:
        return 0
    worksheet = sheet.worksheets[0]
    categories = Reference(worksheet, min_col=COUNTRY_COLUMN, min_row=header_row + 1, max_row=last_row)
    charts = [
        (_stacked("Interviews by country and mode", "Interviews"), MODE_COLUMNS),
        (_stacked("Interviews by country and status", "Interviews"), STATUS_COLUMNS),
    ]
    for index, (chart, (first, last)) in enumerate(charts):
        data = Reference(worksheet, min_col=first, max_col=last, min_row=header_row, max_row=last_row)
        chart.add_data(data, titles_from_data=True)
        chart.set_categories(categories)
        worksheet.add_chart(chart, f"{ANCHOR_COLUMN}{2 + index * CHART_ROWS}")
    return len(charts)
