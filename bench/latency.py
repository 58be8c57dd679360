"""Benchmark 2: the latencies a user feels, over --conversations conversations (default 20), through the
virtual sound card of the tests (PulseAudio: a pipe-source microphone fed in real time, a null-sink
speaker recorded by parec) and the Live API stand-in (tests/standin.py), with pivoice itself running as
`python -m pivoice run` on the ALSA PCMs pv_mic / pv_spk, as the tests run it.

Each conversation: "hey jarvis" + "what time is it in Tokyo" into the microphone; the stand-in answers
with a continuous tone (200 ms messages, sent faster than real time, as the Live API does); once one
second of the answer has reached the speaker the stand-in sends `interrupted`; the follow-up window
(1.5 s) passes and the daemon goes back to waiting for the wake word.

Measured, all on this process's monotonic clock:
  - wake-word end: when the 20 ms chunk holding the last voiced sample of "hey jarvis" was written
    into the microphone pipe;
  - detection: the timestamp of pivoice's "heard 'hey_jarvis'" log line (wall clock, ms);
  - first post-wake audio at the stand-in: when the WebSocket message carrying the first sample after
    the wake word's end arrived (the stand-in's received audio is matched to the microphone's by the
    command's samples, which arrive bit-exact);
  - first reply chunk -> speaker: from the stand-in sending its first audio message to that audio's
    first sample reaching parec on speaker.monitor;
  - interrupt -> silence: from the stand-in sending `interrupted` to the last sample of the answer
    reaching parec;
  - memory: the daemon's RSS sampled every 100 ms: while it listens before the first conversation (the
    last second of 3 s after READY=1: its Live client made), the peak of each conversation (from the
    wake word said to "conversation over"), and while it listens after the last.
Then --gpio-conversations (default 10) more conversations, each interrupted by the talk button and by
"hey jarvis" said over the answer (barge-in), on pivoice's daemon built in this process
(pivoice.daemon.build, as tests/harness.py's InProcessDaemon) so gpiozero's mock pins can be driven: from
the pin going low, or from the end of the spoken wake word, to the last sample of the answer (a quiet one
there, as in tests/test_gpio.py). An interruption pivoice does not have is printed as "not built yet".
Times at the speaker are those at which parec received each sample: they include the virtual card's
own latency (ALSA pulse plugin, null sink, monitor, parec). A probe measures that latency in the same run
by writing a tone straight to pv_spk with pyalsaaudio, with pivoice's period and buffer sizes.

    .venv/bin/python bench/latency.py [--conversations 20] [--gpio-conversations 10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c
import numpy as np
from harness import Daemon, InProcessDaemon, SoundCard, SpeakerRecorder, daemon_env, make_home, read_wav, silence, tone

LOUD = 2000  # |sample| above this is the answer (the tone peaks at ~9800; the card is silent otherwise)
SPK_RATE = 24000
FOLLOW_UP = 1.5  # s: the answer must start within it (it does, ~0.4 s after connecting)


# -- the tests' harness, instrumented (subclasses; tests/ is not modified) ----------------------------
def timed_standin(tmp_path: Path):
    """The tests' Live API stand-in, whose sessions' received audio remembers when each piece arrived."""
    from standin import LiveStandIn

    class TimedBytes(bytearray):
        """A session's received audio that remembers when each piece arrived."""

        def __init__(self):
            super().__init__()
            self.arrivals: list[tuple[float, int]] = []  # (monotonic, byte length after it)

        def __iadd__(self, other):
            super().__iadd__(other)
            self.arrivals.append((time.monotonic(), len(self)))
            return self

    class TimedSessions(list):
        def append(self, sess) -> None:
            sess.audio = TimedBytes()
            super().append(sess)

    class TimedStandIn(LiveStandIn):
        def __init__(self, tmp_path: Path):
            super().__init__(tmp_path)
            self.sessions = TimedSessions()

    return TimedStandIn(tmp_path)


