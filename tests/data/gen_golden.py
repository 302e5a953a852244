#!/usr/bin/python3
"""Generates the golden pcap pairs in tests/data (run with Debian's python3-scapy).

Each case is an input frame and the frame Switchyard must emit for it (or None for a drop).
The expected frames are built here independently with scapy from the protocol rules (ARP
reply, ICMP echo reply, DSR = only the Ethernet addresses change), not captured from
Switchyard, so the golden test checks the balancer against an independent oracle.

Topology the config in tests/golden.rs describes:
  balancer port MAC 02:00:00:00:00:10, address 10.20.0.10/24
  VIP 10.20.0.100: tcp/80 -> backend 10.20.0.11 (02:..:11), udp/53 -> 10.20.0.12 (02:..:12)
  the router (02:..:01, 10.20.0.1) delivers client 10.20.9.2's traffic.
"""
import os
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, Raw, wrpcap, Dot1Q

HERE = os.path.dirname(os.path.abspath(__file__))
LB = "02:00:00:00:00:10"
ROUTER = "02:00:00:00:00:01"
B1 = "02:00:00:00:00:11"
B2 = "02:00:00:00:00:12"
VIP = "10.20.0.100"
LB_IP = "10.20.0.10"
CLIENT = "10.20.9.2"


def b(p):
    return bytes(p)


def garp(vip):
    return b(Ether(src=LB, dst="ff:ff:ff:ff:ff:ff") /
             ARP(op=1, hwsrc=LB, psrc=vip, hwdst="00:00:00:00:00:00", pdst=vip))


def arp_req(target):
    return b(Ether(src=ROUTER, dst="ff:ff:ff:ff:ff:ff") /
             ARP(op=1, hwsrc=ROUTER, psrc="10.20.0.1", pdst=target))


def arp_rep(target):
    return b(Ether(src=LB, dst=ROUTER) /
             ARP(op=2, hwsrc=LB, psrc=target, hwdst=ROUTER, pdst="10.20.0.1"))


def echo(dst, ident, payload=b"switchyard-ping!"):
    return b(Ether(src=ROUTER, dst=LB) /
             IP(src=CLIENT, dst=dst, ttl=63, id=0x1234) /
             ICMP(type=8, id=ident, seq=1) / Raw(payload))


def echo_reply(src, ident, payload=b"switchyard-ping!"):
    return b(Ether(src=LB, dst=ROUTER) /
             IP(src=src, dst=CLIENT, ttl=64, id=0x1234) /
             ICMP(type=0, id=ident, seq=1) / Raw(payload))


def remac(frame, src, dst):
    e = Ether(frame)
    e.src, e.dst = src, dst
    return b(e)


def main():
    syn = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
            TCP(sport=40000, dport=80, flags="S", seq=1000, options=[("MSS", 1460)]))
    ack = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
            TCP(sport=40000, dport=80, flags="A", seq=1001, ack=5001) / Raw(b"GET / HTTP/1.0\r\n\r\n"))
    udp = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
            UDP(sport=5353, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"))
    # Malformed and unwanted frames, each dropped for the reason named.
    bad_ihl = bytearray(syn); bad_ihl[14] = 0x44                      # bad_ipv4_header
    bad_csum = bytearray(syn); bad_csum[24] ^= 0xff                   # bad_ipv4_checksum
    bad_len = bytearray(syn); bad_len[16:18] = (200).to_bytes(2, "big")  # bad_ipv4_length (csum fixed below)
    ipl = IP(bytes(bad_len[14:]))
    del ipl.chksum
    bad_len = bytearray(syn[:14]) + bytearray(b(ipl))[:len(syn) - 14]
    truncated_eth = bytes(syn[:10])                                   # truncated_ethernet
    truncated_ip = bytes(syn[:14 + 12])                               # truncated_ipv4
    trunc_tcp = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP) / Raw(b"\x9c\x40\x00\x50\x00\x00"))
    trunc_tcp = bytearray(trunc_tcp); trunc_tcp[23] = 6               # proto tcp, 6-byte header
    tip = IP(bytes(trunc_tcp[14:])); del tip.chksum
    trunc_tcp = bytes(trunc_tcp[:14]) + b(tip)                        # truncated_l4
    no_service = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP) / TCP(sport=40001, dport=81, flags="S"))
    not_for_us = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst="10.20.0.50") / UDP(sport=1, dport=53))
    ipv6 = b(Ether(src=ROUTER, dst=LB, type=0x86dd) / Raw(b"\x60" + b"\x00" * 39))
    arp_other = arp_req("10.20.0.99")                                 # arp_not_for_us
    vlan = b(Ether(src=ROUTER, dst=LB) / Dot1Q(vlan=7) / IP(src=CLIENT, dst=VIP) / TCP(dport=80, flags="S"))
    frag = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, flags="MF", frag=0) /
             UDP(sport=5353, dport=53) / Raw(b"x" * 32))
    bad_icmp = bytearray(echo(VIP, 9)); bad_icmp[-1] ^= 0xff         # bad_icmp_checksum
    to_lb_tcp = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=LB_IP) / TCP(dport=22, flags="S"))

    cases = [
        (arp_req(VIP), arp_rep(VIP)),
        (arp_req(LB_IP), arp_rep(LB_IP)),
        (echo(VIP, 1), echo_reply(VIP, 1)),
        (echo(LB_IP, 2), echo_reply(LB_IP, 2)),
        (syn, remac(syn, LB, B1)),
        (ack, remac(ack, LB, B1)),
        (udp, remac(udp, LB, B2)),
        (bytes(bad_ihl), None),
        (bytes(bad_csum), None),
        (bytes(bad_len), None),
        (truncated_eth, None),
        (truncated_ip, None),
        (trunc_tcp, None),
        (no_service, None),
        (not_for_us, None),
        (ipv6, None),
        (arp_other, None),
        (vlan, None),
        (frag, None),
        (bytes(bad_icmp), None),
        (to_lb_tcp, None),
    ]
    out = [garp(VIP)] + [c[1] for c in cases if c[1] is not None]
    wrpcap(os.path.join(HERE, "dsr_in.pcap"), [Raw(c[0]) for c in cases], linktype=1)
    wrpcap(os.path.join(HERE, "dsr_expected.pcap"), [Raw(o) for o in out], linktype=1)
    print(f"dsr: {len(cases)} input frames, {len(out)} expected output frames")


if __name__ == "__main__":
    main()
