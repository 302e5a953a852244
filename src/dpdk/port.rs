//! [`Port`]: an ethdev port configured with one rx and one tx queue per worker, started,
//! stopped and closed on drop; its link, MAC and extended statistics.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};

use super::*;

/// Link status.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
}

/// A configured and started ethdev port with `queues` rx and tx queues.
pub struct Port {
    pub id: PortId,
    pub name: String,
    pub mac: MacAddr,
    pub queues: u16,
    pub rss: bool,
    started: bool,
}

/// Lists the names of all probed ports.
pub fn port_names() -> Vec<String> {
    let mut v = Vec::new();
    for id in 0..ffi::RTE_MAX_ETHPORTS as u16 {
        // SAFETY: plain query.
        if unsafe { ffi::rte_eth_dev_is_valid_port(id) } == 0 {
            continue;
        }
        let mut buf = [0 as c_char; ffi::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes as the API requires.
        if unsafe { ffi::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) } == 0 {
            // SAFETY: DPDK NUL-terminates the name inside buf.
            v.push(
                unsafe { CStr::from_ptr(buf.as_ptr()) }
                    .to_string_lossy()
                    .into(),
            );
        }
    }
    v
}

/// The current link state of port `id` (no waiting; a port that is not open reads down).
pub fn link_of(id: PortId) -> Link {
    let mut l = ffi::rte_eth_link::default();
    // SAFETY: `l` is a writable struct of the right type; DPDK checks the port id and
    // leaves `l` zeroed (down) for one it does not know.
    unsafe { ffi::rte_eth_link_get_nowait(id.0, &mut l) };
    Link {
        up: l.link_status() != 0,
        speed_mbps: l.link_speed,
    }
}

/// A port's receive-side losses: frames the device dropped for want of room in the rx ring
/// (`imissed`: the workers did not keep up), receive errors, and mbuf allocation failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxLosses {
    pub missed: u64,
    pub errors: u64,
    pub no_mbuf: u64,
}

/// The receive-side losses of port `id` (zero for a port DPDK does not know).
pub fn rx_losses_of(id: PortId) -> RxLosses {
    let mut s = ffi::rte_eth_stats::default();
    // SAFETY: `s` is a writable struct of the right type; DPDK checks the port id and
    // returns an error (leaving `s` zeroed) for one it does not know.
    let rc = unsafe { ffi::rte_eth_stats_get(id.0, &mut s) };
    if rc != 0 {
        return RxLosses::default();
    }
    RxLosses {
        missed: s.imissed,
        errors: s.ierrors,
        no_mbuf: s.rx_nombuf,
    }
}

/// Makes DPDK's net_tap ports read their kernel side only when it has something for them.
///
/// net_tap reads its tap file descriptor (a `readv` system call per rx burst) until the first
/// trigger signal it gets from the kernel (a real-time signal it sets on the descriptor with
/// `F_SETSIG`, whose handler bumps a counter); after that, only when another signal says a
/// frame is waiting. An exception-path interface the kernel has not sent anything through
/// yet would cost a system call per poll round, for ever if the kernel never does (DPDK
/// 22.11's `pmd_rx_burst` only records a non-zero trigger). Raising each tap descriptor's
/// signal once, after the taps exist, ends that: the next burst reads, finds nothing, and
/// later ones wait for the kernel's signal. Returns how many signals it raised; a signal
/// without a handler is never raised (its default action could end the process).
pub fn prime_tap_rx() -> usize {
    use nix::libc;
    /// `F_GETSIG` of Linux's fcntl.h (the libc crate does not export it).
    const F_GETSIG: c_int = 11;
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut raised = Vec::new();
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<c_int>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path()).ok().as_deref()
            != Some(std::path::Path::new("/dev/net/tun"))
        {
            continue;
        }
        // SAFETY: F_GETSIG only reads a descriptor's signal setting; a descriptor closed
        // meanwhile makes it fail (-1), which is skipped.
        let sig = unsafe { libc::fcntl(fd, F_GETSIG) };
        if sig <= 0 || raised.contains(&sig) {
            continue;
        }
        // SAFETY: a zeroed sigaction is a valid out-parameter.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null `act` only queries the disposition into `old`, which outlives it.
        let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        if rc != 0 || old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: the signal has a handler (net_tap's, which only bumps its trigger).
        if unsafe { libc::raise(sig) } == 0 {
            raised.push(sig);
        }
    }
    raised.len()
}

