//! Which floating addresses are ours: the ones keepalived has put on our exception-path
//! kernel interfaces (its `virtual_ipaddress` list). Read with getifaddrs(3) (one netlink
//! dump) every management tick, so a change shows within 10 ms.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// The IPv4 addresses on the kernel interfaces named `ifaces` (empty when they cannot be
/// read: nothing is owned then).
pub fn kernel_addresses(ifaces: &[String]) -> HashSet<Ipv4Addr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return HashSet::new();
    };
    addrs
        .filter(|a| ifaces.contains(&a.interface_name))
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .collect()
}
