"""LEDs, buttons, mute and barge-in: gpiozero on MockFactory pins, audio through the paced PulseAudio card."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest
from harness import SpeakerRecorder, read_wav, silence, tone

from pivoice.config import GpioSettings, check_pins
from pivoice.gpio import Gpio
from pivoice.states import State
from pivoice.wake.openwakeword import OpenWakeWordEngine, builtin_models_dir

CONFIG = """
[audio]
input_device = "pv_mic"
output_device = "pv_spk"
[gpio]
led = "rgb"
led_pins = [5, 6, 13]
button_pin = 17
long_press_seconds = 1.0
[conversation]
follow_up_seconds = {follow_up}
[earcons]
# Off: this file measures the answers' audio at the speaker (tests/test_earcons.py tests the earcons).
enabled = false
[log]
level = "debug"
"""


class NoAssistant:
    def button_down(self): ...
    def button_up(self, held): ...
    def mute_toggle(self): ...


def toggles(pin) -> list[float]:
    """Times (s) between the pin's state changes since its states were cleared (MockPin records
    each change with the time since the one before)."""
    return [s.timestamp for s in pin.states[2:]]


# -- the LED -------------------------------------------------------------------------------------


@pytest.mark.parametrize("active_high", [True, False])
def test_plain_led_patterns(mock_pins, active_high):
    g = Gpio(GpioSettings(led="led", led_pins=[25], led_active_high=active_high), NoAssistant())
    g.open()
    assert g.available
    pin = mock_pins.pin(25)
    on, off = (True, False) if active_high else (False, True)

    g.show(State.IDLE)
    assert pin.state == off
    g.show(State.LISTENING)
    assert pin.state == on
    for state, (on_t, off_t) in ((State.CONNECTING, (0.1, 0.1)), (State.RESPONDING, (0.5, 0.5)),
                                 (State.MUTED, (0.1, 1.9)), (State.RINGING, (0.1, 0.1))):
        pin.clear_states()
        g.show(state)
        time.sleep(2 * (on_t + off_t) + 0.15)
        gaps = toggles(pin)
        assert len(gaps) >= 2, state
        assert np.allclose(sorted(gaps[:2]), sorted([on_t, off_t]), atol=0.05), (state, gaps)
    g.show(State.IDLE)
    assert pin.state == off
    g.close()


def test_pwm_led_patterns(mock_pins):
    g = Gpio(GpioSettings(led="pwm", led_pins=[12]), NoAssistant())
    g.open()
    pin = mock_pins.pin(12)
    g.show(State.LISTENING)
    assert pin.state == 1
    g.show(State.MUTED)
    assert pin.state == pytest.approx(0.1)  # steady and dim
    g.show(State.RESPONDING)  # pulsing: many levels between off and on
    values = set()
    for _ in range(40):
        values.add(round(pin.state, 2))
        time.sleep(0.025)
    assert len(values) > 10 and min(values) < 0.3 and max(values) > 0.7
    g.show(State.IDLE)
    assert pin.state == 0
    g.close()


def test_rgb_led_colours(mock_pins):
    g = Gpio(GpioSettings(led="rgb", led_pins=[5, 6, 13]), NoAssistant())
    g.open()
    r, gr, b = (mock_pins.pin(p) for p in (5, 6, 13))
    rgb = lambda: (round(r.state, 2), round(gr.state, 2), round(b.state, 2))  # noqa: E731
    g.show(State.LISTENING)
    assert rgb() == (0, 0, 1)  # blue
    g.show(State.MUTED)
    assert rgb() == (1, 0, 0)  # red
    g.show(State.RESPONDING)  # cyan, pulsing
    seen = []
    for _ in range(30):
        seen.append(rgb())
        time.sleep(0.03)
    assert all(c[0] == 0 and c[1] == c[2] for c in seen) and len({c[2] for c in seen}) > 5
    g.show(State.CONNECTING)  # blue, blinking
    seen = {rgb() for _ in range(30) if time.sleep(0.02) is None}
    assert seen == {(0, 0, 1), (0, 0, 0)}
    g.show(State.IDLE)
    assert rgb() == (0, 0, 0)
    g.close()


@pytest.mark.parametrize("settings,message", [
    (GpioSettings(button_pin=99), "gpio.button_pin: 99 is not a GPIO pin; use a BCM number from 0 to 27 (see pinout.xyz)"),
    (GpioSettings(led="rgb", led_pins=[5, 6]), 'gpio.led_pins: gpio.led = "rgb" needs 3 pin(s), got 2'),
    (GpioSettings(led="led", led_pins=[17], button_pin=17), "gpio.button_pin: GPIO17 is already used by gpio.led_pins[0]"),
])
def test_bad_pins_are_named(settings, message):
    assert check_pins(settings).startswith(message)


# -- the daemon, with buttons ----------------------------------------------------------------------


def press(mock_pins, pin: int, seconds: float = 0.15) -> float:
    """Press the (pull-up) button: returns when it went down."""
    p = mock_pins.pin(pin)
    t = time.monotonic()
    p.drive_low()
    time.sleep(seconds)
    p.drive_high()
    return t


def test_short_press_when_idle_starts_a_conversation_without_wake_word(mock_pins, soundcard, standin, in_process):
    standin.behaviour.reply_after_seconds = None
    d = in_process(CONFIG.format(follow_up=5))
    d.wait_event("ready")
    assert mock_pins.pin(5).state == 0 and mock_pins.pin(13).state == 0  # idle: LED off
    command = read_wav("command_time_tokyo.wav")
    press(mock_pins, 17)
    soundcard.say(silence(0.2) + command + silence(0.5))
    d.wait_event("tap")
    d.wait_event("connected")
    assert "wake" not in d.events()
    standin.wait_for(lambda: standin.sessions and bytes(standin.sessions[0].audio).find(command) >= 0, 10,
                     "the command said after the press to arrive")
    assert mock_pins.pin(13).state == 1  # listening: blue
    d.stop()
    # Stopping closed the socket properly (a close frame, not a vanished process).
    standin.wait_for(lambda: standin.sessions[0].closed_at is not None, 2, "the session to close")


def start_answer(d, soundcard, standin, reply: bytes, tmp_path) -> SpeakerRecorder:
    """Wake word, command, and the stand-in's answer playing; returns the speaker recorder."""
    standin.behaviour.reply_after_seconds = 1.5
    standin.behaviour.reply_pcm = reply
    standin.behaviour.reply_pace = 0.05  # 200 ms of audio every 50 ms, ahead of playback
    rec = SpeakerRecorder(soundcard, tmp_path)
    d.wait_event("ready")
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav"))
    d.wait_event("model_audio", timeout=20)
    return rec


