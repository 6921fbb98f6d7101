/* nettrace hop probes: tracepoints, netfilter first/last, tcx ingress/egress.
 *
 * Every probe first looks at 40 bytes of its skb (worth()) and, only when they may match,
 * copies the headers and emits an event when the packet (or, for VXLAN, its inner packet;
 * for ICMP errors, the quoted packet) matches a watched fingerprint, or the live
 * expression. Background traffic costs the first look only (idle: one array lookup).
 * One ring buffer; failed outputs are counted per CPU in `lost`.
 */
#ifndef __NETTRACE_VMLINUX        /* plain bcc over installed kernel headers (not tested here) */
#include <linux/skbuff.h>
#include <linux/netdevice.h>
#include <linux/netfilter.h>
#include <linux/if_ether.h>
#include <net/sock.h>
#include <net/netfilter/nf_bpf_link.h>
#endif
#include "event.h"

#ifndef NT_LIVE
#define NT_LIVE 0
#endif
#ifndef NT_TC
#define NT_TC 1                   /* build the tcx program (only labs with macvlan need it) */
#endif
#ifndef NT_RINGBUF_PAGES
#define NT_RINGBUF_PAGES 1024
#endif
#define NT_HOT_WORDS 1024         /* 65,536 bits: one per 16-bit value */
#define NT_VXLAN_PORT 4789
#define NT_ICMPV6 58              /* IPPROTO_ICMPV6 is a macro, not in the kernel's BTF */
/* One header byte. The mask only reassures the verifier (callers check bounds, but the
 * compiler may drop a check it knows is redundant); NT_HDR_LEN is a power of two. */
#define NT_B(h, o) ((u32)(h)[nt_mask(o)])

static __always_inline u32 nt_mask(u32 off)
{
    asm volatile("" : "+r"(off));   /* hide the known range, so the mask stays */
    return off & (NT_HDR_LEN - 1);
}

BPF_RINGBUF_OUTPUT(events, NT_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);
BPF_ARRAY(nt_conf, struct nt_config, 1);
BPF_HASH(watch, struct nt_key, u32, 4096);
BPF_HASH(netns_set, u32, u8, 1024);
/* Pre-filter of the watch map: bit v of this 65,536-bit set is on when some watched key has
 * the 16-bit value v (IPv4 id, port, ICMP echo id). An array lookup is inlined by the
 * verifier: a packet of a watched flow's protocol whose id and ports are all off costs a
 * few instructions, no hash lookup and no header copy. False positives only cost time. */
BPF_ARRAY(hot, u64, NT_HOT_WORDS);

/* bcc 0.26's helpers.h predates these helpers' declarations */
static u64 (*nt_get_attach_cookie)(void *ctx) = (void *)BPF_FUNC_get_attach_cookie;


static __always_inline u32 be16_at(const u8 *h, u32 off)
{
    if (off > NT_HDR_LEN - 2)
        return 0;
    return (NT_B(h, off) << 8) | NT_B(h, off + 1);
}

static __always_inline u32 be32_at(const u8 *h, u32 off)
{
    if (off > NT_HDR_LEN - 4)
        return 0;
    return (NT_B(h, off) << 24) | (NT_B(h, off + 1) << 16) | (NT_B(h, off + 2) << 8) |
           NT_B(h, off + 3);
}

static __always_inline u32 lookup(u8 kind, u8 proto, u32 val)
{
    struct nt_key k = {.kind = kind, .proto = proto, .val = val};
    u32 *id = watch.lookup(&k);
    return id ? *id : 0;
}

/* Trace id of the IPv4 packet at `off`, 0 when not watched. `*inner` is set to the offset
 * of an Ethernet frame carried in VXLAN, for a second pass. */
