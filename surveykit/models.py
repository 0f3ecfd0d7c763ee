"""Imports every capability's models so the metadata knows all tables (for Alembic)."""

from surveykit.instruments.models import Instrument, InstrumentVersion

__all__ = ["Instrument", "InstrumentVersion"]
