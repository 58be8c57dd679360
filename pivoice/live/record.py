"""What one conversation said and cost, kept while it lasts.

`Transcript`: the turns so far as text, from the Live API's input and output transcriptions. When a
failure ends a session that resumption cannot bring back (a 1011 whose resumption is refused, an expired
handle), the next session is seeded with it, so "...and the day after?" still makes sense. Memory only: it
goes with the conversation's context (see Assistant), never to disk or the log.

`Context`: the last conversation's resumption handle and transcript, kept for a wake word soon after
("hey jarvis, and the day after?"), and forgotten when that window closes.

`Usage`: tokens (from the server's usage metadata) and seconds of audio each way, logged once at the end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..audio.format import IN_RATE, OUT_RATE

MAX_CHARS = 6000  # the newest turns kept for a reseed (about 1,500 tokens): enough for "what did you say"


@dataclass
class Transcript:
    turns: list[tuple[str, str]] = field(default_factory=list)  # (role "user" | "model", text), oldest first

    def add(self, role: str, text: str) -> None:
        """A piece of transcription: joins the last turn when the same side is still speaking."""
        if not text:
            return
        if self.turns and self.turns[-1][0] == role:
            self.turns[-1] = (role, self.turns[-1][1] + text)
        else:
            self.turns.append((role, text))
        while sum(len(t) for _, t in self.turns) > MAX_CHARS and len(self.turns) > 1:
            del self.turns[0]

    def contents(self) -> list:
        """The turns as the Live API's client content (google-genai `Content`s, roles user / model)."""
        from google.genai import types

        return [types.Content(role=role, parts=[types.Part(text=text.strip())]) for role, text in self.turns]

    def as_instruction(self) -> str:
        """The turns as text for a system instruction (models without initial history in client content)."""
        said = "\n".join(f"{'Person' if role == 'user' else 'You'}: {text.strip()}" for role, text in self.turns)
        return ("\n\nThe conversation so far (the connection was renewed; go on from it, do not greet "
                f"again):\n{said}")

    def __bool__(self) -> bool:
        return bool(self.turns)


class Context:
    """What a new conversation continues: the newest handle of the last one and its transcript, for
    `window` seconds after the handle came (conversation.resume_context_seconds), then dropped."""

    def __init__(self, window: float):
        self.window = window
        self._kept: tuple[str, Transcript] | None = None
        self._expiry: asyncio.TimerHandle | None = None

    def keep(self, handle: str, transcript: Transcript) -> None:
        if self.window <= 0:
            return
        self._kept = (handle, transcript)
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(self.window, self.forget)

    def take(self) -> tuple[str | None, Transcript | None]:
        """The handle and transcript to continue with; (None, None) when there is nothing recent."""
        return self._kept if self._kept is not None else (None, None)

    def forget(self) -> None:
        self._kept = None


@dataclass
class Usage:
    tokens_in: int = 0  # prompt tokens, summed over the usage metadata of every turn
    tokens_out: int = 0  # response tokens
    bytes_in: int = 0  # microphone audio sent (16 kHz s16le)
    bytes_out: int = 0  # model audio received (24 kHz s16le)

    def add_metadata(self, um) -> None:
        self.tokens_in += um.prompt_token_count or 0
        self.tokens_out += um.response_token_count or 0

    @property
    def seconds_in(self) -> float:
        return self.bytes_in / (2 * IN_RATE)

    @property
    def seconds_out(self) -> float:
        return self.bytes_out / (2 * OUT_RATE)
