#!/usr/bin/env python3
"""The Vonage conference guide's answer and event server, for caucus.

The answer URL returns the guide's NCCOs unchanged (string booleans and all):
callers to a number or user starting with "moderator" get the moderator's NCCO
(welcome speech, then the conversation it starts and ends, recorded); everyone
else the attendee's (welcome speech, then the conversation with music until the
moderator comes). The event URL prints each event as one JSON line on standard
output (and appends it to --events FILE), so a migration can be watched.

    python3 conf/vonage-example/answer_server.py --port 8000 \
        --music https://nexmo-community.github.io/ncco-examples/assets/voice_api_audio_streaming.mp3

with, in caucus.toml:

    [routing]
    answer_url = "http://127.0.0.1:8000/webhooks/answer"
    [events]
    url = "http://127.0.0.1:8000/webhooks/events"
    format = "vonage"

Python standard library only.
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CONFERENCE = "nexmo-conference-moderated"


def moderator_ncco():
    return [
        {"action": "talk", "text": "Welcome to a conference call"},
        {
            "action": "conversation",
            "name": CONFERENCE,
            "startOnEnter": "true",
            "endOnExit": "true",
            "record": "true",
        },
    ]


def attendee_ncco(music):
    return [
        {
            "action": "talk",
            "text": "Welcome to a Nexmo moderated conference",
            "voiceName": "Amy",
        },
        {
            "action": "conversation",
            "name": CONFERENCE,
            "startOnEnter": "false",
            "musicOnHoldUrl": [music],
        },
    ]


def called_user(to):
    """The user part of a SIP URI or a number: "sip:moderator@host" -> "moderator"."""
    to = to.split(":", 1)[1] if to.startswith(("sip:", "sips:")) else to
    return to.split("@", 1)[0]


class Handler(BaseHTTPRequestHandler):
    music = ""
    events_file = None

    def log_message(self, *args):
        pass  # events go to stdout as JSON lines, not access logs

    def _fields(self):
        url = urlparse(self.path)
        if self.command == "GET":
            return url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b"{}"
        try:
            return url.path, json.loads(body or b"{}")
        except ValueError:
            return url.path, {}

    def _reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        path, fields = self._fields()
        if path.endswith("/answer"):
            user = called_user(fields.get("to", ""))
            if user.startswith("moderator"):
                self._reply(200, moderator_ncco())
            else:
                self._reply(200, attendee_ncco(self.music))
        elif path.endswith("/events"):
            line = json.dumps(fields, sort_keys=True)
            print(line, flush=True)
            if self.events_file:
                with open(self.events_file, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
            self._reply(200, {})
        else:
            self._reply(404, {"error": "not found"})

    do_GET = _handle
    do_POST = _handle


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--music",
        default="https://nexmo-community.github.io/ncco-examples/assets/voice_api_audio_streaming.mp3",
        help="musicOnHoldUrl for attendees (a URL, or an absolute path to a WAV or MP3)",
    )
    p.add_argument("--events", help="also append each event to this file")
    a = p.parse_args()
    Handler.music = a.music
    Handler.events_file = a.events
    server = ThreadingHTTPServer((a.listen, a.port), Handler)
    print(f"listening on http://{a.listen}:{a.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
