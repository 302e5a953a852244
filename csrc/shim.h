/* Switchyard's C shim: DPDK keeps its hot-path functions `static inline` in headers, so
 * bindgen cannot link to them. Each wrapper here is a one-line exported function the Rust
 * side calls through FFI. Nothing else lives here: policy stays in Rust. */
#ifndef SWITCHYARD_SHIM_H
#define SWITCHYARD_SHIM_H
#include <stdint.h>
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>

int sy_errno(void);
uint16_t sy_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t sy_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *sy_pktmbuf_alloc(struct rte_mempool *mp);
void sy_pktmbuf_free(struct rte_mbuf *m);
uint8_t *sy_mbuf_data(struct rte_mbuf *m);
uint16_t sy_mbuf_data_len(const struct rte_mbuf *m);
uint16_t sy_mbuf_nb_segs(const struct rte_mbuf *m);
/* Returns 1 and stores the device's RSS hash when the PMD filled it in, else 0. */
int sy_mbuf_rss_hash(const struct rte_mbuf *m, uint32_t *hash);
/* Appends len bytes to a single-segment mbuf; NULL when the tailroom is too small. */
uint8_t *sy_mbuf_append(struct rte_mbuf *m, uint16_t len);
/* Removes len bytes from the end; 0 on success. */
int sy_mbuf_trim(struct rte_mbuf *m, uint16_t len);
/* The port the mbuf was received on. */
uint16_t sy_mbuf_port(const struct rte_mbuf *m);
unsigned sy_lcore_id(void);
uint64_t sy_tsc(void);
uint64_t sy_tsc_hz(void);
unsigned sy_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned sy_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned sy_ring_count(const struct rte_ring *r);
/* DPDK defines these with RTE_BIT64(), which bindgen cannot evaluate. */
uint64_t sy_rss_hf_ipv4(void);
uint64_t sy_rx_offload_rss_hash(void);
#endif
