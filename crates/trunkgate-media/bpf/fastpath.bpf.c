// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0-only)
//
// Trunkgate media fast path: a tc (`sched_cls`) program at ingress of the media interfaces
// that forwards the RTP of anchored, latched streams without a trip through userspace.
//
// It only touches UDP datagrams whose destination port lies in the relay's port range
// (`tg_port_min..=tg_port_max`, set by the loader) and whose exact destination (family,
// address, port) is a key of `tg_fwd` — entries the relay installs after it has latched a
// stream. Everything else passes on unchanged (TC_ACT_UNSPEC: the next tc program, then the
// stack). For an entry, the datagram must come from the latched source, be RTP (not RTCP)
// of the expected SSRC with a sequence number in order (RFC 3550 A.1), have no IP options,
// not be a fragment or a GSO aggregate, and have a route out; anything else goes up to the
// relay's socket, which keeps the judgement (latching, RTCP, restarts). A forwarded datagram
// gets the other leg's address and port as source, the peer's as destination, the DSCP of
// `media.dscp` (ECN kept), a fresh TTL/hop limit, checksums updated; the entry counts
// packets, bytes, sequence loss and RFC 3550 interarrival jitter (arrival from
// bpf_ktime_get_ns), and the time of the newest packet.
//
// Layouts are mirrored byte for byte in src/fastpath/entry.rs (tests there pin them).
// docs/design/media.md ("Kernel fast path") explains the design.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define TG_FAMILY_V4 4
#define TG_FAMILY_V6 6

// RFC 3550 A.1.
#define MAX_DROPOUT 3000
#define MAX_MISORDER 100

#define TTL_OUT 64

struct tg_key {
	__u8 addr[16]; // IPv4: first 4 bytes, rest 0
	__be16 port;
	__u8 family; // TG_FAMILY_V4 / TG_FAMILY_V6
	__u8 pad;
};

struct tg_fwd {
	// Written by the relay at install; never changed by the program.
	__u8 src[16];     // the latched peer (expected source address)
	__u8 new_src[16]; // the other leg's local address
	__u8 new_dst[16]; // the other side's peer
	__be16 src_port;
	__be16 new_sport;
	__be16 new_dport;
	__u8 family;
	__u8 tos;         // DSCP << 2
	__u32 ssrc;       // host order
	__u32 clock_rate; // Hz
	// Written by the program.
	__u64 packets;
	__u64 bytes;      // UDP payload bytes (as the userspace relay counts)
	__u64 last_ns;    // bpf_ktime_get_ns of the newest forwarded packet
	__u64 ext_max;    // extended highest sequence number (cycles << 16 | seq)
	__u64 received;   // RTP packets counted (duplicates included, as RFC 3550)
	__u64 gaps;       // sequence gaps (loss bursts)
	__u64 last_arrival_ns;
	__s64 jitter_ns;  // RFC 3550 A.8 estimate, in ns
	__u32 last_ts;
	__u32 have_transit;
	__u64 punted;     // datagrams for this entry left to userspace
};

_Static_assert(sizeof(struct tg_key) == 20, "tg_key layout");
_Static_assert(sizeof(struct tg_fwd) == 144, "tg_fwd layout");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); // the loader sets it from the port range
	__type(key, struct tg_key);
	__type(value, struct tg_fwd);
} tg_fwd SEC(".maps");

// Outcomes of datagrams that matched an entry (per CPU; index = enum tg_outcome).
enum tg_outcome {
	OUT_FORWARDED = 0,
	OUT_SOURCE = 1, // not from the latched source
	OUT_RTCP = 2,   // RTCP (rtcp-mux) or not RTP v2
	OUT_SSRC = 3,   // another SSRC
	OUT_SEQ = 4,    // a sequence jump userspace must judge
	OUT_ROUTE = 5,  // no route out (or local delivery off loopback, or MTU)
	OUT_OTHER = 6,  // GSO aggregate, short datagram, store failure
	OUT_STEERED = 7, // (sk_lookup) a datagram to an anchored port steered to a relay socket
	OUT_CONFLICT = 8, // (sk_lookup) another program had already chosen a socket for it
	OUT_N = 16,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OUT_N);
	__type(key, __u32);
	__type(value, __u64);
} tg_outcomes SEC(".maps");

volatile const __u16 tg_port_min = 1;
volatile const __u16 tg_port_max = 0;

