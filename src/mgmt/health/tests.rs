use super::*;

#[test]
fn dns_query_and_answer_checks() {
    let q = dns_query(0x1234, "who.lab.test");
    assert_eq!(&q[..2], &[0x12, 0x34]);
    assert_eq!(q.len(), 12 + 14 + 4);
    let mut r = q.clone();
    r[2] |= 0x80;
    assert!(matches!(
        dns_check(0x1234, &r),
        Err(ProbeError::DnsNoAnswer)
    ));
    r[7] = 1;
    assert!(dns_check(0x1234, &r).is_ok());
    assert!(matches!(dns_check(0x4321, &r), Err(ProbeError::DnsNotOurs)));
    r[3] = 3;
    assert!(matches!(
        dns_check(0x1234, &r),
        Err(ProbeError::DnsRcode(3))
    ));
}

#[test]
fn tcp_and_http_probes_against_a_local_server() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(3) {
            let mut s = s.unwrap();
            let mut b = [0u8; 512];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nall good\n");
        }
    });
    let mut p = Probe {
        kind: HealthKind::Http,
        target: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        via: None,
        source: None,
        path: "/healthz".into(),
        expect_status: 200,
        expect_body: Some("good".into()),
        query: String::new(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
    };
    assert!(probe(&p).is_ok());
    p.expect_body = Some("bad".into());
    assert!(matches!(probe(&p), Err(ProbeError::BodyLacks(b)) if b == "bad"));
    p.kind = HealthKind::Tcp;
    assert!(probe(&p).is_ok());
    p.target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
    let e = probe(&p).unwrap_err();
    assert!(
        matches!(&e, ProbeError::Io { step, .. } if step.starts_with("connect")),
        "{e}"
    );
}
