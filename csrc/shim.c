#include "shim.h"

int sy_errno(void) { return rte_errno; }

uint16_t sy_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t sy_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *sy_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

void sy_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

uint8_t *sy_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }

uint16_t sy_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }

uint16_t sy_mbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }

int sy_mbuf_rss_hash(const struct rte_mbuf *m, uint32_t *hash)
{
	if (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) {
		*hash = m->hash.rss;
		return 1;
	}
	return 0;
}

uint8_t *sy_mbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return (uint8_t *)rte_pktmbuf_append(m, len);
}

int sy_mbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }

uint16_t sy_mbuf_port(const struct rte_mbuf *m) { return m->port; }

unsigned sy_lcore_id(void) { return rte_lcore_id(); }

uint64_t sy_tsc(void) { return rte_get_tsc_cycles(); }

uint64_t sy_tsc_hz(void) { return rte_get_tsc_hz(); }

unsigned sy_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n)
{
	return rte_ring_enqueue_burst(r, objs, n, NULL);
}

unsigned sy_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}

unsigned sy_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

uint64_t sy_rss_hf_ipv4(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }

uint64_t sy_rx_offload_rss_hash(void) { return RTE_ETH_RX_OFFLOAD_RSS_HASH; }