static __always_inline int outcome(__u32 what, struct tg_fwd *e)
{
	__u64 *c = bpf_map_lookup_elem(&tg_outcomes, &what);
	if (c)
		*c += 1;
	if (e && what != OUT_FORWARDED)
		__sync_fetch_and_add(&e->punted, 1);
	return TC_ACT_UNSPEC;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline int same16(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	return x[0] == y[0] && x[1] == y[1];
}

struct rtp_hdr {
	__u8 vpxcc;
	__u8 mpt;
	__be16 seq;
	__be32 ts;
	__be32 ssrc;
};

SEC("classifier")
int tg_media_ingress(struct __sk_buff *skb)
{
	__u16 proto;
	if (bpf_skb_load_bytes(skb, 12, &proto, 2) < 0)
		return TC_ACT_UNSPEC;

	struct tg_key key = {};
	struct udphdr udp;
	struct iphdr ip4;
	struct ipv6hdr ip6;
	__u32 l4; // offset of the UDP header
	__u8 saddr[16] = {};

	if (proto == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip4, sizeof(ip4)) < 0)
			return TC_ACT_UNSPEC;
		// IP options and fragments go to userspace untouched.
		if (ip4.protocol != IPPROTO_UDP || ip4.ihl != 5 ||
		    (ip4.frag_off & bpf_htons(0x3fff)))
			return TC_ACT_UNSPEC;
		l4 = ETH_HLEN + sizeof(ip4);
		key.family = TG_FAMILY_V4;
		__builtin_memcpy(key.addr, &ip4.daddr, 4);
		__builtin_memcpy(saddr, &ip4.saddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
			return TC_ACT_UNSPEC;
		// Extension headers (fragments among them) go to userspace.
		if (ip6.nexthdr != IPPROTO_UDP)
			return TC_ACT_UNSPEC;
		l4 = ETH_HLEN + sizeof(ip6);
		key.family = TG_FAMILY_V6;
		__builtin_memcpy(key.addr, &ip6.daddr, 16);
		__builtin_memcpy(saddr, &ip6.saddr, 16);
	} else {
		return TC_ACT_UNSPEC;
	}
	if (bpf_skb_load_bytes(skb, l4, &udp, sizeof(udp)) < 0)
		return TC_ACT_UNSPEC;
	__u16 dport = bpf_ntohs(udp.dest);
	if (dport < tg_port_min || dport > tg_port_max)
		return TC_ACT_UNSPEC;
	key.port = udp.dest;

	struct tg_fwd *e = bpf_map_lookup_elem(&tg_fwd, &key);
	if (!e)
		return TC_ACT_UNSPEC;
	if (e->family != key.family)
		return outcome(OUT_OTHER, e);

	if (udp.source != e->src_port || !same16(saddr, e->src))
		return outcome(OUT_SOURCE, e);
	if (skb->gso_size)
		return outcome(OUT_OTHER, e);

	struct rtp_hdr rtp;
	if (bpf_skb_load_bytes(skb, l4 + sizeof(udp), &rtp, sizeof(rtp)) < 0)
		return outcome(OUT_RTCP, e);
	__u8 pt = rtp.mpt & 0x7f;
	if ((rtp.vpxcc >> 6) != 2 || (pt >= 64 && pt <= 95))
		return outcome(OUT_RTCP, e);
	if (bpf_ntohl(rtp.ssrc) != e->ssrc)
		return outcome(OUT_SSRC, e);

	// RFC 3550 A.1, decided before anything is changed.
	__u16 seq = bpf_ntohs(rtp.seq);
	__u64 ext = e->ext_max;
	__u16 max = (__u16)ext;
	__u16 udelta = seq - max;
	__u64 gap = 0;
	if (udelta != 0 && udelta < MAX_DROPOUT) {
		if (udelta > 1)
			gap = 1;
		if (seq < max)
			ext += 0x10000;
		ext = (ext & ~(__u64)0xffff) | seq;
	} else if (udelta != 0 && udelta <= (__u16)(0xffff - MAX_MISORDER)) {
		// A large jump: a restart or garbage; the relay's A.1 logic judges it.
		return outcome(OUT_SEQ, e);
	}

	// The route toward the other side's peer, seen as if the relay sent it.
	struct bpf_fib_lookup fib = {};
	fib.l4_protocol = IPPROTO_UDP;
	fib.sport = e->new_sport;
	fib.dport = e->new_dport;
	fib.ifindex = skb->ifindex;
	if (key.family == TG_FAMILY_V4) {
		fib.family = AF_INET;
		fib.tos = e->tos;
		fib.tot_len = bpf_ntohs(ip4.tot_len);
		__builtin_memcpy(&fib.ipv4_src, e->new_src, 4);
		__builtin_memcpy(&fib.ipv4_dst, e->new_dst, 4);
	} else {
		fib.family = AF_INET6;
		fib.tot_len = bpf_ntohs(ip6.payload_len) + sizeof(ip6);
		__builtin_memcpy(fib.ipv6_src, e->new_src, 16);
		__builtin_memcpy(fib.ipv6_dst, e->new_dst, 16);
	}
	int redirect;
	if (skb->ifindex == 1) {
		// Loopback: only local processes send here, and a reply from a loopback
		// address can only go to a local peer; deliver up the stack. (The fib helper
		// refuses devices with forwarding off, as lo normally is.)
		int local = key.family == TG_FAMILY_V4
				? e->new_dst[0] == 127
				: (((const __u64 *)e->new_dst)[0] == 0 &&
				   ((const __u64 *)e->new_dst)[1] == bpf_cpu_to_be64(1));
		if (!local)
			return outcome(OUT_ROUTE, e);
		redirect = 0;
	} else {
		// Needs forwarding enabled on the interface (the helper checks it).
		int rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return outcome(OUT_ROUTE, e);
		redirect = 1;
	}

	// Rewrite. Checksums: the UDP one by difference (pseudo-header addresses, then ports;
	// bpf_l4_csum_replace handles CHECKSUM_PARTIAL skbs), the IPv4 header one anew.
	__u32 ports_old[1], ports_new[1];
	__builtin_memcpy(ports_old, &udp, 4);
	((__be16 *)ports_new)[0] = e->new_sport;
	((__be16 *)ports_new)[1] = e->new_dport;
	__u32 csum_off = l4 + 6;
	if (key.family == TG_FAMILY_V4) {
		__u32 old_a[2], new_a[2];
		old_a[0] = ip4.saddr;
		old_a[1] = ip4.daddr;
		__builtin_memcpy(&new_a[0], e->new_src, 4);
		__builtin_memcpy(&new_a[1], e->new_dst, 4);
		__s64 d = bpf_csum_diff(old_a, 8, new_a, 8, 0);
		if (d < 0 || bpf_l4_csum_replace(skb, csum_off, 0, (__u32)d,
						 BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) < 0)
			return outcome(OUT_OTHER, e);
		d = bpf_csum_diff(ports_old, 4, ports_new, 4, 0);
		if (d < 0 || bpf_l4_csum_replace(skb, csum_off, 0, (__u32)d, BPF_F_MARK_MANGLED_0) < 0)
			return outcome(OUT_OTHER, e);
		ip4.tos = e->tos | (ip4.tos & 3);
		ip4.ttl = TTL_OUT;
		ip4.saddr = new_a[0];
		ip4.daddr = new_a[1];
		ip4.check = 0;
		__u16 *w = (__u16 *)&ip4;
		__u32 sum = 0;
#pragma unroll
		for (int i = 0; i < 10; i++)
			sum += w[i];
		ip4.check = csum_fold(sum);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip4, sizeof(ip4), 0) < 0)
			return outcome(OUT_OTHER, e);
	} else {
		__u32 old_a[8], new_a[8];
		__builtin_memcpy(&old_a[0], &ip6.saddr, 16);
		__builtin_memcpy(&old_a[4], &ip6.daddr, 16);
		__builtin_memcpy(&new_a[0], e->new_src, 16);
		__builtin_memcpy(&new_a[4], e->new_dst, 16);
		__s64 d = bpf_csum_diff(old_a, 32, new_a, 32, 0);
		if (d < 0 || bpf_l4_csum_replace(skb, csum_off, 0, (__u32)d, BPF_F_PSEUDO_HDR) < 0)
			return outcome(OUT_OTHER, e);
		d = bpf_csum_diff(ports_old, 4, ports_new, 4, 0);
		if (d < 0 || bpf_l4_csum_replace(skb, csum_off, 0, (__u32)d, 0) < 0)
			return outcome(OUT_OTHER, e);
		// Traffic class = DSCP | ECN, across the first two bytes (version, class, flow).
		__u8 *b = (__u8 *)&ip6;
		__u8 tclass = (__u8)((b[0] << 4) | (b[1] >> 4));
		tclass = e->tos | (tclass & 3);
		b[0] = (b[0] & 0xf0) | (tclass >> 4);
		b[1] = (b[1] & 0x0f) | (__u8)(tclass << 4);
		ip6.hop_limit = TTL_OUT;
		__builtin_memcpy(&ip6.saddr, e->new_src, 16);
		__builtin_memcpy(&ip6.daddr, e->new_dst, 16);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6), 0) < 0)
			return outcome(OUT_OTHER, e);
	}
	if (bpf_skb_store_bytes(skb, l4, ports_new, 4, 0) < 0)
		return outcome(OUT_OTHER, e);

	// Account (RFC 3550 A.1 decided above; A.8 jitter here, in ns).
	__u64 now = bpf_ktime_get_ns();
	__u32 ts = bpf_ntohl(rtp.ts);
	__u32 rate = e->clock_rate ? e->clock_rate : 8000;
	if (e->have_transit) {
		__s64 arrival = (__s64)(now - e->last_arrival_ns);
		__s32 dts = (__s32)(ts - e->last_ts);
		__u64 adts = dts < 0 ? (__u64)(-(__s64)dts) : (__u64)dts;
		__s64 sent = (__s64)(adts * 1000000000ULL / rate);
		if (dts < 0)
			sent = -sent;
		__s64 dd = arrival - sent;
		if (dd < 0)
			dd = -dd;
		__s64 j = e->jitter_ns;
		e->jitter_ns = j + ((dd - j) >> 4);
	}
	e->have_transit = 1;
	e->last_arrival_ns = now;
	e->last_ts = ts;
	e->ext_max = ext;
	e->gaps += gap;
	e->received += 1;
	e->last_ns = now;
	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, (__u64)(bpf_ntohs(udp.len) - sizeof(udp)));
	outcome(OUT_FORWARDED, 0);

	if (!redirect)
		return TC_ACT_OK;
	__u8 macs[12];
	__builtin_memcpy(&macs[0], fib.dmac, 6);
	__builtin_memcpy(&macs[6], fib.smac, 6);
	if (bpf_skb_store_bytes(skb, 0, macs, 12, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(fib.ifindex, 0);
}

// ---------------------------------------------------------------------------------------
// No socket per call: `sk_lookup`.
//
// The relay threads each own one unconnected UDP socket per media address (bound to an
// ephemeral port), stored in `tg_socks` at index `thread * 2 + address index`. The port
// allocator writes every anchored (family, address, port) it hands out — RTP and RTCP — into
// `tg_ports` with the index of the socket that owns the call, before the SDP naming it
// leaves, and deletes it when the port is released. This program runs when the kernel looks
// for the socket of an arriving UDP datagram in this network namespace: for an anchored
// destination it selects that socket, so the datagram is received there (the relay reads the
// original destination with IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR). Everything else —
// other protocols, other ports and addresses, released ports — is left to the normal lookup.
// The link is held by the relay's descriptor only, so it goes away with the process.

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); // the loader sets it from the port range
	__type(key, struct tg_key);
	__type(value, __u32);
} tg_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32); // a socket descriptor on update (what aya's SockMap writes)
} tg_socks SEC(".maps");

