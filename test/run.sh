#!/bin/bash
# The whole test suite: builds what is missing, then runs vitest (unit and end-to-end tests).
# As root it creates an unprivileged user with subordinate id ranges and runs tsrun as that
# user; as a normal user it needs ranges in /etc/subuid and /etc/subgid for that user.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/Release/tsrun_native.node ] && [ -f build/Release/tsrun-monitor ] || npx node-gyp rebuild
npm run --silent build:ts
exec npx vitest run "$@"