static __always_inline u32 match_ipv4(const u8 *h, u32 off, u32 *inner)
{
    u32 id, ihl, l4, sport, dport;
    u8 proto;

    if (off > NT_HDR_LEN - 20)
        return 0;
    ihl = (NT_B(h, off) & 0xf) * 4;
    proto = NT_B(h, off + 9);
    if ((id = lookup(NT_K_IPID, proto, be16_at(h, off + 4))))
        return id;
    l4 = off + ihl;
    if (l4 > NT_HDR_LEN - 8)
        return 0;
    sport = be16_at(h, l4);
    dport = be16_at(h, l4 + 2);
    if (proto == IPPROTO_ICMP) {
        u8 type = NT_B(h, l4);
        if (type == 0 || type == 8)
            return lookup(NT_K_ICMP, proto, be32_at(h, l4 + 4));
        if (type == 3 || type == 11) {           /* an error quoting the watched packet */
            u32 q = l4 + 8;
            if (q > NT_HDR_LEN - 20)
                return 0;
            return lookup(NT_K_IPID, NT_B(h, q + 9), be16_at(h, q + 4));
        }
        return 0;
    }
    if (proto == IPPROTO_UDP && dport == NT_VXLAN_PORT)
        *inner = l4 + 16;
    if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
        if ((id = lookup(NT_K_PORT, proto, sport)))
            return id;
        return lookup(NT_K_PORT, proto, dport);
    }
    return 0;
}

static __always_inline u32 flow_label(const u8 *h, u32 off)
{
    return ((NT_B(h, off + 1) & 0xf) << 16) | (NT_B(h, off + 2) << 8) | NT_B(h, off + 3);
}

/* Trace id of the IPv6 packet at `off` (no extension headers: nettrace sends none), 0 when
 * not watched: flow label, ports, ICMPv6 echo id/seq, the quoted packet of an ICMPv6 error,
 * the target of a neighbour solicitation or advertisement. */
static __always_inline u32 match_ipv6(const u8 *h, u32 off)
{
    u32 id, l4, q;
    u8 nh, type;

    if (off > NT_HDR_LEN - 48)
        return 0;
    nh = NT_B(h, off + 6);
    if ((id = lookup(NT_K_FLOW, nh, flow_label(h, off))))
        return id;
    l4 = off + 40;
    if (nh == NT_ICMPV6) {
        type = NT_B(h, l4);
        if (type == 128 || type == 129)
            return lookup(NT_K_ICMP, nh, be32_at(h, l4 + 4));
        if (type == 135 || type == 136)
            return lookup(NT_K_ND, 0, be32_at(h, l4 + 20));
        if (type >= 1 && type <= 4) {            /* an error quoting the watched packet */
            q = l4 + 8;
            if (q > NT_HDR_LEN - 40)
                return 0;
            return lookup(NT_K_FLOW, NT_B(h, q + 6), flow_label(h, q));
        }
        return 0;
    }
    if (nh == IPPROTO_TCP || nh == IPPROTO_UDP) {
        if ((id = lookup(NT_K_PORT, nh, be16_at(h, l4))))
            return id;
        return lookup(NT_K_PORT, nh, be16_at(h, l4 + 2));
    }
    return 0;
}

static __always_inline u32 match_arp(const u8 *h, u32 off)
{
    u32 id;
    if (off > NT_HDR_LEN - 28)
        return 0;
    if ((id = lookup(NT_K_ARP, 0, be32_at(h, off + 14))))     /* sender IP */
        return id;
    return lookup(NT_K_ARP, 0, be32_at(h, off + 24));         /* target IP */
}

#if NT_LIVE
static __always_inline int live_match(const u8 *h, u32 off, u32 ethertype,
                                      const struct nt_config *c)
{
    u32 s, d, proto, l4;
    if (ethertype == ETH_P_ARP) {
        if (off > NT_HDR_LEN - 28)
            return 0;
        if (c->proto && c->proto != ETH_P_ARP)
            return 0;
        if (c->port)
            return 0;
        s = be32_at(h, off + 14);
        d = be32_at(h, off + 24);
    } else if (ethertype == ETH_P_IP) {
        if (off > NT_HDR_LEN - 20)
            return 0;
        proto = NT_B(h, off + 9);
        if (c->proto && c->proto != proto)
            return 0;
        s = be32_at(h, off + 12);
        d = be32_at(h, off + 16);
        if (c->port) {
            l4 = off + (NT_B(h, off) & 0xf) * 4;
            if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
                return 0;
            if (be16_at(h, l4) != c->port && be16_at(h, l4 + 2) != c->port)
                return 0;
        }
    } else {
        /* IPv6 and other protocols: only an empty expression matches them */
        return !(c->proto || c->port || c->host || c->src || c->dst);
    }
    if (c->host && c->host != s && c->host != d)
        return 0;
    if (c->src && c->src != s)
        return 0;
    if (c->dst && c->dst != d)
        return 0;
    return 1;
}
#endif

