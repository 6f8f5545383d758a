#!/usr/bin/env python3
"""Load for netns-lab/fanout.sh, run inside a pod's namespace.

  mcast_load.py send ADDR PORT SECONDS SIZE   datagrams to ADDR (a group,
                                              TTL 8, or a unicast address)
                                              as fast as one core allows;
                                              prints how many were sent
  mcast_load.py recv ADDR PORT SECONDS        joins group ADDR (unless it
                                              is unicast) and prints how
                                              many datagrams arrived
"""
import ipaddress
import socket
import struct
import sys
import time


def main():
    mode, addr, port, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    ip = ipaddress.ip_address(addr)
    fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if mode == "send":
        payload = b"x" * int(sys.argv[5])
        if ip.is_multicast:
            if ip.version == 4:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
        dst, n, end = (addr, port), 0, time.monotonic() + secs
        while time.monotonic() < end:
            for _ in range(256):
                try:
                    s.sendto(payload, dst)
                    n += 1
                except BlockingIOError:
                    pass
                except OSError:
                    pass
        print(n)
        return
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("::" if ip.version == 6 else "0.0.0.0", port))
    if ip.is_multicast:
        if ip.version == 4:
            mreq = socket.inet_aton(addr) + socket.inet_aton("0.0.0.0")
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        else:
            mreq = socket.inet_pton(socket.AF_INET6, addr) + struct.pack("@I", 0)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    s.settimeout(0.2)
    n, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        try:
            s.recv(2048)
            n += 1
        except socket.timeout:
            pass
    print(n)


if __name__ == "__main__":
    main()
