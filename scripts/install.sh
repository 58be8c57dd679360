#!/usr/bin/env bash
# Installs pivoice as a systemd service (Raspberry Pi OS Bookworm/Trixie, Debian 12+). Safe to run again.
#
#   sudo bash scripts/install.sh [--api-key-file FILE]   install or upgrade, enable and start
#        [--input-device PCM] [--output-device PCM]      the sound devices for a new config (else chosen)
#        [--token-url URL --device-secret-file FILE]     no API key here: tokens from the household's
#        [--token-ca-file FILE]                          key service (its CA, when not a public one)
#   sudo bash scripts/install.sh --uninstall [--purge]   remove (--purge also removes /etc/pivoice, /var/lib/pivoice)
#   bash scripts/install.sh --dry-run [--cards DIR] ...  print what would be done, change nothing
#                                                        (--cards: sound cards listed in DIR, not /proc/asound)
#
# What it does: apt packages; a venv at /opt/pivoice/venv with pivoice from this checkout (on a Raspberry
# Pi with its GPIO backend, lgpio); the system user 'pivoice' in the groups 'audio' and 'gpio';
# /etc/pivoice/pivoice.toml from config/ with the sound card to use (an existing file is never touched);
# the API key in /etc/pivoice/api-key (root-owned, mode 0600, handed to the service as a systemd
# credential), or with --device-secret-file the device secret in /etc/pivoice/device-secret and a unit
# drop-in (tokens.conf) that hands over that instead; the unit in /etc/systemd/system; enable and start.
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
token_url=""
secret_file=""
token_ca=""
input_device=""
output_device=""
asound=/proc/asound

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
# need_value OPTION WHAT VALUE: the option was given a value.
need_value() {
  [ -n "$3" ] || { echo "install.sh: $1 needs $2" >&2; exit 64; }
}

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --uninstall) mode=uninstall ;;
    --purge) purge=1 ;;
    --api-key-file) need_value "$1" "a file name" "${2:-}"; key_file="$2"; shift ;;
    --token-url) need_value "$1" "the key service's URL" "${2:-}"; token_url="$2"; shift ;;
    --device-secret-file) need_value "$1" "a file name" "${2:-}"; secret_file="$2"; shift ;;
    --token-ca-file) need_value "$1" "a file name" "${2:-}"; token_ca="$2"; shift ;;
    --input-device) need_value "$1" "an ALSA device name (arecord -L lists them)" "${2:-}"; input_device="$2"; shift ;;
    --output-device) need_value "$1" "an ALSA device name (aplay -L lists them)" "${2:-}"; output_device="$2"; shift ;;
    --cards) need_value "$1" "a directory holding 'cards' and 'pcm' as in /proc/asound" "${2:-}"; asound="$2"; shift ;;
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
for d in "$input_device" "$output_device"; do
  case "$d" in
    *[!A-Za-z0-9_:,=.@-]*) say "install.sh: '$d' is not an ALSA device name (arecord -L / aplay -L list them)" >&2; exit 64 ;;
  esac
done
if [ -n "$key_file" ] && [ ! -r "$key_file" ]; then
  say "install.sh: cannot read the API key file '$key_file'" >&2
  exit 66
fi
for f in "$secret_file" "$token_ca"; do
  if [ -n "$f" ] && [ ! -r "$f" ]; then say "install.sh: cannot read '$f'" >&2; exit 66; fi
done
if [ -n "$token_url$secret_file" ] && { [ -z "$token_url" ] || [ -z "$secret_file" ]; }; then
  say "install.sh: --token-url and --device-secret-file go together" >&2
  exit 64
fi
if [ -n "$token_url" ] && [ -n "$key_file" ]; then
  say "install.sh: give --api-key-file or --token-url with --device-secret-file, not both" >&2
  exit 64
fi
case "$token_url" in
  ''|https://*|http://127.0.0.1[:/]*|http://localhost[:/]*) ;;
  *) say "install.sh: --token-url must be https:// (plain http:// only to this machine)" >&2; exit 64 ;;
esac
case "$token_url" in
  *[!A-Za-z0-9._~:/@%+=-]*) say "install.sh: --token-url '$token_url' has a character a key service URL does not need (no query, no quotes)" >&2; exit 64 ;;
esac

uninstall() {
  if systemctl list-unit-files pivoice.service >/dev/null 2>&1; then
    run systemctl disable --now pivoice.service || true
  fi
  run rm -f "$unit"
  run systemctl daemon-reload
  run systemctl reset-failed pivoice.service 2>/dev/null || true
  run rm -rf "$prefix"
  if id "$user" >/dev/null 2>&1; then
    run userdel "$user"
  fi
  if [ "$purge" = 1 ]; then
    run rm -rf "$etc" "$unit.d" /var/lib/pivoice
    say "pivoice removed, with its configuration, API key, unit drop-ins ($unit.d) and state (/var/lib/pivoice)."
  else
    say "pivoice removed. Your configuration and API key stay in $etc (--purge removes them)."
  fi
}