static __always_inline u32 vxlan_inner(const u8 *h, u32 off, u32 ethertype)
{
    u32 l4;
    if (ethertype != ETH_P_IP || off > NT_HDR_LEN - 28 || NT_B(h, off + 9) != IPPROTO_UDP)
        return 0;
    l4 = off + (NT_B(h, off) & 0xf) * 4;
    return be16_at(h, l4 + 2) == NT_VXLAN_PORT ? l4 + 16 : 0;
}

/* Decide whether the copied headers are interesting; sets ev->trace_id. Two passes:
 * the packet, then the Ethernet frame inside it when it is VXLAN. NT_LIVE selects the
 * build: watched fingerprints (default) or the live expression (`nettrace trace`). */
static __always_inline int want(struct nt_event *ev, const struct nt_config *c)
{
    u32 off = ev->l2 ? ETH_HLEN : 0, et = ev->ethertype, inner;
    if (c->netns_filter && (ev->netns || NT_LIVE)) {   /* live: never an unknown netns */
        u32 ns = ev->netns;
        if (!netns_set.lookup(&ns))
            return 0;
    }
#pragma clang loop unroll(disable)
    for (int pass = 0; pass < 2; pass++) {
#if NT_LIVE
        if (live_match(ev->hdr, off, et, c))
            return 1;
        inner = vxlan_inner(ev->hdr, off, et);
#else
        inner = 0;
        if (et == ETH_P_ARP) {
            ev->trace_id = match_arp(ev->hdr, off);
            return ev->trace_id != 0;
        }
        if (et == ETH_P_IPV6) {
            ev->trace_id = match_ipv6(ev->hdr, off);
            return ev->trace_id != 0;
        }
        if (et != ETH_P_IP)
            return 0;
        ev->trace_id = match_ipv4(ev->hdr, off, &inner);
        if (ev->trace_id)
            return 1;
#endif
        if (!inner || inner > NT_HDR_LEN - ETH_HLEN - 20)
            return 0;
        et = be16_at(ev->hdr, inner + 12);
        off = inner + ETH_HLEN;
    }
    return 0;
}

static __always_inline u32 dev_netns(struct net_device *dev)
{
    struct net *net = NULL;
    u32 inum = 0;
    if (!dev)
        return 0;
    bpf_probe_read_kernel(&net, sizeof(net), &dev->nd_net.net);
    if (net)
        bpf_probe_read_kernel(&inum, sizeof(inum), &net->ns.inum);
    return inum;
}

static __always_inline u32 dev_ifindex(struct net_device *dev)
{
    int ifindex = 0;
    if (dev)
        bpf_probe_read_kernel(&ifindex, sizeof(ifindex), &dev->ifindex);
    return ifindex;
}

#define NT_PEEK_LEN 40            /* Ethernet + IPv4 header + ports / ICMP echo id */

static __always_inline int is_hot(u32 v)
{
    u32 k = (v >> 6) & (NT_HOT_WORDS - 1);
    u64 *w = hot.lookup(&k);
    return w && ((*w >> (v & 63)) & 1);
}

/* First look, before the event is even built: can this packet match at all? Packets of a
 * protocol no fingerprint (or expression) mentions stop here; in fingerprint builds so do
 * packets of a watched protocol whose IPv4 id, ports and ICMP echo id are all cold. */
