"""Timers and alarms, on the device: "set a pasta timer for 8 minutes", "how long is left", "cancel it",
"wake me at 7". Several at once, each with a name. They live here, not at the Live API: they fire without
any network, and they are kept in timers.json in the state directory (written atomically at each change),
so they survive a restart or a power cut. One that came due while pivoice was not running fires once, late,
at start, and the log says when it was due. Firing is the assistant's TIMER_FIRED event; the state
RINGING and the alarm sound (ringer.py) follow from it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..logs import fields
from ..statedir import load_json, save_json
from .registry import Tool

log = logging.getLogger("pivoice.tools")
MAX_TIMERS = 20
NAME = r"[\w][\w '-]{0,39}"  # letters (any script), digits, spaces, ' and -: it goes into STATUS= and the log
MAX_LATE = 12 * 3600.0  # s: a timer that came due longer ago than this while pivoice was off is not rung
STEP = 30.0  # s: the wall clock is looked at again at least this often (it may be set or corrected meanwhile)


@dataclass
class Timer:
    name: str
    kind: str  # "timer" or "alarm"
    due: float  # time.time()

    def local(self) -> str:
        return datetime.datetime.fromtimestamp(self.due).astimezone().strftime("%H:%M:%S")


class Timers:
    def __init__(self, state_file: Path, fire: Callable[[Timer, bool], None], clock: Callable[[], float] = time.time):
        """`fire(timer, late)`: it came due (late: while pivoice was not running)."""
        self._file = state_file
        self._fire = fire
        self._clock = clock
        self._timers: dict[str, Timer] = {}
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._started = self._closed = False

    def start(self) -> None:
        """Load what was set before (once, on the event loop, after READY=1); fire what came due meanwhile."""
        if self._started:
            return
        self._started = True
        now = self._clock()
        kept = load_json(self._file)
        for item in kept if isinstance(kept, list) else []:
            try:
                t = Timer(str(item["name"]), str(item["kind"]), float(item["due"]))
                t.local()  # (a time that cannot be one raises here)
            except (KeyError, TypeError, ValueError, OverflowError, OSError):
                log.warning("skipped a timer in %s that cannot be read: %.80r", self._file, item,
                            extra=fields(event="timer"))
                continue
            if t.due > now:
                self._add(t)
                continue
            self._save_without(t)
            if t.due < now - MAX_LATE:
                log.warning("%s '%s' came due at %s, more than %.0f h ago, while pivoice was not running: not rung",
                            t.kind, t.name, t.local(), MAX_LATE / 3600, extra=fields(event="timer"))
                continue
            log.warning("%s '%s' came due at %s while pivoice was not running: ringing now", t.kind, t.name,
                        t.local(), extra=fields(event="timer"))
            self._fire(t, True)
        if self._timers:
            kept = ", ".join(f"{t.name} at {t.local()}" for t in self.pending)
            log.info("timers kept from before: %s", kept, extra=fields(event="timer"))

    def close(self) -> None:
        """At stop: nothing fires any more (what is due stays in the file, to ring at the next start)."""
        self._closed = True
        for h in self._handles.values():
            h.cancel()

    @property
    def pending(self) -> list[Timer]:
        return sorted(self._timers.values(), key=lambda t: t.due)

    def _add(self, t: Timer) -> None:
        if t.name in self._handles:
            self._handles.pop(t.name).cancel()
        self._timers[t.name] = t
        self._schedule(t.name)

    def _schedule(self, name: str) -> None:
        delay = max(0.0, self._timers[name].due - self._clock())
        self._handles[name] = asyncio.get_running_loop().call_later(min(delay, STEP), self._due, name)

    def _due(self, name: str) -> None:
        t = self._timers.get(name)
        if t is None or self._closed:
            return
        if self._clock() < t.due - 0.05:  # not yet by the wall clock (it was set back meanwhile)
            self._schedule(name)
            return
        del self._timers[name]
        self._handles.pop(name, None)
        self._save()
        self._fire(t, False)

    def _save(self) -> None:
        try:
            save_json(self._file, [asdict(t) for t in self.pending])
        except OSError as e:
            log.warning("cannot keep the timers in %s (%s): they are lost at a restart", self._file,
                        e.strerror or e, extra=fields(event="timer"))

    def _save_without(self, gone: Timer) -> None:
        items = [x for x in (load_json(self._file) or []) if isinstance(x, dict) and x.get("name") != gone.name]
        try:
            save_json(self._file, items)
        except OSError:
            pass

    # -- the tools ----------------------------------------------------------------------------------
    def tools(self) -> list[Tool]:
        name = {"type": "string", "maxLength": 40, "pattern": NAME, "description": "What it is for, e.g. 'pasta'"}
        return [
            Tool("set_timer", "Start a timer that rings after the given time, on this speaker, even without "
                 "network. Setting one with a name in use replaces it.", self._set_timer, timeout=2.0,
                 parameters={"type": "object", "required": ["name"], "properties": {
                     "name": name, "hours": {"type": "integer", "minimum": 0, "maximum": 23},
                     "minutes": {"type": "integer", "minimum": 0, "maximum": 1440},
                     "seconds": {"type": "integer", "minimum": 0, "maximum": 86400}}}),
            Tool("set_alarm", "Set an alarm that rings at a time of day (this speaker's time zone), today or "
                 "else tomorrow.", self._set_alarm, timeout=2.0,
                 parameters={"type": "object", "required": ["name", "time"], "properties": {
                     "name": name, "time": {"type": "string", "maxLength": 5, "description": "HH:MM, 24-hour"}}}),
            Tool("list_timers", "The timers and alarms set, with how long each has left.", self._list, timeout=2.0),
            Tool("cancel_timer", "Cancel a timer or alarm by its name.", self._cancel, timeout=2.0,
                 parameters={"type": "object", "required": ["name"], "properties": {"name": name}}),
        ]

    def _new(self, name: str, kind: str, due: float) -> dict[str, Any]:
        name = name.strip() or kind
        if name not in self._timers and len(self._timers) >= MAX_TIMERS:
            return {"error": f"{MAX_TIMERS} timers are set already: cancel one first"}
        replaced = name in self._timers
        t = Timer(name, kind, due)
        self._add(t)
        self._save()
        log.info("%s '%s' set for %s", kind, name, t.local(), extra=fields(event="timer"))
        return {"name": name, "kind": kind, "rings_at": t.local(), "seconds_left": round(due - self._clock()),
                **({"note": "it replaces the one with that name"} if replaced else {})}

    async def _set_timer(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = args.get("hours", 0) * 3600 + args.get("minutes", 0) * 60 + args.get("seconds", 0)
        if seconds <= 0:
            return {"error": "give the timer a duration (hours, minutes or seconds)"}
        return self._new(args["name"], "timer", self._clock() + seconds)

    async def _set_alarm(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            hh, mm = (int(x) for x in args["time"].split(":"))
            at = datetime.time(hh, mm)
        except ValueError:
            return {"error": f"'{args['time']}' is not a time of day: give HH:MM, 24-hour"}
        # In naive local time, then placed in the time zone: right across a daylight-saving change.
        now = datetime.datetime.fromtimestamp(self._clock())
        due = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
        if due <= now:
            due += datetime.timedelta(days=1)
        return self._new(args["name"], "alarm", due.astimezone().timestamp())

    async def _list(self, args: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        return {"timers": [{"name": t.name, "kind": t.kind, "rings_at": t.local(),
                            "seconds_left": round(t.due - now)} for t in self.pending]}

    async def _cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args["name"].strip()
        if name not in self._timers:
            names = ", ".join(self._timers) or "none"
            return {"error": f"no timer or alarm is named '{name}' (set: {names})"}
        self._timers.pop(name)
        self._handles.pop(name).cancel()
        self._save()
        log.info("timer '%s' cancelled", name, extra=fields(event="timer"))
        return {"cancelled": name}
