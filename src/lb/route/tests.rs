use super::*;

#[test]
fn longest_prefix_wins() {
    let mut t = RouteTable::new();
    let on = |i| NextHop {
        iface: IfIdx(i),
        via: None,
    };
    t.add(Ipv4Addr::new(10, 20, 0, 0), 24, on(0));
    t.add(Ipv4Addr::new(10, 20, 2, 0), 24, on(1));
    t.add(
        Ipv4Addr::new(0, 0, 0, 0),
        0,
        NextHop {
            iface: IfIdx(0),
            via: Some(Ipv4Addr::new(10, 20, 0, 1)),
        },
    );
    t.add(
        Ipv4Addr::new(10, 20, 2, 128),
        25,
        NextHop {
            iface: IfIdx(1),
            via: Some(Ipv4Addr::new(10, 20, 2, 254)),
        },
    );
    assert_eq!(t.lookup(Ipv4Addr::new(10, 20, 0, 7)), Some(on(0)));
    assert_eq!(t.lookup(Ipv4Addr::new(10, 20, 2, 7)), Some(on(1)));
    let h = t.lookup(Ipv4Addr::new(10, 20, 2, 200)).unwrap();
    assert_eq!(h.via, Some(Ipv4Addr::new(10, 20, 2, 254)));
    let d = t.lookup(Ipv4Addr::new(10, 20, 9, 2)).unwrap();
    assert_eq!(
        d.l2_target(Ipv4Addr::new(10, 20, 9, 2)),
        Ipv4Addr::new(10, 20, 0, 1)
    );
    assert_eq!(t.len(), 4);
}

#[test]
fn no_default_route_means_unreachable() {
    let mut t = RouteTable::new();
    t.add(
        Ipv4Addr::new(10, 20, 0, 0),
        24,
        NextHop {
            iface: IfIdx(0),
            via: None,
        },
    );
    assert_eq!(t.lookup(Ipv4Addr::new(192, 0, 2, 1)), None);
}