static __always_inline int worth(const struct nt_config *c, const u8 *h, u32 l2, u32 ethertype)
{
    u32 off = l2 ? ETH_HLEN : 0, mask = c->proto_mask, proto, l4;
    if (mask == 0xffffffff)
        return 1;
    if (!mask && !c->ipv6)
        return 0;
    if (l2)
        ethertype = ((u32)h[12] << 8) | h[13];
    if (ethertype == 0)                     /* an AF_PACKET frame not yet typed: look closer */
        return 1;
    if (ethertype == ETH_P_ARP)
        return mask & 1;
    if (ethertype == ETH_P_IPV6)
        return c->ipv6;                     /* rare in labs: the full match decides */
    if (ethertype != ETH_P_IP)
        return 0;
    proto = h[off + 9];
    l4 = off + 20;
    if (proto == IPPROTO_UDP && (((u32)h[l4 + 2] << 8) | h[l4 + 3]) == NT_VXLAN_PORT)
        return 1;                           /* VXLAN: the inner packet decides */
    if (proto >= 32 || !((mask >> proto) & 1))
        return 0;
#if !NT_LIVE
    if (h[off] != 0x45)                     /* IP options: the full match finds the ports */
        return 1;
    if (is_hot(((u32)h[off + 4] << 8) | h[off + 5]))
        return 1;                           /* IPv4 id */
    if (proto == IPPROTO_TCP || proto == IPPROTO_UDP)
        return is_hot(((u32)h[l4] << 8) | h[l4 + 1]) || is_hot(((u32)h[l4 + 2] << 8) | h[l4 + 3]);
    if (proto == IPPROTO_ICMP) {
        u8 type = h[l4];
        if (type == 3 || type == 11)        /* an error: the quoted packet decides */
            return 1;
        return (type == 0 || type == 8) && is_hot(((u32)h[l4 + 4] << 8) | h[l4 + 5]);
    }
    return 0;
#else
    return 1;
#endif
}

/* The skb fields a probe needs, read at once: `protocol` .. `data` are one run of the
 * struct (the header offsets, tail, end, head), so one probe read instead of five. */
#define NT_META_FROM (offsetof(struct sk_buff, protocol) & ~7UL)   /* aligned: stack loads */
#define NT_META_LEN (offsetof(struct sk_buff, data) - NT_META_FROM)
#define NT_META(m, T, field) (*(T *)((u8 *)(m) + offsetof(struct sk_buff, field) - NT_META_FROM))

struct nt_peek {
    unsigned char *start;       /* where the copied headers begin */
    u32 tail;                   /* bytes of linear data from start */
    u16 ethertype;
    u8 l2;
};

/* Look at the skb's first bytes: from the MAC header when set and `l2` is asked for, else
 * from the network header. Returns 0 when worth() says the packet cannot match. */
static __always_inline int peek_skb(struct sk_buff *skb, int l2, u16 ethertype,
                                    const struct nt_config *c, struct nt_peek *p)
{
    u64 meta[(NT_META_LEN + 7) / 8];
    u8 peek[NT_PEEK_LEN];
    unsigned char *head;
    u16 mac, net, off;

    if (bpf_probe_read_kernel(meta, sizeof(meta), (u8 *)skb + NT_META_FROM))
        return 0;
    head = NT_META(meta, unsigned char *, head);
    mac = NT_META(meta, u16, mac_header);
    net = NT_META(meta, u16, network_header);
    p->l2 = l2 && mac != 0xffff;
    off = p->l2 ? mac : net;
    p->start = head + off;
    p->tail = NT_META(meta, u32, tail) > off ? NT_META(meta, u32, tail) - off : 0;
    p->ethertype = ethertype ? ethertype : ntohs(NT_META(meta, u16, protocol));
    if (bpf_probe_read_kernel(peek, sizeof(peek), p->start))
        return 0;
    return worth(c, peek, p->l2, p->ethertype);
}

/* Copy the headers worth a closer look into the event. */
static __always_inline void read_skb(struct sk_buff *skb, struct nt_event *ev,
                                     const struct nt_peek *p)
{
    bpf_probe_read_kernel(ev->hdr, NT_HDR_LEN, p->start);
    bpf_probe_read_kernel(&ev->len, sizeof(ev->len), &skb->len);
    ev->skb = (u64)skb;
    ev->l2 = p->l2;
    ev->ethertype = ev->l2 ? be16_at(ev->hdr, 12) : p->ethertype;
    ev->hdr_len = p->tail > NT_HDR_LEN ? NT_HDR_LEN : p->tail;
}

