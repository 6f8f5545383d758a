#!/usr/bin/env python3
"""Checked traffic for the soak (netns-lab/soak.py runs it inside pods).

  soak_traffic.py tcp-server PORT REPORT
  soak_traffic.py tcp-client ADDR PORT BYTES_PER_S REPORT
  soak_traffic.py udp-server PORT REPORT
  soak_traffic.py udp-client ADDR PORT PACKETS_PER_S REPORT

TCP carries 4096-byte blocks, block i being i (8 bytes, big-endian) repeated
512 times: the server checks every block it reads against the next index it
expects, so a lost, duplicated, reordered or corrupted byte is seen at once.
On SIGTERM the client finishes its block, shuts its side down and records
what it sent; the server reads to the end and records what it verified. The
two totals must be equal.

UDP datagrams carry a sequence number (8 bytes) and a payload derived from
it (1 KiB): the server counts received, duplicated and corrupted datagrams
(loss is expected while nodes are killed or partitioned; duplicates and
corruption never are).

Each side rewrites its REPORT (JSON) every second and at the end.
"""
import json
import os
import signal
import socket
import sys
import time

BLOCK = 4096
DATAGRAM = 1024
stop = False


def on_term(*_):
    global stop
    stop = True


def write_report(path, report):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f)
    os.replace(tmp, path)


def block(i):
    return i.to_bytes(8, "big") * (BLOCK // 8)


def datagram(seq):
    head = seq.to_bytes(8, "big")
    return head + (head[::-1] * (DATAGRAM // 8 - 1))


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def listener(port, kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    return s


def tcp_server(port, path):
    s = listener(port, socket.SOCK_STREAM)
    s.listen(1)
    report = {"bytes": 0, "errors": [], "done": False, "last_rx": 0.0}
    write_report(path, report)
    conn, _ = s.accept()
    conn.settimeout(1.0)
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    have = 0
    expect = 0
    last = time.monotonic()
    while True:
        try:
            n = conn.recv_into(view[have:], BLOCK - have)
        except socket.timeout:
            n = None
        except OSError as e:
            report["errors"].append(f"receive: {e}")
            break
        if n == 0:
            if have:
                report["errors"].append(f"stream ended inside block {expect}")
            break
        if n:
            have += n
            report["bytes"] += n
            report["last_rx"] = time.time()
            if have == BLOCK:
                if buf != block(expect):
                    got = int.from_bytes(buf[:8], "big")
                    report["errors"].append(f"block {expect} expected, got bytes of block {got}")
                    expect = got
                expect += 1
                have = 0
        if time.monotonic() - last >= 1.0:
            write_report(path, report)
            last = time.monotonic()
    report["done"] = True
    write_report(path, report)


def tcp_client(addr, port, rate, path):
    report = {"bytes": 0, "errors": [], "done": False}
    s = None
    for _ in range(100):
        try:
            s = socket.create_connection((addr, port), timeout=2)
            break
        except OSError as e:
            report["errors"] = [f"connect: {e}"]
            time.sleep(0.2)
    if s is None:
        report["done"] = True
        write_report(path, report)
        sys.exit(1)
    report["errors"] = []
    s.settimeout(None)
    start = time.monotonic()
    last = start
    i = 0
    try:
        while not stop:
            s.sendall(block(i))
            i += 1
            report["bytes"] += BLOCK
            ahead = report["bytes"] / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
            if time.monotonic() - last >= 1.0:
                write_report(path, report)
                last = time.monotonic()
        s.shutdown(socket.SHUT_WR)
        s.settimeout(120)
        while s.recv(4096):
            pass
    except OSError as e:
        report["errors"].append(f"send: {e}")
    report["done"] = True
    write_report(path, report)


def udp_server(port, path):
    s = listener(port, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    seen = bytearray(1 << 20)  # one bit per sequence number: 8 M datagrams
    report = {"received": 0, "duplicates": 0, "corrupt": 0, "highest": -1, "done": False}
    last = time.monotonic()
    while not stop:
        try:
            data = s.recv(65536)
        except socket.timeout:
            data = None
        if data is not None:
            seq = int.from_bytes(data[:8], "big") if len(data) >= 8 else -1
            if len(data) != DATAGRAM or seq < 0 or seq >= len(seen) * 8 or data != datagram(seq):
                report["corrupt"] += 1
            elif seen[seq >> 3] & (1 << (seq & 7)):
                report["duplicates"] += 1
            else:
                seen[seq >> 3] |= 1 << (seq & 7)
                report["received"] += 1
                report["highest"] = max(report["highest"], seq)
        if time.monotonic() - last >= 1.0:
            write_report(path, report)
            last = time.monotonic()
    report["done"] = True
    write_report(path, report)


def udp_client(addr, port, pps, path):
    s = socket.socket(family_of(addr), socket.SOCK_DGRAM)
    report = {"sent": 0, "send_errors": 0, "done": False}
    start = time.monotonic()
    last = start
    seq = 0
    while not stop:
        try:
            s.sendto(datagram(seq), (addr, port))
            report["sent"] += 1
        except OSError:
            # No route while a node is partitioned away: counted, not fatal.
            report["send_errors"] += 1
        seq += 1
        ahead = seq / pps - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
        if time.monotonic() - last >= 1.0:
            write_report(path, report)
            last = time.monotonic()
    report["done"] = True
    write_report(path, report)


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "tcp-server":
        tcp_server(int(args[0]), args[1])
    elif mode == "tcp-client":
        tcp_client(args[0], int(args[1]), float(args[2]), args[3])
    elif mode == "udp-server":
        udp_server(int(args[0]), args[1])
    elif mode == "udp-client":
        udp_client(args[0], int(args[1]), float(args[2]), args[3])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
