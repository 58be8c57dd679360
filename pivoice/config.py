"""The settings: every key of the TOML configuration file, validated and typed (configfile.py reads the file).

Every key is documented in config/pivoice.toml; a test keeps that file and these models in step.
A value's check says what is wrong with it; configfile.py adds the file and the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .live import models

DEFAULT_PATH = Path("/etc/pivoice/pivoice.toml")
DEFAULT_INSTRUCTION = (
    "You are a voice assistant on a smart speaker in someone's home. Answer in a friendly, natural way "
    "and keep answers short: they are spoken aloud, so no lists, markdown or links."
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


DEVICE_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000)


class AudioSettings(_Section):
    input_device: str = Field("default", min_length=1)
    output_device: str = Field("default", min_length=1)
    input_rate: int = 0  # 0: pivoice's own (16000), or what the device runs at
    input_channels: int = Field(0, ge=0, le=8)
    input_channel: int | Literal["mix"] = "mix"
    input_gain_db: float = Field(0.0, ge=-20.0, le=30.0)
    noise_suppression: int = Field(0, ge=0, le=4)  # audio/noise.py
    auto_gain_dbfs: int = Field(0, ge=0, le=31)
    output_rate: int = 0  # 0: pivoice's own (24000), or what the device runs at
    output_channels: int = Field(0, ge=0, le=8)
    input_period_ms: int = Field(40, ge=10, le=200)
    input_periods: int = Field(8, ge=2, le=16)
    output_period_ms: int = Field(20, ge=5, le=100)
    output_periods: int = Field(4, ge=2, le=16)
    echo_cancellation: bool = True
    barge_in: Literal["voice", "wake_word"] = "voice"
    volume_control: str = ""
    mixer_device: str = Field("default", min_length=1)

    @field_validator("input_rate", "output_rate")
    @classmethod
    def _a_device_rate(cls, v: int) -> int:
        if v and v not in DEVICE_RATES:
            raise ValueError(f"0 (automatic) or one of {', '.join(map(str, DEVICE_RATES))}")
        return v

    @field_validator("input_channel")
    @classmethod
    def _a_channel(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 0 <= v < 8:
            raise ValueError('"mix", or a channel number from 0 (the first) to 7')
        return v


class WakeSettings(_Section):
    models: list[str] = Field(default_factory=lambda: ["hey_jarvis"], min_length=1)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    pre_roll_seconds: float = Field(0.5, ge=0.0, le=1.5)

    @field_validator("models")
    @classmethod
    def _no_empty_names(cls, v: list[str]) -> list[str]:
        if any(not m.strip() for m in v):
            raise ValueError("a model name is empty")
        return v


# A BCP-47 language tag as the Live API takes it: "de-DE", "en-US", "pt-BR", "fr", "cmn-CN".
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z]{4})?(-([A-Z]{2}|[0-9]{3}))?")


def _http_url(v: str, example: str) -> str:
    """`v` when it is empty or an http(s) URL with a host (and a port that is a number); else what to give."""
    if not v:
        return v
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError as e:
        raise ValueError(f"not a usable URL ({e})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"not a URL: {example}")
    return v


class LiveSettings(_Section):
    model: str = Field(models.DEFAULT_MODEL, min_length=1)
    system_instruction: str = DEFAULT_INSTRUCTION
    voice: str = ""
    language: str = ""
    proactive_audio: bool | None = None
    affective_dialog: bool | None = None
    thinking_level: Literal["", "minimal", "low", "medium", "high"] = ""
    base_url: str = ""
    api_key_file: str = ""
    token_url: str = ""
    token_ca_file: str = ""
    device_secret_file: str = ""
    connect_timeout_seconds: float = Field(10.0, gt=0.0, le=120.0)
    response_timeout_seconds: float = Field(15.0, gt=0.0, le=300.0)
    compression_trigger_tokens: int = Field(32000, ge=1000)
    transcripts: bool = False
    retry_max_seconds: float = Field(60.0, ge=1.0, le=3600.0)

    @field_validator("base_url")
    @classmethod
    def _a_url(cls, v: str) -> str:
        return _http_url(v, "give one like https://gateway.example:8443 (the Live API is reached over wss:// "
                            "there), or leave it empty for Google's endpoint")

    @field_validator("token_url")
    @classmethod
    def _a_token_url(cls, v: str) -> str:
        _http_url(v, "give the key service's, like https://keys.home.arpa:8443/token")
        if v.startswith("http:") and urlsplit(v).hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("the device secret would cross the network unencrypted: use https:// (plain "
                             "http:// only to a key service on this machine)")
        return v

    @field_validator("language")
    @classmethod
    def _a_language(cls, v: str) -> str:
        if v and not _LANGUAGE.fullmatch(v):
            raise ValueError("not a BCP-47 language code: give one like \"de-DE\", \"en-US\" or \"fr-FR\", "
                             "or leave it empty for the model to choose")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> LiveSettings:
        wrong = models.unsupported(self.model, self.proactive_audio, self.affective_dialog, self.thinking_level)
        if wrong:
            raise ValueError("; ".join(wrong))
        if self.token_url and self.api_key_file:
            raise ValueError("set live.token_url (tokens from a key service) or live.api_key_file, not both")
        if not self.token_url and (self.device_secret_file or self.token_ca_file):
            raise ValueError("live.device_secret_file and live.token_ca_file need live.token_url")
        return self

    @property
    def instruction(self) -> str:
        """The system instruction sent: the default one also asks for answers in live.language."""
        if self.language and self.system_instruction == DEFAULT_INSTRUCTION:
            return (f"{self.system_instruction} Speak and answer in the language with BCP-47 code "
                    f"{self.language}, whatever language you are spoken to in.")
        return self.system_instruction


class VadSettings(_Section):
    automatic: bool = True
    start_sensitivity: Literal["default", "high", "low"] = "default"
    end_sensitivity: Literal["default", "high", "low"] = "default"
    prefix_padding_ms: int | None = Field(None, ge=0, le=5000)
    silence_duration_ms: int | None = Field(None, ge=0, le=10000)


class ConversationSettings(_Section):
    follow_up_seconds: float = Field(8.0, ge=0.0, le=120.0)
    max_seconds: float = Field(300.0, gt=0.0, le=3600.0)
    resume_context_seconds: float = Field(300.0, ge=0.0, le=7000.0)


class GpioSettings(_Section):
    enabled: bool = True
    led: Literal["none", "led", "pwm", "rgb"] = "none"
    # BCM GPIO numbers. led_pins: one pin for "led"/"pwm", three (red, green, blue) for "rgb".
    led_pins: list[int] = Field(default_factory=list)
    led_active_high: bool = True
    button_pin: int | None = None
    button_pull_up: bool = True
    button_bounce_ms: int = Field(30, ge=0, le=1000)
    long_press_seconds: float = Field(2.0, gt=0.2, le=10.0)
    mute_pin: int | None = None


HEADER_PINS = range(0, 28)  # BCM GPIO 0-27 on the 40-pin header


def check_pins(s: GpioSettings, more: list[tuple[str, int]] | None = None) -> str | None:
    """A config problem with the pins (`more`: (key, pin) of the outputs), said as a message naming the key;
    None when they are fine."""
    used: dict[int, str] = {}
    wanted = {"led": 1, "pwm": 1, "rgb": 3, "none": 0}[s.led]
    if len(s.led_pins) != wanted:
        return (f"gpio.led_pins: gpio.led = \"{s.led}\" needs {wanted} pin(s), got {len(s.led_pins)}"
                + (" (red, green, blue)" if s.led == "rgb" else ""))
    pins = [(f"gpio.led_pins[{i}]", p) for i, p in enumerate(s.led_pins)]
    pins += [(k, p) for k, p in (("gpio.button_pin", s.button_pin), ("gpio.mute_pin", s.mute_pin)) if p is not None]
    pins += more or []
    for key, pin in pins:
        if pin not in HEADER_PINS:
            return f"{key}: {pin} is not a GPIO pin; use a BCM number from 0 to 27 (see pinout.xyz)"
        if pin in used:
            return f"{key}: GPIO{pin} is already used by {used[pin]}"
        used[pin] = key
    return None


class OutputSettings(_Section):
    """A GPIO output the model may switch: a relay, a lamp, a fan."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    pin: int
    description: str = Field(min_length=1, max_length=200)
    active_high: bool = True
    remember: bool = False  # its state survives a restart


