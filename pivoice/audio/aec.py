"""Acoustic echo cancellation, so a person's wake word is heard over pivoice's own answer.

The microphone hears the speaker. Over an answer as loud at the microphone as the person, the wake-word
model misses the person's "hey jarvis" (speech on speech). pivoice knows exactly what it played and when:
this subtracts an adaptive estimate of that sound, as it reaches the microphone, from the microphone
signal. It runs only while pivoice answers. Its output feeds the barge-in detector, and the Live session,
so the server's activity detection hears the person rather than pivoice itself.

Four parts:

- **What was heard when.** The playback thread hands over every period it writes with the moment its last
  sample will be heard (`played`). Within a run of contiguous writes (an *epoch*: one stream between
  drops, underruns and reopenings) the played samples are evenly spaced in time, so one offset per epoch,
  made from its periods' estimates (`_Clock`), maps a reference sample to a moment: jitter of a few ms in
  each estimate does not smear the reference. The capture side does the same for microphone samples.
- **The delay the clocks do not show.** Audio servers, USB and codecs add latency that no API reports.
  GCC-PHAT (cross-correlation with phase weighting) between the microphone and the reference finds it,
  from 60 ms early to 250 ms late, and the reference is aligned so the direct path lands a few ms into
  the filter.
- **Keeping it in place.** A clock estimate is good to a fraction of a millisecond at best, and a
  16 kHz filter loses most of its effect when the reference is off by a sample or two. Each new stream
  (and the stream every 0.25 s of answer after) is checked against the filter itself: which shift of the
  reference, to a fraction of a sample (read between samples by a windowed sinc), predicts the
  microphone best (`_track`).
- **The filter.** A partitioned-block frequency-domain adaptive filter (PBFDAF / MDF: 256-sample blocks,
  1024 taps = 64 ms of echo path) with two paths against double-talk: a background filter always adapts
  and a foreground filter, whose output is used, takes its weights only while the background cancels
  better. When a person talks over the answer, adapting to their voice makes the background worse, so
  the foreground keeps the echo path it had; a background gone astray is reset from the foreground.

Threads: `played` and `dropped` come from the playback thread, `process` from the capture thread.

Why one module of about 500 lines: it is one cohesive algorithm. The four parts share the reference
ring, the epochs and the filters' state under one lock, and each is only correct with the others
(the checks move what the clocks placed; the filter may learn only what the checks found in place).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
import soxr

from .format import IN_RATE, OUT_RATE, SAMPLE_DTYPE

log = logging.getLogger("pivoice.audio")

RATE = IN_RATE
PLAY_RATE = OUT_RATE
BLOCK = 256
PARTS = 4  # 4 x 256 = 1024 taps: 64 ms of echo path after the direct sound
TAPS = PARTS * BLOCK
MARGIN = 96  # samples of filter before the estimated direct path (6 ms): room for estimation error
RING = 8 * RATE  # seconds of reference kept
SINC = 8  # half-length of the interpolator that reads the reference between samples

EARLIEST = int(0.06 * RATE)  # the echo may come this much before the clocks say (their estimates' bias)
LATEST = int(0.25 * RATE)  # ... or this much after
ESTIMATE_FIRST = RATE // 2  # samples of far-end audio before the first delay estimate
ESTIMATE_EVERY = RATE  # ... and between the next ones
ESTIMATE_WINDOW = int(1.5 * RATE)  # microphone audio an estimate looks at (at most)
ACTIVE_RMS = 60.0  # reference below this (s16 scale) is silence: nothing to learn from
EPOCH_JUMP = 0.02  # s: timing this far off a stream's, confirmed, starts a new epoch ...
GAP = 0.5  # ... at once when this far off (a new answer after a pause)
EPOCH_SETTLE = 25  # periods whose estimates make an epoch's offset; then it is fixed

TRACK_EVERY = RATE // 4  # samples of far-end audio between alignment checks against the filter
TRACK_FIRST = int(0.1 * RATE)  # ... before the first check of a new playback stream (soon: until it, the
# microphone goes out with the echo in it), then every half that
# until a check finds it in place (adaptation waits for that)
TRACK_GIVE_UP = RATE  # far-end samples adaptation waits for a check before it goes on unchecked
TRACK_WINDOW = RATE // 2  # microphone audio an alignment check looks at
TRACK_RANGE = int(EPOCH_JUMP * RATE)  # samples either way an alignment check tries (a larger jump is a new epoch)

MU = 0.5
SMOOTH = 0.3  # weight of the newest block in the error energies that decide between the paths


def _fft_size(n: int) -> int:
    return 1 << int(np.ceil(np.log2(n)))


def _convolve(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The full linear convolution of x and w, by FFT."""
    size = _fft_size(x.size + w.size)
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(w, size), size)


