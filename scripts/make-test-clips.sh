#!/usr/bin/env bash
# Regenerates the spoken test clips committed under tests/clips/ (espeak-ng + sox).
# The clips are committed so tests never depend on this machine's espeak-ng version;
# run this only to change them, then commit the result.
#   bash scripts/make-test-clips.sh
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/tests/clips"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

say() {  # say VOICE SPEED TEXT OUT.wav  -> 16 kHz mono s16 WAV, no padding
  espeak-ng -v "$1" -s "$2" -w "$tmp/raw.wav" "$3"
  sox -q -D "$tmp/raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$4"
}
silence() {  # silence SECONDS OUT.wav
  sox -q -n -r 16000 -c 1 -b 16 -e signed-integer "$2" trim 0 "$1"
}

# Wake word and command as separate pieces: the tests concatenate them and so know to the
# sample where the command starts.
say en-us 150 "hey jarvis" "$out/hey_jarvis.wav"
say en-gb-x-rp 160 "hey jarvis" "$out/hey_jarvis_rp.wav"
say en-us 160 "what time is it in Tokyo" "$out/command_time_tokyo.wav"
say en-us 160 "and what about Paris" "$out/command_paris.wav"

# The reply a stand-in server speaks (24 kHz, as the Live API sends it).
espeak-ng -v en-us+f2 -s 170 -w "$tmp/raw.wav" "It is nine in the morning in Tokyo. Is there anything else I can help you with today?"
sox -q -D "$tmp/raw.wav" -r 24000 -c 1 -b 16 -e signed-integer "$out/reply_24k.wav"

# A reply that says the wake word itself: pivoice must not interrupt itself when it hears it back.
espeak-ng -v en-us+f2 -s 170 -w "$tmp/raw.wav" "Sure. I am your assistant. You can wake me by saying hey jarvis, and then ask me anything you like about the weather or the news."
sox -q -D "$tmp/raw.wav" -r 24000 -c 1 -b 16 -e signed-integer "$out/reply_says_wake_24k.wav"

# About a minute of unrelated speech (no wake word), kept as FLAC to stay small; the tests mix
# seeded noise into it.
parts=()
i=0
while IFS='|' read -r voice speed text; do
  say "$voice" "$speed" "$text" "$tmp/neg$i.wav"
  silence 0.6 "$tmp/gap$i.wav"
  parts+=("$tmp/neg$i.wav" "$tmp/gap$i.wav")
  i=$((i + 1))
done <<'TXT'
en-us|150|The weather in the north will stay cloudy for most of the week, with some light rain on Thursday.
en-gb|160|Could you pass me the salt, please? And the pepper too, if it is not too much trouble.
en-us+m3|140|The train to the city leaves at a quarter past eight from platform number four.
en-gb-x-rp|170|Remember to water the tomatoes before you go out, the soil gets dry very quickly in summer.
en-us+f2|150|She said the meeting was moved to Tuesday afternoon because the manager is travelling.
en-029|150|We need eggs, flour, butter and a little sugar to make the pancakes for breakfast.
en-us|170|The museum opens at ten and closes at six, except on Mondays when it is closed all day.
en-gb|140|My brother bought a new bicycle last month and now he rides it to work every morning.
en-us+m3|160|If you turn left at the bakery you will find the library right next to the post office.
en-gb-x-rp|150|The children played football in the park until it was too dark to see the ball.
en-us+f2|160|Please remember to switch off the lights and lock the back door when you leave the house.
TXT
silence 1 "$tmp/lead.wav"
sox -q -D "$tmp/lead.wav" "${parts[@]}" "$out/unrelated_speech.flac"
soxi -D "$out/unrelated_speech.flac"
ls -la "$out"
