#!/usr/bin/env bash
# Installs pivoice as a systemd service (Raspberry Pi OS Bookworm/Trixie, Debian 12+). Safe to run again.
#
#   sudo bash scripts/install.sh [--api-key-file FILE]   install or upgrade, enable and start
#   sudo bash scripts/install.sh --uninstall [--purge]   remove (--purge also removes /etc/pivoice)
#   bash scripts/install.sh --dry-run [...]              print what would be done, change nothing
#
# What it does: apt packages; a venv at /opt/pivoice/venv with pivoice from this checkout; the system
# user 'pivoice' in the groups 'audio' and 'gpio'; /etc/pivoice/pivoice.toml from config/ (an existing
# file is never overwritten); the API key in /etc/pivoice/api-key (root-owned, mode 0600, handed to the
# service as a systemd credential); the unit in /etc/systemd/system; enable and start.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/pivoice
etc=/etc/pivoice
unit=/etc/systemd/system/pivoice.service
user=pivoice

dry=0
mode=install
purge=0
key_file=""

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --uninstall) mode=uninstall ;;
    --purge) purge=1 ;;
    --api-key-file)
      [ $# -ge 2 ] || { echo "install.sh: --api-key-file needs a file name" >&2; exit 64; }
      key_file="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$1'" >&2; usage >&2; exit 64 ;;
  esac
  shift
done

say() { printf '%s\n' "$*"; }
# run CMD...: do it, or print it in a dry run.
run() {
  if [ "$dry" = 1 ]; then
    say "would run: $*"
  else
    "$@"
  fi
}

if [ "$dry" = 0 ] && [ "$(id -u)" -ne 0 ]; then
  say "install.sh: run it as root (sudo bash scripts/install.sh), or with --dry-run to see what it does" >&2
  exit 77
fi
if [ -n "$key_file" ] && [ ! -r "$key_file" ]; then
  say "install.sh: cannot read the API key file '$key_file'" >&2
  exit 66
fi

uninstall() {
  if systemctl list-unit-files pivoice.service >/dev/null 2>&1; then
    run systemctl disable --now pivoice.service || true
  fi
  run rm -f "$unit"
  run systemctl daemon-reload
  run rm -rf "$prefix"
  if id "$user" >/dev/null 2>&1; then
    run userdel "$user"
  fi
  if [ "$purge" = 1 ]; then
    run rm -rf "$etc"
    say "pivoice removed, with its configuration and API key."
  else
    say "pivoice removed. Your configuration and API key stay in $etc (--purge removes them)."
  fi
}

install_packages() {
  local packages=(python3-venv python3-dev gcc pkg-config libasound2-dev libsystemd-dev alsa-utils)
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    run apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    say "system packages: all there"
  fi
}

install_user() {
  getent group gpio >/dev/null || run groupadd --system gpio
  if id "$user" >/dev/null 2>&1; then
    run usermod -a -G audio,gpio "$user"
  else
    run useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
      --user-group --groups audio,gpio "$user"
  fi
}

install_venv() {
  [ -x "$prefix/venv/bin/python" ] || run python3 -m venv "$prefix/venv"
  run "$prefix/venv/bin/python" -m pip install -q --upgrade pip
  run "$prefix/venv/bin/python" -m pip install -q --upgrade "$src"
  run install -m 0644 "$src/README.md" "$prefix/README.md"
}

install_config() {
  run install -d -m 0755 "$etc"
  if [ -e "$etc/pivoice.toml" ]; then
    say "config: keeping your $etc/pivoice.toml (the documented default is $src/config/pivoice.toml)"
  else
    run install -m 0644 "$src/config/pivoice.toml" "$etc/pivoice.toml"
  fi
}

# Returns 0 when a key is in place afterwards.
install_key() {
  local key=""
  if [ -n "$key_file" ]; then
    run install -m 0600 -o root -g root "$key_file" "$etc/api-key"
    return 0
  fi
  if [ -s "$etc/api-key" ]; then
    say "API key: keeping $etc/api-key"
    run chown root:root "$etc/api-key"
    run chmod 0600 "$etc/api-key"
    return 0
  fi
  if [ "$dry" = 0 ] && [ -t 0 ]; then
    read -r -s -p "Gemini API key (from https://aistudio.google.com/apikey; input hidden): " key
    echo
  fi
  if [ -z "$key" ]; then
    say "API key: none given. Put it in $etc/api-key (root-owned, chmod 600), then: sudo systemctl start pivoice"
    return 1
  fi
  (umask 077 && printf '%s\n' "$key" > "$etc/api-key")
  chown root:root "$etc/api-key"
  return 0
}

install_unit() {
  run install -m 0644 "$src/systemd/pivoice.service" "$unit"
  run systemctl daemon-reload
  run systemctl enable pivoice.service
}

if [ "$mode" = uninstall ]; then
  uninstall
  exit 0
fi

install_packages
install_user
install_venv
install_config
have_key=0
install_key && have_key=1
install_unit
if [ "$have_key" = 1 ]; then
  run systemctl restart pivoice.service
  say "pivoice is installed and running. Check it with: systemctl status pivoice; journalctl -u pivoice -f"
else
  say "pivoice is installed but not started (no API key yet). Then check: systemctl status pivoice"
fi
