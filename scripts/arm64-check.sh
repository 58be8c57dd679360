#!/usr/bin/env bash
# pivoice on arm64 (the Raspberry Pi's architecture), under qemu user-mode emulation, from an x86_64
# Debian machine, as root. For Debian bookworm and trixie (the bases of Raspberry Pi OS, Python 3.11 and
# 3.13) it builds an arm64 root with nothing but Debian's minimal base in it, installs pivoice there with
# the README's own command (bash scripts/setup.sh: the system packages, the aarch64 wheels, pyalsaaudio
# and systemd-python compiled by the root's gcc), and runs there: pivoice --help, pivoice check (a fake
# key), the wake engine on the test clips against this machine's scores, gpiozero's board detection for a
# Pi 4 and a Pi 5, and the test files that need no sound server or journald. One line per step, with its
# time; the exit status is non-zero when any step failed, and the failing step's line names the cause.
#
#   bash scripts/arm64-check.sh [--release bookworm|trixie]... [--parallel] [--fresh] [--bench] [--keep]
#     --release R  only this release (may be repeated); default: bookworm, then trixie
#     --parallel   the releases side by side, not one after the other (each emulation keeps one core busy)
#     --fresh      build the Debian base roots again even when a cached one is there (and cache them)
#     --bench      also measure the daemon's import time and RSS, arm64 over x86 (BENCHMARKS.md); serial
#     --keep       keep the roots (printed at the end) instead of removing them
#   PIVOICE_ARM64_CACHE  where the Debian base roots are cached as tarballs (default /var/cache/pivoice-arm64;
#                        rebuilt after 30 days). Only Debian is cached: pivoice's set-up runs every time.
#
# The emulated machine: bookworm runs as a Pi 4 (QEMU_CPU=cortex-a72), trixie as a Pi 5 (cortex-a76), each
# with that Pi's /proc/cpuinfo bind-mounted over the root's: qemu-user shows the host's x86 one, and
# LiteRT's XNNPACK (through the cpuinfo library) crashes on that. The host's CA certificates are copied
# into the roots (pip may be behind a TLS-intercepting proxy). Needs qemu-user-static, binfmt-support,
# mmdebstrap, arch-test and zstd (installed here when missing) and this checkout's .venv for the host's
# wake-engine scores (made with bash scripts/setup.sh when missing). Emulation runs at nice 10.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

releases=()
fresh=0
bench=0
keep=0
parallel=0
while [ $# -gt 0 ]; do
  case "$1" in
    --release) case "${2:-}" in bookworm|trixie) releases+=("$2"); shift ;;
                 *) echo "arm64-check: --release takes bookworm or trixie" >&2; exit 64 ;; esac ;;
    --fresh) fresh=1 ;;
    --bench) bench=1 ;;
    --keep) keep=1 ;;
    --parallel) parallel=1 ;;
    *) echo "usage: bash scripts/arm64-check.sh [--release bookworm|trixie]... [--parallel] [--fresh] [--bench] [--keep]" >&2
       exit 64 ;;
  esac
  shift
done
[ "${#releases[@]}" -gt 0 ] || releases=(bookworm trixie)
[ "$bench" = 0 ] || parallel=0  # the x86 figures are measured on an otherwise idle machine, not beside an emulation
if [ "$(id -u)" -ne 0 ]; then
  echo "arm64-check: run as root (it installs packages, registers qemu with binfmt_misc and uses chroot)" >&2
  exit 77
fi

