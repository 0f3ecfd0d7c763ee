#!/bin/sh
# Re-fetch the vendored axe-core (used only by the browser tests to check accessibility) from the npm
# registry: the pinned version's minified script and its licence.
#   scripts/refetch-axe-core.sh            # the pinned version
#   scripts/refetch-axe-core.sh 4.15.0     # another one (then update the pin below)
set -eu
VERSION="${1:-4.14.1}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="$HERE/tests/browser/vendor/axe-core"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack --silent "axe-core@$VERSION" >/dev/null
tar -xzf "axe-core-$VERSION.tgz"
mkdir -p "$TARGET"
cp package/axe.min.js package/LICENSE "$TARGET/"
echo "$VERSION" > "$TARGET/VERSION"
(cd "$TARGET" && sha256sum axe.min.js LICENSE > SHA256SUMS)
echo "axe-core $VERSION -> $TARGET"
