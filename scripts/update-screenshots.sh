#!/bin/sh
# Re-take the screenshots the guides in docs/ show: the browser tests save them into docs/img.
#   scripts/update-screenshots.sh                 # every browser test
#   scripts/update-screenshots.sh -k console      # some of them
set -eu
HERE="$(cd "$(dirname "$0")/.." && pwd)"
cd "$HERE"
SURVEYKIT_SCREENSHOT_DIR="$HERE/docs/img" SURVEYKIT_TEST_REQUIRE_BROWSER=1 \
  .venv/bin/python -m pytest -q tests/browser "$@"