def test_short_press_while_answering_stops_it_within_100ms(mock_pins, soundcard, standin, in_process, tmp_path):
    d = in_process(CONFIG.format(follow_up=5))
    rec = start_answer(d, soundcard, standin, tone(6.0), tmp_path)
    time.sleep(1.0)
    pressed = press(mock_pins, 17)
    d.wait_event("button_down")
    time.sleep(1.0)
    leak = rec.loud_after(pressed)
    print(f"answer audio after the press: {leak:.0f} ms")
    assert leak <= 100
    assert d.assistant.state is State.LISTENING
    before = len(standin.sessions[0].audio)
    time.sleep(0.5)
    assert len(standin.sessions[0].audio) > before, "the microphone stopped streaming"
    assert standin.sessions[0].closed_at is None
    rec.stop()
    d.stop()


def test_wake_word_while_answering_stops_it_within_100ms(mock_pins, soundcard, standin, in_process, tmp_path):
    d = in_process(CONFIG.format(follow_up=5))
    rec = start_answer(d, soundcard, standin, tone(8.0, level=0.05), tmp_path)
    time.sleep(0.8)
    soundcard.say(read_wav("hey_jarvis_rp.wav") + silence(0.5))
    at = d.wait_event("barge_in", timeout=5)
    time.sleep(1.0)
    rec.level = 500  # the quiet tone
    leak = rec.loud_after(at)
    print(f"answer audio after the barge-in: {leak:.0f} ms")
    assert leak <= 100
    assert d.assistant.state is State.LISTENING
    assert standin.sessions[0].closed_at is None
    rec.stop()
    d.stop()


