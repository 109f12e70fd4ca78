// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// tern's fast path: forwards an established plain RTP stream below the
// socket layer (DESIGN.md "The fast path").
//
// The worker that owns a slot installs one `tern_fwd` entry per direction,
// keyed by the receiving leg's local IPv4 address and RTP port, once the
// io_uring path has forwarded a packet of that direction and found it
// needs nothing beyond counting and rewriting. A packet that matches
// (latched source, RTP, a payload type the entry does not send up, the
// entry's input SSRC) is rewritten toward the other leg's peer (IP and UDP
// addresses and ports, TTL, TOS, and SSRC, sequence number and timestamp
// when the leg rewrites SSRCs) with incremental checksums (RFC 1624), and
// sent on by the kernel's FIB and neighbour tables. Everything else goes
// up unchanged to the worker's socket: STUN, DTLS, RTCP, other sources,
// other SSRCs, telephone-events, IPv6, IP options and fragments.
//
// The layouts below are mirrored by `fastpath/src/maps.rs`; change both.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef AF_INET
#define AF_INET 2
#endif

// Key: the receiving leg's local address and RTP port, network order.
struct fp_key {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

#define FP_FORWARD 1 // direction allows: forward (else drop as held)
#define FP_REWRITE 2 // rewrite SSRC, sequence number and timestamp

// One direction of a slot: 72 bytes. Addresses and ports in network order,
// SSRCs and deltas in host order.
struct fp_entry {
	__u32 src_addr;  // the latched source the leg accepts
	__u16 src_port;
	__u16 flags;     // FP_*
	__u32 out_saddr; // the other leg's local address and port
	__u32 out_daddr; // the other leg's peer
	__u16 out_sport;
	__u16 out_dport;
	__u32 in_ssrc;   // FP_REWRITE: the input SSRC mapped now
	__u32 out_ssrc;
	__u32 ts_delta;  // out_ts = in_ts + ts_delta
	__u16 seq_delta; // out_seq = in_seq + seq_delta
	__u8 tos;
	__u8 pad;
	__u32 stat;       // index into tern_stats
	__u32 newest_seq; // highest output sequence number sent (low 16 bits)
	__u32 newest_ts;  // its output timestamp
	__u64 up_pt[2];   // payload types sent up (bit n: PT n)
	__u32 out_ifindex; // interface toward the other leg's peer; 0: the ingress one
	__u32 pad2;
};

// Per CPU, per direction: what the fast path did.
struct fp_stats {
	__u64 packets; // forwarded
	__u64 bytes;   // their UDP payload bytes
	__u64 held;    // dropped: the direction forbids (hold)
	__u64 pad;
};

// Why a packet went up (index into tern_up).
enum fp_up {
	UP_NO_ENTRY = 0,
	UP_SOURCE = 1,
	UP_NOT_RTP = 2,
	UP_PAYLOAD_TYPE = 3,
	UP_SSRC = 4,
	UP_ROUTE = 5,
	UP_NOT_PLAIN = 6,
	UP_REASONS = 8,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct fp_key);
	__type(value, struct fp_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tern_fwd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_stats);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tern_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, UP_REASONS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tern_up SEC(".maps");

// What the workers have folded into the slot table so far, per tern_stats
// index (written only from userspace, so a restarted worker neither loses
// nor double-counts what the fast path forwarded meanwhile).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_stats);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tern_folded SEC(".maps");

#define HDRS (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define RTP_MIN 12
#define IP_OFF sizeof(struct ethhdr)
#define UDP_OFF (IP_OFF + sizeof(struct iphdr))
#define RTP_OFF HDRS
#define IP_CSUM_OFF (IP_OFF + __builtin_offsetof(struct iphdr, check))
#define UDP_CSUM_OFF (UDP_OFF + __builtin_offsetof(struct udphdr, check))
#define MEDIA_TTL 64

static __always_inline void count_up(enum fp_up r)
{
	__u32 k = r;
	__u64 *v = bpf_map_lookup_elem(&tern_up, &k);
	if (v)
		*v += 1;
}

// The decision on one packet, before anything is written.
struct fp_plan {
	struct fp_entry *e;
	struct bpf_fib_lookup fib;
	__u32 old_saddr, old_daddr;
	__u16 old_sport, old_dport;
	__u16 old_tos_word, old_ttl_word;
	__u16 new_tos_word, new_ttl_word;
	__u16 old_seq, new_seq;
	__u32 old_ts, new_ts;
	__u32 old_ssrc, new_ssrc;
	__u32 payload;
};

#define V_PASS 0
#define V_DROP 1
#define V_FWD 2

// Parses the packet in [data, data_end) and decides. `ctx` is the program's
// context, for the FIB lookup.
static __always_inline int plan(void *ctx, void *data, void *data_end, __u32 ifindex,
				int xdp, struct fp_plan *p)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *rtp = data + RTP_OFF;

