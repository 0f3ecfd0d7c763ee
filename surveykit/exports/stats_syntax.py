"""SPSS syntax (``.sps``) and a Stata do-file (``.do``) that read the CSV for statistics.

Both read the long CSV (``csv_export``), turn it into one row per participant and one variable per
question, and label it from the instrument versions of the scope: the question's prompt is the
variable label; a single-choice question becomes a numeric variable coded 1, 2... in the order of
its choices with the choice labels as value labels; a yes/no question is coded 1 = Yes, 0 = No;
a number question is numeric; every other question (texts, dates, multiple choice) is a string
holding the Answer column. Prompts and labels are in the scope's language (``?lang=``).

Variable names are the question ids made valid for both programs: lower case ASCII letters, digits
and ``_``, starting with a letter, at most 32 characters, none of either program's reserved words
nor a column of the CSV (such a name gets the prefix ``q_``), unique (``_2``, ``_3``... where two
ids would give the same name). Where versions or instruments share a question id they share the
variable: its prompt is the newest version's, its choices all the versions' choices.

Strings are written so that neither program changes them: SPSS literals in single quotes with
``'`` doubled; Stata texts in compound quotes with ``$`` and the backquote escaped by a backslash
(they would otherwise expand macros). Line breaks in a label become spaces (a label is one line).
Labels are cut to what the programs hold: SPSS 255 bytes for a variable label and 120 for a value
label, Stata 80 characters for a variable label.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.exports import services
from surveykit.exports.csv_export import file_stem
from surveykit.instruments.models import Instrument, InstrumentVersion

SPSS_MEDIA_TYPE = "text/plain"
STATA_MEDIA_TYPE = "text/plain"
ARTIFACTS = ("sps", "do")
NAME_MAX = 32
SPSS_VARIABLE_LABEL_BYTES = 255
SPSS_VALUE_LABEL_BYTES = 120
STATA_VARIABLE_LABEL_CHARS = 80
STATA_VALUE_LABEL_CHARS = 32_000

SPSS_RESERVED = {"all", "and", "by", "eq", "ge", "gt", "le", "lt", "ne", "not", "or", "to", "with"}
STATA_RESERVED = {
    "_all", "_b", "byte", "_coef", "_cons", "double", "float", "if", "in", "int", "long", "_n",
    "_pi", "_pred", "_rc", "_skip", "strl", "using", "with", "str",
}  # fmt: skip
STATA_STR_TYPE = re.compile(r"^str\d+$")
# The CSV's own columns, as both programs name them once read.
CSV_COLUMNS = (
    "id",
    "country",
    "section",
    "question_id",
    "prompt",
    "answer",
    "probes_used",
    "stored_value",
    "language",
    "revision",
)
NOT_NAME = re.compile(r"[^a-z0-9_]+")

STRING = "string"
NUMERIC = "numeric"
CODED = "coded"  # a single choice, coded 1, 2...
YES_NO = "yes_no"  # coded 1 = Yes, 0 = No


@dataclass
class Variable:
    name: str
    question_id: str
    kind: str
    label: str
    # For CODED and YES_NO: (code, stored value, label) in code order.
    values: list[tuple[int, str, str]] = field(default_factory=list)


def variable_name(question_id: str, taken: set[str]) -> str:
    """A name valid in SPSS and Stata for ``question_id``, not in ``taken`` (which it joins)."""
    ascii_id = unicodedata.normalize("NFKD", question_id).encode("ascii", "ignore").decode("ascii")
    base = NOT_NAME.sub("_", ascii_id.lower()).strip("_") or "q"
    if (
        not base[0].isalpha()
        or base in SPSS_RESERVED
        or base in STATA_RESERVED
        or STATA_STR_TYPE.match(base)
        or base in CSV_COLUMNS
    ):
        base = f"q_{base}"
    base = base[:NAME_MAX].rstrip("_")
    name, number = base, 1
    while name in taken:
        number += 1
        suffix = f"_{number}"
        name = base[: NAME_MAX - len(suffix)] + suffix
    taken.add(name)
    return name


def variables(versions: dict[tuple[str, int], services.VersionInfo]) -> list[Variable]:
    """One variable per question id, in the order of the workbook's Responses columns."""
    found: dict[str, Variable] = {}
    taken: set[str] = set()
    for column in services.response_columns(versions):
        question = column.question
        kind = _kind(question.type)
        variable = found.get(question.id)
        if variable is None:
            variable = found[question.id] = Variable(
                variable_name(question.id, taken), question.id, kind, question.prompt
            )
            if kind == YES_NO:
                variable.values = [(1, "true", "Yes"), (0, "false", "No")]
        elif variable.kind != kind:
            # Two instruments ask the same id as different types: keep the answer as text.
            variable.kind, variable.values = STRING, []
            continue
        if kind == CODED:
            variable.values += _new_choices(variable, question.choices)
    # Older versions' choices a newer version dropped keep their codes.
    for slug, version in sorted(versions, key=lambda key: (key[0], -key[1])):
        for question in versions[(slug, version)].questions:
            variable = found[question.id]
            if variable.kind == CODED and _kind(question.type) == CODED:
                variable.values += _new_choices(variable, question.choices)
    return list(found.values())


