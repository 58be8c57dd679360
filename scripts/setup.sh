#!/usr/bin/env bash
# Sets up pivoice in this checkout: system packages, a virtual environment in .venv, pivoice in it.
#   bash scripts/setup.sh          what `pivoice run` needs
#   bash scripts/setup.sh --dev    plus what the tests need (PulseAudio as a virtual sound card, sox, ...)
# Safe to run again. Uses sudo for apt when not root. Debian 12+ / Raspberry Pi OS Bookworm or Trixie.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
case "${1:-}" in
  --dev) dev=1 ;;
  "") ;;
  *) echo "usage: bash scripts/setup.sh [--dev]" >&2; exit 64 ;;
esac

# Build headers for pyalsaaudio and systemd-python, the venv module, ALSA's tools.
packages=(python3-venv python3-dev gcc pkg-config libasound2-dev libsystemd-dev alsa-utils)
if [ "$dev" = 1 ]; then
  # PulseAudio + ALSA's pulse plugin: the paced virtual sound card; sox: decodes a test clip;
  # systemd: systemd-analyze and journald for the service tests; shellcheck: the shell scripts;
  # mmdebstrap + systemd-container: Debian roots booted with systemd-nspawn, where tests/test_systemd.py
  # installs the service and drives it with systemctl (needs root).
  packages+=(pulseaudio pulseaudio-utils libasound2-plugins sox systemd shellcheck mmdebstrap systemd-container)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi
echo "pivoice is set up in .venv: run it with .venv/bin/pivoice run (needs GEMINI_API_KEY)"
