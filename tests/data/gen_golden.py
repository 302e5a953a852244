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
    frag_to_lb = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=LB_IP, flags="MF", id=9) /
                   ICMP(type=8) / Raw(b"y" * 32))                   # fragment (to us)
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
        (frag, remac(frag, LB, B2)),       # first fragment: balanced like its flow
        (frag_to_lb, None),
        (bytes(bad_icmp), None),
        (to_lb_tcp, None),
    ]
    out = [garp(VIP)] + [c[1] for c in cases if c[1] is not None]
    wrpcap(os.path.join(HERE, "dsr_in.pcap"), [Raw(c[0]) for c in cases], linktype=1)
    wrpcap(os.path.join(HERE, "dsr_expected.pcap"), [Raw(o) for o in out], linktype=1)
    print(f"dsr: {len(cases)} input frames, {len(out)} expected output frames")


def nat(frame, src=None, sport=None, dst=None, dport=None, ttl_dec=True, smac=LB, dmac=None):
    """The frame as a NAT rewrite must leave it: fields changed, every checksum recomputed
    from scratch by scapy (the balancer updates them incrementally: an independent check)."""
    e = Ether(frame)
    e.src = smac
    e.dst = dmac
    ip = e[IP]
    if src: ip.src = src
    if dst: ip.dst = dst
    if ttl_dec: ip.ttl -= 1
    del ip.chksum
    l4 = ip.payload
    if isinstance(l4, (TCP, UDP)) and not (ip.frag > 0):
        if sport is not None: l4.sport = sport
        if dport is not None: l4.dport = dport
        if not (isinstance(l4, UDP) and l4.chksum == 0):
            del l4.chksum
    return b(e)


def fragments(src, dst, sport, dport, ident, payload, smac=ROUTER, dmac=LB):
    """A UDP datagram split in two IPv4 fragments (first carries the UDP header)."""
    whole = IP(src=src, dst=dst, id=ident, ttl=63) / UDP(sport=sport, dport=dport) / Raw(payload)
    raw = bytes(whole)
    l4 = raw[20:]
    first = IP(src=src, dst=dst, id=ident, ttl=63, flags="MF", frag=0, proto=17) / Raw(l4[:24])
    second = IP(src=src, dst=dst, id=ident, ttl=63, flags=0, frag=3, proto=17) / Raw(l4[24:])
    return (b(Ether(src=smac, dst=dmac) / first), b(Ether(src=smac, dst=dmac) / second), whole)


def frag_expect(whole, idx, src=None, sport=None, dst=None, dport=None, dmac=None):
    """Expected fragment idx of `whole` after translation: the UDP checksum in the first
    fragment is that of the translated whole datagram."""
    w = whole.copy()
    if src: w.src = src
    if dst: w.dst = dst
    w.ttl -= 1
    if sport is not None: w[UDP].sport = sport
    if dport is not None: w[UDP].dport = dport
    del w[UDP].chksum
    l4 = bytes(w)[20:]
    if idx == 0:
        f = IP(src=w.src, dst=w.dst, id=w.id, ttl=w.ttl, flags="MF", frag=0, proto=17) / Raw(l4[:24])
    else:
        f = IP(src=w.src, dst=w.dst, id=w.id, ttl=w.ttl, flags=0, frag=3, proto=17) / Raw(l4[24:])
    return b(Ether(src=LB, dst=dmac) / f)


def icmp_err(outer_src, outer_dst, quoted_ip, icmp_type, code, smac, dmac=LB, ttl=64, mtu=0):
    """An ICMP error quoting the IP header + 8 bytes of `quoted_ip` (a scapy IP packet)."""
    q = bytes(quoted_ip)
    ihl = (q[0] & 0x0F) * 4
    icmp = ICMP(type=icmp_type, code=code, nexthopmtu=mtu) if icmp_type == 3 else ICMP(type=icmp_type, code=code)
    return b(Ether(src=smac, dst=dmac) / IP(src=outer_src, dst=outer_dst, ttl=ttl, id=0x55) /
             icmp / Raw(q[:ihl + 8]))


