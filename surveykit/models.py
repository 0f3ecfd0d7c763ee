"""Imports every capability's models so the metadata knows all tables (for Alembic)."""

from surveykit.accounts.models import AttemptCounter, AuthSession, Device, Grant, RefreshToken, User
from surveykit.analysis.models import Code, Coding
from surveykit.audit.models import AuditEvent
from surveykit.cache_epoch import CacheEpoch
from surveykit.exports.models import ExportJob
from surveykit.instruments.drafts import InstrumentDraft
from surveykit.instruments.models import Instrument, InstrumentVersion
from surveykit.participants.models import InterviewNumberCounter, NumberBlock, Participant
from surveykit.studies.feed import ChangeLogEntry, StudyChangeCounter
from surveykit.studies.models import Country, ResearchActivity, Study
from surveykit.sync.models import Interview, InterviewRevision, Quote

__all__ = [
    "AttemptCounter",
    "AuditEvent",
    "AuthSession",
    "CacheEpoch",
    "Code",
    "Coding",
    "ChangeLogEntry",
    "Country",
    "Device",
    "ExportJob",
    "Grant",
    "Instrument",
    "InstrumentDraft",
    "InstrumentVersion",
    "Interview",
    "InterviewRevision",
    "InterviewNumberCounter",
    "NumberBlock",
    "Participant",
    "Quote",
    "RefreshToken",
    "ResearchActivity",
    "Study",
    "StudyChangeCounter",
    "User",
]
