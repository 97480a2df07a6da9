#!/usr/bin/env bash
# The suite drives Debian's Chromium with Playwright (no browser download),
# validates docker/compose.yaml with Debian's docker-compose and talks DICOM to
# DCMTK, Orthanc and dicom3tools; the SSO tests run npm's oidc-provider on Node.js. Install them when
# missing and we can; browser tests fail under CI=true when no browser is there,
# and skip loudly elsewhere.
set -u
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v docker-compose >/dev/null || need+=(docker-compose)
# Real DICOM software as peers: DCMTK as a modality, Orthanc as the PACS, dicom3tools' validator.
command -v storescu >/dev/null || need+=(dcmtk)
[ -x /usr/sbin/Orthanc ] || need+=(orthanc)
command -v dciodvfy >/dev/null || need+=(dicom3tools)
# A real OpenID provider for the single sign-on tests: npm's oidc-provider (tests/oidc) run by Node.js.
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
oidc_modules() {  # the locked versions, from npm's cache when it has them
    local dir
    dir="$(dirname "$0")/../tests/oidc"
    [ -d "$dir/node_modules/oidc-provider" ] && return 0
    command -v npm >/dev/null || return 0
    (cd "$dir" && (npm ci --offline --no-audit --no-fund || npm ci --no-audit --no-fund)) >/tmp/pneumo-test-oidc.log 2>&1 \
        || echo "WARNING: npm ci in tests/oidc failed (see /tmp/pneumo-test-oidc.log)"
}
[ ${#need[@]} -eq 0 ] && { oidc_modules; exit 0; }
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "Installing Debian packages for the test suite: ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") \
        >/tmp/pneumo-test-tools.log 2>&1 || echo "WARNING: could not install ${need[*]} (see /tmp/pneumo-test-tools.log)"
else
    echo "WARNING: ${need[*]} missing and cannot be installed here; the tests that need them will skip (fail under CI)."
fi
oidc_modules
exit 0
