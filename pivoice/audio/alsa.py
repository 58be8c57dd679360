"""Opening ALSA PCMs with pyalsaaudio, and turning alsa-lib's failures into messages a person can act on.

alsa-lib prints its own errors ("ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM foo") straight to
stderr. pivoice installs an error handler instead, so those lines reach the log at debug level and the
reason ("Unknown PCM") can be told apart from a device that exists but is absent or busy.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import alsaaudio

from ..errors import ConfigError, DeviceError

log = logging.getLogger("pivoice.audio")

# pyalsaaudio is linked against this soname, so it is loaded already and opening it costs nothing
# (ctypes.util.find_library would run ldconfig: 10 ms of the start).
LIBASOUND = "libasound.so.2"

_lib_messages = threading.local()
_handler_ref = None  # keeps the ctypes callback alive for the life of the process


def _install_error_handler() -> None:
    """Route alsa-lib's error messages to the log (debug) and remember the last one per thread."""
    global _handler_ref
    if _handler_ref is not None:
        return
    try:
        lib = ctypes.CDLL(LIBASOUND)
    except OSError:
        return
    # void handler(const char *file, int line, const char *function, int err, const char *fmt, ...)
    # The format's arguments are not read: on x86-64 and AArch64 Linux, variadic arguments travel
    # like fixed ones, so declaring only the fixed parameters is safe.
    proto = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)

    def handler(file, line, function, err, fmt):  # runs in whichever thread called alsa-lib
        text = (fmt or b"").decode(errors="replace")
        where = (function or b"").decode(errors="replace")
        seen = getattr(_lib_messages, "seen", [])
        _lib_messages.seen = [*seen[-19:], f"{where}: {text}"]  # the format, not its arguments
        log.debug("alsa-lib %s:%d (%s): %s", (file or b"").decode(errors="replace"), line, where, text)

    _handler_ref = proto(handler)
    lib.snd_lib_error_set_handler(_handler_ref)


_install_error_handler()


class FormatRefused(DeviceError):
    """The device is there but takes no configuration with these parameters (device.py tries others)."""


@dataclass(frozen=True)
class PcmParams:
    rate: int
    channels: int
    period_frames: int
    periods: int


def open_pcm(kind: str, device: str, params: PcmParams, key: str, nonblock: bool = False) -> alsaaudio.PCM:
    """Open a PCM for `kind` ("capture" or "playback") as s16le; errors name the config `key`."""
    _lib_messages.seen = []
    pcm_type = alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK
    try:
        return alsaaudio.PCM(
            pcm_type,
            alsaaudio.PCM_NONBLOCK if nonblock else alsaaudio.PCM_NORMAL,
            device=device,
            channels=params.channels,
            rate=params.rate,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=params.period_frames,
            periods=params.periods,
        )
    except alsaaudio.ALSAAudioError as e:
        raise _explain(kind, device, key, str(e), " | ".join(getattr(_lib_messages, "seen", []))) from None


def _explain(kind: str, device: str, key: str, error: str, lib_messages: str) -> Exception:
    """A ConfigError when the name can never work (restarting will not help), a DeviceError when the device
    it names is not there or not usable now (pivoice waits for it)."""
    lister = "arecord -L" if kind == "capture" else "aplay -L"
    reason = error.rsplit(" [", 1)[0]
    if "cannot find card" in lib_messages or reason == "No such device":
        # A name such as 'default' or 'plughw:CARD=x' whose card is absent (unplugged, or its driver not
        # loaded yet at boot): alsa-lib also says "Unknown PCM", but the name is fine.
        return DeviceError(
            f"{key}: the sound card that the ALSA {kind} device '{device}' needs is not there (not "
            f"connected, or its driver has not started yet). `{lister}` lists what is there."
        )
    if "Connection refused" in error or "pulse_connect" in lib_messages:
        return DeviceError(
            f"{key}: the ALSA {kind} device '{device}' goes to a PulseAudio/PipeWire sound server that "
            f"is not running or that pivoice cannot reach (as a system service it cannot reach a desktop "
            f"user's server). Name the sound card instead, e.g. plughw:CARD=<name> from `{lister}`."
        )
    if "Unknown PCM" in lib_messages:
        return ConfigError(
            f"{key}: there is no ALSA {kind} device named '{device}'. `{lister}` lists the devices "
            f"this machine has; set {key} to one of them."
        )
    if reason == "Invalid argument":
        return FormatRefused(
            f"{key}: the ALSA {kind} device '{device}' takes no format pivoice can use. Use its 'plughw:' name, "
            f"which has ALSA convert."
        )
    if "Device or resource busy" in error:
        return DeviceError(f"{key}: the ALSA {kind} device '{device}' is busy: {busy_advice(kind == 'capture')}")
    if "Permission denied" in error:
        return DeviceError(
            f"{key}: no permission to open the ALSA {kind} device '{device}'. Add the user pivoice runs "
            f"as to the 'audio' group."
        )
    return DeviceError(
        f"{key}: cannot open the ALSA {kind} device '{device}': {reason}. Is the sound card or USB "
        f"device connected? `{lister}` lists what is there."
    )


SOUND_SERVERS = ("pipewire", "wireplumber", "pulseaudio")


def holders(capture: bool, prefix: str = "/dev/snd/pcmC", proc: Path = Path("/proc")) -> list[str]:
    """The other processes that have a sound card's PCM of that direction open, as "name (pid N)"; only
    those this process may look at (all, as root; a sandboxed service sees none)."""
    end = "c" if capture else "p"
    found: dict[int, str] = {}
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if any((t := os.readlink(fd)).startswith(prefix) and t.endswith(end) for fd in (d / "fd").iterdir()):
                found[int(d.name)] = (d / "comm").read_text().strip()
        except OSError:
            continue
    return [f"{name} (pid {pid})" for pid, name in sorted(found.items())]


def busy_advice(capture: bool, prefix: str = "/dev/snd/pcmC") -> str:
    """Who holds the card, when that can be found, and what to do."""
    held = holders(capture, prefix)
    names = ", ".join(held) or "another program"
    who = f"{names} {'have' if len(held) > 1 else 'has'} it open. "
    if any(h.startswith(SOUND_SERVERS) for h in held) or not held:
        who += ("On Raspberry Pi OS with a desktop that is the desktop's sound server (PipeWire): stop it for the "
                "user who runs it (systemctl --user mask --now pipewire pipewire-pulse wireplumber), or let "
                "pivoice share the card through a dsnoop/dmix device.")
    else:
        who += "Stop that program, or use a dsnoop/dmix device that shares the card."
    return who


def try_open(device: Any) -> str | None:
    """`device.open()`; what is wrong when the device is there by name but cannot be used now (absent,
    busy: a DeviceError), for the caller to wait for it. A name that can never work still raises."""
    try:
        device.open()
    except DeviceError as e:
        return e.message
    return None
