//! Start-up and shutdown: EAL, mempool, ports, snapshot, workers on their lcores, the
//! management loop on the main lcore, and the orderly teardown after a stop signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::channel::{SyncLink, WorkerLink};
use crate::config::Config;
use crate::datapath::{Datapath, WorkerInfo};
use crate::dpdk::{DpdkError, Eal, LcoreId, MbufRing, Mempool, Port, QueueId};
use crate::lb::sched::BackendLoad;
use crate::lb::{BackendRuntime, BuildError, IdRegistry, Snapshot};
use crate::mgmt::api::ApiError;
use crate::mgmt::kernel::KernelError;
use crate::mgmt::{self, Mgmt, MgmtOptions, api};
use crate::stats::WorkerStats;
use crate::worker::Worker;

/// Why the balancer did not start (or could not write its final counters).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("signal: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
    #[error("interface {iface:?}: {source}")]
    Port { iface: String, source: DpdkError },
    #[error("interface {iface:?} exception path: {source}")]
    Tap { iface: String, source: DpdkError },
    #[error("exception path: {0}")]
    ExceptionPath(#[from] KernelError),
    #[error("configuration: {0}")]
    Config(#[from] BuildError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("writing {}: {source}", path.display())]
    StatsJson {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    // JSON lines are for a collector (a container's log driver reads stdout), text for a
    // person at a terminal. `run` prints nothing else on stdout.
    if cfg.log.json {
        b.json().with_writer(std::io::stdout).init();
    } else {
        // Colours only for a terminal, not for a file or a container's log.
        use std::io::IsTerminal;
        b.with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
}

/// EAL arguments: the configured ones plus the lcore layout from `[cores]` (lcore 0 = the
/// management core, lcore i+1 = worker i), which is why `eal_args` may not set lcores itself.
fn eal_args(cfg: &Config) -> Vec<String> {
    let mut lcores = vec![format!("0@{}", cfg.cores.management)];
    for (i, c) in cfg.cores.workers.iter().enumerate() {
        lcores.push(format!("{}@{}", i + 1, c));
    }
    let mut a = vec![
        "--lcores".to_string(),
        lcores.join(","),
        "--main-lcore".into(),
        "0".into(),
    ];
    a.extend(cfg.dpdk.eal_args.iter().cloned());
    // Hugepage files are unlinked as soon as they are mapped: whatever the exit (a clean
    // stop, kill -9), the kernel frees the pages with the process and nothing is left in
    // hugetlbfs. (No secondary process ever attaches to ours.)
    let given = |f: &str| cfg.dpdk.eal_args.iter().any(|x| x.starts_with(f));
    if !given("--no-huge") && !given("--in-memory") && !given("--huge-unlink") {
        a.push("--huge-unlink".into());
    }
    // One tap port per interface with an exception path.
    for (i, ifc) in cfg.interfaces.iter().enumerate() {
        if ifc.exception_path {
            a.push(format!("--vdev=net_tap_sy{i},iface={}", ifc.kernel_iface()));
        }
    }
    a
}

pub fn run(
    cfg: &Config,
    config_path: Option<PathBuf>,
    stats_json: Option<PathBuf>,
    stop_after_idle: Option<Duration>,
) -> Result<(), StartError> {
    // A signal asks management to stop (`term`); management sets `stop`, which the workers
    // follow (with `[bgp]` after withdrawing the VIPs and a grace).
    let stop = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).map_err(StartError::Signal)?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(StartError::Signal)?;
    let eal = Eal::init(&eal_args(cfg))?;
    let n_workers = cfg.cores.workers.len() as u16;
    let pool = Arc::new(Mempool::new(
        "sy_pkts",
        cfg.dpdk.mbufs,
        cfg.dpdk.mbuf_cache,
    )?);
    let mut ports = Vec::new();
    for ifc in &cfg.interfaces {
        let port = Port::open(
            &ifc.port,
            n_workers,
            &pool,
            cfg.dpdk.rx_descriptors,
            cfg.dpdk.tx_descriptors,
            ifc.mac.map(|m| m.0),
        )
        .map_err(|source| StartError::Port {
            iface: ifc.name.clone(),
            source,
        })?;
        let link = port.link();
        tracing::info!(
            interface = %ifc.name, port = %port.name, id = port.id.0, mac = %port.mac,
            queues = port.queues, rss = port.rss, link_up = link.up, speed = link.speed_mbps,
            "port started"
        );
        ports.push(port);
    }
    let macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac.0).collect();
    // Exception path: a tap port per interface, with the interface's MAC so the kernel
    // accepts frames for it and sends with it.
    let mut taps: Vec<Option<(Port, Option<u16>)>> = Vec::new();
    for (i, ifc) in cfg.interfaces.iter().enumerate() {
        if !ifc.exception_path {
            taps.push(None);
            continue;
        }
        let t = Port::open(
            &format!("net_tap_sy{i}"),
            n_workers,
            &pool,
            cfg.dpdk.rx_descriptors,
            cfg.dpdk.tx_descriptors,
            Some(macs[i]),
        )
        .map_err(|source| StartError::Tap {
            iface: ifc.name.clone(),
            source,
        })?;
        taps.push(Some((t, ifc.vlan)));
    }

    let kifs = mgmt::kernel::plan(cfg);
    if let Err(e) = mgmt::kernel::setup(cfg, &kifs) {
        mgmt::kernel::teardown(&kifs);
        return Err(e.into());
    }
    let mut ids = IdRegistry::default();
    // An HA node starts owning no floating address: keepalived hands them over.
    let owned = cfg.ha.as_ref().map(|_| std::collections::HashSet::new());
    let snap = match Snapshot::build_with(
        cfg,
        &macs,
        None,
        &mut ids,
        &|_| BackendRuntime::default(),
        owned.as_ref(),
    ) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            mgmt::kernel::teardown(&kifs);
            return Err(e.into());
        }
    };
    let mut links = Vec::new();
    for _ in 0..usize::from(n_workers) {
        links.push(WorkerLink {
            control: Arc::new(ArrayQueue::new(4096)),
            events: Arc::new(ArrayQueue::new(4096)),
            retired: Arc::new(ArrayQueue::new(16)),
            stats: Arc::new(WorkerStats::default()),
            flows: Arc::new(ArrayQueue::new(4)),
            sync: cfg.ha.as_ref().map(|_| SyncLink::new(64)),
        });
    }
    let tsc_hz = eal.tsc_hz();
    let workers = usize::from(n_workers);
    let load = Arc::new(BackendLoad::new(workers));
    // rings[i][j]: worker i hands worker j the packets of conns j owns (SPSC).
    let mut rings: Vec<Vec<Option<Arc<MbufRing>>>> = Vec::new();
    for i in 0..workers {
        let mut row = Vec::new();
        for j in 0..workers {
            row.push(if i == j {
                None
            } else {
                Some(Arc::new(MbufRing::new(&format!("sy_steer_{i}_{j}"), 4096)?))
            });
        }
        rings.push(row);
    }
    let mut mgmt = Mgmt::new(cfg.clone(), macs, ids, snap.clone(), links, load.clone());
    // Seed before start so the first packets already see static neighbours, and the
    // gratuitous ARPs are the first frames worker 0 sends.
    mgmt.seed_workers();
    mgmt.set_kernel_ifaces(kifs.clone());
    let port_ids: Vec<(String, crate::dpdk::PortId)> = cfg
        .interfaces
        .iter()
        .zip(&ports)
        .map(|(i, p)| (i.name.clone(), p.id))
        .collect();
    let loss_ids = port_ids.clone();
    mgmt.set_link_state(Box::new(move || {
        port_ids
            .iter()
            .map(|(n, id)| (n.clone(), crate::dpdk::link_of(*id).up))
            .collect()
    }));
    mgmt.set_rx_losses(Box::new(move || {
        loss_ids
            .iter()
            .map(|(n, id)| {
                let l = crate::dpdk::rx_losses_of(*id);
                (n.clone(), [l.missed, l.errors, l.no_mbuf])
            })
            .collect()
    }));
    for (w, link) in mgmt.links().iter().enumerate() {
        let me = WorkerInfo {
            index: w,
            count: workers,
            flow_capacity: cfg.flows.capacity_per_core as usize,
            persist_capacity: cfg.flows.persistence_capacity_per_core as usize,
        };
        let mut dp = Datapath::new(snap.clone(), me, link.events.clone(), load.clone());
        if let (Some(s), Some(h)) = (&link.sync, &cfg.ha) {
            dp.enable_sync(
                s.clone(),
                h.batch_interval_ms,
                h.refresh_s.saturating_mul(1000),
            );
        }
        let mib = dp.flows.memory_bytes() >> 20;
        tracing::info!(
            worker = w,
            conns = dp.flows.capacity(),
            mib,
            // Of its mapping, which the kernel may have merged with a neighbour: at most all.
            huge_page_mib = dp
                .flows
                .huge_pages_kb()
                .map(|k| ((k >> 10) as usize).min(mib)),
            "conn table allocated"
        );
        let worker = Worker {
            index: w,
            ports: ports.iter().map(|p| p.id).collect(),
            queue: QueueId(w as u16),
            dp,
            control: link.control.clone(),
            retired: link.retired.clone(),
            stats: link.stats.clone(),
            stop: stop.clone(),
            pool: pool.clone(),
            idle_sleep: Duration::from_micros(u64::from(cfg.cores.idle_sleep_us)),
            tsc_hz,
            steer_out: rings[w].clone(),
            steer_in: (0..workers)
                .filter(|&i| i != w)
                .filter_map(|i| rings[i][w].clone())
                .collect(),
            flows_out: link.flows.clone(),
            taps: taps
                .iter()
                .map(|t| t.as_ref().map(|(p, v)| (p.id, *v)))
                .collect(),
        };
        if let Err(e) = eal.launch(LcoreId(w as u32 + 1), move || worker.run()) {
            stop.store(true, Ordering::Relaxed);
            eal.wait_all();
            mgmt::kernel::teardown(&kifs);
            return Err(e.into());
        }
    }
    tracing::info!(
        workers = n_workers,
        services = snap.services.len(),
        "switchyard running"
    );
    let opts = MgmtOptions {
        stop_after_idle,
        stats_interval: (cfg.log.stats_interval_s > 0)
            .then(|| Duration::from_secs(u64::from(cfg.log.stats_interval_s))),
        config_path,
        hup,
        term,
    };
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let api = if let Some(addr) = cfg.api.listen {
        // Validation read the token already; a file that changed since is an error here.
        let token = cfg.api.token().unwrap_or_else(|e| {
            tracing::error!("api token: {e}; every change refused");
            Some(String::from("\u{0}unreadable"))
        });
        match api::serve(addr, cmd_tx, token) {
            Ok(a) => {
                tracing::info!(listen = %addr, "management API listening");
                Some(a)
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                eal.wait_all();
                mgmt::kernel::teardown(&kifs);
                return Err(e.into());
            }
        }
    } else {
        None
    };
    if taps.iter().any(Option::is_some) && crate::dpdk::prime_tap_rx() == 0 {
        tracing::warn!("no net_tap rx trigger signal found: empty tap polls cost a system call");
    }
    mgmt.run(&stop, &opts, api.as_ref().map(|_| cmd_rx));
    drop(api);
    eal.wait_all();
    mgmt::kernel::teardown(&kifs);
    for p in &mut ports {
        p.stop();
    }
    for p in &ports {
        let xs: Vec<String> = p
            .xstats()
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        tracing::info!(port = %p.name, xstats = %xs.join(" "), "port statistics");
    }
    let (sum, per) = mgmt::totals(mgmt.links());
    tracing::info!(counters = %sum.to_json(), "final counters");
    if let Err(e) = sum.check_invariants() {
        tracing::warn!("counter invariant violated: {e}");
    }
    if let Some(path) = stats_json {
        let doc = serde_json::json!({
            "total": sum.to_json(),
            "workers": per.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).expect("json"))
            .map_err(|source| StartError::StatsJson { path, source })?;
    }
    // Drop order matters: rings (which free what they hold) and ports before the pool,
    // everything before EAL cleanup.
    drop(rings);
    drop(mgmt);
    drop(taps);
    drop(ports);
    match Arc::try_unwrap(pool) {
        Ok(p) => drop(p),
        Err(_) => tracing::warn!("mempool still referenced at exit"),
    }
    drop(eal);
    tracing::info!("switchyard stopped");
    Ok(())
}
