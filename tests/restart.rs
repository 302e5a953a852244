//! Restarts leave nothing behind: hugepages come back to the system after a clean stop and
//! after kill -9 (EAL's files are unlinked as soon as they are mapped), and a node killed
//! with -9 starts again at once. Needs root and a few free 2 MiB hugepages (reserved here
//! when the machine has none free, with hugetlbfs mounted where it is not; both put back).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bin;
use switchyard::testkit;

fn free_hugepages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Where 2 MiB hugetlbfs is mounted, if anywhere (a fresh machine without systemd has none).
fn hugetlbfs_mount() -> Option<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[2] == "hugetlbfs" && !f[3].contains("pagesize=1G"))
        .map(|f| f[1].to_string())
}

/// What the test changed on the machine, put back on drop (also when it fails): the pool
/// size it raised, the hugetlbfs mount it made.
struct Machine {
    pool_was: Option<u64>,
    mounted: Option<String>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(m) = &self.mounted {
            let _ = Command::new("umount").arg(m).status();
        }
        if let Some(n) = self.pool_was {
            let _ = std::fs::write("/proc/sys/vm/nr_hugepages", n.to_string());
        }
    }
}

fn our_files(prefix: &str) -> usize {
    std::fs::read_dir(hugetlbfs_mount().unwrap_or_else(|| "/dev/hugepages".into()))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

/// Waits until `f` holds (true) or `limit` passes (false).
fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn hugepages_come_back_after_a_clean_stop_and_after_kill_9() {
    common::lab::assert_root();
    const NEED: u64 = 96; // 64 for EAL's -m 128, and room
    let nr_path = "/proc/sys/vm/nr_hugepages";
    let reserved: u64 = std::fs::read_to_string(nr_path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut machine = Machine {
        pool_was: None,
        mounted: None,
    };
    if free_hugepages() < NEED {
        machine.pool_was = Some(reserved);
        std::fs::write(nr_path, (reserved + NEED).to_string()).unwrap();
    }
    if hugetlbfs_mount().is_none() {
        let _ = std::fs::create_dir_all("/dev/hugepages");
        let ok = Command::new("mount")
            .args(["-t", "hugetlbfs", "nodev", "/dev/hugepages"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not mount hugetlbfs on /dev/hugepages");
        machine.mounted = Some("/dev/hugepages".into());
    }
    assert!(
        free_hugepages() >= NEED,
        "could not reserve {NEED} hugepages"
    );
    let prefix = format!("sy-restart-{}", std::process::id());
    let mut cfg = testkit::base();
    cfg.dpdk.eal_args = vec![
        "-m".into(),
        "128".into(),
        "--no-pci".into(),
        "--file-prefix".into(),
        prefix.clone(),
        "--vdev=net_null0".into(),
    ];
    cfg.interfaces[0].port = "net_null0".into();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    std::fs::write(&path, testkit::to_toml(&cfg)).unwrap();
    let before = free_hugepages();
    for kill9 in [false, true] {
        let t = Instant::now();
        let mut child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Running on hugepages, with no file of ours in hugetlbfs.
        assert!(
            until(Duration::from_secs(10), || free_hugepages() < before),
            "never took hugepages"
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            our_files(&prefix),
            0,
            "hugepage files left in hugetlbfs while running"
        );
        eprintln!("kill9={kill9}: on hugepages after {:?}", t.elapsed());
        if kill9 {
            child.kill().unwrap();
            child.wait().unwrap();
        } else {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            assert!(child.wait().unwrap().success(), "clean stop exits 0");
        }
        assert!(
            until(Duration::from_secs(5), || free_hugepages() == before),
            "hugepages not given back (kill9={kill9}): {} free, {before} before",
            free_hugepages()
        );
        assert_eq!(our_files(&prefix), 0);
    }
    drop(machine);
}