cache=${PIVOICE_ARM64_CACHE:-/var/cache/pivoice-arm64}
step_limit=2400  # seconds: a step that hangs (the network, an emulated process) fails instead
work=$(mktemp -d /var/tmp/pivoice-arm64.XXXXXX)
export repo cache work fresh
# The roots' mounts live in private mount namespaces (unshare below): removing the tree touches only files.
[ "$keep" = 1 ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$cache" "$work/logs"
started=$SECONDS
failed=()

# step LABEL NAME COMMAND...: runs COMMAND (a function here) with its output in a log; prints one line, ok
# or FAILED with the lines of the log that name the cause. A command may write a short result to
# $DETAIL for its line (and use $OUT). COMMAND runs in a bash of its own, where set -e holds (bash ignores it
# inside a function whose status is tested).
step() {
  local label=$1 name=$2 log t0 rc=0
  shift 2
  log="$work/logs/$label-${name// /-}.log"
  export DETAIL="${log%.log}.detail" OUT="${log%.log}.out"
  : >"$DETAIL"
  t0=$SECONDS
  timeout --kill-after=30 "$step_limit" bash -c "set -euo pipefail; $(declare -f); \"\$@\"" step "$@" \
    >"$log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    printf 'arm64 %-9s %-22s ok     %4d s  %s\n' "$label" "$name" $((SECONDS - t0)) "$(head -c 160 "$DETAIL")"
    return 0
  fi
  printf 'arm64 %-9s %-22s FAILED %4d s  (exit %d%s)\n' "$label" "$name" $((SECONDS - t0)) "$rc" \
    "$([ "$rc" != 124 ] || echo ": timed out after $step_limit s")"
  cause "$log" "$label" | sed "s/^/    $label | /"
  return 1
}

# The lines of a log that say what went wrong (pip, apt, gcc, pytest, the probes) and what they mean when
# that is known; the log's last lines when no line says.
cause() {
  local log=$1 label=$2 found python
  python=$(case "$label" in bookworm) echo "Python 3.11" ;; trixie) echo "Python 3.13" ;; *) echo "Python" ;; esac)
  found=$(grep -E -m 12 '^ *ERROR|^E: |[Ee]rror:|fatal error|No matching distribution|Could not find a version|MISMATCH|^FAILED |Segmentation fault|core dumped|Killed|gpiozero found no Pi|expected a|missing:|command not found' "$log" \
    | grep -v 'ERROR: Ignored the following versions' || true)  # pip's note on other releases, not a cause
  [ -z "$found" ] || echo "$found"
  {
    sed -nE "s/.*No matching distribution found for ([^ ]+).*/=> pip has no release of \1 that installs on $python aarch64 (no wheel for it, and no source to build)/p" "$log"
    sed -nE "s/.*Failed building wheel for ([^ ]+).*/=> PyPI has no wheel of \\1 for $python aarch64, and building it from source failed here/p" "$log"
    sed -nE 's/.*fatal error: ([^:]+): No such file.*/=> a C extension needs \1: a -dev package that scripts\/setup.sh does not install/p' "$log"
    sed -nE 's/.*(error: command|[Nn]o such file or directory:) .?([a-z0-9_+.-]+).? (failed|not found).*/=> a build needs the program \2, which scripts\/setup.sh does not install/p; s/.*unable to execute .([a-z0-9_+.-]+).: No such file.*/=> a build needs the program \1, which scripts\/setup.sh does not install/p' "$log"
  } | awk '!seen[$0]++'
  if [ -z "$found" ]; then
    tail -n 15 "$log"
  fi
  echo "(the whole log: $log, kept with --keep)"
}

# --- the host ---------------------------------------------------------------------------------------

host_packages() {
  local missing=() p
  for p in qemu-user-static binfmt-support mmdebstrap arch-test zstd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  echo "${missing[*]:-all there}" >"$DETAIL"
}

binfmt() {
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  arch-test arm64
  python3 tests/arm64_probe.py cpuinfo pi4 >"$work/cpuinfo-pi4"
  python3 tests/arm64_probe.py cpuinfo pi5 >"$work/cpuinfo-pi5"
  qemu-aarch64-static --version | head -n 1 | tee "$DETAIL"
}

host_reference() {
  if ! .venv/bin/python -c 'import pivoice.wake.openwakeword' 2>/dev/null; then
    echo "no .venv with pivoice here: the README's set-up first"
    bash scripts/setup.sh
  fi
  .venv/bin/python tests/arm64_probe.py clips "$work/clips"
  .venv/bin/python tests/arm64_probe.py scores "$work/clips" "$work/x86-scores.json" | tee "$OUT.all"
  tail -n 1 "$OUT.all" >"$DETAIL"
}