# A Raspberry Pi (its kernel says so in the device tree, or in /proc/cpuinfo).
is_pi() {
  grep -qas "Raspberry Pi" /proc/device-tree/model || grep -qs "^Model.*Raspberry Pi" /proc/cpuinfo
}

install_packages() {
  # passwd: useradd and groupadd (not in a minimal Debian 13).
  local packages=(python3-venv python3-dev gcc pkg-config libasound2-dev libsystemd-dev alsa-utils passwd)
  # swig: lgpio (the GPIO backend) builds from source where PyPI has no wheel for this Python.
  if is_pi; then packages+=(swig); fi
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
  if is_pi; then
    # The extra 'pi': lgpio, gpiozero's pin backend (the only one on a Pi 5, and the one with PWM).
    # PYPI=1 makes its source build bundle the C library rather than look for a system liblgpio.
    say "Raspberry Pi: installing the GPIO backend lgpio too"
    run env PYPI=1 "$prefix/venv/bin/python" -m pip install -q --upgrade "${src}[pi]"
  else
    run "$prefix/venv/bin/python" -m pip install -q --upgrade "$src"
  fi
  run install -m 0644 "$src/README.md" "$prefix/README.md"
}

# devices KIND: one line "CARD_ID DEVICE_NUMBER CARD_NAME" per ALSA device that can KIND (capture or
# playback), from $asound/pcm ("02-00: name : name : playback 1 : capture 1") and $asound/cards
# (" 2 [seeed2micvoicec]: seeed-2mic-voic - seeed-2mic-voicecard").
devices() {
  local kind=$1 line index dev id name
  [ -r "$asound/pcm" ] && [ -r "$asound/cards" ] || return 0
  while IFS= read -r line; do
    case "$line" in *" : $kind "*) ;; *) continue ;; esac
    index=$((10#${line%%-*}))
    dev=${line%%:*}
    dev=$((10#${dev#*-}))
    id=$(sed -n "s/^ *$index \[\([^] ]*\) *\]: .* - \(.*\)\$/\1/p" "$asound/cards")
    name=$(sed -n "s/^ *$index \[\([^] ]*\) *\]: .* - \(.*\)\$/\2/p" "$asound/cards")
    [ -n "$id" ] && printf '%s %s %s\n' "$id" "$dev" "$name"
  done < "$asound/pcm"
}

# choose KIND WHAT KEY PREFERRED_CARD: sets $chosen to the ALSA device for audio.KEY in the new config,
# and says why. One device that can KIND (capture or playback): that one. Several: ask on a terminal,
# else take PREFERRED_CARD's or the first. None: "default".
choose() {
  local kind=$1 what=$2 key=$3 preferred=$4 list n pick=1 i id dev name
  list=$(devices "$kind")
  n=$(printf '%s' "$list" | grep -c . || true)
  if [ "$n" = 0 ]; then
    say "$what: no sound card for $kind found (in $asound); leaving audio.$key = \"default\", which under the service may reach nothing: set it when the card is there (arecord -L / aplay -L)"
    chosen=default
    return
  fi
  if [ "$n" -gt 1 ]; then
    if [ -n "$preferred" ]; then
      i=$(printf '%s\n' "$list" | awk -v c="$preferred" '$1 == c {print NR; exit}')
      [ -n "$i" ] && pick=$i
    fi
    if [ -t 0 ]; then  # (in a dry run too: it shows what would be written)
      say "$what: these devices can do $kind:"
      printf '%s\n' "$list" | awk '{d = "plughw:CARD=" $1 ",DEV=" $2; $1 = $2 = ""; sub(/^ +/, ""); printf "  %d) %s  (%s)\n", NR, d, $0}'
      read -r -p "Which one should pivoice use? [$pick] " i
      case "$i" in ''|*[!0-9]*) ;; *) if [ "$i" -ge 1 ] && [ "$i" -le "$n" ]; then pick=$i; fi ;; esac
    fi
  fi
  read -r id dev name <<<"$(printf '%s\n' "$list" | sed -n "${pick}p")"
  chosen="plughw:CARD=$id,DEV=$dev"
  if [ "$n" = 1 ]; then
    say "$what: $chosen ($name), the only sound card for $kind"
  else
    say "$what: $chosen ($name), one of $n sound devices for $kind (to use another: audio.$key in $etc/pivoice.toml, or install with --${key%_device}-device)"
  fi
}

install_config() {
  run install -d -m 0755 "$etc"
  if [ -e "$etc/pivoice.toml" ]; then
    kept_config=1
    say "config: keeping your $etc/pivoice.toml (the documented default is $src/config/pivoice.toml)"
    if [ -n "$input_device$output_device" ]; then
      say "config: --input-device/--output-device are not applied to an existing config; edit [audio] in it"
    fi
    return
  fi
  # Under the service, ALSA's 'default' often reaches nothing (where a desktop sound server runs, it
  # routes there, out of the service's reach): the new config names the card.
  local input=$input_device output=$output_device chosen
  if [ -z "$input" ]; then choose capture microphone input_device ""; input=$chosen; fi
  if [ -z "$output" ]; then
    # The microphone's card, when it also plays (a HAT, a USB speakerphone).
    choose playback speaker output_device "$(printf '%s' "$input" | sed -n 's/^plughw:CARD=\([^,]*\),.*/\1/p')"
    output=$chosen
  fi
  run install -m 0644 "$src/config/pivoice.toml" "$etc/pivoice.toml"
  set_key audio input_device "$input"
  set_key audio output_device "$output"
  if [ -n "$token_url" ]; then
    set_key live token_url "$token_url"
    [ -z "$token_ca" ] || set_key live token_ca_file "$etc/token-ca.pem"
  fi
}

# set_key SECTION KEY VALUE: KEY = "VALUE" in the new config, where it is "default" ([audio]) or ""
# ([live]). (VALUE: a checked device name, the https:// URL checked above, or a path of ours.)
set_key() {
  local section=$1
  shift
  if [ "$dry" = 1 ]; then
    say "would set $section.$1 = \"$2\" in $etc/pivoice.toml"
  else
    sed -i -e "s|^$1 = \"default\"\$|$1 = \"$2\"|" -e "s|^$1 = \"\"\$|$1 = \"$2\"|" "$etc/pivoice.toml"
    grep -qxF "$1 = \"$2\"" "$etc/pivoice.toml" || { say "install.sh: could not set $section.$1 in $etc/pivoice.toml" >&2; exit 70; }
  fi
}

# Tokens from the key service: the device secret as the credential pivoice-device-secret, handed over by
# a drop-in that also drops the unit's gemini-api-key credential (its file need not exist here).
install_secret() {
  run install -m 0600 -o root -g root "$secret_file" "$etc/device-secret"
  [ -z "$token_ca" ] || run install -m 0644 -o root -g root "$token_ca" "$etc/token-ca.pem"
  run install -d -m 0755 "$unit.d"
  if [ "$dry" = 1 ]; then
    say "would write $unit.d/tokens.conf (LoadCredential=pivoice-device-secret:$etc/device-secret)"
  else
    printf '%s\n' "# install.sh --device-secret-file: tokens from the household's key service; no API key here." \
      "[Service]" "LoadCredential=" "LoadCredential=pivoice-device-secret:$etc/device-secret" > "$unit.d/tokens.conf"
  fi
  [ ! -e "$etc/api-key" ] || say "API key: this speaker no longer uses $etc/api-key; delete it: sudo shred -u $etc/api-key"
  # An existing config gets the key service's URL where it has none yet (what the options ask for); one
  # that names another is left alone, and the service is not restarted with it.
  if [ "$kept_config" = 1 ]; then
    if grep -q '^api_key_file = "[^"]' "$etc/pivoice.toml"; then
      say "config: your $etc/pivoice.toml names live.api_key_file: clear it (api_key_file = \"\") and set token_url = \"$token_url\", then: sudo systemctl restart pivoice"
      return 1
    fi
    if grep -qx 'token_url = ""' "$etc/pivoice.toml"; then
      set_key live token_url "$token_url"
      if [ -n "$token_ca" ] && grep -qx 'token_ca_file = ""' "$etc/pivoice.toml"; then
        set_key live token_ca_file "$etc/token-ca.pem"
      fi
      say "config: live.token_url set in your $etc/pivoice.toml"
    elif ! grep -qxF "token_url = \"$token_url\"" "$etc/pivoice.toml"; then
      say "config: set token_url = \"$token_url\" in [live] of your $etc/pivoice.toml, then: sudo systemctl restart pivoice"
      return 1
    fi
  fi
}

# Returns 0 when a key is in place afterwards.
install_key() {
  local key=""
  if [ -n "$secret_file" ]; then
    install_secret
    return
  fi
  # Back from tokens to a key: the drop-in would keep the key's credential from the service.
  if [ -e "$unit.d/tokens.conf" ]; then
    run rm -f "$unit.d/tokens.conf"
    say "tokens: removed $unit.d/tokens.conf (the service gets the API key again); clear token_url in [live] of $etc/pivoice.toml"
  fi
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
kept_config=0
install_config
have_key=0
install_key && have_key=1
install_unit
if [ "$have_key" = 1 ]; then
  run systemctl restart pivoice.service
  say "pivoice is installed and running. Check it with: systemctl status pivoice; journalctl -u pivoice -f"
else
  say "pivoice is installed but not started (no API key or device secret yet). Then check: systemctl status pivoice"
fi
