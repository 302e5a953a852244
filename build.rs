//! Finds the distribution's DPDK 22.11 through pkg-config, generates FFI bindings for the
//! slice of its API Switchyard uses (allowlisted, into OUT_DIR) and compiles the C shim that
//! exports DPDK's `static inline` hot-path functions.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=build.rs");

    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => panic!(
            "libdpdk >= 22.11 not found by pkg-config ({e}); install it with \
             `apt-get install libdpdk-dev dpdk` (see README)"
        ),
    };

    // `pkg-config --cflags` carries `-include rte_config.h` and `-march=...`: the shim and
    // bindgen both need them so that struct layouts and inline code match the libraries.
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("running pkg-config --cflags libdpdk");
    let cflags = String::from_utf8_lossy(&out.stdout).to_string();
    let mut extra: Vec<String> = Vec::new();
    let mut it = cflags.split_whitespace();
    while let Some(f) = it.next() {
        if f == "-include" {
            if let Some(h) = it.next() {
                extra.push("-include".to_string());
                extra.push(h.to_string());
            }
        } else if f.starts_with("-march") || f.starts_with("-I") {
            extra.push(f.to_string());
        }
    }
    let mut build = cc::Build::new();
    build.file("csrc/shim.c").opt_level(3).warnings(true);
    for p in &dpdk.include_paths {
        build.include(p);
    }
    for f in &extra {
        build.flag(f);
    }
    build.flag_if_supported("-Wno-unused-parameter");
    build.compile("switchyard_shim");

    let bindings = bindgen::Builder::default()
        .header("csrc/shim.h")
        .clang_args(&extra)
        .allowlist_function("sy_.*")
        .allowlist_function("rte_eal_(init|cleanup|remote_launch|wait_lcore|mp_wait_lcore)")
        .allowlist_function("rte_lcore_count|rte_socket_id|rte_strerror")
        .allowlist_function("rte_pktmbuf_pool_create|rte_mempool_free|rte_pktmbuf_free_bulk")
        .allowlist_function("rte_mempool_avail_count|rte_mempool_in_use_count")
        .allowlist_function("rte_ring_(create|free)")
        .allowlist_function(
            "rte_eth_(dev_configure|dev_start|dev_stop|dev_close|dev_info_get|\
             dev_get_port_by_name|dev_get_name_by_port|dev_is_valid_port|dev_socket_id|\
             rx_queue_setup|tx_queue_setup|promiscuous_enable|macaddr_get|\
             dev_default_mac_addr_set|link_get_nowait|stats_get|xstats_get|xstats_get_names|\
             dev_count_avail)",
        )
        .allowlist_type("rte_eth_conf|rte_eth_dev_info|rte_eth_link|rte_eth_stats")
        .allowlist_type("rte_eth_xstat|rte_eth_xstat_name|rte_ether_addr")
        .allowlist_var("RTE_ETH_.*|RTE_MAX_LCORE|RTE_MAX_ETHPORTS|RTE_MBUF_DEFAULT_BUF_SIZE|RING_F_.*|SOCKET_ID_ANY")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        // Packed structs that hold aligned ones trip rustc (E0588); keep them opaque.
        .opaque_type("rte_arp_hdr|rte_arp_ipv4|rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_mempool|rte_ring")
        .allowlist_type("rte_mbuf")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen failed on the DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("dpdk_bindings.rs"))
        .expect("writing bindings");
}
