"""Sound cards as the kernel lists them (/proc/asound), and device names that stay right when they move.

A card's index ("hw:1") follows the order drivers load in, and a USB card replugged comes back under
the next free index. Its id ("CARD=seeed2micvoicec", "CARD=Device") and, for USB, its vendor:product id
stay the same. pivoice accepts, besides any ALSA name:

    usb:VVVV:PPPP      the USB sound card with that id (`lsusb` shows it), as plughw:CARD=<its id>,DEV=0
    usb:VVVV:PPPP,N    ... its device N

and resolves it each time it opens the device, so a replugged card is found wherever it lands. ALSA's
own `plughw:CARD=<id>` names are resolved by ALSA the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DeviceError

PROC = Path("/proc/asound")
_CARD_LINE = re.compile(r"^\s*(\d+)\s+\[(\S+)\s*\]:\s*(\S+)\s+-\s+(.*)$")
USB_NAME = re.compile(r"^usb:([0-9a-fA-F]{4}):([0-9a-fA-F]{4})(?:,(\d+))?$")


@dataclass(frozen=True)
class Card:
    index: int
    id: str  # what CARD= takes
    driver: str
    name: str
    usb_id: str = ""  # "vvvv:pppp" for a USB card
    capture: tuple[int, ...] = ()  # its device numbers that capture
    playback: tuple[int, ...] = ()


def cards(root: Path = PROC) -> list[Card]:
    """The cards the kernel has now, in index order (none when there is no sound card at all)."""
    try:
        text = (root / "cards").read_text()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        m = _CARD_LINE.match(line)
        if not m:
            continue
        index = int(m.group(1))
        d = root / f"card{index}"
        try:
            usb = (d / "usbid").read_text().strip()
        except OSError:
            usb = ""
        pcms = sorted(p.name for p in d.glob("pcm*")) if d.is_dir() else []
        found.append(Card(index, m.group(2), m.group(3), m.group(4).strip(), usb.lower(),
                          tuple(int(p[3:-1]) for p in pcms if p.endswith("c")),
                          tuple(int(p[3:-1]) for p in pcms if p.endswith("p"))))
    return found


def resolve(device: str, key: str, root: Path = PROC) -> str:
    """The ALSA name to open for `device`: itself, or for usb:VVVV:PPPP the card with that id now."""
    m = USB_NAME.match(device)
    if not m:
        if device.lower().startswith("usb:"):
            raise ConfigError(f"{key}: '{device}' is not a USB id; write it as usb:VVVV:PPPP (four hex digits each, "
                              f"as `lsusb` shows them), e.g. usb:0d8c:0014")
        return device
    want = f"{m.group(1)}:{m.group(2)}".lower()
    for card in cards(root):
        if card.usb_id == want:
            return f"plughw:CARD={card.id},DEV={m.group(3) or 0}"
    raise DeviceError(f"{key}: no USB sound card {want} is connected (`pivoice devices` lists the cards there are)")


def describe_index(device: str, root: Path = PROC) -> str | None:
    """For a name that picks a card by its index (hw:1, plughw:1,0), the stable name to use instead."""
    m = re.match(r"^(plughw|hw):(\d+)(?:,(\d+))?$", device)
    if not m:
        return None
    card = next((c for c in cards(root) if c.index == int(m.group(2))), None)
    if card is None:
        return None
    stable = f"usb:{card.usb_id}" if card.usb_id else f"{m.group(1)}:CARD={card.id},DEV={m.group(3) or 0}"
    return (f"'{device}' picks card {card.index} by its index, which can change (a USB card replugged, drivers "
            f"loading in another order): '{stable}' names the same card and stays right")
