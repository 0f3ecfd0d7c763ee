"""Agreement between two coders, per code: percent agreement and Cohen's kappa.

The unit is one answer: an interview's answer to one question. The units compared are the answers
that either coder coded with any code. For each code, each coder either applied it to a unit (one or
more codings of that answer with that code) or did not, which gives a 2×2 table over the units::

                     second: yes   second: no
        first: yes        a             b
        first: no         c             d           n = a + b + c + d

- percent agreement ``po = (a + d) / n``;
- chance agreement ``pe = ((a + b)(a + c) + (c + d)(b + d)) / n²``;
- Cohen's kappa ``(po - pe) / (1 - pe)``.

Kappa is undefined when ``pe = 1``: both coders gave every unit the same constant answer (both applied
the code everywhere, or neither applied it anywhere). It is then reported as null with the reason,
as both figures are when there is no unit at all.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

Unit = Hashable  # (interview uuid, question id) in the service; anything hashable here
NO_UNITS = "neither coder coded any answer"
KAPPA_UNDEFINED = (
    "kappa is undefined: both coders made the same choice for every unit (chance agreement is 1)"
)


@dataclass(frozen=True)
class CodeAgreement:
    code_id: Any
    both: int  # a
    first_only: int  # b
    second_only: int  # c
    neither: int  # d
    percent_agreement: float | None
    kappa: float | None
    note: str | None

    @property
    def units(self) -> int:
        return self.both + self.first_only + self.second_only + self.neither

    def as_json(self) -> dict[str, Any]:
        return {
            "code_id": self.code_id,
            "units": self.units,
            "table": {
                "both": self.both,
                "first_only": self.first_only,
                "second_only": self.second_only,
                "neither": self.neither,
            },
            "percent_agreement": self.percent_agreement,
            "kappa": self.kappa,
            "note": self.note,
        }


def table_figures(a: int, b: int, c: int, d: int) -> tuple[Fraction | None, Fraction | None, str | None]:
    """Percent agreement (as a fraction of 1), kappa and the reason either is missing."""
    n = a + b + c + d
    if n == 0:
        return None, None, NO_UNITS
    observed = Fraction(a + d, n)
    chance = Fraction((a + b) * (a + c) + (c + d) * (b + d), n * n)
    if chance == 1:
        return observed, None, KAPPA_UNDEFINED
    return observed, (observed - chance) / (1 - chance), None


def code_agreement(code_id: Any, first: set[Unit], second: set[Unit], units: set[Unit]) -> CodeAgreement:
    """The figures of one code: ``first`` and ``second`` are the units each coder applied it to."""
    a = len(first & second)
    b = len(first - second)
    c = len(second - first)
    d = len(units) - a - b - c
    observed, kappa, note = table_figures(a, b, c, d)
    return CodeAgreement(
        code_id,
        a,
        b,
        c,
        d,
        None if observed is None else round(float(observed) * 100, 2),
        None if kappa is None else round(float(kappa), 4),
        note,
    )


def agreement(
    first: Iterable[tuple[Unit, Any]],
    second: Iterable[tuple[Unit, Any]],
    codes: Iterable[Any] | None = None,
) -> tuple[set[Unit], list[CodeAgreement]]:
    """The units compared and the figures per code, from each coder's (unit, code) pairs.

    ``codes`` limits (or extends) the codes reported; by default every code either coder applied.
    """
    first_by_code: dict[Any, set[Unit]] = {}
    second_by_code: dict[Any, set[Unit]] = {}
    units: set[Unit] = set()
    for pairs, by_code in ((first, first_by_code), (second, second_by_code)):
        for unit, code in pairs:
            units.add(unit)
            by_code.setdefault(code, set()).add(unit)
    wanted = sorted(set(first_by_code) | set(second_by_code)) if codes is None else list(codes)
    return units, [
        code_agreement(code, first_by_code.get(code, set()), second_by_code.get(code, set()), units)
        for code in wanted
    ]