	if ((void *)(rtp + RTP_MIN) > data_end)
		return V_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return V_PASS;
	if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return V_PASS;
	if (ip->frag_off & bpf_htons(0x3fff)) // MF or a fragment offset
		return V_PASS;

	struct fp_key key = { .addr = ip->daddr, .port = udp->dest, .pad = 0 };
	struct fp_entry *e = bpf_map_lookup_elem(&tern_fwd, &key);
	if (!e) {
		count_up(UP_NO_ENTRY);
		return V_PASS;
	}
	if (ip->saddr != e->src_addr || udp->source != e->src_port) {
		count_up(UP_SOURCE);
		return V_PASS;
	}
	// RTP version 2 only (RFC 7983: STUN, DTLS and the rest go up), and
	// not RTCP multiplexed on the port (RFC 5761 §4: PT 64-95 with the
	// marker bit taken as part of it).
	__u8 b0 = rtp[0], b1 = rtp[1];
	if ((b0 & 0xc0) != 0x80 || ((b1 & 0x7f) >= 64 && (b1 & 0x7f) <= 95)) {
		count_up(UP_NOT_RTP);
		return V_PASS;
	}
	__u8 pt = b1 & 0x7f;
	__u64 bits = pt < 64 ? e->up_pt[0] : e->up_pt[1];
	if ((bits >> (pt & 63)) & 1) {
		count_up(UP_PAYLOAD_TYPE);
		return V_PASS;
	}
	__u16 ulen = bpf_ntohs(udp->len);
	p->payload = ulen > sizeof(struct udphdr) ? ulen - sizeof(struct udphdr) : 0;
	p->e = e;
	if (!(e->flags & FP_FORWARD))
		return V_DROP;

	__u32 ssrc = ((__u32)rtp[8] << 24) | ((__u32)rtp[9] << 16) | ((__u32)rtp[10] << 8) | rtp[11];
	__u16 seq = ((__u16)rtp[2] << 8) | rtp[3];
	__u32 ts = ((__u32)rtp[4] << 24) | ((__u32)rtp[5] << 16) | ((__u32)rtp[6] << 8) | rtp[7];
	p->old_ssrc = p->new_ssrc = ssrc;
	p->old_seq = p->new_seq = seq;
	p->old_ts = p->new_ts = ts;
	if (e->flags & FP_REWRITE) {
		// A new input SSRC needs the worker's continuity logic.
		if (ssrc != e->in_ssrc) {
			count_up(UP_SSRC);
			return V_PASS;
		}
		p->new_ssrc = e->out_ssrc;
		p->new_seq = seq + e->seq_delta;
		p->new_ts = ts + e->ts_delta;
	}