impl Port {
    /// Finds the port by DPDK name (`net_af_packet0`, a PCI address), configures `queues` rx
    /// and tx queues (RSS when the device offers it and there is more than one queue), sets
    /// the MAC if asked, enables promiscuous mode and starts it.
    pub fn open(
        name: &str,
        queues: u16,
        pool: &Mempool,
        rx_desc: u16,
        tx_desc: u16,
        mac: Option<[u8; 6]>,
    ) -> Result<Port, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::NoSuchPort {
            name: name.into(),
            present: port_names().join(", "),
        })?;
        let mut id = 0u16;
        // SAFETY: valid C string and out-pointer.
        if unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) } != 0 {
            let present = port_names();
            return Err(DpdkError::NoSuchPort {
                name: name.into(),
                present: if present.is_empty() {
                    "none; check --vdev/-a in [dpdk] eal_args".into()
                } else {
                    present.join(", ")
                },
            });
        }
        let perr = |what: &'static str, rc: c_int| DpdkError::Port {
            name: name.into(),
            what,
            reason: errno_str(rc),
        };
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid port id and out-struct.
        let rc = unsafe { ffi::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(perr("dev_info_get", rc));
        }
        for (dir, max) in [("rx", info.max_rx_queues), ("tx", info.max_tx_queues)] {
            if max < queues {
                return Err(DpdkError::Queues {
                    name: name.into(),
                    dir,
                    max,
                    need: queues,
                });
            }
        }
        let mut conf = ffi::rte_eth_conf::default();
        // SAFETY: returns constants.
        let (want_hf, rss_hash_offload) =
            unsafe { (ffi::sy_rss_hf_ipv4(), ffi::sy_rx_offload_rss_hash()) };
        let hf = info.flow_type_rss_offloads & want_hf;
        let rss = queues > 1 && hf != 0;
        if rss {
            conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = hf;
        }
        if info.rx_offload_capa & rss_hash_offload != 0 {
            conf.rxmode.offloads |= rss_hash_offload;
        }
        // SAFETY: valid port id and fully initialised conf.
        let rc = unsafe { ffi::rte_eth_dev_configure(id, queues, queues, &conf) };
        if rc != 0 {
            return Err(perr("configure", rc));
        }
        // SAFETY: plain query.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..queues {
            // SAFETY: port configured with `queues` queues; NULL conf = driver defaults; the
            // pool outlives the port (drop order in main).
            let rc = unsafe {
                ffi::rte_eth_rx_queue_setup(
                    id,
                    q,
                    rx_desc,
                    socket,
                    std::ptr::null(),
                    pool.ptr.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(perr("rx_queue_setup", rc));
            }
            // SAFETY: as above.
            let rc =
                unsafe { ffi::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(perr("tx_queue_setup", rc));
            }
        }
        // Devices that cannot change their MAC (net_pcap, some VFs) still work with the
        // configured one: the port is promiscuous and the balancer writes its own source MAC.
        let mut soft_mac = None;
        if let Some(m) = mac {
            let mut a = ffi::rte_ether_addr { addr_bytes: m };
            // SAFETY: valid port and address struct.
            let rc = unsafe { ffi::rte_eth_dev_default_mac_addr_set(id, &mut a) };
            if rc == -(libc_enotsup()) {
                tracing::warn!(
                    port = name,
                    "device cannot set its MAC; using it in software only"
                );
                soft_mac = Some(m);
            } else if rc != 0 {
                return Err(perr("setting the MAC address", rc));
            }
        }
        // SAFETY: configured port.
        let rc = unsafe { ffi::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(perr("start", rc));
        }
        // Promiscuous mode: a one-arm balancer must see frames for VIP MACs it answers for;
        // some vdevs do not support it, which is harmless, so the result is only logged.
        // SAFETY: started port.
        let prc = unsafe { ffi::rte_eth_promiscuous_enable(id) };
        if prc != 0 {
            tracing::debug!(
                port = name,
                "promiscuous mode not supported: {}",
                errno_str(prc)
            );
        }
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: valid port and out-struct.
        let rc = unsafe { ffi::rte_eth_macaddr_get(id, &mut a) };
        if rc != 0 {
            return Err(perr("macaddr_get", rc));
        }
        Ok(Port {
            id: PortId(id),
            name: name.into(),
            mac: MacAddr(soft_mac.unwrap_or(a.addr_bytes)),
            queues,
            rss,
            started: true,
        })
    }

    pub fn link(&self) -> Link {
        link_of(self.id)
    }

    /// The device's extended statistics, name -> value.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a NULL array asks for the count.
        let n = unsafe { ffi::rte_eth_xstats_get_names(self.id.0, std::ptr::null_mut(), 0) };
        if n <= 0 {
            return Vec::new();
        }
        let n = n as usize;
        let mut names = vec![ffi::rte_eth_xstat_name::default(); n];
        let mut vals = vec![ffi::rte_eth_xstat::default(); n];
        // SAFETY: arrays have room for n entries.
        let got = unsafe {
            let a = ffi::rte_eth_xstats_get_names(self.id.0, names.as_mut_ptr(), n as u32);
            let b = ffi::rte_eth_xstats_get(self.id.0, vals.as_mut_ptr(), n as u32);
            a.min(b)
        };
        if got <= 0 {
            return Vec::new();
        }
        vals.iter()
            .take(got as usize)
            .filter_map(|v| {
                let nm = names.get(v.id as usize)?;
                // SAFETY: xstat names are NUL-terminated within their fixed array.
                let s = unsafe { CStr::from_ptr(nm.name.as_ptr()) };
                Some((s.to_string_lossy().into_owned(), v.value))
            })
            .collect()
    }

    /// Stops the port (rx/tx cease); called at shutdown after workers returned.
    pub fn stop(&mut self) {
        if self.started {
            // SAFETY: valid started port; workers no longer poll it.
            unsafe {
                ffi::rte_eth_dev_stop(self.id.0);
            }
            self.started = false;
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.stop();
        // SAFETY: stopped port, no queue in use.
        unsafe {
            ffi::rte_eth_dev_close(self.id.0);
        }
    }
}