def test_long_press_mutes_and_unmutes(mock_pins, soundcard, standin, in_process):
    standin.behaviour.reply_after_seconds = None
    d = in_process(CONFIG.format(follow_up=10))
    d.wait_event("ready")
    soundcard.say_and_wait(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.3))
    d.wait_event("connected")
    # A long press: the conversation ends at the press, the microphone goes off at the hold.
    press(mock_pins, 17, seconds=1.3)
    d.wait_state("muted")
    assert (mock_pins.pin(5).state, mock_pins.pin(13).state) == (1, 0)  # red
    standin.wait_for(lambda: standin.sessions[0].closed_at is not None, 3, "the session to close")
    received = len(standin.sessions[0].audio)
    soundcard.say_and_wait(silence(0.3) + read_wav("hey_jarvis.wav") + silence(1.0))
    assert len(standin.sessions) == 1 and len(standin.sessions[0].audio) == received
    assert d.assistant.state is State.MUTED
    # A short press does not unmute; a second long press does.
    press(mock_pins, 17)
    time.sleep(0.3)
    assert d.assistant.state is State.MUTED
    press(mock_pins, 17, seconds=1.3)
    d.wait_state("idle")
    soundcard.say_and_wait(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.5))
    standin.wait_for(lambda: len(standin.sessions) == 2, 5, "a session after unmuting")
    d.stop()


@pytest.mark.parametrize("delay", [0.01, 0.05])
def test_only_a_persons_wake_word_interrupts_an_answer_that_says_it(delay, mock_pins, soundcard, standin,
                                                                    in_process, tmp_path):
    """The answer says "hey jarvis" (about 4.4 s in); the mic hears the speaker as a mic next to it would:
    the played signal (recorded from the sink), `delay` s later, as loud as the person, plus room noise.
    The answer's own wake word must not interrupt it; a person's "hey jarvis" later over the same answer
    must, although over the raw microphone signal the wake-word model does not hear the person at all."""
    reply = read_wav("reply_says_wake_24k.wav") + read_wav("reply_24k.wav")  # 12.7 s
    d = in_process(CONFIG.format(follow_up=3))
    rec = start_answer(d, soundcard, standin, reply, tmp_path)
    soundcard.feed_back(rec, gain=1.0, delay=delay, noise_rms=150)
    answering = d.when("model_audio")
    time.sleep(max(0.0, answering + 8.5 - time.monotonic()))
    # Not interrupted by its own voice...
    assert "barge_in" not in d.events(), d.events()
    echo = d.assistant.self_trigger
    assert len(echo.hits) >= 1, "the answer's own 'hey jarvis' was not found in it"
    aec = d.assistant.aec
    print(f"echo delay beyond the clocks: {aec.delay and aec.delay / 16} ms; own wake word ignored {echo.ignored}x")
    assert aec.delay is not None, "the echo canceller never found the echo path"
    # The Live API got the microphone with the echo taken out (the last 3 s: the answer, no person), in
    # most half seconds by 10 dB or more. (On a machine loaded to the full, a playback underrun now and
    # then moves the echo path; the canceller finds it again within a second, and the half second it
    # takes may let more through: 22-23 dB over the 3 s unloaded, 10.0 once on a loaded machine.)
    mic_before, sent_before = len(soundcard.fed), len(standin.sessions[0].audio)
    fed = np.frombuffer(bytes(soundcard.fed[mic_before - 3 * 32000 : mic_before]), "<i2").astype(float)
    sent = np.frombuffer(bytes(standin.sessions[0].audio[sent_before - 3 * 32000 : sent_before]), "<i2").astype(float)
    less = [10 * np.log10(np.sum(fed[i : i + 8000] ** 2) / np.sum(sent[i : i + 8000] ** 2)) for i in range(0, 48000, 8000)]
    print("echo at the Live API below the microphone's, per 0.5 s (dB):", " ".join(f"{x:.1f}" for x in less))
    assert np.median(less) >= 10
    # ... but by a person's, 8.5 s into the answer.
    spoke = time.monotonic()
    soundcard.say(read_wav("hey_jarvis_rp.wav") + silence(0.3))
    try:
        at = d.wait_event("barge_in", timeout=4, after=spoke)
    finally:  # (what it printed must not hide why it failed)
        with contextlib.suppress(Exception):
            heard = [round(score, 2) for _, score in list(d.assistant.detector.recent)[-50:]]
            print("the detector's scores over the echo-cancelled microphone, 80 ms each, newest last:", heard)
            print("the echo canceller's last decisions:", *list(aec.events)[-20:], sep="\n  ")
    time.sleep(0.5)
    print(f"barge-in {at - spoke:.2f} s after the person started; answer audio after it: {rec.loud_after(at):.0f} ms")
    assert rec.loud_after(at) <= 100
    assert d.assistant.state is State.LISTENING
    # The microphone did hear the answer say the wake word: its raw signal fires the model there, and
    # does not fire it for the person (the test would prove nothing otherwise).
    engine = OpenWakeWordEngine({"hey_jarvis": builtin_models_dir() / "hey_jarvis.tflite"})
    scores = [c["hey_jarvis"] for c in engine.process(bytes(soundcard.fed[mic_before - 8 * 32000 :]))]
    own, person = max(scores[:100]), max(scores[100:])  # 80 ms each: before and after the person spoke
    print(f"raw microphone: the answer's own 'hey jarvis' scores {own:.3f}, the person's {person:.3f}")
    assert own >= 0.5, "the echo never said 'hey jarvis' loud enough: the test proves nothing"
    assert person < 0.5, "the person's wake word is heard over the raw echo: the test proves nothing"
    rec.stop()
    d.stop()