	__builtin_memset(&p->fib, 0, sizeof(p->fib));
	p->fib.family = AF_INET;
	p->fib.l4_protocol = IPPROTO_UDP;
	p->fib.sport = e->out_sport;
	p->fib.dport = e->out_dport;
	p->fib.tot_len = bpf_ntohs(ip->tot_len);
	p->fib.ipv4_src = e->out_saddr;
	p->fib.ipv4_dst = e->out_daddr;
	p->fib.ifindex = e->out_ifindex ? e->out_ifindex : ifindex;
	// XDP must find the next hop's MAC itself (the FIB lookup wants
	// forwarding enabled on the interface); tc leaves routing and the
	// neighbour to bpf_redirect_neigh, which needs neither.
	int rc = BPF_FIB_LKUP_RET_SUCCESS;
	if (xdp)
		rc = bpf_fib_lookup(ctx, &p->fib, sizeof(p->fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		count_up(UP_ROUTE);
		return V_PASS;
	}

	p->old_saddr = ip->saddr;
	p->old_daddr = ip->daddr;
	p->old_sport = udp->source;
	p->old_dport = udp->dest;
	__u16 *w = (__u16 *)ip;
	p->old_tos_word = w[0];
	p->old_ttl_word = w[4];
	__u8 tw[2] = { ((__u8 *)ip)[0], e->tos };
	__u8 lw[2] = { MEDIA_TTL, IPPROTO_UDP };
	__builtin_memcpy(&p->new_tos_word, tw, 2);
	__builtin_memcpy(&p->new_ttl_word, lw, 2);
	return V_FWD;
}

static __always_inline void count(struct fp_entry *e, __u32 payload, int held)
{
	__u32 k = e->stat;
	struct fp_stats *s = bpf_map_lookup_elem(&tern_stats, &k);
	if (!s)
		return;
	if (held) {
		s->held += 1;
		return;
	}
	s->packets += 1;
	s->bytes += payload;
}

// Serial-number newer (RFC 1982): only a newer packet moves the reference a
// later source switch continues from. Racy across CPUs, as one stream's
// packets arrive on one queue.
static __always_inline void note_newest(struct fp_entry *e, __u16 seq, __u32 ts)
{
	__u16 ahead = seq - (__u16)e->newest_seq;
	if (ahead != 0 && ahead < 0x8000) {
		e->newest_seq = seq;
		e->newest_ts = ts;
	}
}

// tc (cls_bpf, direct action) ingress: for veth and lo, and wherever XDP is
// a poor fit. The kernel's checksum helpers handle CHECKSUM_PARTIAL skbs
// (locally generated traffic over veth), which a hand-written update would
// corrupt.
SEC("classifier")
int tern_tc(struct __sk_buff *skb)
{
	if (skb->len < HDRS + RTP_MIN)
		return TC_ACT_OK;
	if ((void *)(long)skb->data + HDRS + RTP_MIN > (void *)(long)skb->data_end) {
		if (bpf_skb_pull_data(skb, HDRS + RTP_MIN) < 0)
			return TC_ACT_OK;
	}
	struct fp_plan p;
	int v = plan(skb, (void *)(long)skb->data, (void *)(long)skb->data_end, skb->ingress_ifindex, 0,
		     &p);
	if (v == V_PASS)
		return TC_ACT_OK;
	struct fp_entry *e = p.e;
	if (v == V_DROP) {
		count(e, p.payload, 1);
		return TC_ACT_SHOT;
	}
	__u32 f4 = BPF_F_MARK_MANGLED_0 | 4, f2 = BPF_F_MARK_MANGLED_0 | 2;
	// IP header: addresses (also in the UDP pseudo-header), TOS, TTL.
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, p.old_saddr, e->out_saddr, f4 | BPF_F_PSEUDO_HDR);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, p.old_daddr, e->out_daddr, f4 | BPF_F_PSEUDO_HDR);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, p.old_saddr, e->out_saddr, 4);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, p.old_daddr, e->out_daddr, 4);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, p.old_tos_word, p.new_tos_word, 2);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, p.old_ttl_word, p.new_ttl_word, 2);
	bpf_skb_store_bytes(skb, IP_OFF + __builtin_offsetof(struct iphdr, saddr), &e->out_saddr, 4, 0);
	bpf_skb_store_bytes(skb, IP_OFF + __builtin_offsetof(struct iphdr, daddr), &e->out_daddr, 4, 0);
	bpf_skb_store_bytes(skb, IP_OFF, &p.new_tos_word, 2, 0);
	bpf_skb_store_bytes(skb, IP_OFF + 8, &p.new_ttl_word, 2, 0);
	// UDP ports.
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, p.old_sport, e->out_sport, f2);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, p.old_dport, e->out_dport, f2);
	bpf_skb_store_bytes(skb, UDP_OFF, &e->out_sport, 2, 0);
	bpf_skb_store_bytes(skb, UDP_OFF + 2, &e->out_dport, 2, 0);
	if (e->flags & FP_REWRITE) {
		__u16 os = bpf_htons(p.old_seq), ns = bpf_htons(p.new_seq);
		__u32 ot = bpf_htonl(p.old_ts), nt = bpf_htonl(p.new_ts);
		__u32 oc = bpf_htonl(p.old_ssrc), nc = bpf_htonl(p.new_ssrc);
		bpf_l4_csum_replace(skb, UDP_CSUM_OFF, os, ns, f2);
		bpf_l4_csum_replace(skb, UDP_CSUM_OFF, ot, nt, f4);
		bpf_l4_csum_replace(skb, UDP_CSUM_OFF, oc, nc, f4);
		bpf_skb_store_bytes(skb, RTP_OFF + 2, &ns, 2, 0);
		bpf_skb_store_bytes(skb, RTP_OFF + 4, &nt, 4, 0);
		bpf_skb_store_bytes(skb, RTP_OFF + 8, &nc, 4, 0);
	}
	note_newest(e, p.new_seq, p.new_ts);
	count(e, p.payload, 0);
	// Routed as the host would send it, the neighbour resolved (or ARP
	// queued) by the kernel, which writes the Ethernet header.
	return bpf_redirect_neigh(p.fib.ifindex, 0, 0, 0);
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over one 16-bit word.
static __always_inline void csum16(__u16 *sum, __u16 old, __u16 new)
{
	__u32 s = (__u16)~*sum;
	s += (__u16)~old;
	s += new;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	*sum = ~(__u16)s;
}