class Speaker(SpeakerRecorder):
    """The tests' speaker recorder (parec on speaker.monitor, each read stamped with when it arrived), for
    the whole run, with the sink's clock recovered from those stamps."""

    def __init__(self, card: SoundCard, tmp_path: Path):
        super().__init__(card, tmp_path, level=LOUD)

    def samples_from(self, start: int) -> np.ndarray:
        return np.frombuffer(bytes(self.data[start * 2 : len(self.data) // 2 * 2]), "<i2")

    def clock(self):
        """sample indices -> monotonic times they reached parec. While a stream is open on the sink, the
        monitor delivers a continuous paced stream, so each read k says sample 0 of its run arrived at
        t_k - n_k / rate at the latest; the smallest of those over nearby reads (+-2 s) strips the delays
        of the reading thread. Runs are split where no read came for 0.1 s (nothing open on the sink)."""
        reads = np.array(list(self.stamps), dtype=float)
        t, n = reads[:, 0], reads[:, 1]
        zero = t - n / SPK_RATE
        run = np.concatenate([[0], np.cumsum(np.diff(t) > 0.1)])
        lo, hi = np.searchsorted(t, t - 2.0), np.searchsorted(t, t + 2.0, side="right")
        envelope = np.array([zero[a:b][run[a:b] == run[k]].min() for k, (a, b) in enumerate(zip(lo, hi, strict=True))])

        def at(i):
            i = np.asarray(i)
            k = np.minimum(np.searchsorted(n, i + 1), len(n) - 1)
            return envelope[k] + (i + 1) / SPK_RATE

        return at

    def first_loud_after(self, t0: float, level: int = LOUD) -> int | None:
        """The first sample of the answer that reached parec at or after t0."""
        stamps = list(self.stamps)  # (the recorder stamps a read after adding its data)
        if not stamps:
            return None
        k = max(0, int(np.searchsorted([r[0] for r in stamps], t0 - 0.5)) - 1)
        start = int(stamps[k][1]) if k > 0 else 0
        loud = np.flatnonzero(np.abs(self.samples_from(start)) > level) + start
        if not loud.size:
            return None
        late = loud[self.clock()(loud) >= t0]
        return int(late[0]) if late.size else None


# -- the virtual card's own latency: a tone written straight to pv_spk ------------------------------
def probe_card(n: int) -> None:
    """Run in a subprocess (--probe-card): prints one JSON line per tone with when it was written."""
    import alsaaudio

    from pivoice.audio.playback import RATE as PLAY_RATE
    from pivoice.audio.playback import WANT

    params = WANT.params(PLAY_RATE, 1)  # as the daemon opens it
    pcm = alsaaudio.PCM(alsaaudio.PCM_PLAYBACK, alsaaudio.PCM_NORMAL, device="pv_spk", channels=1,
                        rate=PLAY_RATE, format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=params.period_frames,
                        periods=params.periods)
    beep = tone(0.2)
    period = params.period_frames * 2
    time.sleep(2.0)  # parec delivers only while a stream is open on the sink, and takes ~1 s to start
    for _ in range(n):
        time.sleep(0.4)
        t = time.monotonic()
        for i in range(0, len(beep), period):
            pcm.write(beep[i : i + period])
        pcm.drop()
        print(json.dumps({"written": t}), flush=True)
        time.sleep(0.2)
    pcm.close()


# The interruptions a user has. Each measured one has its conversation loop above (the server's
# `interrupted`: TimedStandIn.interrupt_now). To add one, script its trigger where interrupt_now() is called
# (e.g. the wake word fed into the microphone over the answer) and give it its own row.
INTERRUPTIONS = {
    "server `interrupted`": "INTERRUPTED",  # the subprocess daemon, TimedStandIn.interrupt_now()
    "button": "BUTTON_DOWN",  # in-process daemon (gpio_phase): gpiozero mock pin 17 driven low
    "wake word (barge-in)": "BARGE_IN",  # in-process daemon (gpio_phase): "hey jarvis" over the answer
}


def built(kind: str) -> bool:
    from pivoice.states import Event

    if not hasattr(Event, INTERRUPTIONS[kind]):
        return False
    if kind == "server `interrupted`":
        return True
    import importlib.util

    # The tests' way of driving gpiozero's mock pins: pivoice's daemon built in this process.
    return importlib.util.find_spec("gpiozero") is not None


BUTTON_PIN = 17  # as in tests/test_gpio.py's CONFIG, which the in-process phase runs
QUIET = 500  # the in-process phase plays a quiet answer (as tests/test_gpio.py does): louder than this


def gpio_phase(n: int, card, standin, speaker, home: Path) -> list[dict]:
    """`n` conversations interrupted by the button and `n` by the wake word said over the answer,
    alternating, on pivoice's daemon built in this process (pivoice.daemon.build, as tests/harness.py's
    InProcessDaemon does) so that gpiozero's mock pins can be driven."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin
    from test_gpio import CONFIG as GPIO_CONFIG

    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    os.environ.update(HOME=str(home), XDG_RUNTIME_DIR=str(home), **standin.env())
    standin.behaviour.reply_pcm = tone(3.0, level=0.05)  # sent whole within 0.75 s: before any interrupt
    d = InProcessDaemon(GPIO_CONFIG.format(follow_up=FOLLOW_UP))
    convs = []
    try:
        d.wait_event("ready", timeout=60)
        jarvis, rp, command_pcm = read_wav("hey_jarvis.wav"), read_wav("hey_jarvis_rp.wav"), read_wav(
            "command_time_tokyo.wav")
        rp_end = int(np.flatnonzero(np.abs(np.frombuffer(rp, "<i2")) > 300)[-1]) + 1
        for i in range(2 * n):
            kind = "button" if i % 2 == 0 else "wake word (barge-in)"
            print(f"in-process conversation {i + 1}/{2 * n}: {kind}", file=sys.stderr, flush=True)
            t0, base = time.monotonic(), len(standin.sessions)
            conv = {"kind": kind}
            try:
                card.say_at(silence(0.5) + jarvis + silence(0.15) + command_pcm)
                d.wait_event("wake", timeout=15, after=t0)
                standin.wait_for(lambda base=base: len(standin.sessions) > base and standin.sessions[base].replies_started,
                                 15, "the stand-in to answer")
                reply_at = standin.sessions[base].replies_started[0]
                first, deadline = None, time.monotonic() + 10
                while first is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                    first = speaker.first_loud_after(reply_at, QUIET)
                if first is None:
                    raise AssertionError("the answer never reached the speaker")
                time.sleep(max(0.0, speaker.clock()(first) + 1.0 - time.monotonic()))
                if kind == "button":
                    pin = Device.pin_factory.pin(BUTTON_PIN)
                    trigger = time.monotonic()
                    pin.drive_low()
                    time.sleep(0.15)
                    pin.drive_high()
                    event = d.wait_event("button_down", timeout=5, after=trigger)
                else:
                    start = card.say_at(rp + silence(0.3))
                    event = d.wait_event("barge_in", timeout=5, after=reply_at)
                    trigger = card.written(start + rp_end)[0]
                d.wait_event("follow_up_timeout", timeout=10, after=event)
                conv.update(reply_at=reply_at, trigger=trigger, event=event)
            except AssertionError as e:
                conv["error"] = str(e).splitlines()[0]
                print(f"  failed: {conv['error']}", file=sys.stderr)
                d.wait_state("idle", timeout=20)
            convs.append(conv)
            time.sleep(0.3)
    finally:
        d.stop()
        Device.pin_factory.reset()
    return convs


def log_time(line: str) -> float | None:
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", line)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def line_index(d, pattern: str, start: int) -> int:
    rx = re.compile(pattern)
    for i, line in enumerate(d.lines[start:], start):
        if rx.search(line):
            return i
    raise AssertionError(f"no {pattern!r} after line {start}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conversations", type=int, default=20, help="interrupted by the server (default 20)")
    ap.add_argument("--gpio-conversations", type=int, default=10,
                    help="interrupted by the button, and as many by the wake word (default 10 each)")
    ap.add_argument("--dump", type=Path, help="also save the raw measurements (speaker samples, read times, "
                    "events) to this .npz file")
    ap.add_argument("--probe-card", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    c.exit_on_sigterm()
    if args.probe_card:
        probe_card(args.probe_card)
        return
    c.require("pulseaudio", "parec")
    command = "bench/latency.py " + " ".join(sys.argv[1:])
    started = time.monotonic()

    from test_conversation import CONFIG

    tmp = Path(tempfile.mkdtemp(prefix="pivoice-bench-"))
    home = make_home(tmp / "home", files=tmp)
    env = daemon_env(home)
    card = SoundCard(home).start()
    standin = timed_standin(tmp).start()
    speaker = Speaker(card, tmp)
    d = None
    try:
        # 1. The virtual card's own latency.
        print("probing the virtual sound card", file=sys.stderr, flush=True)
        r = subprocess.run([c.venv_python(), __file__, "--probe-card", str(args.conversations)], env=env,
                           capture_output=True, text=True, timeout=120)
        writes = [json.loads(line)["written"] for line in r.stdout.splitlines() if line.startswith("{")]
        if r.returncode != 0 or not writes:
            raise RuntimeError(f"card probe failed: {r.stderr[-1500:]}")
        time.sleep(0.3)
        card_ms = []
        at = speaker.clock()
        for w in writes:
            if not speaker.stamps or w < speaker.stamps[0][0]:
                continue  # parec was not receiving yet
            i = speaker.first_loud_after(w)
            if i is not None:
                card_ms.append((at(i) - w) * 1000)

        # 2. The conversations.
        standin.behaviour.reply_after_seconds = 1.0
        standin.behaviour.reply_pcm = tone(4.0)
        standin.behaviour.reply_pace = 0.05
        cfg = tmp / "pivoice.toml"
        config = CONFIG.format(speaker="pv_spk", follow_up=FOLLOW_UP)  # tests/test_conversation.py's set-up
        cfg.write_text(config.replace('level = "debug"', 'level = "info"'))  # logging as a user's pivoice does
        d = Daemon(["run", "--config", str(cfg)], {**env, **standin.env()}, tmp)
        d.wait_for("ready: listening", timeout=60)
        rss = c.RssSampler(d.proc.pid)
        time.sleep(3.0)  # the Live client is made after READY=1, in the background: listening as it then is
        listening_until = time.monotonic()
        jarvis, command_pcm = read_wav("hey_jarvis.wav"), read_wav("command_time_tokyo.wav")
        voiced = np.flatnonzero(np.abs(np.frombuffer(jarvis, "<i2")) > 300)
        speech_end = int(voiced[-1]) + 1  # samples into the clip: the end of "hey jarvis" as spoken
        lead, gap = silence(0.5), silence(0.15)
        convs = []
        for n in range(args.conversations):
            print(f"conversation {n + 1}/{args.conversations}", file=sys.stderr, flush=True)
            first_line, base = len(d.lines), len(standin.sessions)  # this conversation's first connection
            said_at = time.monotonic()
            start = card.say_at(lead + jarvis + gap + command_pcm)
            wake_end = start + len(lead) // 2 + speech_end
            conv = {"wake_end_sample": wake_end, "said_at": said_at}
            try:
                d.wait_for(r"heard 'hey_jarvis'", timeout=15, start=first_line)
                standin.wait_for(lambda base=base: len(standin.sessions) > base and standin.sessions[base].replies_started,
                                 15, "the stand-in to answer")
                sess = standin.sessions[base]
                reply_at = sess.replies_started[0]
                deadline = time.monotonic() + 10
                first = None
                while first is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                    first = speaker.first_loud_after(reply_at)
                if first is None:
                    raise AssertionError("the answer never reached the speaker")
                time.sleep(max(0.0, speaker.clock()(first) + 1.0 - time.monotonic()))
                conv["interrupt_sent"] = standin.interrupt_now()
                d.wait_for("answer interrupted", timeout=10, start=first_line)
                d.wait_for("no follow-up: conversation over", timeout=10, start=first_line)
                standin.wait_for(lambda sess=sess: sess.closed_at is not None, 5, "the session to close")
                conv.update(session=base, reply_at=reply_at, first_line=first_line, over_at=time.monotonic())
            except AssertionError as e:
                conv["error"] = str(e).splitlines()[0]
                print(f"  conversation {n + 1} failed: {conv['error']}", file=sys.stderr)
                d.wait_for("waiting for the wake word|conversation ended", timeout=15, start=first_line)
            convs.append(conv)
            time.sleep(0.3)
        after_from = time.monotonic()
        time.sleep(3.0)
        rss.stop()
        memory: dict[str, list[float]] = {}
        for anon in (False, True):
            memory["anon " * anon + "listening"] = rss.between(listening_until - 1.0, listening_until, anon)
            memory["anon " * anon + "conversation"] = [
                max(rss.between(cv["said_at"], cv["over_at"], anon) or [float("nan")])
                for cv in convs if "over_at" in cv]
            memory["anon " * anon + "after"] = rss.between(after_from, float("inf"), anon)

        # 3. Reading the measurements.
        samples = speaker.samples
        loud = np.flatnonzero(np.abs(samples) > LOUD)
        loud_t = speaker.clock()(loud) if loud.size else np.zeros(0)
        detect, connect, to_server, to_speaker, interrupt = [], [], [], [], []
        failures = [cv["error"] for cv in convs if "error" in cv]
        for k, cv in enumerate(convs):
            if "error" in cv:
                continue
            sess = standin.sessions[cv["session"]]
            t_end, w_end = card.written(cv["wake_end_sample"])
            i_heard = line_index(d, r"heard 'hey_jarvis'", cv["first_line"])
            detect.append((log_time(d.lines[i_heard]) - w_end) * 1000)
            connect.append(float(re.search(r"session open in (\d+) ms", d.lines[
                line_index(d, "session open in", cv["first_line"])]).group(1)))
            audio = bytes(sess.audio)
            pos = audio.find(command_pcm)
            if pos >= 0:
                post_wake = pos - 2 * (len(gap) // 2 + len(jarvis) // 2 - speech_end)  # byte offset
                arrived = next((t for t, end in sess.audio.arrivals if end > post_wake), None)
                if arrived is not None:
                    to_server.append((arrived - t_end) * 1000)
            else:
                failures.append(f"conversation {k + 1}: the command did not arrive intact")
            after = loud_t[loud_t >= cv["reply_at"]]
            if after.size:
                to_speaker.append((after[0] - cv["reply_at"]) * 1000)
            nxt = convs[k + 1]["reply_at"] if k + 1 < len(convs) and "reply_at" in convs[k + 1] else float("inf")
            window = loud_t[(loud_t >= cv["reply_at"]) & (loud_t < nxt)]
            if window.size:
                interrupt.append(max(0.0, (window[-1] - cv["interrupt_sent"]) * 1000))
        if args.dump:
            np.savez(args.dump, samples=samples, reads=np.array(speaker.stamps), card_writes=np.array(writes),
                     events=json.dumps(convs), log="\n".join(d.lines))
        periods = {m.group(1): (m.group(2), m.group(3)) for line in d.lines
                   if (m := re.search(r"(capture|playback) device \S+: .*period (\d+) frames.*buffer (\d+) frames", line))}
        code, _ = d.stop()

        # 4. The button and the wake word over the answer, on the daemon built in this process.
        gpio_kinds = [k for k in ("button", "wake word (barge-in)") if built(k)]
        gpio_convs = gpio_phase(args.gpio_conversations, card, standin, speaker, home) \
            if gpio_kinds and args.gpio_conversations > 0 else []
        time.sleep(0.5)
        samples = speaker.samples
        quiet = np.flatnonzero(np.abs(samples) > QUIET)
        quiet_t = speaker.clock()(quiet) if quiet.size else np.zeros(0)
        gpio_ms: dict[str, list[float]] = {"button": [], "wake word (barge-in)": [], "detected": []}
        for k, cv in enumerate(gpio_convs):
            if "error" in cv:
                failures.append(f"{cv['kind']}: {cv['error']}")
                continue
            nxt = next((x["reply_at"] for x in gpio_convs[k + 1:] if "reply_at" in x), float("inf"))
            window = quiet_t[(quiet_t >= cv["reply_at"]) & (quiet_t < nxt)]
            if window.size:
                gpio_ms[cv["kind"]].append(max(0.0, (window[-1] - cv["trigger"]) * 1000))
                if cv["kind"] != "button":
                    gpio_ms["detected"].append(max(0.0, (window[-1] - cv["event"]) * 1000))
    finally:
        if d is not None and d.proc.poll() is None:
            d.stop()
        speaker.stop()
        standin.stop()
        card.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def ms(x: float) -> str:
        return f"{x:.1f}" if abs(x) < 10 else f"{x:.0f}"

    def row(name, xs, note=""):
        if not xs:
            return [name, 0, "-", "-", "-", "-", note]
        return [name, len(xs), ms(c.median(xs)), ms(c.p95(xs)), ms(min(xs)), ms(max(xs)), note]

    rows = [
        row("wake-word end -> detection ('heard' log line)", detect, "log timestamps have 1 ms resolution"),
        row("session open (connect + setup, pivoice's log)", connect, "local TLS stand-in"),
        row("wake-word end -> first post-wake audio at stand-in", to_server),
        row("first reply chunk sent -> first sample at speaker", to_speaker, "includes the card's latency"),
        row("interrupt -> silence at speaker: server `interrupted`", interrupt,
            "target <= 100 ms (tests/test_conversation.py)"),
        row("interrupt -> silence at speaker: button", gpio_ms["button"],
            "from the pin going low; target <= 100 ms (tests/test_gpio.py)") if built("button") else
        ["interrupt -> silence at speaker: button", "-", "-", "-", "-", "-", "not built yet"],
        row("interrupt -> silence at speaker: wake word (barge-in)", gpio_ms["wake word (barge-in)"],
            "from the end of 'hey jarvis' (detection included)") if built("wake word (barge-in)") else
        ["interrupt -> silence at speaker: wake word (barge-in)", "-", "-", "-", "-", "-", "not built yet"],
        *([row("  barge-in: detection -> silence", gpio_ms["detected"], "target <= 100 ms (tests/test_gpio.py)")]
          if built("wake word (barge-in)") else []),
        row("virtual card alone: write to pv_spk -> parec (probe)", card_ms, "pulse plugin + null sink + parec"),
    ]
    cap = periods.get("capture", ("?", "?"))
    play = periods.get("playback", ("?", "?"))
    print(c.header(f"Latency over {args.conversations} conversations (ms)", command))
    print(f"ALSA     capture pv_mic: period {cap[0]} frames, buffer {cap[1]} frames at 16 kHz "
          f"({int(cap[0]) / 16:.0f} ms / {int(cap[1]) / 16:.0f} ms); playback pv_spk: period {play[0]} frames, "
          f"buffer {play[1]} frames at 24 kHz ({int(play[0]) / 24:.0f} ms / {int(play[1]) / 24:.0f} ms)"
          if cap[0] != "?" and play[0] != "?" else f"ALSA     periods not found in the log: {periods}")
    print("card     PulseAudio pipe-source microphone fed 20 ms at a time; null-sink speaker recorded by "
          "parec --latency-msec=10")
    print()
    print(c.table(rows, ["measure", "n", "median", "p95", "min", "max", "note"], "lrrrrrl"))
    print()
    print(f"conversations completed: {args.conversations - len([x for x in convs if 'error' in x])} of "
          f"{args.conversations} (server interrupts, `python -m pivoice run`, exit code {code})"
          + (f"; {len([x for x in gpio_convs if 'error' not in x])} of {len(gpio_convs)} (button and barge-in, "
             f"pivoice.daemon.build in this process, gpiozero mock pins, a quiet answer)" if gpio_convs else ""))
    for f in failures:
        print(f"  problem: {f}")
    print()
    mem_rows = [[label, len(memory[k]), f"{c.median(memory[k]):.1f}", f"{max(memory[k], default=float('nan')):.1f}",
                 f"{c.median(memory['anon ' + k]):.1f}"]
                for label, k in (("listening, before the first conversation (Live client made)", "listening"),
                                 ("a conversation: its peak", "conversation"),
                                 ("listening, after the last conversation", "after"))]
    print("Memory of `python -m pivoice run` (RSS in MiB, sampled every 100 ms; n: samples, or conversations; "
          "anon: RssAnon, the median, the process's own memory: the rest of RSS is pages of the libraries and "
          "model files it maps, whose number follows the machine's page cache from run to run)")
    print(c.table(mem_rows, ["when", "n", "median", "max", "anon"], "lrrrr"))
    during = c.median(memory["conversation"])
    print(f"target (issue 14): RSS during a conversation <= 100 MiB (the median conversation's peak): "
          f"{during:.1f}: {'met' if during <= 100 else 'not met'}")
    print("p95: numpy's percentile (linear interpolation). Detection is measured on the wall clock (log "
          "timestamps), everything else on the monotonic clock.")
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
