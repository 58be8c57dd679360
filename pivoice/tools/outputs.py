"""GPIO outputs the config declares ([[tools.outputs]]: a relay, a lamp, a fan), each a tool the model can
switch and ask about, through gpiozero's OutputDevice. Only declared pins are ever touched: a call names
an output by its tool, and its one argument is checked against the schema before anything is switched.
An output with `remember = true` goes back to its last state after a restart (outputs.json in the state
directory)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import OutputSettings
from ..logs import fields
from ..statedir import load_json, save_json
from .registry import Tool

log = logging.getLogger("pivoice.tools")
ACTIONS = ["on", "off", "toggle", "status"]


class Outputs:
    def __init__(self, declared: list[OutputSettings], state_file: Path):
        self._declared = {o.name: o for o in declared}
        self._state_file = state_file
        self._devices: dict[str, Any] = {}
        self.problem = ""  # why the pins could not be had, when they could not

    def open(self) -> None:
        if not self._declared:
            return
        remembered = load_json(self._state_file)
        remembered = remembered if isinstance(remembered, dict) else {}
        try:
            from gpiozero import OutputDevice

            for o in self._declared.values():
                initial = bool(remembered.get(o.name)) if o.remember else False
                self._devices[o.name] = OutputDevice(o.pin, active_high=o.active_high, initial_value=initial)
        except Exception as e:  # noqa: BLE001 - no GPIO here, permissions, a pin in use
            self.close()
            self.problem = f"{type(e).__name__}: {e}"
            log.warning("GPIO outputs not available (%s): the model is told so when it tries them", self.problem,
                        extra=fields(event="outputs"))
            return
        log.info("GPIO outputs: %s", ", ".join(f"{o.name} on GPIO{o.pin}" for o in self._declared.values()),
                 extra=fields(event="outputs"))

    def close(self) -> None:
        for d in self._devices.values():
            try:
                d.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._devices.clear()

    def tools(self) -> list[Tool]:
        return [Tool(o.name, f"Switch {o.description} on or off, or ask whether it is on.", self._handler(o.name),
                     parameters={"type": "object", "properties": {"action": {"type": "string", "enum": ACTIONS}},
                                 "required": ["action"]}, timeout=2.0)
                for o in self._declared.values()]

    def _handler(self, name: str):
        async def handler(args: dict[str, Any]) -> dict[str, Any]:
            device = self._devices.get(name)
            if device is None:
                return {"error": f"{name} cannot be switched: GPIO is not available here ({self.problem or 'closed'})"}
            action = args["action"]
            if action != "status":
                device.value = {"on": 1, "off": 0, "toggle": 0 if device.value else 1}[action]
                if self._declared[name].remember:
                    self._save()
            return {"output": name, "on": bool(device.value)}

        return handler

    def _save(self) -> None:
        state = {n: bool(d.value) for n, d in self._devices.items() if self._declared[n].remember}
        try:
            save_json(self._state_file, state)
        except OSError as e:
            log.warning("cannot keep the outputs' state in %s (%s): it is not restored after a restart",
                        self._state_file, e.strerror or e, extra=fields(event="outputs"))
