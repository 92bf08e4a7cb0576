#!/usr/bin/env python3
"""Where a call's time goes, from a capture of the SIP it exchanged.

  sip_timeline.py PCAP PORT

PCAP is a tcpdump capture on loopback (`tcpdump -i lo -s 700 -w PCAP udp
port PORT`) of the calls a sipp UAC placed to PORT. Per call (by Call-ID)
it takes the first time each message was seen: the INVITE, its 100, 180
and 200, the ACK, the BYE and the BYE's 200. It prints, per step, how many
calls had both ends of it and the step's p50, p90 and mean in
milliseconds, then the span from the first INVITE to the last BYE's 200.
A message the capture dropped leaves that call out of the steps it ends.
"""
import statistics
import struct
import sys

STEPS = [
    ("INVITE", "100 INVITE"),
    ("100 INVITE", "180 INVITE"),
    ("180 INVITE", "200 INVITE"),
    ("INVITE", "200 INVITE"),
    ("200 INVITE", "ACK"),
    ("ACK", "BYE"),
    ("BYE", "200 BYE"),
    ("INVITE", "200 BYE"),
]
# Link-layer header length by pcap link type: Ethernet (lo on Linux), BSD
# loopback, Linux cooked capture.
LINK_HEADER = {1: 14, 0: 4, 113: 16}


def packets(path):
    """(time in seconds, UDP source port, destination port, payload)."""
    with open(path, "rb") as f:
        header = f.read(24)
        if len(header) < 24:
            sys.exit(f"{path}: not a pcap file")
        magic = struct.unpack("<I", header[:4])[0]
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            sys.exit(f"{path}: not a little-endian pcap file (magic {magic:#x})")
        scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
        link = struct.unpack("<I", header[20:24])[0]
        if link not in LINK_HEADER:
            sys.exit(f"{path}: link type {link} not supported")
        while True:
            record = f.read(16)
            if len(record) < 16:
                return
            secs, frac, length, _ = struct.unpack("<IIII", record)
            data = f.read(length)
            ip = data[LINK_HEADER[link]:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue  # not IPv4 UDP
            ihl = (ip[0] & 15) * 4
            sport, dport = struct.unpack(">HH", ip[ihl:ihl + 4])
            yield secs + frac * scale, sport, dport, ip[ihl + 8:]


def message(payload):
    """(Call-ID, step name) of a SIP message, or None."""
    lines = payload.decode("latin-1").split("\r\n")
    call_id = cseq = None
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in ("call-id", "i"):
            call_id = value.strip()
        elif name == "cseq":
            cseq = value.split()[-1] if value.split() else None
    if call_id is None:
        return None
    first = lines[0].split()
    if len(first) < 2:
        return None
    if first[0] == "SIP/2.0":
        return call_id, f"{first[1]} {cseq}"
    return call_id, first[0]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, port = sys.argv[1], int(sys.argv[2])
    calls = {}
    for t, sport, dport, payload in packets(path):
        if port not in (sport, dport):
            continue
        seen = message(payload)
        if seen:
            calls.setdefault(seen[0], {}).setdefault(seen[1], t)
    print(f"{len(calls)} calls")
    for a, b in STEPS:
        ms = sorted((c[b] - c[a]) * 1000 for c in calls.values() if a in c and b in c)
        if ms:
            p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
            print(f"  {a:>10} -> {b:<10} {len(ms):5d} calls  p50 {statistics.median(ms):6.2f}"
                  f"  p90 {p90:6.2f}  mean {statistics.mean(ms):6.2f} ms")
    starts = [c["INVITE"] for c in calls.values() if "INVITE" in c]
    ends = [c["200 BYE"] for c in calls.values() if "200 BYE" in c]
    if starts and ends:
        print(f"  first INVITE -> last BYE's 200: {(max(ends) - min(starts)) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
