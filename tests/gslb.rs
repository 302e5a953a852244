//! GSLB across two sites, end to end (tests/lab/gslb.sh): a Switchyard node per site with its
//! HTTP and greeting servers, clients in two regions resolving through unbound, which follows
//! knot's real NS delegation of gslb.lab.test to the sites' DNS addresses. The sites run the
//! shipped conf/gslb-site{1,2}.toml. Needs root; one lab at a time.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bin;
use common::lab::{LAB_LOCK, ctl_in, repo};
use common::pair::wait_until;
use common::script_lab::ScriptLab;
use serde_json::Value;

const SITE1_WEB: &str = "10.41.0.100";
const SITE2_WEB: &str = "10.42.0.100";
const SITE2_GREET: &str = "10.42.0.110";
/// Site 2's SNAT ("proxy") address: the source of its IP proxy to site 1.
const SITE2_PROXY: &str = "10.42.0.50";

type Lab = ScriptLab;

/// What the two-site lab adds to a script lab: its servers, their logs, its clients.
trait SitesLab {
    fn stop(&self, servers: &[&str]);
    fn start(&self, servers: &[&str]);
    fn log(&self, name: &str) -> String;
    fn resolve(&self, client: &str, name: &str) -> (String, Vec<String>);
    fn curl(&self, client: &str, args: &[&str]) -> String;
}

impl SitesLab for ScriptLab {
    fn stop(&self, servers: &[&str]) {
        for s in servers {
            assert!(self.script(&["stop", s]).status.success());
        }
    }

