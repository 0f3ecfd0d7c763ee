"""How long the instrument studio's steps take, from a small instrument to a large one.

A benchmark that prints figures, not a test. Each step of the studio (reading the file, validating
it, reading or writing it as an XLSForm workbook, the translation report, the preview, comparing
with the previous version) is timed in-process on the RA1 schedule and on generated instruments of
growing size (sections x questions, two languages, choices, probes, relevance on the question
before). The reading of YAML is shown beside PyYAML's ``safe_load`` of the same text, measured in the
same run: the studio reads YAML 1.2 with ruamel.yaml and keeps every node's line and column, and the
ratio says what that costs. No database is involved: these are the services the API and the
console call.

    .venv/bin/python bench/bench_studio.py
    .venv/bin/python bench/bench_studio.py --sizes 4x10,20x25 --rounds 5

Median milliseconds of ``--rounds`` runs are printed per step, with the file's size.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RA1_FILE = PROJECT_ROOT / "instruments" / "ra1-duty-bearers.yaml"
sys.path.insert(0, str(PROJECT_ROOT))

from surveykit.instruments import compare, files, preview, services, translations  # noqa: E402
from surveykit.instruments.xlsform import read_xlsform, write_xlsform  # noqa: E402


def generated(sections: int, questions: int) -> dict[str, Any]:
    """An instrument of ``sections`` x ``questions`` questions in English and Portuguese: open
    questions with probes, and every third a single choice whose answer the next one depends on."""
    body = []
    for s in range(sections):
        items = []
        for q in range(questions):
            qid = f"s{s}_q{q}"
            question: dict[str, Any] = {
                "id": qid,
                "prompt": {"en": f"Question {q} of section {s}: how does it work?", "pt": f"Pergunta {q}"},
            }
            if q % 3 == 0:
                question["type"] = "single_choice"
                question["choices"] = [
                    {"value": f"c{c}", "label": {"en": f"Choice {c}", "pt": f"Opção {c}"}} for c in range(5)
                ]
            else:
                question["type"] = "long_text"
                question["probes"] = [f"Probe {p} of {qid}: who, when and how?" for p in range(3)]
                question["notes"] = {"en": "Ask for an example.", "pt": "Peça um exemplo."}
            if q % 3 == 1:
                question["relevance"] = f"answered($s{s}_q{q - 1})"
            items.append(question)
        body.append({"id": f"s{s}", "title": {"en": f"Section {s}", "pt": f"Secção {s}"}, "questions": items})
    return {
        "slug": f"generated-{sections}x{questions}",
        "title": {"en": "Generated instrument", "pt": "Instrumento gerado"},
        "activity": "RA1",
        "default_language": "en",
        "languages": ["en", "pt"],
        "metadata": [],
        "sections": body,
    }


def reworded(definition: dict[str, Any]) -> dict[str, Any]:
    """The next version: the first question of every section reworded in English."""
    changed = copy.deepcopy(definition)
    pending = list(changed["sections"])
    while pending:
        section = pending.pop()
        pending.extend(section.get("sections", []))
        if section.get("questions"):
            first = section["questions"][0]
            prompt = first["prompt"]
            if isinstance(prompt, dict):
                prompt["en"] = prompt["en"] + " (revised)"
            else:
                first["prompt"] = prompt + " (revised)"
    return changed


def count_questions(definition: dict[str, Any]) -> int:
    count, pending = len(definition.get("metadata", [])), list(definition["sections"])
    while pending:
        section = pending.pop()
        pending.extend(section.get("sections", []))
        count += len(section.get("questions", []))
    return count


def median_ms(step: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(name: str, raw: dict[str, Any], text: str, rounds: int) -> dict[str, Any]:
    definition = services.validate_definition(copy.deepcopy(raw))
    workbook = write_xlsform(definition)
    following = services.validate_definition(reworded(raw))
    figures = {
        "name": name,
        "questions": count_questions(definition),
        "yaml_kb": len(text.encode()) / 1024,
        "xlsx_kb": len(workbook) / 1024,
        "pyyaml": median_ms(lambda: yaml.safe_load(text), rounds),
        "yaml12": median_ms(lambda: files.parse_text(text, "yaml"), rounds),
        "validate": median_ms(lambda: services.validate_definition(copy.deepcopy(raw)), rounds),
        "xlsx_write": median_ms(lambda: write_xlsform(definition), rounds),
        "xlsx_read": median_ms(lambda: read_xlsform(workbook), rounds),
        "translations": median_ms(lambda: translations.translation_report(following, [definition]), rounds),
        "preview": median_ms(
            lambda: [preview.preview(definition, lang) for lang in definition["languages"]], rounds
        )
        / len(definition["languages"]),
        "compare": median_ms(lambda: compare.compare_definitions(definition, following), rounds),
    }
    read_back, problems = read_xlsform(workbook)
    same = not problems and services.content_hash(
        services.validate_definition(read_back)
    ) == services.content_hash(definition)
    figures["round_trip"] = "same hash" if same else "DIFFERENT"
    return figures


def table(rows: list[dict[str, Any]]) -> str:
    columns = [
        ("instrument", "name", "{}"),
        ("questions", "questions", "{}"),
        ("YAML KB", "yaml_kb", "{:.1f}"),
        ("PyYAML ms", "pyyaml", "{:.1f}"),
        ("YAML 1.2 + lines ms", "yaml12", "{:.1f}"),
        ("ratio", None, ""),
        ("validate ms", "validate", "{:.1f}"),
        ("XLSX KB", "xlsx_kb", "{:.1f}"),
        ("XLSX write ms", "xlsx_write", "{:.1f}"),
        ("XLSX read ms", "xlsx_read", "{:.1f}"),
        ("round trip", "round_trip", "{}"),
        ("translations ms", "translations", "{:.1f}"),
        ("preview ms/lang", "preview", "{:.1f}"),
        ("compare ms", "compare", "{:.1f}"),
    ]
    cells = [[title for title, _, _ in columns]]
    for row in rows:
        line = []
        for _, key, fmt in columns:
            line.append(f"{row['yaml12'] / row['pyyaml']:.1f}x" if key is None else fmt.format(row[key]))
        cells.append(line)
    widths = [max(len(cells[r][c]) for r in range(len(cells))) for c in range(len(columns))]
    out = []
    for index, line in enumerate(cells):
        out.append(
            "  ".join(
                cell.rjust(width) if index else cell.ljust(width)
                for cell, width in zip(line, widths, strict=True)
            )
        )
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="4x10,10x25,20x50", help="generated instruments, SECTIONSxQUESTIONS,…"
    )
    parser.add_argument("--rounds", type=int, default=5, help="runs per step (the median is printed)")
    args = parser.parse_args()
    sizes = [tuple(int(n) for n in size.split("x")) for size in args.sizes.split(",") if size]

    rows = []
    text = RA1_FILE.read_text(encoding="utf-8")
    raw, _ = files.parse_text(text, "yaml")
    print(f"{RA1_FILE.name}: timing {args.rounds} round(s) per step", flush=True)
    rows.append(measure("RA1 schedule", raw, text, args.rounds))
    for sections, questions in sizes:
        raw = generated(sections, questions)
        text = yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
        print(f"generated {sections}x{questions}: timing", flush=True)
        rows.append(measure(f"generated {sections}x{questions}", raw, text, args.rounds))
    print()
    print(table(rows))
    largest = max(rows, key=lambda row: row["yaml_kb"])
    per_mib = largest["yaml12"] / largest["yaml_kb"] * 1024 / 1000
    print(
        f"\nYAML 1.2 with lines reads about {largest['yaml_kb'] / largest['yaml12'] * 1000:.0f} KB/s here: "
        f"a file at the upload cap ({files.MAX_YAML_BYTES // 1024} KB) takes about {per_mib:.1f} s."
    )
    failed = [row["name"] for row in rows if row["round_trip"] != "same hash"]
    if failed:
        print(f"XLSForm round trip changed the content hash of: {', '.join(failed)}")
        return 1
    print("XLSForm round trip: every instrument reads back to the same content hash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