def _kind(question_type: str) -> str:
    return {"single_choice": CODED, "yes_no": YES_NO, "number": NUMERIC}.get(question_type, STRING)


def _new_choices(variable: Variable, choices: dict[str, str]) -> list[tuple[int, str, str]]:
    known = {stored for _, stored, _ in variable.values}
    added = []
    code = len(variable.values)
    for stored, label in choices.items():
        if stored not in known:
            code += 1
            added.append((code, stored, label))
            known.add(stored)
    return added


def load_variables(session: Session, scope: services.Scope) -> list[Variable]:
    versions = services.load_versions(session, services.versions_used(session, scope), scope.language)
    return variables(versions)


def syntax_tag(session: Session, scope: services.Scope, artifact: str) -> str:
    """The content hash of a syntax file: the scope (its file names, language) and the content
    hashes of the instrument versions it labels, which is all the file is made of."""
    fingerprint = services.Fingerprint(scope, artifact)
    used = services.versions_used(session, scope)
    digests = {}
    if used:
        rows = session.execute(
            select(Instrument.slug, InstrumentVersion.version, InstrumentVersion.content_hash)
            .join(Instrument, Instrument.id == InstrumentVersion.instrument_id)
            .where(Instrument.slug.in_(sorted({slug for slug, _ in used})))
        )
        digests = {(slug, version): digest for slug, version, digest in rows if (slug, version) in used}
    fingerprint.versions(digests)
    return fingerprint.hexdigest()


# ------------------------------------------------------------------------------------------- text


def one_line(text: str) -> str:
    return " ".join(text.split())


def cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, at a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


def spss_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def stata_string(text: str) -> str:
    # A "' pair would close the compound quotes early; a space keeps it from reading as one.
    escaped = text.replace("$", "\\$").replace("`", "\\`").replace("\"'", "\" '")
    return f'`"{escaped}"\''


def _comment(scope: services.Scope, program: str, content_hash: str) -> list[str]:
    return [
        f"* {program} written by surveykit ({services.EXPORT_FORMAT}) for {scope.target}"
        + (f", language {scope.language}" if scope.language else "")
        + ".",
        f"* It reads {file_stem(scope)}.csv (the CSV for statistics); run it from the folder "
        "holding that file.",
        f"* Content hash {content_hash}.",
    ]


# ------------------------------------------------------------------------------------------- SPSS


