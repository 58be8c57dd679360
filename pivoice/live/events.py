"""What the Live API said, as the assistant needs it: the events a session reports through `on_event`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Connected:
    setup_ms: float
    resumed: bool = False  # a new connection of the same conversation


@dataclass(frozen=True)
class ModelAudio:
    pcm: bytes  # 24 kHz mono s16le, whole samples (AnswerAudio makes it so)


@dataclass(frozen=True)
class Interrupted:
    pass


@dataclass(frozen=True)
class TurnComplete:
    """The server's turnComplete. `generated`: generationComplete came first (the model is done). Without
    it, more audio of the same answer may follow (a premature turnComplete, python-genai#2117)."""

    generated: bool = True


@dataclass(frozen=True)
class Heard:
    """Input transcription: the server heard the user speak."""

    text: str


@dataclass(frozen=True)
class Speaking:
    """The server's voice activity detection: the person started speaking (newer models say so)."""


@dataclass(frozen=True)
class Said:
    """Output transcription: what the model said."""

    text: str


@dataclass(frozen=True)
class Handle:
    """A new resumption handle: the conversation can be resumed with it (for a while)."""

    value: str


LiveEvent = Connected | ModelAudio | Interrupted | TurnComplete | Heard | Speaking | Said | Handle