def _taps(W: np.ndarray) -> np.ndarray:
    """A partitioned filter's spectra (PARTS x BLOCK + 1) as its TAPS time-domain taps."""
    return np.fft.irfft(W, axis=1)[:, :BLOCK].reshape(-1)


def _lower_quartile(values: list[float]) -> float:
    """numpy.percentile(values, 25), by its default (linear) method. At most EPOCH_SETTLE values: numpy's
    first percentile imports numpy.ma, 7 ms of the capture thread in the first conversation here and
    0.5 MiB for good."""
    s = sorted(values)
    i, frac = divmod((len(s) - 1) * 0.25, 1.0)
    lo = s[int(i)]
    return lo + (s[int(i) + 1] - lo) * frac if frac else lo


class _Clock:
    """Maps a contiguous stream's sample index to time.monotonic(): t = offset + index / RATE. The offset
    is the lower quartile of the first EPOCH_SETTLE estimates since the stream's timing last jumped
    (an estimate is late, never early, when its thread was held up between reading the device and the
    clock), or of those until `freeze()`: once the echo canceller has checked a stream against its
    filter, the stream stays where the check put it. Any estimate can be late: a jump counts once
    `confirm` estimates in a row agree on it (a thread held up once is not a new stream), or at once
    when it is longer than GAP."""

    def __init__(self, confirm: int = 1, provisional: int = 0):
        self.offset: float | None = None
        self._seen: list[float] = []
        self._confirm = confirm
        self._provisional = provisional  # estimates at a stream's start that are dropped once later ones come
        self._jump: list[float] = []
        self._frozen = False

    def freeze(self) -> None:
        self._frozen = True

    def add(self, offset: float) -> bool:
        """One more estimate; True when it starts a new epoch (the stream's timing jumped)."""
        if self.offset is not None and abs(offset - self.offset) > EPOCH_JUMP:
            if self._jump and abs(offset - self._jump[0]) > EPOCH_JUMP:
                self._jump = []
            self._jump.append(offset)
            if len(self._jump) < self._confirm and abs(offset - self.offset) < GAP:
                return False
            self._seen, self._jump, self._frozen = self._jump, [], False
            self.offset = _lower_quartile(self._seen)
            return True
        self._jump = []
        if len(self._seen) < EPOCH_SETTLE + self._provisional and not self._frozen:
            self._seen.append(offset)
            settled = self._seen[self._provisional :] or self._seen
            self.offset = _lower_quartile(settled)
        return False

    def reset(self) -> None:
        self.offset, self._seen, self._jump, self._frozen = None, [], [], False

    @property
    def placed(self) -> float:
        """The offset, once an estimate has come (every caller has added one first)."""
        assert self.offset is not None
        return self.offset


@dataclass
class _Epoch:
    """One playback stream in the reference: its samples `first` .. `end` (16 kHz reference indexes); the
    reference sample r is heard at offset + correction + r / RATE (s, monotonic). The correction is what
    the alignment checks found."""

    first: int
    offset: float
    end: int
    correction: float