# --- the arm64 roots ----------------------------------------------------------------------------------

mirrors() {  # the Debian sources of a release
  echo "deb http://deb.debian.org/debian $1 main"
  echo "deb http://deb.debian.org/debian $1-updates main"
  echo "deb http://deb.debian.org/debian-security $1-security main"
}

make_root() {  # make_root RELEASE ROOT: Debian's minimal base, from the cache or built now
  local release=$1 root=$2 tarball="$cache/$1-arm64-base.tar.zst" sources=()
  if [ "$fresh" = 1 ] || [ ! -s "$tarball" ] || [ -n "$(find "$tarball" -mtime +30)" ]; then
    mapfile -t sources < <(mirrors "$release")
    # minbase: Debian's required packages and apt; setup.sh must bring everything pivoice needs.
    nice -n 10 mmdebstrap --arch=arm64 --variant=minbase --include=ca-certificates \
      --aptopt='Acquire::Languages "none"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      "$release" "${tarball%.tar.zst}.new.tar.zst" "${sources[@]}"
    mv "${tarball%.tar.zst}.new.tar.zst" "$tarball"
    echo "built, cached in $tarball ($(du -h "$tarball" | cut -f1))" >"$DETAIL"
  else
    echo "from the cache: $tarball ($(find "$tarball" -printf '%TY-%Tm-%Td'))" >"$DETAIL"
  fi
  mkdir -p "$root"
  tar --zstd -xpf "$tarball" -C "$root"
  # The checkout as it is (what a user would have cloned), without this machine's venv and caches.
  mkdir -p "$root/home/pi/pivoice" "$root/home/pi/arm64"
  tar -C "$repo" --exclude=./.git --exclude=./.venv --exclude=__pycache__ --exclude='*.egg-info' \
    --exclude=.pytest_cache --exclude=./bench/.venv-oww -cf - . | tar -xf - -C "$root/home/pi/pivoice"
  cp -r "$work/clips" "$root/home/pi/arm64/clips"
  # This machine's DNS, and its own CA certificates (a TLS-intercepting proxy's, if any) for pip: added
  # to the bundle here (update-ca-certificates would take a minute emulated) and where a later run of
  # update-ca-certificates in the root (a package's trigger) finds them again.
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  local crt
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$crt" ] || continue
    cp "$crt" "$root/usr/local/share/ca-certificates/"
    cat "$crt" >>"$root/etc/ssl/certs/ca-certificates.crt"
  done
}

# in_root ROOT BOARD COMMAND: COMMAND (bash) in /home/pi/pivoice of the arm64 root, emulating that Pi's CPU
# and showing it that Pi's /proc/cpuinfo, in private mount and PID namespaces (everything started there
# ends with it). A clean environment: only what a login shell on the Pi would have, plus the CA bundle.
# With PROC_OPTIONS set (mount options of /proc, e.g. hidepid=invisible,subset=pid) the root is read-only
# with an empty /tmp and /proc is mounted with those options, as the service's sandbox has it.
in_root() {
  local root=$1 board=$2 cmd=$3 cpu
  cpu=$([ "$board" = pi5 ] && echo cortex-a76 || echo cortex-a72)
  # shellcheck disable=SC2016 # expanded by the inner bash
  nice -n 10 unshare --mount --pid --fork --propagation private bash -c '
    set -e
    root=$1
    if [ -n "$5" ]; then mount --bind "$root" "$root"; mount -o remount,bind,ro "$root"; fi
    mount -t proc -o "${5:-defaults}" proc "$root/proc"
    # (a /proc with subset=pid has no cpuinfo to show, as under systemd with ProcSubset=pid)
    [ ! -e "$root/proc/cpuinfo" ] || mount --bind "$2" "$root/proc/cpuinfo"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs tmpfs "$root/tmp"
    exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb QEMU_CPU="$3" \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
      PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120 \
      bash -c "cd /home/pi/pivoice && $4"' _ "$root" "$work/cpuinfo-$board" "$cpu" "$cmd" "${PROC_OPTIONS:-}"
}

