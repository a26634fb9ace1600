#!/usr/bin/env bash
# Installs the observability tools the tests run for real, from Debian's packages, when missing:
# promtool and prometheus (package prometheus), prometheus-alertmanager and amtool
# (prometheus-alertmanager), and docker-compose (it validates the compose file without a Docker
# daemon). Needs root or sudo.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "observability tools present"
  exit 0
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
echo "installing ${missing[*]} (Debian packages)"
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# Where an init system starts the packages' own services, they do not disturb the tests: the
# tests start their own instances on free ports.
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
