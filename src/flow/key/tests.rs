use std::net::Ipv4Addr;

use super::*;

#[test]
fn hash_is_a_fixed_function() {
    // The values are part of the cross-instance contract (changing them remaps flows), and
    // perf/gen.py's flow_hash gives the same ones.
    let k = |port| {
        FlowKey::new(
            Ipv4Addr::new(10, 20, 9, 2),
            Ipv4Addr::new(10, 20, 0, 100),
            port,
            80,
            6,
        )
    };
    assert_eq!(k(40000).hash(), 0x4a07_c1bf_276a_f4b0);
    assert_eq!(k(40001).hash(), 0x8aa8_8c3c_357d_cae5);
    // A zero factor in the first product (a = its constant) still leaves the ports in.
    let zero = FlowKey {
        src: 0x9e37_79b9,
        dst: 0x7f4a_7c15,
        ..k(1)
    };
    let ports: std::collections::HashSet<u64> = (1..=1000)
        .map(|p| {
            FlowKey {
                src_port: p,
                ..zero
            }
            .hash()
        })
        .collect();
    assert_eq!(ports.len(), 1000);
    assert_ne!(
        k(40000).hash(),
        FlowKey {
            src: 0x0a00_0001,
            dst: 0x0a14_0064,
            src_port: 1025,
            dst_port: 80,
            proto: 6
        }
        .hash()
    );
}
