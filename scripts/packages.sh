# The Debian packages the build and the tests need, for .ci/run and scripts/test.sh to source,
# so the two cannot come to install different sets.

# Building: rdkafka builds librdkafka with cmake, against OpenSSL and curl. kcat: the broker
# scripts and tests read and dump topics with it.
BUILD_PACKAGES=(cmake pkg-config libssl-dev libcurl4-openssl-dev kcat)
# Testing, on top: chromium for the status page's browser test; prometheus for promtool, which
# checks /metrics and the shipped alerting rules; python3-venv and python3-pip for the
# generated-clients test's schemathesis.
TEST_PACKAGES=(chromium chromium-driver prometheus python3-venv python3-pip)

# ensure_packages PKG...: installs those not installed yet. The package lists are fetched only
# when one is missing and cannot be installed from the lists the machine already has.
ensure_packages() {
  local need=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  [ ${#need[@]} -gt 0 ] || return 0
  echo "$0: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "${need[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
}
