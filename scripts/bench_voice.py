#!/usr/bin/env python3
"""Voice-agent measurements through the whole platform, for scripts/bench.

  bench_voice.py calls HOST:PORT NUMBER HTTP_PORT TOKEN CALLS
      Places CALLS calls one after another. Each caller (espeak-ng | sox,
      sent as G.711 RTP in real time) waits out the greeting, asks "what are
      your opening hours", stays quiet for the answer and hangs up. Prints,
      one per line, the reply's latency_ms from the call's transcript (end
      of the caller's turn -> the reply's first RTP packet).

  bench_voice.py mock ANSWER
      An OpenAI-compatible chat-completions server on 127.0.0.1 that
      answers every turn with ANSWER at once (end_call when the caller says
      goodbye). Prints its port, then serves until killed.

Loopback only.
"""
import http.server
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid


def speak(text):
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "--stdout", text],
                         check=True, capture_output=True).stdout
    return subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-r", "8000",
                           "-e", "u-law", "-c", "1", "-"],
                          input=wav, check=True, capture_output=True).stdout


def sip(method, number, call_id, cseq, to, port, media_port=None):
    body = ""
    if media_port:
        body = ("v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                f"t=0 0\r\nm=audio {media_port} RTP/AVP 0\r\n")
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (f"{method} sip:{number}@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}{cseq}{method};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1:{port}>;tag=bv1\r\n"
            f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:bench@127.0.0.1:{port}>\r\n{ctype}"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def one_call(target, number, audio):
    sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sig.bind(("127.0.0.1", 0))
    sig.settimeout(10)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    port, media_port = sig.getsockname()[1], rtp.getsockname()[1]
    call_id = uuid.uuid4().hex
    to = f"<sip:{number}@127.0.0.1>"
    sig.sendto(sip("INVITE", number, call_id, 1, to, port, media_port), target)
    peer = None
    while True:
        msg = sig.recv(65535).decode(errors="replace")
        if not msg.startswith("SIP/2.0 "):
            continue
        code = int(msg[8:11])
        if code < 200:
            continue
        if code != 200:
            raise SystemExit(f"call refused: {msg.splitlines()[0]}")
        lines = msg.split("\r\n")
        to = next(l[3:].strip() for l in lines if l.lower().startswith("to:"))
        ip = next(l[9:].strip() for l in lines if l.startswith("c=IN IP4 "))
        mport = int(next(l.split()[1] for l in lines if l.startswith("m=audio ")))
        peer = (ip, mport)
        break
    sig.sendto(sip("ACK", number, call_id, 1, to, port), target)
    start = time.monotonic()
    for i in range(0, len(audio), 160):
        frame = audio[i:i + 160].ljust(160, b"\xff")
        n = i // 160
        header = bytes([0x80, 0x80 if n == 0 else 0]) + (n & 0xFFFF).to_bytes(2, "big") \
            + (n * 160 & 0xFFFFFFFF).to_bytes(4, "big") + (0x1234).to_bytes(4, "big")
        rtp.sendto(header + frame, peer)
        time.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))
    sig.sendto(sip("BYE", number, call_id, 2, to, port), target)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if sig.recv(65535).startswith(b"SIP/2.0 200"):
                break
        except socket.timeout:
            break


def get(http_port, path, token):
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def calls(target, number, http_port, token, n):
    host, port = target.rsplit(":", 1)
    assert host.startswith("127."), "loopback only"
    audio = b"\xff" * 3500 * 8 + speak("what are your opening hours") + b"\xff" * 3000 * 8
    for _ in range(int(n)):
        one_call((host, int(port)), number, audio)
        time.sleep(0.5)
        latest = get(http_port, "/v1/calls?limit=1", token)["calls"][0]
        turns = get(http_port, f"/v1/calls/{latest['id']}/transcript", token)["turns"]
        replies = [t["latency_ms"] for t in turns if t.get("latency_ms") is not None]
        print(replies[0] if replies else "none", flush=True)


class Model(http.server.BaseHTTPRequestHandler):
    answer = ""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        said = body["messages"][-1]["content"].lower()
        if "bye" in said:
            message = {"role": "assistant", "content": "Goodbye.", "tool_calls": [
                {"id": "c", "type": "function",
                 "function": {"name": "end_call", "arguments": "{\"reason\": \"done\"}"}}]}
        else:
            message = {"role": "assistant", "content": Model.answer}
        out = json.dumps({"choices": [{"index": 0, "message": message}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def mock(answer):
    Model.answer = answer
    server = http.server.HTTPServer(("127.0.0.1", 0), Model)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["calls"] and len(sys.argv) == 7:
        calls(*sys.argv[2:])
    elif sys.argv[1:2] == ["mock"] and len(sys.argv) == 3:
        mock(sys.argv[2])
    else:
        raise SystemExit(__doc__)
