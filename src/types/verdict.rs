//! What becomes of a frame: one [`Verdict`] per frame, and for a drop the [`DropReason`] it
//! is counted under (each reason is a counter; see `stats`).

use super::IfIdx;

/// What becomes of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten; transmit on this interface's port.
    Forward(IfIdx),
    /// Rewritten into an answer; transmit back out of the port it came in on.
    Reply,
    /// Used up by the balancer (e.g. an ARP reply it learned from).
    Consumed,
    /// Belongs to a conn owned by this worker: hand it over, untouched.
    Steer(u16),
    /// For the balancer's own kernel stack: out of the interface's exception (tap) port.
    ToKernel,
    Drop(DropReason),
}

/// Why a frame was dropped. Each reason is a counter; see `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet (+ VLAN) header.
    TruncatedEthernet = 0,
    /// Ethertype the balancer does not handle (IPv6, LLDP, QinQ, ...).
    UnsupportedEthertype,
    /// 802.1Q tag absent/present/different from the interface's VLAN.
    VlanMismatch,
    /// ARP that is not Ethernet/IPv4 or is truncated.
    MalformedArp,
    /// ARP request for an address that is not ours, or an ARP we do not act on.
    ArpNotForUs,
    /// IPv4 header shorter than 20 bytes or than the frame.
    TruncatedIpv4,
    /// Version not 4 or IHL < 5.
    BadIpv4Header,
    /// Total length smaller than the header or larger than the frame.
    BadIpv4Length,
    /// IPv4 header checksum wrong.
    BadIpv4Checksum,
    /// TCP/UDP/ICMP header cut short or TCP data offset invalid.
    TruncatedL4,
    /// IPv4 fragment addressed to the balancer itself (not reassembled).
    Fragment,
    /// ICMP checksum wrong on a message we would answer.
    BadIcmpChecksum,
    /// ICMP to one of our addresses that we do not answer.
    IcmpNotHandled,
    /// Addressed to the balancer itself but not something the data plane answers.
    LocalNotHandled,
    /// Not addressed to the balancer or any VIP.
    NotForUs,
    /// To a VIP, but no service on that port/protocol.
    NoService,
    /// Service exists but no backend can take the flow.
    NoBackend,
    /// Backend's MAC not (yet) resolved.
    NoNeighbour,
    /// Per-core flow table has no room for a new flow.
    FlowTableFull,
    /// Frame spans several mbufs (jumbo): not handled.
    MultiSegment,
    /// The tx queue did not take the frame.
    TxFull,
    /// TCP/UDP to a source-NAT address that belongs to no conn.
    NoFlow,
    /// Proxy mode: no source-NAT port left for a new conn.
    SnatExhausted,
    /// A later IPv4 fragment whose first fragment was not seen (or has expired).
    FragmentNoFlow,
    /// ICMP error quoting a packet of no known conn.
    IcmpNoFlow,
    /// The ring to the conn's owner core was full.
    SteerFull,
    /// A routed packet's TTL ran out and no ICMP could be built.
    TtlExceeded,
    /// No route to the destination (an ICMP unreachable is sent when possible).
    NoRoute,
    /// A packet of an established conn whose backend is down (service policy `drop`).
    BackendDown,
    /// A packet of an established conn whose backend's drain timed out (forced).
    DrainForced,
    /// To a floating address (VIP, SNAT address, gateway address) of an HA pair that the
    /// peer owns now, or of a conn of such a VIP.
    NotOwner,
    /// Sent by the kernel through the exception path while this worker stood still (a
    /// second or more without a round: wedged, or the process stopped). Stale: a VRRP
    /// advert of a state keepalived has left since would knock the active peer out.
    StaleFromKernel,
    /// To one of our DNS addresses: not a DNS query (a response, a header or question cut
    /// short, a label longer than 63, a name longer than 255).
    DnsMalformed,
    /// A TCP segment other than a SYN, of no conn this node knows, for a full-NAT conn
    /// (proxy mode, a remote backend): its SNAT tuple was another node's (an ECMP change, a
    /// restart), so it cannot be adopted; the client's retransmissions find no conn either
    /// until it gives up or reconnects.
    NatMidflow,
    /// A new flow from a source no client can have: 0.0.0.0/8, loopback, multicast, class E
    /// or broadcast, or one of this node's own addresses and VIPs (spoofed).
    MartianSource,
    /// An ICMP error we would originate (TTL exceeded, unreachable) over the worker's budget
    /// (`ICMP_ERRORS_PER_S`, burst `ICMP_ERRORS_BURST`).
    IcmpRateLimited,
    /// To a service whose `deny` matches the source, or whose `allow` does not.
    AclDenied,
    /// A new flow over its service's `new_flows_per_s`.
    ServiceRateLimited,
    /// A new flow over its service's `new_flows_per_source_per_s` for that client.
    SourceRateLimited,
    /// SYN proxy: a client segment while the backend has not answered our SYN yet (the
    /// client sends it again).
    SynProxyPending,
    /// SYN proxy: a segment the proxy cannot rewrite (IP options, a SYN-ACK that does not
    /// fit).
    SynProxyUnsupported,
    /// SYN proxy on: an ACK of no conn without a valid cookie (spoofed; while cookies are
    /// on, gateway services do not adopt mid-stream segments).
    BadCookie,
}

