"""What one conversation said and cost, kept while it lasts.

`Transcript`: the turns so far as text, from the Live API's input and output transcriptions. When a
failure ends a session that resumption cannot bring back (a 1011 whose resumption is refused, an expired
handle), the next session is seeded with it, so "...and the day after?" still makes sense. Memory only: it
goes with the conversation's context (see Assistant), never to disk or the log.

`Usage`: tokens (from the server's usage metadata) and seconds of audio each way, logged once at the end.
"""

from __future__ import annotations

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