class CommandParameter(_Section):
    """One parameter of a command tool, as the model is told it (a JSON-schema property)."""

    type: Literal["string", "integer", "number", "boolean"]
    description: str = ""
    enum: list[str] = Field(default_factory=list)  # (strings) only these values
    max_length: int = Field(200, ge=1, le=10_000_000)  # (strings)
    minimum: float | None = None
    maximum: float | None = None
    allow_leading_dash: bool = False  # (strings) a value like "-rf" could be taken for an option: refused


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class CommandSettings(_Section):
    """A tool that runs one fixed program; the model fills only the declared, checked parameters."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    description: str = Field(min_length=1, max_length=500)
    argv: list[str] = Field(min_length=1)
    parameters: dict[str, CommandParameter] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(10.0, gt=0.0, le=300.0)
    max_output_bytes: int = Field(4000, ge=1, le=1_000_000)
    blocking: bool = True

    @model_validator(mode="after")
    def _argv(self) -> CommandSettings:
        if not self.argv[0].startswith("/") or _PLACEHOLDER.search(self.argv[0]):
            raise ValueError(f"tools.commands '{self.name}': argv[0] must be the program's absolute path "
                             f"(no PATH lookup, no placeholder), got {self.argv[0]!r}")
        for arg in self.argv[1:]:
            for name in _PLACEHOLDER.findall(arg):
                if name not in self.parameters:
                    raise ValueError(f"tools.commands '{self.name}': argv names {{{name}}}, which is not one "
                                     f"of its parameters")
        for name in self.required:
            if name not in self.parameters:
                raise ValueError(f"tools.commands '{self.name}': required names '{name}', not a parameter")
        return self


class ToolSettings(_Section):
    time: bool = True
    volume: bool = True
    end_conversation: bool = True
    mute: bool = True
    google_search: bool = True
    outputs: list[OutputSettings] = Field(default_factory=list)
    commands: list[CommandSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> ToolSettings:
        names = [o.name for o in self.outputs] + [c.name for c in self.commands]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f"tools: two outputs or commands are named '{n}'")
            if n in BUILTIN_TOOLS:
                raise ValueError(f"tools: '{n}' is a built-in tool's name: call it something else")
        return self


BUILTIN_TOOLS = ("get_date_and_time", "end_conversation", "mute_microphone", "get_volume", "set_volume",
                 "set_timer", "set_alarm", "list_timers", "cancel_timer")  # (tools/: builtin, volume, timers)


class TimerSettings(_Section):
    enabled: bool = True
    ring_seconds: float = Field(300.0, ge=5.0, le=3600.0)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class EarconSettings(_Section):
    enabled: bool = True
    volume: float = Field(0.4, ge=0.0, le=1.0)
    wake: str = ""
    end: str = ""
    error: str = ""
    mute: str = ""
    unmute: str = ""


class Settings(_Section):
    audio: AudioSettings = AudioSettings()
    wake: WakeSettings = WakeSettings()
    live: LiveSettings = LiveSettings()
    conversation: ConversationSettings = ConversationSettings()
    vad: VadSettings = VadSettings()
    gpio: GpioSettings = GpioSettings()
    tools: ToolSettings = ToolSettings()
    timers: TimerSettings = TimerSettings()
    earcons: EarconSettings = EarconSettings()
    log: LogSettings = LogSettings()
    # Where the settings came from, for messages ("built-in defaults" when no file).
    source: str = Field("built-in defaults", exclude=True)

    @model_validator(mode="after")
    def _pins(self) -> Settings:
        # Pins are checked here, not only when GPIO opens: `pivoice check` must catch them, and a
        # wrong pin is a configuration error whatever the machine.
        problem = check_pins(self.gpio, [(f"tools.outputs[{i}].pin", o.pin) for i, o in enumerate(self.tools.outputs)])
        if problem:
            raise ValueError(problem)
        return self