def write(name, cases, prefix_out=()):
    out = list(prefix_out) + [c[1] for c in cases if c[1] is not None]
    wrpcap(os.path.join(HERE, f"{name}_in.pcap"), [Raw(c[0]) for c in cases], linktype=1)
    wrpcap(os.path.join(HERE, f"{name}_expected.pcap"), [Raw(o) for o in out], linktype=1)
    print(f"{name}: {len(cases)} input frames, {len(out)} expected output frames")


def proxy():
    """Proxy (full NAT), one-arm: SNAT address 10.20.0.10 (the interface's), local ports
    from 1024 in order, backend 10.20.0.11 with port translation 80 -> 8080 (tcp) and 53 (udp),
    clients reached through the default route via the router 10.20.0.1."""
    SNAT, BK = LB_IP, "10.20.0.11"
    syn = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
            TCP(sport=40000, dport=80, flags="S", seq=1000))
    synack = b(Ether(src=B1, dst=LB) / IP(src=BK, dst=SNAT, ttl=64) /
               TCP(sport=8080, dport=1024, flags="SA", seq=5000, ack=1001))
    data = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
             TCP(sport=40000, dport=80, flags="PA", seq=1001, ack=5001) / Raw(b"GET / HTTP/1.0\r\n\r\n"))
    fin = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
            TCP(sport=40000, dport=80, flags="FA", seq=1019, ack=5001))
    q = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
          UDP(sport=5353, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6))
    a = b(Ether(src=B1, dst=LB) / IP(src=BK, dst=SNAT, ttl=64) /
          UDP(sport=53, dport=1025) / Raw(b"\x12\x34\x81\x80\x00\x01" + b"\x00" * 6))
    # A router near the client says our reply (VIP:80 -> client) was too big.
    reply_as_sent = IP(src=VIP, dst=CLIENT, ttl=63) / TCP(sport=80, dport=40000, flags="A", seq=5001, ack=1019) / Raw(b"x" * 1400)
    ptb = icmp_err("10.20.9.1", VIP, reply_as_sent, 3, 4, ROUTER, mtu=1400)
    reply_at_backend = reply_as_sent.copy()
    reply_at_backend.src, reply_at_backend.dst = BK, SNAT
    reply_at_backend.sport, reply_at_backend.dport = 8080, 1024
    del reply_at_backend.chksum
    del reply_at_backend[TCP].chksum
    ptb_out = icmp_err(SNAT, BK, IP(bytes(reply_at_backend)), 3, 4, LB, dmac=B1, ttl=63, mtu=1400)
    # The backend says nothing listens on 53 for the datagram it got.
    q_at_backend = IP(src=SNAT, dst=BK, ttl=62) / UDP(sport=1025, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6)
    unreach = icmp_err(BK, SNAT, IP(bytes(q_at_backend)), 3, 3, B1)
    q_as_client_sent = IP(src=CLIENT, dst=VIP, ttl=62) / UDP(sport=5353, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6)
    unreach_out = icmp_err(VIP, CLIENT, IP(bytes(q_as_client_sent)), 3, 3, LB, dmac=ROUTER, ttl=63)
    f1, f2, whole = fragments(CLIENT, VIP, 6000, 53, 0x77, b"z" * 40)
    stray = fragments(CLIENT, VIP, 6001, 53, 0x78, b"w" * 40)[1]
    no_conn = b(Ether(src=B1, dst=LB) / IP(src=BK, dst=SNAT) / TCP(sport=8080, dport=1999, flags="A"))
    cases = [
        (syn, nat(syn, src=SNAT, sport=1024, dst=BK, dport=8080, dmac=B1)),
        (synack, nat(synack, src=VIP, sport=80, dst=CLIENT, dport=40000, dmac=ROUTER)),
        (data, nat(data, src=SNAT, sport=1024, dst=BK, dport=8080, dmac=B1)),
        (fin, nat(fin, src=SNAT, sport=1024, dst=BK, dport=8080, dmac=B1)),
        (q, nat(q, src=SNAT, sport=1025, dst=BK, dport=53, dmac=B1)),
        (a, nat(a, src=VIP, sport=53, dst=CLIENT, dport=5353, dmac=ROUTER)),
        (ptb, ptb_out),
        (unreach, unreach_out),
        (f1, frag_expect(whole, 0, src=SNAT, sport=1026, dst=BK, dport=53, dmac=B1)),
        (f2, frag_expect(whole, 1, src=SNAT, dst=BK, dmac=B1)),
        (stray, None),
        (no_conn, None),
    ]
    write("proxy", cases, [garp(VIP)])