class EchoCanceller:
    def __init__(self):
        self._lock = threading.Lock()
        # The reference: everything played, at 16 kHz, by a running index; epochs say when each was heard.
        self._ring = np.zeros(RING, np.float32)
        self._written = 0
        self._epochs: deque[_Epoch] = deque(maxlen=16)
        self._epoch_in = 0  # 24 kHz samples played in the current epoch
        self._resampler = None
        # A stream's first periods fill the device (and an audio server's) buffer before it starts: their
        # timing says less than the later ones'.
        self._play_clock = _Clock(confirm=2, provisional=4)
        # The microphone's clock, the delay estimate, and the filters.
        self._mic_clock = _Clock(confirm=3)
        self._mic_end: int | None = None  # index after the last microphone sample processed
        self.delay: int | None = None  # samples the echo comes after the clocks say (the estimate)
        self._candidate: int | None = None
        self._stream: int | None = None  # the newest playback stream (its first index) ...
        self._checked = False  # ... and whether its alignment was checked (adaptation waits until then)
        self._far_in_stream = 0
        self.events: deque[str] = deque(maxlen=200)  # what it decided, newest last: for tests and bug reports
        self._held = 0  # far-end samples adaptation has waited for a check since one last passed
        self._last_best: tuple[int, int] | None = None  # the previous check's best shift, and its window's end
        self._restart_input(0)
        self._power = np.zeros(BLOCK + 1)
        self._wb = np.zeros((PARTS, BLOCK + 1), np.complex128)  # background filter (always adapts)
        self._wf = np.zeros((PARTS, BLOCK + 1), np.complex128)  # foreground filter (its output is used)
        self._eb = self._ef = self._ed = 0.0  # smoothed energies: background error, foreground error, mic
        self.stats = self._no_stats()  # since the last report()

    # -- the playback thread ----------------------------------------------------------------------
    def played(self, pcm: bytes, heard_end: float) -> None:
        """24 kHz mono s16le just written to the speaker; its last sample is heard at `heard_end`."""
        x = np.frombuffer(pcm, SAMPLE_DTYPE).astype(np.float32)
        with self._lock:
            jumped = self._play_clock.add(heard_end - (self._epoch_in + x.size) / PLAY_RATE)
            if jumped or self._resampler is None:
                self._new_epoch(heard_end - x.size / PLAY_RATE)
            self._epoch_in += x.size
            assert self._resampler is not None  # _new_epoch made it
            y = self._resampler.resample_chunk(x)
            self._append(y)
            self._epochs[-1].offset = self._play_clock.placed - self._epochs[-1].first / RATE
            self._epochs[-1].end = self._written

    def _new_epoch(self, start_time: float) -> None:
        if self._resampler is not None and self._epochs:  # the last stream's tail, held in the resampler
            self._append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self._epochs[-1].end = self._written
        self._resampler = soxr.ResampleStream(PLAY_RATE, RATE, 1, dtype="float32")
        self._epoch_in = 0
        self._play_clock.reset()
        self._play_clock.add(start_time)
        # The correction carries over: what it made up for (the microphone clock's error, drift since
        # it was read) is still there; the new stream's own error is what the next check finds.
        correction = self._epochs[-1].correction if self._epochs else 0.0
        self._epochs.append(_Epoch(self._written, start_time - self._written / RATE, self._written, correction))

    def _append(self, y: np.ndarray) -> None:
        i = self._written % RING
        n = min(y.size, RING - i)
        self._ring[i : i + n] = y[:n]
        self._ring[: y.size - n] = y[n:]
        self._written += y.size

    def dropped(self, now: float) -> None:
        """Playback threw away what the device held: what would have been heard after `now` never is."""
        with self._lock:
            if not self._epochs:
                return
            e = self._epochs[-1]
            # the playback's own timeline: the correction also holds the microphone clock's error
            heard = min(e.end, max(e.first, int((now - e.offset) * RATE)))
            for r in range(heard, e.end):  # at most a device buffer (80 ms)
                self._ring[r % RING] = 0.0
            e.end = heard
            self._resampler = None  # what comes next is a new stream

    def _reference(self, times_start: float, n: int) -> np.ndarray:
        """The reference heard at `times_start` + k / RATE, k < n (zeros where nothing was playing),
        read between samples where the times fall between them (a windowed-sinc interpolator): the
        alignment is kept to a fraction of a sample, which a filter at 16 kHz needs."""
        out = np.zeros(n, np.float32)
        with self._lock:
            oldest = self._written - RING
            for e in self._epochs:
                first, end = e.first, e.end
                pos = (times_start - e.offset - e.correction) * RATE
                r0 = int(np.floor(pos))
                frac = pos - r0
                lo, hi = max(r0 - SINC, first, oldest), min(r0 + n + SINC + 1, end)
                if lo >= hi:
                    continue
                seg = np.zeros(n + 2 * SINC + 1, np.float32)  # samples r0 - SINC .. r0 + n + SINC
                seg[lo - r0 + SINC : hi - r0 + SINC] = self._ring[np.arange(lo, hi) % RING]
                if frac < 1e-6:
                    part = seg[SINC : SINC + n]
                else:  # out[k] = sum over j in (-SINC, SINC] of x[r0 + k + j] h(j - frac)
                    u = np.arange(-SINC + 1, SINC + 1) - frac
                    h = np.sinc(u) * 0.5 * (1 + np.cos(np.pi * u / SINC))
                    part = np.convolve(seg, h[::-1], "valid")[1 : n + 1]
                heard = (r0 + np.arange(n) + frac >= first) & (r0 + np.arange(n) + frac < end)
                out[heard] = part[heard]
        return out

    # -- the capture thread -----------------------------------------------------------------------
    def _restart_input(self, index: int) -> None:
        """The microphone stream continues at `index` with no history: forget the filter's input (not
        what it learned) and the audio kept for the delay estimates and alignment checks."""
        self._xprev = np.zeros(BLOCK, np.float32)
        self._X = np.zeros((PARTS, BLOCK + 1), np.complex128)
        self._xhist = np.zeros(TAPS, np.float32)  # the filter's input before _xpend
        self._xpend = np.zeros(0, np.float32)  # reference and microphone samples not yet in a block
        self._dpend = np.zeros(0, np.float32)
        self._emitted = 0  # of _dpend, samples already output (filtered in the time domain)
        self._hist_mic = np.zeros(0, np.float32)
        self._hist_start = index
        self._far_since_estimate = self._far_since_track = 0

    def _ref_time(self, index: int) -> float:
        """When the reference sample that lines up with microphone sample `index` was heard: MARGIN
        samples ahead of the echo, so the filter sees the direct sound MARGIN taps in."""
        delay = self.delay if self.delay is not None else 0
        return self._mic_clock.placed + (index + MARGIN - delay) / RATE

    def process(self, end: int, at: float, pcm: bytes) -> bytes:
        """A microphone frame (16 kHz s16le, `end` the index after its last sample, read at `at`) with the
        echo of what the speaker played taken out; any length. Frames should come in order; a gap
        restarts the filter's input history (not what it learned)."""
        d = np.frombuffer(pcm, SAMPLE_DTYPE).astype(np.float32)
        n = d.size
        start = end - n
        before = self._mic_clock.offset
        jumped = self._mic_clock.add(at - end / RATE)
        if before is not None and (jumped or self._mic_clock.offset != before) and self._wf.any():
            # Once the filter has learned, a change of the clock's estimate must not move the reference:
            # a jump re-anchors the clock (what the corrections made up for is gone: the checks find the
            # rest); the estimate settling after it is folded into the corrections.
            moved = self._mic_clock.placed - before
            with self._lock:
                for e in self._epochs:
                    e.correction = 0.0 if jumped else e.correction + moved
        if jumped:  # the microphone's timing jumped (lost audio, reopened)
            self._event(f"microphone clock jumped at {end}")
            self._checked, self._far_in_stream, self._last_best = not self._wf.any(), 0, None
        if self._mic_end != start:
            self._restart_input(start)
        self._mic_end = end
        with self._lock:
            stream = self._epochs[-1].first if self._epochs else None
        if stream != self._stream:
            self._event(f"new playback stream {stream} at microphone {end}")
            self._stream, self._checked, self._far_in_stream, self._last_best = stream, not self._wf.any(), 0, None
        x = self._reference(self._ref_time(start), n)
        if not x.any() and not self._X.any() and not self._xpend.any():
            self._restart_input(end)  # nothing played within the filter's reach
            return pcm
        self._history(d, x)
        out = self._filter(x, d)
        self._learn_delay()
        self._track()
        self.stats["in"] += float(np.dot(d, d))
        self.stats["out"] += float(np.dot(out, out))
        return np.clip(np.round(out), -32768, 32767).astype(SAMPLE_DTYPE).tobytes()

    def _filter(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Output for every sample given: whole blocks through the adaptive filter; what is left (frames
        from a rate converter are not multiples of a block) through the foreground in the time domain,
        and into the next block later."""
        self._xpend = np.concatenate([self._xpend, x])
        self._dpend = np.concatenate([self._dpend, d])
        outs = []
        while self._dpend.size >= BLOCK:
            xb, db = self._xpend[:BLOCK], self._dpend[:BLOCK]
            outs.append(self._block(xb, db)[self._emitted :])
            self._emitted = 0
            self._xhist = np.concatenate([self._xhist, xb])[-TAPS:]
            self._xpend, self._dpend = self._xpend[BLOCK:], self._dpend[BLOCK:]
        if self._dpend.size > self._emitted:
            k = self._emitted
            if self._ef > self._ed:
                outs.append(self._dpend[k:])
            else:
                y = _convolve(np.concatenate([self._xhist, self._xpend]), _taps(self._wf))
                outs.append(self._dpend[k:] - y[TAPS + k : TAPS + self._dpend.size])
            self._emitted = self._dpend.size
        return np.concatenate(outs) if outs else np.zeros(0, np.float32)

    def _block(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        X = np.fft.rfft(np.concatenate([self._xprev, x]))
        self._xprev = x
        self._X = np.roll(self._X, 1, axis=0)
        self._X[0] = X
        yb = np.fft.irfft((self._wb * self._X).sum(axis=0))[BLOCK:]
        yf = np.fft.irfft((self._wf * self._X).sum(axis=0))[BLOCK:]
        eb, ef = d - yb, d - yf
        # Kept up to date on every block, also while adaptation waits for a check: decisions taken on
        # stale figures when it resumes once copied a background that one oversized step had wrecked.
        a = SMOOTH
        self._eb = (1 - a) * self._eb + a * float(np.dot(eb, eb))
        self._ef = (1 - a) * self._ef + a * float(np.dot(ef, ef))
        self._ed = (1 - a) * self._ed + a * float(np.dot(d, d))
        if float(np.dot(x, x)) > ACTIVE_RMS ** 2 * BLOCK:
            self.stats["far"] += 1
            power = np.abs(X) ** 2
            self._power = 0.7 * self._power + 0.3 * power if self._power.any() else power
            if self._checked:
                self._adapt(eb)
        # A foreground worse than nothing (just after the echo path moved): the microphone as it is.
        return d if self._ef > self._ed else ef

    def _adapt(self, eb: np.ndarray) -> None:
        regular = 2 * BLOCK * ACTIVE_RMS ** 2
        E = np.fft.rfft(np.concatenate([np.zeros(BLOCK, np.float32), eb]))
        G = MU * E / (PARTS * self._power + regular)
        self._wb += np.conj(self._X) * G
        w = np.fft.irfft(self._wb, axis=1)
        w[:, BLOCK:] = 0  # keep it a linear (not circular) convolution
        self._wb = np.fft.rfft(w, axis=1)
        # Two paths: the foreground follows the background only while the background does better.
        if not np.isfinite(self._eb) or not np.isfinite(self._wb).all():
            self._wb, self._eb = self._wf.copy(), self._ef  # never let a NaN stay
            self.stats["reset"] += 1
        elif self._eb < 0.7 * self._ef and self._eb < self._ed:
            self._wf = self._wb.copy()
            self._ef = self._eb
            self.stats["copied"] += 1
        elif self._eb > 4 * self._ef and self._eb > self._ed:
            self._wb = self._wf.copy()  # adapted to something that is not the echo: start again from it
            self._eb = self._ef
            self.stats["reset"] += 1

    def report(self) -> str | None:
        """What it did since the last report, in words (None if there was nothing to cancel)."""
        st, self.stats = self.stats, self._no_stats()
        if not st["far"] or not st["out"]:
            return None
        delay = "not found yet" if self.delay is None else f"{self.delay * 1000 / RATE:.0f} ms"
        return (f"echo cancellation: {10 * np.log10(st['in'] / st['out']):.1f} dB less at the microphone over "
                f"{st['far'] * BLOCK / RATE:.1f} s of answer; echo delay beyond the clocks {delay}; "
                f"filter updates {st['copied']}, restarts {st['reset']}, realignments {st['aligned']}")

    @staticmethod
    def _no_stats() -> dict:
        return {"far": 0, "copied": 0, "reset": 0, "aligned": 0, "in": 0.0, "out": 0.0}

    # -- the delay the clocks do not show ---------------------------------------------------------
    def _history(self, d: np.ndarray, x: np.ndarray) -> None:
        """Keeps the microphone's recent audio (contiguous: a gap restarts it) for the estimates."""
        end = self._hist_start + self._hist_mic.size + d.size
        self._hist_mic = np.concatenate([self._hist_mic, d])[-ESTIMATE_WINDOW:]
        self._hist_start = end - self._hist_mic.size
        if float(np.dot(x, x)) > ACTIVE_RMS ** 2 * x.size:
            self._far_since_estimate += x.size
            self._far_since_track += x.size
            self._far_in_stream += x.size
            if not self._checked:
                self._held += x.size

    def _event(self, what: str) -> None:
        ratio = self._ef / max(self._ed, 1e-9)
        self.events.append(f"{what} [checked {self._checked}, held {self._held}, ef/ed {ratio:.2f}]")

    def _learn_delay(self) -> None:
        if self._far_since_estimate < (ESTIMATE_FIRST if self.delay is None else ESTIMATE_EVERY):
            return
        self._far_since_estimate = 0
        lag = self.estimate_delay(self._hist_start, self._hist_mic)
        if lag is None:
            return
        if self.delay is None or abs(lag - self.delay) <= 16:
            if self.delay is None:
                log.info("echo path found: the speaker is heard %.0f ms after the clocks say",
                         lag * 1000 / RATE)
                self.delay = lag
            self._candidate = None
        elif self._candidate is not None and abs(lag - self._candidate) <= 16:
            log.info("echo path moved: %.0f ms -> %.0f ms", self.delay * 1000 / RATE, lag * 1000 / RATE)
            self._shift(lag - self.delay)
            self.delay, self._candidate = lag, None
        else:
            self._candidate = lag  # one estimate is not enough to move a converged filter

    def _track(self) -> None:
        """Alignment check. Each playback stream is placed in time by its own clock estimate, good to a
        fraction of a millisecond at best, and clocks drift; a filter at 16 kHz loses much of its
        cancellation when the reference is off by a sample or two. So the foreground filter predicts
        the last stretch of microphone audio from the reference shifted by up to TRACK_RANGE samples
        either way (to a fraction of a sample), and a shift that predicts better moves the current
        stream's reference by that much: TRACK_FIRST samples of answer into a new stream (adaptation
        waits for this, so the filter does not learn a misplaced stream), then every TRACK_EVERY."""
        if not self._wf.any():
            return
        if not self._checked:
            if self._held >= TRACK_GIVE_UP:
                self._checked = True  # could not tell: let the filter learn the stream as it is
                self._event("gave up checking: adapting")
                return
            if self._far_in_stream < TRACK_FIRST or self._far_since_track < TRACK_FIRST // 2:
                return
            n = TRACK_FIRST
        elif self._far_since_track >= TRACK_EVERY:
            n = TRACK_WINDOW
        else:
            return
        if self._hist_mic.size < n:
            return
        self._far_since_track = 0
        S = TRACK_RANGE
        c0 = self._hist_start + self._hist_mic.size - n
        with self._lock:
            if not self._checked and self._epochs and self._epochs[-1].first == self._stream:
                self._play_clock.freeze()  # from here on, only the checks move this stream
            newest = self._epochs[-1]
            first, heard = newest.first, newest.offset + newest.correction
            end = newest.end
        t0, t1 = self._ref_time(c0), self._ref_time(c0 + n)
        if not (heard + first / RATE <= t0 and t1 <= heard + end / RATE):
            return  # the window is not all in the newest stream
        x = self._reference(self._ref_time(c0 - (TAPS - 1) - S), n + TAPS - 1 + 2 * S)
        y = _convolve(x, _taps(self._wf))[TAPS - 1 : TAPS - 1 + n + 2 * S]
        d = self._hist_mic[-n:].astype(np.float64)
        # err[k] = |d - y[k : k + n]|^2 for every shift k - S, by correlation and running sums
        size = _fft_size(y.size + n)
        cross = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(d, size)), size)[: 2 * S + 1]
        power = np.concatenate([[0.0], np.cumsum(y * y)])
        err = float(np.dot(d, d)) - 2 * cross + (power[n : n + 2 * S + 1] - power[: 2 * S + 1])
        k = int(np.argmin(err))
        self._event(f"check at {c0 + n}: best {k - S:+d} ({10 * np.log10(np.dot(d, d) / max(err[k], 1e-9)):.1f} dB; "
                    f"in place {10 * np.log10(np.dot(d, d) / max(err[S], 1e-9)):.1f} dB)")
        # Good enough to tell: the filter predicts the microphone well there (6 dB). A new stream not yet in
        # place, while a person talks over it (nothing predicts their voice): a place that predicts it 4 dB
        # better than where the reference is, or 2 dB better in two checks of different audio, will do.
        last, self._last_best = self._last_best, (k - S, c0 + n)
        agreed = last is not None and abs(k - S - last[0]) <= 1 and c0 >= last[1] and err[S] >= 1.6 * err[k]
        told = float(np.dot(d, d)) >= 4 * err[k] or (not self._checked and (err[S] >= 2.5 * err[k] or agreed))
        if not told or (abs(k - S) > 2 and err[S] < 1.12 * err[k]):
            return  # the filter is not good enough to tell, or no clearly better place far away
        shift = float(k - S)
        if 0 < k < 2 * S:  # between samples: the vertex of the parabola through the three around it
            curve = err[k - 1] - 2 * err[k] + err[k + 1]
            if curve > 0:
                shift += 0.5 * (err[k - 1] - err[k + 1]) / curve
        if abs(shift) < 1:
            self._checked, self._held = True, 0  # in place: the filter may learn this stream (checks go on, less often)
        if abs(shift) < 0.1:
            return
        with self._lock:
            if self._epochs[-1].first == first:
                self._epochs[-1].correction -= shift / RATE
        self.stats["aligned"] += 1
        self._last_best = None
        self._event(f"moved by {shift:.2f} samples")
        log.debug("echo reference moved by %.2f samples", shift)

    def estimate_delay(self, start: int, mic: np.ndarray) -> int | None:
        """GCC-PHAT between microphone samples [start, start + len(mic)) and the reference; the lag in
        samples (echo later than the clocks say: positive), or None without a clear peak."""
        ref = self._reference(self._mic_clock.placed + (start - LATEST) / RATE, mic.size + LATEST + EARLIEST)
        size = _fft_size(ref.size + mic.size)
        R = np.fft.rfft(ref, size)
        cross = R * np.conj(np.fft.rfft(mic, size))
        weight = np.abs(R) ** 2
        keep = weight > 1e-3 * weight.max()  # only where the reference has energy: the rest is noise
        cross = np.where(keep, cross / (np.abs(cross) + 1e-9), 0)
        cc = np.fft.irfft(cross, size)[: LATEST + EARLIEST + 1]  # cc[k]: mic[i] against ref[i + k]
        k = int(np.argmax(cc))
        peak = cc[k]
        rest = np.concatenate([cc[: max(0, k - 48)], cc[k + 49 :]])
        if peak <= 0 or rest.size == 0 or peak < 2.5 * np.max(rest):
            return None
        return LATEST - k

    def _shift(self, by: int) -> None:
        """The echo path moved `by` samples later: move both filters' taps with it."""
        self._last_best = None
        for name in ("_wb", "_wf"):
            w = np.roll(_taps(getattr(self, name)), -by)
            if by > 0:
                w[-by:] = 0
            elif by < 0:
                w[:-by] = 0
            parts = np.zeros((PARTS, 2 * BLOCK))
            parts[:, :BLOCK] = w.reshape(PARTS, BLOCK)
            setattr(self, name, np.fft.rfft(parts, axis=1))
