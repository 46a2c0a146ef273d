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
