"""`pivoice devices`: the sound cards, the ALSA devices with what each accepts, the mixer controls, and
which of them the config picks."""

from __future__ import annotations

from pathlib import Path

import alsaaudio

from ..audio.cards import PROC, USB_NAME, cards, describe_index, resolve
from ..audio.probe import accepts
from ..config import Settings
from ..errors import UserError

# Names alsa-lib lists that are plugins or rate converters, not devices one would record from or play to.
_NOT_DEVICES = {"null", "lavrate", "samplerate", "speexrate", "jack", "oss", "speex", "upmix", "vdownmix"}


def _picked(name: str, key: str, configured: str, resolved: str | None) -> str:
    return f"   <- {key}" if name in (configured, resolved) else ""


def report(settings: Settings, proc: Path = PROC) -> str:
    audio = settings.audio
    out = ["Sound cards (/proc/asound/cards):"]
    found = cards(proc)
    for c in found:
        usb = f", USB id {c.usb_id} (usb:{c.usb_id})" if c.usb_id else ""
        ins, outs = (", ".join(map(str, d)) or "none" for d in (c.capture, c.playback))
        out.append(f"  card {c.index}: CARD={c.id}  {c.name}{usb}; capture devices: {ins}; playback devices: {outs}")
    if not found:
        out.append("  none: no sound card, or its driver has not loaded (`dmesg | grep -i snd`; a HAT needs its "
                   "overlay in /boot/firmware/config.txt)")
    for kind, key, configured in (("capture", "audio.input_device", audio.input_device),
                                  ("playback", "audio.output_device", audio.output_device)):
        capture = kind == "capture"
        try:
            resolved: str | None = resolve(configured, key, proc)
        except UserError as e:
            resolved = None
            out.append(f"\n{key} = '{configured}': {e.message}")
        names = [n for n in alsaaudio.pcms(alsaaudio.PCM_CAPTURE if capture else alsaaudio.PCM_PLAYBACK)
                 if n not in _NOT_DEVICES]
        for c in found:
            for n in (c.capture if capture else c.playback):
                names += [f"plughw:CARD={c.id},DEV={n}", f"hw:CARD={c.id},DEV={n}"]
        names += [n for n in (configured, resolved) if n and not USB_NAME.match(n)]
        out.append(f"\n{kind.capitalize()} devices (what each accepts; 'plughw:' ones convert anything):")
        for name in dict.fromkeys(names):
            got = accepts(name, capture)
            what = got.describe() if not isinstance(got, str) else f"cannot open now: {got}"
            via = f" (= {configured})" if name == resolved and resolved != configured else ""
            out.append(f"  {name}{via}: {what}{_picked(name, key, configured, resolved)}")
        if (hint := describe_index(configured, proc)) is not None:
            out.append(f"  note: {key} {hint}")
    out.append("\nMixer controls (for audio.volume_control):")
    mixer_devices = [f"hw:CARD={c.id}" for c in found] + [audio.mixer_device]
    for dev in dict.fromkeys(mixer_devices):
        try:
            controls = alsaaudio.mixers(device=dev)
        except alsaaudio.ALSAAudioError as e:
            out.append(f"  {dev}: none ({e})")
            continue
        picked = "   <- audio.mixer_device" if dev == audio.mixer_device else ""
        marked = [f"[{ctl}]" if ctl == audio.volume_control and picked else ctl for ctl in controls]
        out.append(f"  {dev}: {', '.join(marked) or 'none'}{picked}")
    volume = (f"the mixer control '{audio.volume_control}' on {audio.mixer_device}" if audio.volume_control
              else "software gain (audio.volume_control is empty)")
    out.append(f"\nThe config ({settings.source}) listens to {audio.input_device}, speaks to {audio.output_device}, "
               f"and sets the volume with {volume}.")
    return "\n".join(out)