static __always_inline void csum32(__u16 *sum, __u32 old, __u32 new)
{
	csum16(sum, old >> 16, new >> 16);
	csum16(sum, old & 0xffff, new & 0xffff);
}

// XDP, for a NIC's driver (or generic) mode: frames carry complete
// checksums, so they are updated by hand.
SEC("xdp")
int tern_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct fp_plan p;
	int v = plan(ctx, data, data_end, ctx->ingress_ifindex, 1, &p);
	if (v == V_PASS)
		return XDP_PASS;
	struct fp_entry *e = p.e;
	if (v == V_DROP) {
		count(e, p.payload, 1);
		return XDP_DROP;
	}
	struct ethhdr *eth = data;
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *rtp = data + RTP_OFF;
	if ((void *)(rtp + RTP_MIN) > data_end)
		return XDP_PASS;
	__u16 *ipw = (__u16 *)ip;
	int udp_sum = udp->check != 0; // IPv4 UDP may carry none (RFC 768)

	csum32(&ip->check, bpf_ntohl(p.old_saddr), bpf_ntohl(e->out_saddr));
	csum32(&ip->check, bpf_ntohl(p.old_daddr), bpf_ntohl(e->out_daddr));
	csum16(&ip->check, bpf_ntohs(p.old_tos_word), bpf_ntohs(p.new_tos_word));
	csum16(&ip->check, bpf_ntohs(p.old_ttl_word), bpf_ntohs(p.new_ttl_word));
	ip->saddr = e->out_saddr;
	ip->daddr = e->out_daddr;
	ipw[0] = p.new_tos_word;
	ipw[4] = p.new_ttl_word;
	if (udp_sum) {
		__u16 c = bpf_ntohs(udp->check);
		csum32(&c, bpf_ntohl(p.old_saddr), bpf_ntohl(e->out_saddr));
		csum32(&c, bpf_ntohl(p.old_daddr), bpf_ntohl(e->out_daddr));
		csum16(&c, bpf_ntohs(p.old_sport), bpf_ntohs(e->out_sport));
		csum16(&c, bpf_ntohs(p.old_dport), bpf_ntohs(e->out_dport));
		csum16(&c, p.old_seq, p.new_seq);
		csum32(&c, p.old_ts, p.new_ts);
		csum32(&c, p.old_ssrc, p.new_ssrc);
		udp->check = bpf_htons(c ? c : 0xffff);
	}
	udp->source = e->out_sport;
	udp->dest = e->out_dport;
	if (e->flags & FP_REWRITE) {
		rtp[2] = p.new_seq >> 8;
		rtp[3] = p.new_seq;
		rtp[4] = p.new_ts >> 24;
		rtp[5] = p.new_ts >> 16;
		rtp[6] = p.new_ts >> 8;
		rtp[7] = p.new_ts;
		rtp[8] = p.new_ssrc >> 24;
		rtp[9] = p.new_ssrc >> 16;
		rtp[10] = p.new_ssrc >> 8;
		rtp[11] = p.new_ssrc;
	}
	__builtin_memcpy(eth->h_dest, p.fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, p.fib.smac, ETH_ALEN);
	note_newest(e, p.new_seq, p.new_ts);
	count(e, p.payload, 0);
	if (p.fib.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(p.fib.ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
