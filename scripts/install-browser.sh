#!/usr/bin/env bash
# Install a headless browser for the report's end-to-end tests: Debian's chromium
# and chromium-driver. Never fails the build: when nothing can be installed it says
# why and exits 0, and the browser tests then skip with that reason.
#
#   scripts/install-browser.sh          # install if missing
#   ATTNFLOW_NO_BROWSER=1 make test     # skip installing (browser tests will skip, with a reason)
set -u

say() { printf 'install-browser: %s\n' "$*"; }

find_browser() {
    for name in chromium chromium-browser google-chrome; do
        command -v "$name" >/dev/null 2>&1 && return 0
    done
    return 1
}

find_driver() {
    command -v chromedriver >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromedriver ]
}

if [ -n "${ATTNFLOW_NO_BROWSER:-}" ]; then
    say "ATTNFLOW_NO_BROWSER is set; not installing a browser."
    exit 0
fi

if find_browser && find_driver; then
    say "chromium and chromedriver are already installed."
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get here; install chromium and chromedriver yourself to run the browser tests (they will skip)."
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        say "not root and no password-less sudo; cannot install chromium (the browser tests will skip)."
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
say "installing chromium and chromium-driver with apt-get (quietly; a minute or two)..."
if ! $SUDO apt-get update -qq >/tmp/attnflow-install-browser.log 2>&1; then
    say "apt-get update failed (see /tmp/attnflow-install-browser.log); the browser tests will skip."
    exit 0
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core \
        >>/tmp/attnflow-install-browser.log 2>&1; then
    say "apt-get install failed (see /tmp/attnflow-install-browser.log); the browser tests will skip."
    exit 0
fi

if find_browser && find_driver; then
    say "installed: $(chromium --version 2>/dev/null | head -n 1)"
else
    say "chromium did not install as expected (see /tmp/attnflow-install-browser.log); the browser tests will skip."
fi
exit 0
