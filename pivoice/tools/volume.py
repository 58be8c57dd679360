"""The speaker's volume: the ALSA mixer control named by audio.volume_control (on audio.mixer_device), or,
when none is named, a software gain on what pivoice plays. Either way, 0-100 %, kept in volume.json in the
state directory and set again at start, so it survives a restart. The model reaches it through the
get_volume / set_volume tools."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..logs import fields
from ..statedir import load_json, save_json
from .registry import Tool

log = logging.getLogger("pivoice.tools")


class Volume:
    def __init__(self, control: str, device: str, playback: Any, state_file: Path):
        self._control, self._device = control, device
        self._playback = playback
        self._file = state_file
        self._mixer: Any = None
        self.problem = ""  # why the mixer control cannot be used, when it cannot
        self._percent = 100

    def open(self) -> None:
        """Find the mixer control (when one is named) and set the kept volume."""
        if self._control:
            import alsaaudio

            try:
                self._mixer = alsaaudio.Mixer(self._control, device=self._device)
            except alsaaudio.ALSAAudioError as e:
                try:
                    there = ", ".join(alsaaudio.mixers(device=self._device)) or "none"
                except alsaaudio.ALSAAudioError:
                    there = "none: the device has no mixer"
                self.problem = (f"audio.volume_control: there is no mixer control '{self._control}' on "
                                f"'{self._device}' ({e}); controls there: {there}")
                log.error("%s. The volume cannot be changed until that is fixed.", self.problem,
                          extra=fields(event="volume"))
                return
        kept = load_json(self._file)
        if isinstance(kept, dict) and isinstance(kept.get("percent"), int):
            try:
                self._apply(kept["percent"])
            except Exception as e:  # noqa: BLE001 - a control without a playback volume, a card gone: said
                self.problem = f"audio.volume_control '{self._control}' cannot be set ({e})"
                log.error("%s", self.problem, extra=fields(event="volume"))

    def close(self) -> None:
        """Let go of the mixer control (at stop)."""
        mixer, self._mixer = self._mixer, None
        if mixer is not None:
            mixer.close()

    def get(self) -> int:
        if self._mixer is not None:
            levels = self._mixer.getvolume()
            return round(sum(levels) / max(1, len(levels)))
        return self._percent

    def set(self, percent: int) -> int:
        self._apply(percent)
        try:
            save_json(self._file, {"percent": self.get()})
        except OSError as e:
            log.warning("cannot keep the volume in %s (%s): it is not restored after a restart", self._file,
                        e.strerror or e, extra=fields(event="volume"))
        return self.get()

    def _apply(self, percent: int) -> None:
        percent = max(0, min(100, percent))
        if self._mixer is not None:
            self._mixer.setvolume(percent)
        elif not self._control:
            self._percent = percent
            # A perceived step: 100 % is full scale, each 10 % less about 6 dB down, 0 % silence.
            self._playback.gain = 0.0 if percent == 0 else 10 ** ((percent - 100) * 0.03)

    def tools(self) -> list[Tool]:
        return [
            Tool("get_volume", "The speaker's volume, 0-100 %.", self._get_tool, timeout=2.0),
            Tool("set_volume", "Set the speaker's volume: to a percentage, or up or down by some percent.",
                 self._set_tool, timeout=2.0, parameters={"type": "object", "properties": {
                     "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                     "change": {"type": "integer", "minimum": -100, "maximum": 100}}}),
        ]

    async def _get_tool(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.problem:
            return {"error": f"the volume cannot be read: {self.problem}"}
        return {"percent": self.get()}

    async def _set_tool(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.problem:
            return {"error": f"the volume cannot be changed: {self.problem}"}
        if ("percent" in args) == ("change" in args):
            return {"error": "give either percent (0-100) or change (-100..100)"}
        target = args["percent"] if "percent" in args else self.get() + args["change"]
        return {"percent": self.set(target)}
