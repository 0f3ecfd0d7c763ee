"""Instrument definitions for tests: a small valid one to mutate, and ways to write it to a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from surveykit.config import PROJECT_ROOT

RA1_FILE = PROJECT_ROOT / "instruments" / "ra1-duty-bearers.yaml"
RA1_SLUG = "ra1-duty-bearers"


def minimal_definition(slug: str = "sample-debrief") -> dict[str, Any]:
    """A small valid definition; every call returns a new dict, so tests may mutate it freely.

    Paths used by the tests:
    - ``metadata[0]``: ``agency`` (short_text)
    - ``sections[0].questions[0..2]``: ``consent`` (yes_no), ``details`` (long_text, relevance on
      ``$consent``), ``mode`` (single_choice)
    - ``sections[1].sections[0].questions[0]``: ``people`` (number, min/max)
    """
    return {
        "slug": slug,
        "title": {"en": "Sample debrief", "pt": "Balanço de exemplo"},
        "activity": "RA1",
        "default_language": "en",
        "languages": ["en", "pt"],
        "metadata": [
            {
                "id": "agency",
                "type": "short_text",
                "required": True,
                "prompt": {"en": "Agency", "pt": "Instituição"},
            }
        ],
        "sections": [
            {
                "id": "first",
                "title": {"en": "First", "pt": "Primeira"},
                "questions": [
                    {
                        "id": "consent",
                        "type": "yes_no",
                        "prompt": {"en": "Was consent given?", "pt": "Foi dado consentimento?"},
                    },
                    {
                        "id": "details",
                        "type": "long_text",
                        "relevance": "$consent == true",
                        "prompt": "Describe what happened.",
                        "probes": ["Who was there?"],
                        "notes": "Do not press.",
                    },
                    {
                        "id": "mode",
                        "type": "single_choice",
                        "prompt": {"en": "Mode", "pt": "Modalidade"},
                        "choices": [
                            {"value": "in_person", "label": {"en": "In person", "pt": "Presencial"}},
                            {"value": "phone", "label": "Phone"},
                        ],
                    },
                ],
            },
            {
                "id": "second",
                "title": "Second",
                "sections": [
                    {
                        "id": "second_sub",
                        "title": "Sub-section",
                        "questions": [
                            {"id": "people", "type": "number", "min": 0, "max": 10, "prompt": "How many?"}
                        ],
                    }
                ],
            },
        ],
    }


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def reversed_keys(data: Any) -> Any:
    """The same data with every mapping's keys in reverse order (lists keep their order)."""
    if isinstance(data, dict):
        return {key: reversed_keys(data[key]) for key in reversed(list(data))}
    if isinstance(data, list):
        return [reversed_keys(item) for item in data]
    return data