# The /proc options of the service's sandbox, from the unit file: ProtectProc= -> hidepid=, ProcSubset=.
unit_proc_options() {
  local unit=systemd/pivoice.service protect subset
  protect=$(sed -n 's/^ProtectProc=//p' "$unit" | tail -n 1)
  subset=$(sed -n 's/^ProcSubset=//p' "$unit" | tail -n 1)
  case "${protect:-default}" in default) protect=off ;; esac
  echo "hidepid=$protect$([ "$subset" = pid ] && echo ",subset=pid")"
}

setup() {  # the README's command, verbatim
  in_root "$1" "$2" 'bash scripts/setup.sh'
  in_root "$1" "$2" '.venv/bin/python --version; .venv/bin/python -m pip list 2>/dev/null |
    grep -iE "^(pyalsaaudio|systemd-python|ai-edge-litert|numpy|gpiozero) "' | tee "$OUT.all"
  sed -n 1p "$OUT.all" >"$DETAIL"
}

test_tools() {  # the test extras of pyproject.toml (not setup.sh --dev: no PulseAudio or journald here)
  in_root "$1" "$2" '.venv/bin/python tests/arm64_probe.py extra test >/tmp/extra.txt &&
    .venv/bin/python -m pip install -q -r /tmp/extra.txt && .venv/bin/python -m pytest --version' | tee "$OUT"
  tail -n 1 "$OUT" >"$DETAIL"
}

gpio_backend() {  # pyproject.toml's extra 'pi' (the GPIO backend, lgpio), when there is one, as install.sh
  # installs it on a Pi: with swig, and PYPI=1 (a source build bundles lgpio's C library), for a Python
  # that PyPI has no wheel of it for
  if ! python3 tests/arm64_probe.py extra pi >"$OUT"; then
    echo "none: pyproject.toml has no extra 'pi'" | tee "$DETAIL"
    return 0
  fi
  in_root "$1" "$2" 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends swig &&
    PYPI=1 .venv/bin/python -m pip install -q -e ".[pi]" && .venv/bin/python -c "import gpiozero.pins.lgpio"'
  paste -sd, - <"$OUT" >"$DETAIL"
}

help_runs() {
  in_root "$1" "$2" '.venv/bin/pivoice --help' | tee "$OUT"
  grep -q "check the config file" "$OUT" && head -n 1 "$OUT" >"$DETAIL"
}

check_runs() {  # every piece it checks; the sound devices are ALSA's null PCM (the root has no sound card)
  printf '[audio]\ninput_device = "null"\noutput_device = "null"\n' >"$1/home/pi/arm64/check.toml"
  in_root "$1" "$2" 'GEMINI_API_KEY=AIzaFAKE-arm64-check-not-a-key .venv/bin/pivoice check --config /home/pi/arm64/check.toml' |
    tee "$OUT"
  grep "^OK: " "$OUT" | cut -c1-60 >"$DETAIL"
}

wake_scores() {
  in_root "$1" "$2" '.venv/bin/python tests/arm64_probe.py scores /home/pi/arm64/clips /home/pi/arm64/scores.json'
  python3 tests/arm64_probe.py compare "$work/x86-scores.json" "$1/home/pi/arm64/scores.json" 1e-3 |
    tee "$OUT"
  grep -o '= [0-9.e+-]*' "$OUT" | sort -g -k2 | tail -n 1 | sed 's/^= /max |x86 - arm64| /' >"$DETAIL"
}

boards() {  # gpiozero's detection, from the /proc/cpuinfo of a Pi 4 and of a Pi 5 (on that Pi's CPU)
  local b rc=0
  for b in pi4 pi5; do
    in_root "$1" "$b" ".venv/bin/python tests/arm64_probe.py board $b" | tee -a "$OUT" || rc=1
  done
  grep -o 'Raspberry Pi [0-9A-Za-z]* rev [0-9.]*' "$OUT" | paste -sd, - >"$DETAIL"
  return "$rc"
}

