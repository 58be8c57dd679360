"""Wiring: builds the assistant from the settings, attaches the LED/buttons and systemd, and runs it."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import heap, logs
from .assistant import Assistant
from .audio import noise
from .audio.aec import EchoCanceller
from .audio.capture import Capture
from .audio.device import wants
from .audio.playback import Playback
from .config import Settings
from .credentials import CREDENTIAL_NAME, ApiKey, DeviceSecret, find_api_key, find_device_secret
from .earcons import Earcons
from .errors import UserError
from .gpio import Gpio
from .live.echo import EchoClient, EchoSession
from .live.setup import PreparedClient
from .narration import log_transition
from .ringer import Ringer
from .statedir import state_dir
from .states import Event
from .systemd import Notifier, status_listener
from .tools import commands
from .tools.builtin import tools as builtin_tools
from .tools.outputs import Outputs
from .tools.timers import Timers
from .tools.volume import Volume
from .wake.detector import WakeDetector, resolve_models
from .wake.self_trigger import SelfTriggerGuard

if TYPE_CHECKING:
    from .live.tokens import TokenClients

log = logging.getLogger("pivoice")


@dataclass
class Daemon:
    settings: Settings
    assistant: Assistant
    gpio: Gpio
    notifier: Notifier
    key: ApiKey | DeviceSecret | None  # None: echo mode
    outputs: Outputs
    timers: Timers
    volume: Volume

    def reload(self) -> None:
        """SIGHUP / `systemctl reload pivoice`: read the API key again (used from the next conversation).

        A systemd credential (LoadCredential=, how the service gets its key) is copied when the service
        starts and cannot change while it runs (systemd 252/257), so there a new key needs a restart:
        the log says so instead of pretending the new key was read."""
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        if self.key is None:
            log.info("reloaded: echo mode has no key to read", extra=logs.fields(event="reload"))
            self.notifier.send("READY=1")
            return
        if isinstance(self.key, DeviceSecret):
            self._reload_secret()
            return
        try:
            key = find_api_key(self.settings.live.api_key_file)
            logs.register_secret(key.value)
            if key.value == self.key.value and key.source.startswith("systemd credential"):
                log.warning("reloaded, but the API key is the one the service started with: systemd hands the "
                            "credential %s over only at start. After changing /etc/pivoice/api-key run: "
                            "sudo systemctl restart pivoice", CREDENTIAL_NAME, extra=logs.fields(event="reload"))
            elif key.value == self.key.value:
                log.info("reloaded: the API key from %s is unchanged", key.source, extra=logs.fields(event="reload"))
            else:
                self.key = key
                self.assistant.client = client = PreparedClient(key, self.settings.live)
                client.prepare()
                log.info("reloaded: API key from %s", key.source, extra=logs.fields(event="reload"))
            self.assistant.reloaded()
        except UserError as e:
            log.error("reload failed, keeping the previous API key: %s", e.message, extra=logs.fields(event="reload"))
        finally:
            self.notifier.send("READY=1")

    def _reload_secret(self) -> None:
        """With tokens: read the device secret again and ask the key service for a token now (a secret that
        was refused may have been restored there, or replaced here)."""
        try:
            secret = find_device_secret(self.settings.live.device_secret_file)
            logs.register_secret(secret.value)
            self.assistant.client.reload(secret)  # a TokenClients: the key was a DeviceSecret
            self.key = secret
            log.info("reloaded: device secret from %s; asking the key service for a token", secret.source,
                     extra=logs.fields(event="reload"))
            self.assistant.reloaded()
        except UserError as e:
            log.error("reload failed, keeping the previous device secret: %s", e.message,
                      extra=logs.fields(event="reload"))
        finally:
            self.notifier.send("READY=1")

    async def run(self, signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.assistant.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.gpio.open()
        self.outputs.open()
        self.volume.open()
        self.gpio.show(self.assistant.state)
        watchdog = asyncio.create_task(self.notifier.watchdog(), name="watchdog")
        try:
            await self.assistant.run()
        finally:
            watchdog.cancel()
            if isinstance(self.key, DeviceSecret):
                self.assistant.client.close()  # TokenClients: its background refresh
            self.gpio.show(self.assistant.state)
            self.gpio.close()
            self.outputs.close()
            self.timers.close()
            self.volume.close()
            if signals:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            # What start froze, unfrozen: the interpreter's last collection frees it at exit (a soxr stream
            # left in a frozen cycle makes its bindings report a leak on stderr, which goes to the journal).
            heap.release()


def build(settings: Settings, key: ApiKey | DeviceSecret | None, models: dict[str, Path] | None = None) -> Daemon:
    """The daemon's parts, wired. `key`: the API key, or with live.token_url the device secret; None: echo mode
    (`pivoice run --echo`, live/echo.py). `models`: the resolved wake-word models (resolved here when not
    given)."""
    models = models if models is not None else resolve_models(settings.wake.models)
    aec = EchoCanceller() if settings.audio.echo_cancellation else None
    capture_want, playback_want, channel = wants(settings.audio)
    playback = Playback(settings.audio.output_device, echo=aec, want=playback_want)
    client: EchoClient | PreparedClient | TokenClients
    if key is None:
        client = EchoClient()
    elif isinstance(key, DeviceSecret):
        from .live.tokens import TokenClients  # (urllib and http.client: imported only by a speaker using tokens)

        client = TokenClients(settings.live, key)
    else:
        client = PreparedClient(key, settings.live)
    detector = WakeDetector(models, settings.wake.threshold)
    auto_gain, suppress = noise.make(settings.audio.noise_suppression, settings.audio.auto_gain_dbfs)
    assistant = Assistant(
        settings,
        Capture(settings.audio.input_device, scorer=detector.score, patient=detector.patient, canceller=aec,
                want=capture_want, channel=channel, gain_db=settings.audio.input_gain_db, auto_gain=auto_gain,
                suppress=suppress),
        playback,
        detector,
        client,
        SelfTriggerGuard(detector.twin_engine, settings.wake.threshold, playback.heard_at),
        aec,
    )
    if key is None:
        assistant.session_class = EchoSession
    tools, outputs, timers, volume = _device_tools(settings, assistant, playback)
    assistant.tools = tools
    ringer = Ringer(playback, assistant.dispatch, settings.timers.ring_seconds, lambda: assistant.problem)
    earcons = Earcons(settings.earcons, playback)
    notifier = Notifier()
    gpio = Gpio(settings.gpio, assistant, hold_mutes=settings.vad.automatic)
    # The log line first: `systemctl start` returns at READY=1, and the journal must already say "ready".
    assistant.listeners.append(log_transition)
    assistant.listeners.append(status_listener(notifier, lambda: assistant.wake_words))  # READY=1
    # Then the heap frozen (pivoice/heap.py: a full collection, 15 ms here, that READY=1 need not wait for),
    # then google-genai loaded in a worker thread.
    assistant.listeners.append(lambda t: heap.settle("start") if t.event is Event.READY else None)
    assistant.listeners.append(lambda t: client.prepare() if t.event is Event.READY else None)
    assistant.listeners.append(gpio.on_transition)
    assistant.listeners.append(ringer.on_transition)
    assistant.listeners.append(earcons.on_transition)
    if settings.timers.enabled:
        assistant.listeners.append(lambda t: timers.start() if t.event is Event.READY
                                   else timers.close() if t.event is Event.STOP else None)
    return Daemon(settings, assistant, gpio, notifier, key, outputs, timers, volume)


def _device_tools(settings: Settings, assistant: Assistant, playback: Playback):
    """What the model may call, and the parts behind the tools that open and close with the daemon."""
    state = state_dir()
    outputs = Outputs(settings.tools.outputs, state / "outputs.json")
    timers = Timers(state / "timers.json", lambda t, late: assistant.dispatch(
        Event.TIMER_FIRED, name=t.name, kind=t.kind, late=late, due=t.local()))
    volume = Volume(settings.audio.volume_control, settings.audio.mixer_device, playback, state / "volume.json")
    g = settings.gpio  # mute_microphone only where a button can unmute (held talk button, or the mute button)
    can_unmute = g.enabled and (g.mute_pin is not None or (g.button_pin is not None and settings.vad.automatic))
    tools = builtin_tools(settings.tools, assistant, can_unmute)
    if settings.tools.volume:
        tools += volume.tools()
    tools += outputs.tools() + commands.tools(settings.tools.commands)
    if settings.timers.enabled:
        tools += timers.tools()
    return tools, outputs, timers, volume