@pytest.mark.parametrize("gpio,line", [
    ("button_pin = 17", r"WARNING pivoice.gpio: GPIO not available \(BadPinFactory.*running without LEDs and buttons"),
])
def test_without_usable_gpio_the_voice_still_works(gpio, line, soundcard, standin, run_daemon):
    """No pin factory (not a Pi): one clear line, and the wake word still works. (A pin that is not a
    GPIO pin is a configuration error: tests/test_errors.py.)"""
    standin.behaviour.reply_after_seconds = None
    config = CONFIG.format(follow_up=2).replace("button_pin = 17", gpio).replace(
        'led = "rgb"\nled_pins = [5, 6, 13]\n', "")
    d = run_daemon(config, extra_env={**standin.env(), "GPIOZERO_PIN_FACTORY": ""})
    d.wait_for("ready: listening")
    d.wait_for(line, timeout=1)
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.5))
    standin.wait_for(lambda: len(standin.sessions) == 1, 10, "a session")
    assert d.stop()[0] == 0
    assert "Traceback" not in d.output


def test_push_to_talk_frames_the_held_audio_with_activity_markers(mock_pins, soundcard, standin, in_process):
    """vad.automatic = false: holding the button is speaking; activity_start/activity_end frame it."""
    standin.behaviour.reply_after_seconds = None
    standin.behaviour.reply_on_activity_end = True
    standin.behaviour.reply_pcm = read_wav("reply_24k.wav")[:24000]
    d = in_process(CONFIG.format(follow_up=3) + "[vad]\nautomatic = false\n")
    d.wait_event("ready")
    command = read_wav("command_time_tokyo.wav")
    p = mock_pins.pin(17)
    p.drive_low()  # pressed and held while speaking
    soundcard.say_and_wait(silence(0.2) + command + silence(0.2))
    p.drive_high()
    d.wait_event("model_audio", timeout=10)  # the stand-in answered at activity_end
    s = standin.sessions[0]
    from standin import _get

    assert _get(_get(s.setup, "realtime_input_config"), "automatic_activity_detection")["disabled"] is True
    assert [k for k, _ in s.activity] == ["start", "end"]
    (_, start), (_, end) = s.activity
    held = bytes(s.audio[start:end])
    assert start == 0 and held.find(command) >= 0, "the held audio is not framed by the markers"
    assert len(held) < len(command) + 1.5 * 32000
    # A second press in the same conversation is the next turn, not its end.
    p.drive_low()
    soundcard.say_and_wait(read_wav("command_paris.wav"))
    p.drive_high()
    standin.wait_for(lambda: len(s.activity) == 4, 5, "a second activity")
    assert len(standin.sessions) == 1
    d.stop()
