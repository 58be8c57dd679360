#!/usr/bin/env bash
# Installs the household's key service, `pivoice token-service`, on one always-on Debian machine (a Pi, a
# NAS, a Home Assistant host), so that the speakers hold no Gemini API key. Safe to run again.
#
#   sudo bash scripts/install-token-service.sh [--api-key-file FILE] [--tls-cert FILE --tls-key FILE]
#   sudo bash scripts/install-token-service.sh --add-device NAME   add a speaker: prints its secret once
#   sudo bash scripts/install-token-service.sh --uninstall         (/etc/pivoice stays)
#
# What it does: the packages pivoice builds with; the venv /opt/pivoice/venv with pivoice and its extra
# 'tokens' (shared with a speaker on the same machine); the system user 'pivoice-tokens';
# /etc/pivoice/tokens.toml from config/ (never touching yours: with --tls-cert/--tls-key a new one listens
# on the network with that certificate, else on 127.0.0.1 only); /etc/pivoice/devices; the API key in
# /etc/pivoice/api-key (root-owned, 0600, a systemd credential); systemd/pivoice-tokens.service; enable
# and start.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/pivoice
etc=/etc/pivoice
unit=/etc/systemd/system/pivoice-tokens.service
user=pivoice-tokens
mode=install
key_file=""
cert=""
tls_key=""
device=""

say() { printf '%s\n' "$*"; }
fail() { say "install-token-service.sh: $2" >&2; exit "$1"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --api-key-file) key_file="${2:-}"; [ -r "$key_file" ] || fail 66 "cannot read the API key file '$key_file'"; shift ;;
    --tls-cert) cert="${2:-}"; [ -r "$cert" ] || fail 66 "cannot read the certificate '$cert'"; shift ;;
    --tls-key) tls_key="${2:-}"; [ -r "$tls_key" ] || fail 66 "cannot read the private key '$tls_key'"; shift ;;
    --add-device) mode=add; device="${2:-}"; [ -n "$device" ] || fail 64 "--add-device needs the speaker's name"; shift ;;
    --uninstall) mode=uninstall ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail 64 "unknown option '$1' (--help lists them)" ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || fail 77 "run it as root (sudo bash scripts/install-token-service.sh)"
if [ -n "$cert$tls_key" ] && { [ -z "$cert" ] || [ -z "$tls_key" ]; }; then
  fail 64 "--tls-cert and --tls-key go together"
fi

if [ "$mode" = add ]; then
  "$prefix/venv/bin/pivoice" token-service add-device "$device" --config "$etc/tokens.toml"
  if systemctl is-active --quiet pivoice-tokens; then systemctl reload pivoice-tokens; fi
  exit 0
fi
if [ "$mode" = uninstall ]; then
  systemctl disable --now pivoice-tokens.service 2>/dev/null || true
  rm -f "$unit"
  systemctl daemon-reload
  if id "$user" >/dev/null 2>&1; then userdel "$user"; fi
  say "key service removed; /etc/pivoice (config, devices, API key) and the venv stay."
  exit 0
fi

# pyalsaaudio and systemd-python (pivoice's own dependencies) are compiled where there is no wheel.
packages=(python3-venv python3-dev gcc pkg-config libasound2-dev libsystemd-dev passwd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin --user-group "$user"
[ -x "$prefix/venv/bin/python" ] || python3 -m venv "$prefix/venv"
"$prefix/venv/bin/python" -m pip install -q --upgrade "${src}[tokens]"
install -m 0644 "$src/README.md" "$prefix/README.md"

install -d -m 0755 "$etc"
if [ -n "$cert" ]; then
  install -m 0644 -o root -g root "$cert" "$etc/tokens-cert.pem"
  install -m 0640 -o root -g "$user" "$tls_key" "$etc/tokens-key.pem"
fi
if [ -e "$etc/tokens.toml" ]; then
  say "config: keeping your $etc/tokens.toml (the documented default is $src/config/tokens.toml)"
else
  install -m 0644 "$src/config/tokens.toml" "$etc/tokens.toml"
  if [ -n "$cert" ]; then
    sed -i -e 's|^listen = "127.0.0.1"$|listen = "0.0.0.0"|' \
      -e "s|^tls_cert_file = \"\"\$|tls_cert_file = \"$etc/tokens-cert.pem\"|" \
      -e "s|^tls_key_file = \"\"\$|tls_key_file = \"$etc/tokens-key.pem\"|" "$etc/tokens.toml"
    say "config: listening on the network (port 8443) with TLS from $etc/tokens-cert.pem"
  else
    say "config: listening on 127.0.0.1:8443 only (no --tls-cert/--tls-key): put a TLS reverse proxy in front"
  fi
fi
# The devices file: hashes only, readable by the service, written by root (add-device).
[ -e "$etc/devices" ] || install -m 0640 -o root -g "$user" /dev/null "$etc/devices"

have_key=1
if [ -n "$key_file" ]; then
  install -m 0600 -o root -g root "$key_file" "$etc/api-key"
elif [ -s "$etc/api-key" ]; then
  say "API key: keeping $etc/api-key"
  chown root:root "$etc/api-key" && chmod 0600 "$etc/api-key"
else
  say "API key: none given. Put it in $etc/api-key (root-owned, chmod 600), then: sudo systemctl start pivoice-tokens"
  have_key=0
fi

install -m 0644 "$src/systemd/pivoice-tokens.service" "$unit"
systemctl daemon-reload
systemctl enable pivoice-tokens.service
if [ "$have_key" = 1 ]; then
  systemctl restart pivoice-tokens.service
  say "key service running. Add each speaker: sudo bash scripts/install-token-service.sh --add-device NAME"
fi