service_boards() {  # the same, in the service's sandbox as far as a chroot has it
  local b opts rc=0
  opts=$(unit_proc_options)
  echo "as the service runs: user nobody, no new privileges, read-only root, an empty /tmp, and /proc mounted" \
    "with $opts (from ProtectProc= and ProcSubset= in systemd/pivoice.service)" | tee "$DETAIL"
  for b in pi4 pi5; do
    PROC_OPTIONS=$opts in_root "$1" "$b" "setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \
      .venv/bin/python tests/arm64_probe.py board $b" || rc=1
  done
  [ "$rc" = 0 ] || echo "missing: gpiozero cannot see the board's files under the unit's /proc options ($opts)"
  echo "/proc $opts" >"$DETAIL"
  return "$rc"
}

arm64_tests() {  # the test suite, less what needs a sound server or journald (tests/arm64_probe.py says what)
  in_root "$1" "$2" 'PYTHONPATH=tests .venv/bin/python -m pytest -p arm64_probe -p no:cacheprovider -n 0 -q tests/' |
    tee "$OUT"
  tail -n 1 "$OUT" | tr -d '=' | sed 's/^ *//' >"$DETAIL"
}

footprint() {  # --bench: the same measurement on this machine and in the root, one after the other
  .venv/bin/python tests/arm64_probe.py footprint "$work/x86-footprint.json" 3
  in_root "$1" "$2" '.venv/bin/python tests/arm64_probe.py footprint /home/pi/arm64/footprint.json 3'
  python3 tests/arm64_probe.py ratio "$work/x86-footprint.json" "$1/home/pi/arm64/footprint.json" |
    tee "$work/$3-footprint.table"
  tail -n 1 "$work/$3-footprint.table" >"$DETAIL"
}

# --- the run ------------------------------------------------------------------------------------------

check_release() {  # check_release RELEASE BOARD: root, set-up, then every check (each runs even if one fails)
  local release=$1 board=$2 root="$work/$1" rc=0
  if step "$release" "root" make_root "$release" "$root" &&
    step "$release" "setup.sh" setup "$root" "$board" &&
    step "$release" "test tools" test_tools "$root" "$board"; then
    step "$release" "pivoice --help" help_runs "$root" "$board" || rc=1
    step "$release" "pivoice check" check_runs "$root" "$board" || rc=1
    step "$release" "wake scores" wake_scores "$root" "$board" || rc=1
    step "$release" "gpiozero board" boards "$root" "$board" || rc=1
    step "$release" "gpiozero as service" service_boards "$root" "$board" || rc=1
    step "$release" "tests" arm64_tests "$root" "$board" || rc=1
    if [ "$bench" = 1 ]; then
      step "$release" "footprint" footprint "$root" "$board" "$release" && sed '$d' "$work/$release-footprint.table" || rc=1
    fi
    step "$release" "GPIO backend" gpio_backend "$root" "$board" || rc=1
  else
    rc=1
  fi
  [ "$keep" = 1 ] || rm -rf "$root"
  return "$rc"
}

step host packages host_packages || exit 1
step host binfmt binfmt || exit 1
step host "wake scores (x86)" host_reference || exit 1
# The releases one after the other, or side by side (--parallel: each emulation is one busy thread).
pids=()
for release in "${releases[@]}"; do
  board=$([ "$release" = trixie ] && echo pi5 || echo pi4)
  if [ "$parallel" = 1 ]; then
    check_release "$release" "$board" &
    pids+=($!)
  else
    check_release "$release" "$board" || failed+=("$release")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${releases[$i]}")
done
[ "$keep" = 0 ] || echo "arm64: roots kept in $work"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "arm64: FAILED on ${failed[*]} (of ${releases[*]}) in $((SECONDS - started)) s"
  exit 1
fi
echo "arm64: passed on ${releases[*]} in $((SECONDS - started)) s"