def spss_syntax(scope: services.Scope, found: Iterable[Variable], content_hash: str) -> str:
    found = list(found)
    country = ["  country A8"] if scope.all_countries else []
    lines = [
        "* Encoding: UTF-8.",
        *_comment(scope, "SPSS syntax", content_hash),
        "* Unicode mode can only be switched on with no dataset open.",
        "DATASET CLOSE ALL.",
        "NEW FILE.",
        "SET UNICODE=ON.",
        "GET DATA",
        "  /TYPE=TXT",
        f"  /FILE={spss_string(file_stem(scope) + '.csv')}",
        "  /ENCODING='UTF8'",
        "  /ARRANGEMENT=DELIMITED",
        "  /FIRSTCASE=2",
        "  /DELIMITERS=','",
        "  /QUALIFIER='\"'",
        "  /VARIABLES=",
        "  id A64",
        *country,
        "  section A4096",
        "  question_id A256",
        "  prompt A8192",
        "  answer A32767",
        "  probes_used A8192",
        "  stored_value A8192",
        "  language A32",
        "  revision F8.0.",
        "* A text the CSV neutralised against formulas begins with one extra apostrophe.",
        'IF (CHAR.SUBSTR(answer, 1, 1) = "\'") answer = CHAR.SUBSTR(answer, 2).',
        'IF (CHAR.SUBSTR(stored_value, 1, 1) = "\'") stored_value = CHAR.SUBSTR(stored_value, 2).',
    ]
    for variable in found:
        qid = spss_string(variable.question_id)
        if variable.kind == STRING:
            lines.append(f"STRING {variable.name} (A32767).")
            lines.append(f"IF (question_id = {qid}) {variable.name} = answer.")
        elif variable.kind == NUMERIC:
            lines.append(f"NUMERIC {variable.name} (F20.4).")
            lines.append(f"IF (question_id = {qid}) {variable.name} = NUMBER(answer, F40.10).")
        else:
            lines.append(f"NUMERIC {variable.name} (F8.0).")
            for code, stored, _ in variable.values:
                condition = f"question_id = {qid} AND stored_value = {spss_string(stored)}"
                lines.append(f"IF ({condition}) {variable.name} = {code}.")
    breaks = "id country" if scope.all_countries else "id"
    lines.append(f"SORT CASES BY {breaks}.")
    if found:
        lines.append(f"AGGREGATE /OUTFILE=* /PRESORTED /BREAK={breaks}")
        lines += [f"  /{v.name} = MAX({v.name})" for v in found]
        lines[-1] += "."
        labels = [
            f"{v.name} {spss_string(cut_bytes(one_line(v.label), SPSS_VARIABLE_LABEL_BYTES))}" for v in found
        ]
        lines.append("VARIABLE LABELS")
        lines.append("  " + "\n  /".join(labels) + ".")
        coded = [v for v in found if v.values]
        if coded:
            lines.append("VALUE LABELS")
            specs = [
                v.name
                + "".join(
                    f" {code} {spss_string(cut_bytes(one_line(label), SPSS_VALUE_LABEL_BYTES))}"
                    for code, _, label in sorted(v.values)
                )
                for v in coded
            ]
            lines.append("  " + "\n  /".join(specs) + ".")
    lines.append("EXECUTE.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ Stata


def stata_do(scope: services.Scope, found: Iterable[Variable], content_hash: str) -> str:
    found = list(found)
    csv_name = file_stem(scope) + ".csv"
    lines = [
        *_comment(scope, "Stata do-file", content_hash),
        "version 16",
        f'import delimited using {stata_string(csv_name)}, varnames(1) case(lower) encoding("utf-8") '
        "stringcols(_all) bindquote(strict) maxquotedrows(unlimited) clear",
        "* A text the CSV neutralised against formulas begins with one extra apostrophe.",
        'replace answer = substr(answer, 2, .) if substr(answer, 1, 1) == "\'"',
        'replace stored_value = substr(stored_value, 2, .) if substr(stored_value, 1, 1) == "\'"',
    ]
    for variable in found:
        qid = stata_string(variable.question_id)
        if variable.kind == STRING:
            lines.append(f"generate strL {variable.name} = answer if question_id == {qid}")
        elif variable.kind == NUMERIC:
            lines.append(f"generate double {variable.name} = real(answer) if question_id == {qid}")
        else:
            lines.append(f"generate double {variable.name} = .")
            for code, stored, _ in variable.values:
                lines.append(
                    f"replace {variable.name} = {code} if question_id == {qid} "
                    f"& stored_value == {stata_string(stored)}"
                )
    keys = "id country" if scope.all_countries else "id"
    lines.append(f"keep {keys}" + "".join(f" {v.name}" for v in found))
    lines.append(f"sort {keys}, stable")
    for variable in found:
        lines.append(
            f"by {keys}: replace {variable.name} = {variable.name}[_n-1] if missing({variable.name}) & _n > 1"
        )
    lines.append(f"by {keys}: keep if _n == _N")
    for variable in found:
        label = one_line(variable.label)[:STATA_VARIABLE_LABEL_CHARS]
        lines.append(f"label variable {variable.name} {stata_string(label)}")
    for variable in found:
        if not variable.values:
            continue
        pairs = "".join(
            f" {code} {stata_string(one_line(label)[:STATA_VALUE_LABEL_CHARS])}"
            for code, _, label in sorted(variable.values)
        )
        lines.append(f"label define {variable.name}{pairs}, replace")
        lines.append(f"label values {variable.name} {variable.name}")
    return "\n".join(lines) + "\n"


def syntax_file(session: Session, scope: services.Scope, artifact: str) -> tuple[str, str]:
    """The text of the ``sps`` or ``do`` file for ``scope`` and its content hash."""
    tag = syntax_tag(session, scope, artifact)
    found = load_variables(session, scope)
    text = spss_syntax(scope, found, tag) if artifact == "sps" else stata_do(scope, found, tag)
    return text, tag
