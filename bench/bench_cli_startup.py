"""How long `surveykit --help` and `surveykit --version` take to start, and, with --against, the same
for another checkout of the package (an older commit's `surveykit/` folder) in the same run.

    .venv/bin/python bench/bench_cli_startup.py --runs 9
    git archive <commit> surveykit | tar -x -C /tmp/base
    .venv/bin/python bench/bench_cli_startup.py --runs 9 --against /tmp/base
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

PROBE = (
    "import sys\n"
    "if sys.argv[1]:\n"
    "    sys.path.insert(0, sys.argv[1])\n"
    "from surveykit.cli import main\n"
    "sys.argv = ['surveykit', sys.argv[2]]\n"
    "main()\n"
)


def median_seconds(source: str, flag: str, runs: int) -> float | None:
    """The median wall time, or None when that version has no such flag."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROBE, source, flag], capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            if source and "No such option" in done.stderr:
                return None
            raise SystemExit(f"surveykit {flag} failed: {done.stderr[-2000:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per figure (the median is printed)")
    parser.add_argument("--against", default="", help="a folder holding another version's surveykit/ package")
    args = parser.parse_args()
    print(f"settings: runs={args.runs} python={sys.executable}")
    sources = [("this checkout", "")] + (
        [(f"--against {args.against}", args.against)] if args.against else []
    )
    for flag in ("--help", "--version"):
        for label, source in sources:
            seconds = median_seconds(source, flag, args.runs)
            shown = "n/a (no such option)" if seconds is None else f"{seconds * 1000:7.0f} ms"
            print(f"surveykit {flag:9} {label:30} median {shown}")


if __name__ == "__main__":
    main()
