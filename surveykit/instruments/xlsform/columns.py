"""Sheet and column names of surveykit's XLSForm dialect, shared by reading and writing."""

from __future__ import annotations

import re
from dataclasses import dataclass

SURVEY = "survey"
CHOICES = "choices"
SETTINGS = "settings"

# Texts that come in one column per language: ``label`` (the default language) or
# ``label::Portuguese (pt)``.
LABEL = "label"
HINT = "hint"
FORM_TITLE = "form_title"
DESCRIPTION = "surveykit::description"
PROBE = re.compile(r"^surveykit::probe_([1-9][0-9]{0,2})$")

BINDS = "surveykit::binds"
MIN = "surveykit::min"
MAX = "surveykit::max"
SURVEYKIT_TYPE = "surveykit::type"
ACTIVITY = "surveykit::activity"
STUDY = "surveykit::study"
LANGUAGES = "surveykit::languages"

# A yes/no question is written as a select_one over this list (so XLSForm tools show it), and
# marked ``surveykit::type = yes_no`` so it reads back as yes_no with true/false answers.
YES_NO = "yes_no"
YES_NO_LIST = "surveykit-yes-no"
MULTILINE = "multiline"

# Names for the language columns a workbook is written with; other codes are written as the code.
LANGUAGE_NAMES = {
    "am": "Amharic",
    "ar": "Arabic",
    "bn": "Bengali",
    "en": "English",
    "es": "Spanish",
    "fil": "Filipino",
    "fr": "French",
    "hi": "Hindi",
    "id": "Indonesian",
    "km": "Khmer",
    "lo": "Lao",
    "ms": "Malay",
    "my": "Burmese",
    "ne": "Nepali",
    "pt": "Portuguese",
    "sw": "Swahili",
    "th": "Thai",
    "tl": "Tagalog",
    "vi": "Vietnamese",
    "zh": "Chinese",
}

_TRANSLATED = re.compile(r"^(?P<base>.+)::(?P<language>[^:]+)$")
_CODED_LANGUAGE = re.compile(r"^(?P<name>.*?)\s*\((?P<code>[^()]+)\)$")


@dataclass(frozen=True)
class SheetProblem:
    """One problem in a workbook: the sheet, the 1-based row (None: the whole sheet), the column
    (its header, None: the whole row) and its letter when known."""

    sheet: str
    row: int | None
    column: str | None
    message: str
    letter: str | None = None

    def where(self) -> str:
        parts = [self.sheet or "workbook"]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column:
            parts.append(f"column {self.letter} ({self.column})" if self.letter else f"column {self.column}")
        return " ".join(parts[:1]) + (" " + ", ".join(parts[1:]) if parts[1:] else "")

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"sheet": self.sheet, "row": self.row, "column": self.column, "message": self.message}


def language_header(base: str, code: str) -> str:
    """``label::Portuguese (pt)``."""
    return f"{base}::{LANGUAGE_NAMES.get(code, code)} ({code})"


def language_setting(code: str) -> str:
    """How ``default_language`` names a language in the settings sheet: ``English (en)``."""
    return f"{LANGUAGE_NAMES.get(code, code)} ({code})"


def language_code(text: str) -> str | None:
    """The code in ``English (en)``, or a known language name, or a bare code; None if unknown."""
    text = text.strip()
    if match := _CODED_LANGUAGE.match(text):
        return match.group("code").strip()
    by_name = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
    if text.lower() in by_name:
        return by_name[text.lower()]
    if re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?", text):
        return text
    return None


def split_translated(header: str) -> tuple[str, str | None]:
    """``label::Portuguese (pt)`` -> (``label``, ``Portuguese (pt)``); ``label`` -> (``label``, None)."""
    if match := _TRANSLATED.match(header):
        return match.group("base"), match.group("language")
    return header, None


def is_translatable(base: str) -> bool:
    return base in (LABEL, HINT, FORM_TITLE, DESCRIPTION) or bool(PROBE.match(base))
