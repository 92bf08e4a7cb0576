#!/usr/bin/env python3
"""SIP measurements for scripts/bench that sipp does not report directly.

  bench_sip.py setup HOST:PORT NUMBER CALLS RATE
      Places CALLS calls at RATE per second, one at a time in its own
      thread, and prints each call's set-up latency (INVITE sent -> 200 OK
      received) in milliseconds, one per line. Every call is ACKed and hung up.

  bench_sip.py latency HOST:PORT NUMBER CALLS RATE
      Places CALLS calls at RATE per second from one socket, each
      INVITE, ACK, BYE, and prints each call's time from sending the INVITE
      to the kernel receiving its first response (whatever it is: 100 from
      Bulkhead, 180 from sipp's UAS), in microseconds, one per line. The
      receive time is the kernel's (SO_TIMESTAMPNS), so this script's own
      scheduling delays count only on the sending side.

  bench_sip.py drain HOST:PORT NUMBER CALLS BULKHEAD TENANT
      Holds CALLS answered calls, starts `BULKHEAD tenant restart TENANT
      --drain`, hangs the calls up one second later, and prints the time from
      the last call's end (its BYE answered) to the restart returning (the
      tenant serving again), in milliseconds.

Loopback only: HOST must be 127.x.x.x.
"""
import select
import socket
import subprocess
import sys
import threading
import time
import uuid


def request(method, number, call_id, cseq, to_tag, port):
    branch = f"z9hG4bK{call_id}-{cseq}"
    tag = f";tag={to_tag}" if to_tag else ""
    return (
        f"{method} sip:{number}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=b1\r\n"
        f"To: <sip:{number}@127.0.0.1>{tag}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def to_tag(msg):
    for line in msg.split("\r\n"):
        if line.lower().startswith("to:") and ";tag=" in line:
            return line.split(";tag=")[1].split(";")[0].strip()
    return ""


class Call:
    def __init__(self, target, number):
        self.target, self.number = target, number
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.call_id = f"bench-{uuid.uuid4().hex}"
        self.tag = ""

    def expect(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                msg = self.sock.recv(65535).decode(errors="replace")
            except socket.timeout:
                return None
            if msg.startswith(prefix):
                return msg
            if msg.startswith("SIP/2.0 ") and msg[8] in "3456":
                return None

    def answer(self, timeout=10):
        """INVITE until 200, then ACK; returns the set-up time in seconds or None."""
        t0 = time.monotonic()
        self.sock.sendto(request("INVITE", self.number, self.call_id, 1, "", self.port), self.target)
        ok = self.expect("SIP/2.0 200", timeout)
        if ok is None:
            return None
        setup = time.monotonic() - t0
        self.tag = to_tag(ok)
        self.sock.sendto(request("ACK", self.number, self.call_id, 1, self.tag, self.port), self.target)
        return setup

    def hang_up(self):
        self.sock.sendto(request("BYE", self.number, self.call_id, 2, self.tag, self.port), self.target)
        return self.expect("SIP/2.0 200", 10) is not None


def parse_target(text):
    host, port = text.rsplit(":", 1)
    if not host.startswith("127."):
        sys.exit("bench_sip.py sends only to loopback (127.0.0.0/8)")
    return host, int(port)


def setup(target, number, calls, rate):
    results = [None] * calls
    threads = []

    def one(i):
        c = Call(target, number)
        results[i] = c.answer()
        if results[i] is not None:
            c.hang_up()

    start = time.monotonic()
    for i in range(calls):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    failed = sum(r is None for r in results)
    if failed:
        print(f"{failed} calls failed", file=sys.stderr)
        sys.exit(1)
    for r in results:
        print(f"{r * 1000:.3f}")


# Linux's SO_TIMESTAMPNS (64-bit timespec), which Python does not name.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def latency(target, number, calls, rate):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    ids = [f"lat-{uuid.uuid4().hex}" for _ in range(calls)]
    sent, first, done = {}, {}, set()
    start = time.monotonic()
    deadline = start + calls / rate + 10
    i = 0
    while len(done) < calls and time.monotonic() < deadline:
        now = time.monotonic()
        while i < calls and now >= start + i / rate:
            sent[ids[i]] = time.time_ns()
            sock.sendto(request("INVITE", number, ids[i], 1, "", port), target)
            i += 1
        wait = start + i / rate - time.monotonic() if i < calls else 0.05
        select.select([sock], [], [], max(0.0, wait))
        while True:
            try:
                data, anc, _, _ = sock.recvmsg(65535, 64)
            except BlockingIOError:
                break
            at = next(
                (int.from_bytes(d[:8], "little") * 10**9 + int.from_bytes(d[8:16], "little")
                 for lvl, typ, d in anc if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS),
                time.time_ns(),
            )
            msg = data.decode(errors="replace")
            head = {}
            for line in msg.split("\r\n")[1:]:
                if not line:
                    break
                name, _, value = line.partition(":")
                head[name.strip().lower()] = value.strip()
            call_id, cseq = head.get("call-id", ""), head.get("cseq", "")
            if call_id not in sent:
                continue
            first.setdefault(call_id, at)
            code = msg[8:11]
            if cseq.endswith("INVITE") and code == "200":
                tag = to_tag(msg)
                sock.sendto(request("ACK", number, call_id, 1, tag, port), target)
                sock.sendto(request("BYE", number, call_id, 2, tag, port), target)
            elif cseq.endswith("BYE") and code == "200":
                done.add(call_id)
            elif cseq.endswith("INVITE") and code[0] in "3456":
                done.add(call_id)
    missing = calls - len(first)
    if missing or len(done) < calls:
        print(f"{missing} INVITEs unanswered, {calls - len(done)} calls unfinished", file=sys.stderr)
        sys.exit(1)
    for call_id in ids:
        print((first[call_id] - sent[call_id]) // 1000)


def drain(target, number, calls, bulkhead, tenant):
    held = [Call(target, number) for _ in range(calls)]
    for c in held:
        if c.answer() is None:
            sys.exit("a call to hold was not answered")
    restart = subprocess.Popen(
        [bulkhead, "tenant", "restart", tenant, "--drain", "--json"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1)
    for c in held:
        if not c.hang_up():
            sys.exit("a BYE during the drain was not answered")
    last_end = time.monotonic()
    if restart.wait() != 0:
        sys.exit("tenant restart --drain failed")
    print(f"{(time.monotonic() - last_end) * 1000:.1f}")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "setup":
        setup(parse_target(args[0]), args[1], int(args[2]), float(args[3]))
    elif mode == "latency":
        latency(parse_target(args[0]), args[1], int(args[2]), float(args[3]))
    elif mode == "drain":
        drain(parse_target(args[0]), args[1], int(args[2]), args[3], args[4])
    else:
        sys.exit(__doc__)
