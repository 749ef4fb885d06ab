#!/usr/bin/env bash
# Debian packages dsq needs on a fresh machine: Redis (broker), PostgreSQL 15 client/server tools
# (tests start a throwaway cluster), docker-compose (validates docker-compose.yml), chromium (headless
# browser tests of the dashboard), and a C++ compiler (llama-cpp-python's build; kernels/fused.py's
# torch.compile kernels; g++ brings cc, which builds kernels/native.py's C search).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || need+=(postgresql)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v chromium >/dev/null || need+=(chromium)   # dashboard browser tests
command -v g++ >/dev/null && command -v cc >/dev/null || need+=(g++)  # llama-cpp-python build, compiled CPU kernels, kernels/native.py (cc)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "installing Debian packages: ${need[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