static __always_inline struct nt_config *get_config(void)
{
    u32 key = 0;
    return nt_conf.lookup(&key);
}

static __always_inline void emit(struct nt_event *ev)
{
    if (events.ringbuf_output(ev, sizeof(*ev), 0)) {
        u32 key = 0;
        u64 *n = lost.lookup(&key);
        if (n)
            *n += 1;
    }
}

/* One netfilter program, attached twice per hook: at the first and at the last priority.
 * Which of the two is running is told by `nf_seen`: the first run of an (skb, hook)
 * records it, the second finds and clears it. (One program instead of two halves the
 * netfilter code bcc compiles.) A packet dropped inside the hook leaves its entry behind:
 * the free of a watched packet clears it (nf_forget), entries older than NT_NF_PAIR_NS do
 * not count, and the LRU map forgets them. */
#define NT_NF_PAIR_NS 10000000ULL

struct nt_nf_key {
    u64 skb;
    u32 hook_pf;
    u32 pad;
};

BPF_TABLE("lru_hash", struct nt_nf_key, u64, nf_seen, 8192);

/* A watched packet freed (dropped in a hook, or consumed): forget its first-seen marks, so
 * the next packet given the same skb memory (pipelined replay sends many at once) is not
 * taken for the second half of this one's hook. */
static __always_inline void nf_forget(u64 skb)
{
    struct nt_nf_key key = {.skb = skb};
#pragma clang loop unroll(full)
    for (u32 hook = 0; hook < 5; hook++) {
        key.hook_pf = (hook << 8) | 2;
        nf_seen.delete(&key);
    }
}

static __always_inline int on_skb(struct sk_buff *skb, struct net_device *dev, u8 point,
                                  u64 location, u32 reason)
{
    struct nt_config *c = get_config();
    struct nt_peek p;
    if (!skb || !c || !(c->proto_mask | c->ipv6))   /* idle tracer: one array lookup */
        return 0;
    if (!peek_skb(skb, 1, 0, c, &p))        /* not ours: two probe reads, a few lookups */
        return 0;
    struct nt_event ev = {};
    read_skb(skb, &ev, &p);
    if (!dev)
        bpf_probe_read_kernel(&dev, sizeof(dev), &skb->dev);
    ev.point = point;
    ev.netns = dev_netns(dev);
    if (!ev.netns) {                        /* no device yet (or any more): the socket's */
        struct sock *sk = NULL;
        struct net *net = NULL;
        bpf_probe_read_kernel(&sk, sizeof(sk), &skb->sk);
        if (sk)
            bpf_probe_read_kernel(&net, sizeof(net), &((struct sock_common *)sk)->skc_net.net);
        if (net)
            bpf_probe_read_kernel(&ev.netns, sizeof(ev.netns), &net->ns.inum);
    }
    if (!want(&ev, c))
        return 0;
    ev.ifindex = dev_ifindex(dev);
    ev.location = location;
    ev.reason = reason;
    ev.ts_ns = bpf_ktime_get_ns();
    emit(&ev);
    if (point == NT_P_KFREE_SKB || point == NT_P_CONSUME_SKB)
        nf_forget(ev.skb);
    return 0;
}

/* One program for every skb tracepoint: user space attaches it once per tracepoint
 * (BPF_RAW_TRACEPOINT_OPEN) with the NT_P_* point as the link cookie. One program
 * instead of seven keeps bcc's compile time down. Arguments (raw tracepoint):
 *   net_dev_queue, netif_rx, netif_receive_skb (skb)
 *   net_dev_start_xmit (skb, dev)
 *   net_dev_xmit (skb, rc, dev, len): fires after the driver returned; on veth skb->dev
 *     is already the peer, so the device comes from the argument
 *   kfree_skb (skb, location, reason, rx_sk); consume_skb (skb, location) */
