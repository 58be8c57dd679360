#!/usr/bin/env bash
# Runs a command beside a private systemd-journald, in its own mount namespace so the machine's /run is
# untouched, then dumps what the journal got. Run it as:
#   unshare -m --propagation private bash tests/journal_ns.sh OUTDIR MODE -- COMMAND...
# MODE: journald (a real journald), stale (a socket file nobody listens on), none (no socket at all).
# Leaves OUTDIR/journal.json (journalctl -o json) and OUTDIR/raw/ (the journal files) in journald mode.
# COMMAND's pid is written to OUTDIR/pid (signal it there); the exit code is COMMAND's.
set -euo pipefail
out=$1 mode=$2
shift 2
[ "${1:-}" = "--" ] && shift

mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/journal /run/log
mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi

jpid=""
case "$mode" in
  journald)
    setpriv --pdeathsig KILL /lib/systemd/systemd-journald &
    jpid=$!
    for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
    [ -S /run/systemd/journal/socket ] || { echo "journal_ns: journald did not start" >&2; exit 1; }
    ;;
  stale)
    python3 -c 'import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind("/run/systemd/journal/socket")'
    ;;
  none) ;;
  *) echo "journal_ns: unknown mode $mode" >&2; exit 64 ;;
esac

# Both die with this script however it ends (it dies with the test process in turn).
setpriv --pdeathsig KILL "$@" &
echo $! > "$out/pid"
rc=0
wait $! || rc=$?

if [ -n "$jpid" ]; then
  journalctl --sync 2>/dev/null || sleep 0.5
  journalctl -o json --no-pager > "$out/journal.json"
  cp -r /run/log/journal "$out/raw"
  kill "$jpid"
  wait "$jpid" 2>/dev/null || true
fi
exit "$rc"
