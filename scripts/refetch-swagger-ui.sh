#!/bin/sh
# Re-fetch the vendored Swagger UI (served at /api/v1/docs) from the npm registry: the pinned
# version of swagger-ui-dist, only the files the page needs, and its licence.
#   scripts/refetch-swagger-ui.sh            # the pinned version
#   scripts/refetch-swagger-ui.sh 5.37.0     # another one (then update the pin below and README)
set -eu
VERSION="${1:-5.36.0}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="$HERE/surveykit/static/vendor/swagger-ui"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null
tar -xzf "swagger-ui-dist-$VERSION.tgz"
mkdir -p "$TARGET"
for file in swagger-ui-bundle.js swagger-ui.css LICENSE; do
    cp "package/$file" "$TARGET/$file"
done
echo "$VERSION" > "$TARGET/VERSION"
(cd "$TARGET" && sha256sum swagger-ui-bundle.js swagger-ui.css LICENSE > SHA256SUMS)
echo "swagger-ui-dist $VERSION -> $TARGET"
