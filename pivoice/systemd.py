"""sd_notify (READY, STATUS, WATCHDOG, STOPPING, RELOADING) with systemd-python, and the listener that
turns state changes into STATUS= lines. Off, silently, when NOTIFY_SOCKET is unset (a foreground run).
journald logging is in logs.py, with the rest of the logging.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from .states import Event, Listener, State, Transition

log = logging.getLogger("pivoice.systemd")


class Notifier:
    """sd_notify(3) messages to the service manager."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.watchdog_interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if self.enabled and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2  # ping at half the timeout, as sd_watchdog_enabled(3) advises
        self._warned = False
        self.stopping = False  # STOPPING=1 was sent: no more watchdog pings after it

    def send(self, *lines: str) -> None:
        if "STOPPING=1" in lines:
            self.stopping = True
        if not self.enabled:
            return
        from systemd import daemon  # type: ignore[attr-defined]  # systemd-python has no type hints

        try:
            # Each field one line: a value with a newline in it (a timer's name...) must not become a command.
            daemon.notify("\n".join(" ".join(line.splitlines()) for line in lines))
        except OSError as e:  # a vanished socket must not take the assistant down
            if not self._warned:
                log.warning("cannot notify systemd (%s); carrying on", e)
                self._warned = True

    async def watchdog(self) -> None:
        """Ping from the event loop: a blocked loop stops the pings, and systemd restarts pivoice."""
        if self.watchdog_interval is None:
            return
        while not self.stopping:  # both run on the event loop: no ping can follow STOPPING=1
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)


def status_listener(notifier: Notifier, wake_words: Callable[[], str]) -> Listener:
    """A transition listener: READY=1 once listening, STATUS= on every state, STOPPING=1 at the end."""

    def on_transition(t: Transition) -> None:
        idle = f"Listening for {wake_words()}"
        if t.new is State.IDLE:
            reason = t.info.get("reason", "")
            if t.event is Event.SESSION_ENDED and reason != "the session ended":
                idle += f" (last conversation failed: {reason}; see journalctl -u pivoice)"
            lines = [f"STATUS={idle}"]
            if t.event is Event.READY:
                lines.insert(0, "READY=1")
            notifier.send(*lines)
        elif t.new is State.CONNECTING:
            notifier.send("STATUS=Wake word heard: connecting to Gemini")
        elif t.new is State.LISTENING:
            notifier.send("STATUS=In conversation: listening")
        elif t.new is State.RESPONDING:
            notifier.send("STATUS=In conversation: answering")
        elif t.new is State.MUTED:
            notifier.send("STATUS=Muted (hold the button to unmute)")
        elif t.new is State.RINGING and t.event is Event.TIMER_FIRED:
            notifier.send(f"STATUS=Ringing: {t.info.get('kind', 'timer')} '{t.info.get('name', '')}' (press the "
                          f"button or say the wake word to stop it)")
        elif t.new is State.ERROR:
            notifier.send(f"STATUS=Error: {t.problem or 'see the log'} — see journalctl -u pivoice")
        elif t.new is State.STOPPED:
            notifier.send("STOPPING=1", "STATUS=Stopping")

    return on_transition