impl DropReason {
    pub const COUNT: usize = DropReason::BadCookie as usize + 1;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::TruncatedEthernet,
        DropReason::UnsupportedEthertype,
        DropReason::VlanMismatch,
        DropReason::MalformedArp,
        DropReason::ArpNotForUs,
        DropReason::TruncatedIpv4,
        DropReason::BadIpv4Header,
        DropReason::BadIpv4Length,
        DropReason::BadIpv4Checksum,
        DropReason::TruncatedL4,
        DropReason::Fragment,
        DropReason::BadIcmpChecksum,
        DropReason::IcmpNotHandled,
        DropReason::LocalNotHandled,
        DropReason::NotForUs,
        DropReason::NoService,
        DropReason::NoBackend,
        DropReason::NoNeighbour,
        DropReason::FlowTableFull,
        DropReason::MultiSegment,
        DropReason::TxFull,
        DropReason::NoFlow,
        DropReason::SnatExhausted,
        DropReason::FragmentNoFlow,
        DropReason::IcmpNoFlow,
        DropReason::SteerFull,
        DropReason::TtlExceeded,
        DropReason::NoRoute,
        DropReason::BackendDown,
        DropReason::DrainForced,
        DropReason::NotOwner,
        DropReason::StaleFromKernel,
        DropReason::DnsMalformed,
        DropReason::NatMidflow,
        DropReason::MartianSource,
        DropReason::IcmpRateLimited,
        DropReason::AclDenied,
        DropReason::ServiceRateLimited,
        DropReason::SourceRateLimited,
        DropReason::SynProxyPending,
        DropReason::SynProxyUnsupported,
        DropReason::BadCookie,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::TruncatedEthernet => "truncated_ethernet",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::VlanMismatch => "vlan_mismatch",
            DropReason::MalformedArp => "malformed_arp",
            DropReason::ArpNotForUs => "arp_not_for_us",
            DropReason::TruncatedIpv4 => "truncated_ipv4",
            DropReason::BadIpv4Header => "bad_ipv4_header",
            DropReason::BadIpv4Length => "bad_ipv4_length",
            DropReason::BadIpv4Checksum => "bad_ipv4_checksum",
            DropReason::TruncatedL4 => "truncated_l4",
            DropReason::Fragment => "fragment",
            DropReason::BadIcmpChecksum => "bad_icmp_checksum",
            DropReason::IcmpNotHandled => "icmp_not_handled",
            DropReason::LocalNotHandled => "local_not_handled",
            DropReason::NotForUs => "not_for_us",
            DropReason::NoService => "no_service",
            DropReason::NoBackend => "no_backend",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::MultiSegment => "multi_segment",
            DropReason::TxFull => "tx_full",
            DropReason::NoFlow => "no_flow",
            DropReason::SnatExhausted => "snat_exhausted",
            DropReason::FragmentNoFlow => "fragment_no_flow",
            DropReason::IcmpNoFlow => "icmp_no_flow",
            DropReason::SteerFull => "steer_full",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::NoRoute => "no_route",
            DropReason::BackendDown => "backend_down",
            DropReason::DrainForced => "drain_forced",
            DropReason::NotOwner => "not_owner",
            DropReason::StaleFromKernel => "stale_from_kernel",
            DropReason::DnsMalformed => "dns_malformed",
            DropReason::NatMidflow => "nat_midflow",
            DropReason::MartianSource => "martian_source",
            DropReason::IcmpRateLimited => "icmp_rate_limited",
            DropReason::AclDenied => "acl_denied",
            DropReason::ServiceRateLimited => "service_rate_limited",
            DropReason::SourceRateLimited => "source_rate_limited",
            DropReason::SynProxyPending => "synproxy_pending",
            DropReason::SynProxyUnsupported => "synproxy_unsupported",
            DropReason::BadCookie => "bad_cookie",
        }
    }
}