int tp_skb(struct bpf_raw_tracepoint_args *ctx)
{
    u8 point = nt_get_attach_cookie(ctx);
    struct net_device *dev = NULL;
    u64 skb = 0, location = 0, reason = 0;

    /* probe reads for args[1..]: the verifier refuses to attach a program that reads
     * past the arguments of the tracepoint (most of these have one or two) */
    skb = ctx->args[0];     /* every one of these tracepoints has it */
    if (point == NT_P_START_XMIT)
        bpf_probe_read_kernel(&dev, sizeof(dev), &ctx->args[1]);
    else if (point == NT_P_DEV_XMIT)
        bpf_probe_read_kernel(&dev, sizeof(dev), &ctx->args[2]);
    else if (point == NT_P_KFREE_SKB || point == NT_P_CONSUME_SKB)
        bpf_probe_read_kernel(&location, sizeof(location), &ctx->args[1]);
    if (point == NT_P_KFREE_SKB)
        bpf_probe_read_kernel(&reason, sizeof(u32), &ctx->args[2]);
    return on_skb((struct sk_buff *)skb, dev, point, location, (u32)reason);
}

int nf_hop(struct bpf_nf_ctx *ctx)
{
    const struct nf_hook_state *st = NULL;
    struct sk_buff *skb = NULL;
    struct net_device *in = NULL, *out = NULL;
    struct net *net = NULL;
    struct nt_config *c = get_config();
    struct nt_peek p;
    u8 pf = 0;
    if (!c || !(c->proto_mask | c->ipv6))   /* idle tracer: one array lookup */
        return NF_ACCEPT;

    bpf_probe_read_kernel(&st, sizeof(st), &ctx->state);
    bpf_probe_read_kernel(&skb, sizeof(skb), &ctx->skb);
    if (!st || !skb)
        return NF_ACCEPT;
    bpf_probe_read_kernel(&pf, 1, &st->pf);
    if (!peek_skb(skb, 0, pf == 10 ? ETH_P_IPV6 : ETH_P_IP, c, &p))
        return NF_ACCEPT;
    struct nt_event ev = {};
    ev.pf = pf;
    read_skb(skb, &ev, &p);
    bpf_probe_read_kernel(&net, sizeof(net), &st->net);
    if (net)
        bpf_probe_read_kernel(&ev.netns, sizeof(ev.netns), &net->ns.inum);
    if (!want(&ev, c))
        return NF_ACCEPT;
    bpf_probe_read_kernel(&ev.hook, 1, &st->hook);
    bpf_probe_read_kernel(&in, sizeof(in), &st->in);
    bpf_probe_read_kernel(&out, sizeof(out), &st->out);
    ev.ts_ns = bpf_ktime_get_ns();
    {
        struct nt_nf_key key = {.skb = (u64)skb, .hook_pf = ((u32)ev.hook << 8) | ev.pf};
        u64 *first = nf_seen.lookup(&key);
        if (first && ev.ts_ns - *first < NT_NF_PAIR_NS) {
            ev.point = NT_P_NF_LAST;
            nf_seen.delete(&key);
        } else {
            ev.point = NT_P_NF_FIRST;
            nf_seen.update(&key, &ev.ts_ns);
        }
    }
    ev.in_ifindex = dev_ifindex(in);
    ev.out_ifindex = dev_ifindex(out);
    ev.ifindex = ev.out_ifindex ? ev.out_ifindex : ev.in_ifindex;
    emit(&ev);
    return NF_ACCEPT;
}

#if NT_TC
/* The tc context is the kernel's sk_buff (__sk_buff is only the verifier's view of it).
 * bcc cannot call bpf_cast_to_kern_ctx, but probe reads through the context address see
 * the same skb the tracepoints see: one code path for both. */
static __always_inline int on_tc(struct __sk_buff *ctx, u8 point)
{
    on_skb((struct sk_buff *)(long)ctx, NULL, point, 0, 0);
    return -1;                  /* TCX_NEXT: let other programs decide */
}

/* One program for tcx ingress and egress. Direction: on ingress the kernel has set
 * skb_iif to this device; on egress skb_iif is the device a forwarded packet came in on,
 * or 0 for a local one (a hairpinned frame would read as ingress). */
int tc_hop(struct __sk_buff *ctx)
{
    return on_tc(ctx, ctx->ingress_ifindex == ctx->ifindex ? NT_P_TC_INGRESS : NT_P_TC_EGRESS);
}
#endif