SEC("sk_lookup")
int tg_media_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_UDP)
		return SK_PASS;
	__u32 port = ctx->local_port; // host order
	if (port < tg_port_min || port > tg_port_max)
		return SK_PASS;
	struct tg_key key = {};
	key.port = bpf_htons((__u16)port);
	if (ctx->family == AF_INET) {
		__u32 a = ctx->local_ip4;
		key.family = TG_FAMILY_V4;
		__builtin_memcpy(key.addr, &a, 4);
	} else if (ctx->family == AF_INET6) {
		__u32 a[4];
		a[0] = ctx->local_ip6[0];
		a[1] = ctx->local_ip6[1];
		a[2] = ctx->local_ip6[2];
		a[3] = ctx->local_ip6[3];
		key.family = TG_FAMILY_V6;
		__builtin_memcpy(key.addr, a, 16);
	} else {
		return SK_PASS;
	}
	__u32 *idx = bpf_map_lookup_elem(&tg_ports, &key);
	if (!idx)
		return SK_PASS;
	__u32 i = *idx;
	struct bpf_sock *sk = bpf_map_lookup_elem(&tg_socks, &i);
	if (!sk)
		return SK_PASS;
	// Without BPF_SK_LOOKUP_F_REPLACE: if another sk_lookup program (another relay on
	// this address and range, a misconfiguration) chose a socket first, its choice stands
	// (-EEXIST) and the conflict is counted.
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	outcome(err == 0 ? OUT_STEERED : OUT_CONFLICT, 0);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