def gateway():
    """Gateway (destination NAT), one-arm: the servers' subnet 10.20.1.0/24 is a secondary
    subnet of the same port (the balancer is their gateway, 10.20.1.1), backend 10.20.1.11."""
    BK = "10.20.1.11"
    syn = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
            TCP(sport=40000, dport=80, flags="S", seq=1000))
    synack = b(Ether(src=B1, dst=LB) / IP(src=BK, dst=CLIENT, ttl=64) /
               TCP(sport=80, dport=40000, flags="SA", seq=5000, ack=1001))
    fin = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
            TCP(sport=40000, dport=80, flags="FA", seq=1001, ack=5001))
    q = b(Ether(src=ROUTER, dst=LB) / IP(src=CLIENT, dst=VIP, ttl=63) /
          UDP(sport=5353, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6))
    a = b(Ether(src=B1, dst=LB) / IP(src=BK, dst=CLIENT, ttl=64) /
          UDP(sport=53, dport=5353) / Raw(b"\x12\x34\x81\x80\x00\x01" + b"\x00" * 6))
    # Server-originated traffic is routed like a router would: TTL down, no translation.
    out = b(Ether(src=B1, dst=LB) / IP(src=BK, dst=CLIENT, ttl=64) / TCP(sport=5555, dport=22, flags="S"))
    dying = b(Ether(src=B1, dst=LB) / IP(src=BK, dst=CLIENT, ttl=1, id=0x66) / TCP(sport=5556, dport=22, flags="S"))
    dying_ip = IP(dying[14:])
    exceeded = b(Ether(src=LB, dst=B1) / IP(src="10.20.1.1", dst=BK, ttl=64, id=0) /
                 ICMP(type=11, code=0) / Raw(bytes(dying_ip)[:28]))
    # The backend rejects the client's datagram: the client hears it from the VIP.
    q_at_backend = IP(src=CLIENT, dst=BK, ttl=62) / UDP(sport=5353, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6)
    unreach = icmp_err(BK, CLIENT, IP(bytes(q_at_backend)), 3, 3, B1)
    q_as_sent = q_at_backend.copy()
    q_as_sent.dst = VIP
    del q_as_sent.chksum
    del q_as_sent[UDP].chksum
    unreach_out = icmp_err(VIP, CLIENT, IP(bytes(q_as_sent)), 3, 3, LB, dmac=ROUTER, ttl=63)
    f1, f2, whole = fragments(CLIENT, VIP, 6000, 53, 0x77, b"z" * 40)
    cases = [
        (syn, nat(syn, dst=BK, dmac=B1)),
        (synack, nat(synack, src=VIP, dmac=ROUTER)),
        (fin, nat(fin, dst=BK, dmac=B1)),
        (q, nat(q, dst=BK, dmac=B1)),
        (a, nat(a, src=VIP, dmac=ROUTER)),
        (out, nat(out, dmac=ROUTER)),
        (dying, exceeded),
        (unreach, unreach_out),
        (f1, frag_expect(whole, 0, dst=BK, dmac=B1)),
        (f2, frag_expect(whole, 1, dst=BK, dmac=B1)),
    ]
    write("gateway", cases, [garp(VIP)])


if __name__ == "__main__":
    main()
    proxy()
    gateway()
