#!/usr/bin/env bash
# Regenerate the prompts from text with espeak-ng, as 8 kHz mono 16-bit WAV.
# The generated files are committed, so running caucus needs no TTS. Needs
# Debian's espeak-ng and sox. Same input, same voice, same bytes.
set -euo pipefail
cd "$(dirname "$0")"
say() { # name, text
  espeak-ng -v en-us -s 150 -w "/tmp/caucus-$1.wav" "$2"
  sox -D "/tmp/caucus-$1.wav" -r 8000 -c 1 -b 16 "$1.wav" norm -3
  rm -f "/tmp/caucus-$1.wav"
}
say enter-pin "Please enter the conference PIN, followed by the pound key."
say invalid-pin "That PIN is not valid."
say goodbye "Goodbye."
say muted "You are muted."
say unmuted "You are unmuted."
say all-muted "All participants are muted."
say all-unmuted "All participants are unmuted."
say locked "The conference is locked."
say full "The conference is full."
say unlocked "The conference is unlocked."
say ended "The conference has ended."
say first "You are the first participant."
say wait-moderator "Please wait for the moderator."
say no-moderator "The moderator has not arrived."
say there-are "There are"
say participants "participants."
say more-than "more than"
say n0 "zero"
say n1 "one"
say n2 "two"
say n3 "three"
say n4 "four"
say n5 "five"
say n6 "six"
say n7 "seven"
say n8 "eight"
say n9 "nine"
say n10 "ten"
say n11 "eleven"
say n12 "twelve"
say n13 "thirteen"
say n14 "fourteen"
say n15 "fifteen"
say n16 "sixteen"
say n17 "seventeen"
say n18 "eighteen"
say n19 "nineteen"
say n20 "twenty"
say say-name "Please say your name after the tone."
say has-joined "has joined the conference."
say has-left "has left the conference."
say menu "Press star six to mute or unmute yourself, star pound to hear how many are here. Moderators: star one mutes everyone, star two unmutes everyone, star five locks or unlocks the conference, star nine ends it."

# Music on hold: a deterministic arpeggio (16 notes, 8 s), written by Python.
python3 - <<'PY'
import math, struct, wave
rate = 8000
notes = [523.25, 659.25, 783.99, 659.25, 587.33, 698.46, 880.0, 698.46,
         493.88, 587.33, 783.99, 587.33, 523.25, 659.25, 783.99, 1046.5]
out = []
for f in notes:
    for k in range(int(rate * 0.5)):
        t = k / rate
        env = min(1.0, t / 0.02) * math.exp(-3.0 * t)
        v = env * (0.6 * math.sin(2 * math.pi * f * t) + 0.25 * math.sin(4 * math.pi * f * t)
                   + 0.15 * math.sin(math.pi * f * t))
        out.append(int(12000 * v))
w = wave.open("moh.wav", "wb")
w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
w.writeframes(b"".join(struct.pack("<h", v) for v in out))
w.close()
PY

# Join and leave tones: two short beeps, rising and falling.
python3 - <<'PY'
import math, struct, wave
def beeps(name, freqs):
    rate, out = 8000, []
    for f in freqs:
        for k in range(int(rate * 0.12)):
            t = k / rate
            env = min(1.0, t / 0.005, (0.12 - t) / 0.005)
            out.append(int(9000 * env * math.sin(2 * math.pi * f * t)))
        out.extend([0] * int(rate * 0.03))
    w = wave.open(name, "wb")
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
    w.writeframes(b"".join(struct.pack("<h", v) for v in out))
    w.close()
beeps("join.wav", [660.0, 880.0])
beeps("leave.wav", [880.0, 660.0])
beeps("beep.wav", [1000.0, 1000.0, 1000.0])
PY