    fn start(&self, servers: &[&str]) {
        for s in servers {
            let o = self.script(&["start", s]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logdir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The A records a client gets through its resolver (unbound), one query.
    fn resolve(&self, client: &str, name: &str) -> (String, Vec<String>) {
        let o = self.exec(client, &["dig", "+time=3", "+tries=1", name, "A"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let status = text
            .split("status: ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .unwrap_or("no answer")
            .to_string();
        let mut addrs: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 5 && f[3] == "A").then(|| f[4].to_string())
            })
            .collect();
        addrs.sort();
        (status, addrs)
    }

    fn curl(&self, client: &str, args: &[&str]) -> String {
        let mut a = vec!["curl", "-s", "-m", "5"];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&self.exec(client, &a).stdout).into_owned()
    }
}

/// A site's Switchyard, stopped on drop.
struct Site {
    n: u32,
    ns: String,
    config: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Site {
    fn start(lab: &Lab, n: u32) -> Site {
        let text = std::fs::read_to_string(repo(&format!("conf/gslb-site{n}.toml")))
            .unwrap()
            .replace(
                &format!("iface=gs-p{n}"),
                &format!("iface={}-p{n}", lab.prefix),
            )
            .replace(
                &format!("switchyard-gslb-{n}"),
                &format!("{}-gslb-{n}-{}", lab.prefix, std::process::id()),
            );
        let config = lab.logdir.join(format!("site{n}.toml"));
        std::fs::write(&config, text).unwrap();
        let log = lab.logdir.join(format!("site{n}.out"));
        let ns = lab.ns(&format!("n{n}"));
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, bin(), "run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("switchyard");
        let s = Site {
            n,
            ns,
            config,
            log,
            child,
        };
        assert!(
            wait_until(Duration::from_secs(20), || s.gslb().is_some()),
            "site {n}: API never answered\n{}",
            s.logs()
        );
        s
    }

    fn ctl(&self, args: &[&str]) -> Option<Value> {
        serde_json::from_slice(&ctl_in(&self.ns, &self.config, args).stdout).ok()
    }

    fn gslb(&self) -> Option<Value> {
        self.ctl(&["gslb"])
    }

    fn status(&self) -> Value {
        self.ctl(&["status"]).unwrap_or(Value::Null)
    }

    /// This site's view of the peer's web service: (up, transitions).
    fn peer_web(&self) -> (bool, u64) {
        let v = self.gslb().unwrap_or(Value::Null);
        let s = &v["sites"][0]["services"]["web"];
        (
            s["up"] == Value::Bool(true),
            s["transitions"].as_u64().unwrap_or(0),
        )
    }

    fn logs(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = t.lines().rev().take(40).collect();
        format!(
            "--- site {} (last 40 lines)\n{}",
            self.n,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// SIGINT and the exit status.
    fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session with a greeting server through `vip`: the greeting's server name.
fn greet(lab: &Lab, client: &str, vip: &str) -> String {
    let script = format!(
        "import socket\ns=socket.create_connection(('{vip}',110),3)\nf=s.makefile('rwb')\n\
         g=f.readline().decode()\nf.write(b'HELLO\\r\\n');f.flush()\ne=f.readline().decode()\n\
         f.write(b'QUIT\\r\\n');f.flush();f.readline()\nprint(g.split()[1] if 'HELLO' in e else 'bad')"
    );
    let o = lab.exec(client, &["python3", "-c", &script]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// How long until `f` holds, polled every 100 ms (None: not within `limit`).
fn time_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    wait_until(limit, &mut f).then(|| t.elapsed())
}

#[test]
fn two_sites_answer_by_policy_fail_over_redirect_and_proxy() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("gslb.sh", &format!("gs{}", std::process::id() % 1000));
    let s1 = Site::start(&lab, 1);
    let s2 = Site::start(&lab, 2);
    let logs = || format!("{}\n{}", s1.logs(), s2.logs());
    // Each site sees the other's web service up (rise polls).
    assert!(
        wait_until(Duration::from_secs(10), || s1.peer_web().0
            && s2.peer_web().0),
        "peers never came up: {:?}\n{}",
        (s1.gslb(), s2.gslb()),
        logs()
    );
    // The resolvers reach both sites' DNS through the delegation.
    assert!(
        wait_until(Duration::from_secs(15), || {
            lab.resolve("ca", "site2.gslb.lab.test").1 == [SITE2_WEB]
                && lab.resolve("cb", "site1.gslb.lab.test").1 == [SITE1_WEB]
        }),
        "resolution through unbound never worked\n{}",
        logs()
    );

    // --- weighted: 3 : 1 over both sites, through unbound (TTL 0: every query reaches a site;
    // each site's wheel gives exactly 3 : 1 over every 4 of its turns).
    let mut n1 = 0;
    let n = 80;
    for _ in 0..n {
        let (st, a) = lab.resolve("ca", "www.gslb.lab.test");
        assert_eq!(st, "NOERROR");
        assert_eq!(a.len(), 1, "{a:?}");
        if a[0] == SITE1_WEB {
            n1 += 1;
        } else {
            assert_eq!(a[0], SITE2_WEB);
        }
    }
    eprintln!("weighted: {n1}/{n} answers site 1 (weights 3 : 1)");
    assert!(
        (54..=66).contains(&n1),
        "weighted 3:1 gave {n1}/{n} to site 1"
    );
    // And the clients get there: a real curl by name reaches a server of the answered site.
    let body = lab.curl("ca", &["http://www.gslb.lab.test/"]);
    assert!(body.starts_with("backend w"), "curl by name: {body:?}");

    // --- region: each client's resolver is in a region; its site answers, with the TTL set.
    assert_eq!(lab.resolve("ca", "near.gslb.lab.test").1, [SITE1_WEB]);
    assert_eq!(lab.resolve("cb", "near.gslb.lab.test").1, [SITE2_WEB]);
    assert!(
        lab.curl("cb", &["http://near.gslb.lab.test/"])
            .starts_with("backend w2")
    );
    let o = lab.exec(
        "cb",
        &["dig", "+norec", "@10.41.0.53", "near.gslb.lab.test"],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("near.gslb.lab.test.\t5\tIN\tA"),
        "TTL 5 as configured:\n{text}"
    );

    // --- site 2's servers stop: its answers leave within health fall + poll fall x interval
    // + TTL (0), and site 1's view of site 2 changes once.
    let before = s1.peer_web().1;
    lab.stop(&["w21", "w22", "g2"]);
    // Asked directly, each site's every answer over two turns of its wheel is site 1's.
    let only_site1 = |dns: &str| {
        (0..8).all(|_| {
            let o = lab.exec(
                "ca",
                &[
                    "dig",
                    "+short",
                    "+norec",
                    "+time=1",
                    dns,
                    "www.gslb.lab.test",
                ],
            );
            String::from_utf8_lossy(&o.stdout).trim() == SITE1_WEB
        })
    };
    let took = time_until(Duration::from_secs(15), || {
        only_site1("@10.41.0.53") && only_site1("@10.42.0.53")
    });
    // health: 2 x 500 ms; polls: 3 x 500 ms; a poll in flight and the checks' timeouts.
    let bound = Duration::from_millis(2 * 500 + 3 * 500 + 500 + 400 + 1000);
    eprintln!("answers left site 2 after {took:?} (bound {bound:?})");
    assert!(
        took.is_some_and(|t| t <= bound),
        "answers still name site 2 after {took:?}\n{}",
        logs()
    );
    assert!(wait_until(Duration::from_secs(5), || s1.peer_web()
        == (false, before + 1)));
    // And the clients' resolvers say so.
    for _ in 0..10 {
        assert_eq!(lab.resolve("ca", "www.gslb.lab.test").1, [SITE1_WEB]);
    }

    // A client still sent to site 2: HTTP is redirected to site 1 with the path kept, and
    // `curl -L` completes there.
    let head = lab.curl("cb", &["-i", "http://10.42.0.100/?from=site2"]);
    assert!(head.starts_with("HTTP/1.1 302"), "{head}");
    assert!(
        head.contains("Location: http://site1.gslb.lab.test/?from=site2"),
        "{head}"
    );
    let body = lab.curl("cb", &["-L", "http://10.42.0.100/?from=site2"]);
    assert!(body.starts_with("backend w1"), "curl -L: {body:?}");
    let redirects = s2.gslb().unwrap()["redirects"]["sent"]
        .as_u64()
        .unwrap_or(0);
    assert!(redirects >= 2, "redirects counted: {redirects}");
    // The greeting service works through site 2's VIP by IP proxy: site 1's server sees site
    // 2's proxy address.
    assert!(
        wait_until(Duration::from_secs(5), || greet(&lab, "cb", SITE2_GREET)
            == "g1"),
        "greet through site 2 did not reach g1\n{}",
        logs()
    );
    assert!(
        lab.log("g1")
            .lines()
            .any(|l| l.split(' ').nth(2) == Some(SITE2_PROXY)),
        "g1 never saw {SITE2_PROXY}: {}",
        lab.log("g1")
    );

    // --- site 2's servers come back: answers return, once, without flapping; new flows go
    // local again.
    lab.start(&["w21", "w22", "g2"]);
    assert!(
        wait_until(Duration::from_secs(15), || {
            (0..8).any(|_| lab.resolve("ca", "www.gslb.lab.test").1 == [SITE2_WEB])
        }),
        "answers never came back to site 2"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s1.peer_web(), (true, before + 2), "flapped:\n{}", logs());
    assert!(
        wait_until(Duration::from_secs(5), || greet(&lab, "cb", SITE2_GREET)
            == "g2"),
        "greet did not return to g2"
    );
    assert!(
        lab.curl("cb", &["http://10.42.0.100/"])
            .starts_with("backend w2")
    );

    // --- both sites' web down: www fails open (both VIPs), closed fails closed (SERVFAIL).
    lab.stop(&["w11", "w12", "w21", "w22"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            lab.resolve("ca", "www.gslb.lab.test").1 == [SITE1_WEB, SITE2_WEB]
        }),
        "fail-open answer never came\n{}",
        logs()
    );
    // Both sites (each site's view of the other lags by the polls' fall).
    let fail_closed = || {
        (0..4).all(|_| {
            lab.resolve("ca", "closed.gslb.lab.test").0 == "SERVFAIL"
                && lab.resolve("cb", "closed.gslb.lab.test").0 == "SERVFAIL"
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), fail_closed),
        "fail-closed answer never came\n{}",
        logs()
    );
    lab.start(&["w11", "w12", "w21", "w22"]);

    // --- DNS over the real path: TCP and EDNS, other types, unknown names, garbage.
    let dig = |args: &[&str]| {
        let mut a = vec!["dig", "+norec", "+time=2", "+tries=1", "@10.41.0.53"];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&lab.exec("ca", &a).stdout).into_owned()
    };
    let t = dig(&["+tcp", "site1.gslb.lab.test"]);
    assert!(
        t.contains("status: NOERROR") && t.contains(SITE1_WEB),
        "TCP:\n{t}"
    );
    let t = dig(&["+edns=0", "+bufsize=4096", "site1.gslb.lab.test"]);
    assert!(
        t.contains("udp: 1232") && t.contains(SITE1_WEB),
        "EDNS:\n{t}"
    );
    let t = dig(&["+noedns", "site1.gslb.lab.test"]);
    assert!(
        !t.contains("OPT PSEUDOSECTION") && t.contains(SITE1_WEB),
        "no EDNS:\n{t}"
    );
    let t = dig(&["site1.gslb.lab.test", "AAAA"]);
    assert!(
        t.contains("status: NOERROR") && t.contains("ANSWER: 0") && t.contains("SOA"),
        "AAAA:\n{t}"
    );
    let t = dig(&["nope.gslb.lab.test"]);
    assert!(t.contains("status: NXDOMAIN"), "in-zone unknown:\n{t}");
    let t = dig(&["www.example.org"]);
    assert!(t.contains("status: REFUSED"), "out of zone:\n{t}");
    let t = dig(&["+edns=1", "site1.gslb.lab.test"]);
    assert!(
        t.contains("BADVERS") || t.contains("BADSIG"),
        "EDNS version 1:\n{t}"
    );
    let drops_before = s1.status()["counters"]["drop_dns_malformed"]
        .as_u64()
        .unwrap_or(0);
    let junk = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                for b in [b'\\x00', b'\\xff'*40, b'\\x12\\x34\\x81\\x00'+b'\\x00'*8]:\n    s.sendto(b,('10.41.0.53',53))";
    lab.exec("ca", &["python3", "-c", junk]);
    assert!(
        wait_until(Duration::from_secs(3), || {
            s1.status()["counters"]["drop_dns_malformed"]
                .as_u64()
                .unwrap_or(0)
                >= drops_before + 3
        }),
        "malformed queries not counted: {}",
        s1.status()["counters"]
    );
    // The site still answers.
    assert!(dig(&["site1.gslb.lab.test"]).contains(SITE1_WEB));
    let m = s1.ctl(&["gslb"]).unwrap();
    assert!(
        m["names"][0]["queries_workers"].as_u64().unwrap_or(0) >= 40,
        "{m}"
    );
    // Per-name counters and peer state in the metrics (site 2's web is back up).
    let metrics = || {
        String::from_utf8_lossy(
            &lab.exec(
                "n1",
                &["curl", "-s", "-m", "2", "http://127.0.0.1:9100/metrics"],
            )
            .stdout,
        )
        .into_owned()
    };
    assert!(
        wait_until(Duration::from_secs(10), || metrics().contains(
            "switchyard_gslb_peer_up{site=\"site2\",service=\"web\"} 1"
        )),
        "peer state not in the metrics:\n{}",
        metrics()
    );
    assert!(
        metrics()
            .contains("switchyard_gslb_queries_total{name=\"www.gslb.lab.test\",path=\"worker\"}"),
        "metrics lack the per-name counters"
    );

    // The API of a peer is not open to anyone: a poll without the key is refused.
    let o = lab.curl(
        "ca",
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://10.41.0.10:9200/gslb?nonce=00112233445566778899aabbccddeeff",
        ],
    );
    assert_eq!(o, "401", "unsigned poll");

    assert!(s2.stop(), "site 2 did not exit 0 on SIGINT");
    assert!(s1.stop(), "site 1 did not exit 0 on SIGINT");
}
