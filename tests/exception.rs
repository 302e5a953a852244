//! The exception path exposes only what the operator asked for: a listener on the host's
//! side of the balancer's address is unreachable from the lab's client unless its port is in
//! `exception_allow`; ping, health checks and the balanced VIP work as before; the chain goes
//! with the balancer. Needs root; one lab at a time.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::lab::*;

/// A TCP listener in the root namespace on the balancer's own address (the kernel side of
/// its exception path), answering every connection with "hello".
fn listener(port: u16) -> Child {
    let script = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('10.20.0.10',{port}))\ns.listen(8)\nwhile True:\n  c,_=s.accept()\n  \
         c.sendall(b'hello')\n  c.close()"
    );
    Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3")
}

fn reach(lab: &Lab, port: u16) -> bool {
    let script = format!(
        "import socket\ntry:\n  s=socket.create_connection(('10.20.0.10',{port}),2)\n  \
         print(s.recv(9).decode())\nexcept OSError as e:\n  print('no', e)"
    );
    let o = lab.exec("client", &["python3", "-c", &script]);
    String::from_utf8_lossy(&o.stdout).trim() == "hello"
}

#[test]
fn only_asked_for_services_are_reachable_through_the_exception_path() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("x{}", std::process::id() % 10000), "dsr");
    // The lab's DSR config (the exception path is on by default) with one port allowed and a
    // route back to the client for the kernel's answers.
    let cfg = lab.config("lab-dsr.toml").replacen(
        "address = \"10.20.0.10/24\"",
        "address = \"10.20.0.10/24\"\nexception_allow = [\"tcp/18082\"]\n\n\
         [[routes]]\nprefix = \"10.20.9.0/24\"\nvia = \"10.20.0.1\"",
        1,
    );
    assert!(
        cfg.contains("exception_allow"),
        "the interface edit applied"
    );
    // And an API token.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "lab-token-0123456789\n").unwrap();
    let cfg = format!("{cfg}\n[api]\ntoken_file = \"{}\"\n", token_file.display());
    let mut lb = Balancer::start(&cfg);
    lab.wait_for_vip();
    let listeners = Children(vec![listener(18081), listener(18082)]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(reach(&lab, 18082), "an allowed port is reachable");
    assert!(!reach(&lab, 18081), "a port nobody allowed is not");
    // ICMP to our address is the kernel's, and allowed.
    let ping = lab.exec("client", &["ping", "-c", "1", "-W", "2", "10.20.0.10"]);
    assert!(ping.status.success(), "ping of the balancer's address");
    // The balanced VIP and the health checks (their replies come back to the kernel) work.
    assert!(lab.curl(None).is_some_and(|b| b.starts_with("backend")));
    api_needs_its_token_and_never_waits_for_a_body();
    let chain = Command::new("nft")
        .args(["list", "chain", "inet", "switchyard", "in_sy_lan"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&chain.stdout).into_owned();
    assert!(text.contains("tcp dport 18082 accept"), "{text}");
    assert!(
        !text.contains("counter packets 0 bytes 0 drop"),
        "drops counted: {text}"
    );
    drop(listeners);
    lb.finish();
    let after = Command::new("nft")
        .args(["list", "chain", "inet", "switchyard", "in_sy_lan"])
        .output()
        .unwrap();
    assert!(!after.status.success(), "the chain goes with the balancer");
}

/// The API (127.0.0.1:9100, with a token): changes need the token, reads on loopback do not;
/// a request with a body is refused, and a client that announces one and never sends it
/// holds nobody else up.
fn api_needs_its_token_and_never_waits_for_a_body() {
    use std::io::Write;
    let code = |args: &[&str]| {
        let o = Command::new("curl")
            .args(["-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(code(&["-X", "POST", "http://127.0.0.1:9100/reload"]), "401");
    assert_eq!(
        code(&[
            "-X",
            "POST",
            "-H",
            "Authorization: Bearer wrong-token-0123456",
            "http://127.0.0.1:9100/reload"
        ]),
        "401"
    );
    assert_eq!(code(&["http://127.0.0.1:9100/status"]), "200");
    let ctl = Command::new(common::bin())
        .args(["ctl", "--api", "127.0.0.1:9100", "reload"])
        .env("SWITCHYARD_API_TOKEN", "lab-token-0123456789")
        .output()
        .unwrap();
    assert!(
        ctl.status.success(),
        "ctl with the token: {}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    // A client that announces a body and never sends it.
    let mut slow = std::net::TcpStream::connect("127.0.0.1:9100").unwrap();
    slow.write_all(b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    let t = std::time::Instant::now();
    assert_eq!(code(&["http://127.0.0.1:9100/status"]), "200");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "status took {:?}",
        t.elapsed()
    );
    drop(slow);
    // A body, sent whole, is refused: no call takes one.
    assert_eq!(
        code(&["-X", "POST", "-d", "x=1", "http://127.0.0.1:9100/reload"]),
        "413"
    );
}
