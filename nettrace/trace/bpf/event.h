/* nettrace: the one event layout shared by every probe (decoded in Python with bcc's
 * table .event(); never mirrored by hand). Numbers only: names are resolved in user space. */
#ifndef NETTRACE_EVENT_H
#define NETTRACE_EVENT_H

#ifndef NT_HDR_LEN
#define NT_HDR_LEN 128          /* header bytes copied per event: Ethernet+IP+L4(+VXLAN inner) */
#endif

/* where the event was taken (enum nettrace.trace.events.Point mirrors these numbers) */
#define NT_P_DEV_QUEUE     1
#define NT_P_START_XMIT    2
#define NT_P_DEV_XMIT      3
#define NT_P_NETIF_RX      4
#define NT_P_RECEIVE_SKB   5
#define NT_P_KFREE_SKB     6
#define NT_P_CONSUME_SKB   7
#define NT_P_NF_FIRST      8
#define NT_P_NF_LAST       9
#define NT_P_TC_INGRESS   10
#define NT_P_TC_EGRESS    11

/* watched-fingerprint keys, filled by the injector (nettrace.trace.watch) */
#define NT_K_IPID   1           /* proto + IPv4 id */
#define NT_K_PORT   2           /* proto + one L4 port, matched as source or destination */
#define NT_K_ICMP   3           /* ICMP echo id << 16 | seq */
#define NT_K_ARP    4           /* ARP sender or target IPv4 address */
#define NT_K_FLOW   5           /* next header + IPv6 flow label (IPv6 has no id; NAT66 keeps it) */
#define NT_K_ND     6           /* neighbour discovery target, last 32 bits of the address */

struct nt_key {
    u8 kind;
    u8 proto;
    u16 pad;
    u32 val;
};

struct nt_config {
    u32 live;                   /* 0: watched fingerprints only; 1: expression below */
    u32 netns_filter;           /* 1: only namespaces in netns_set */
    u32 proto;                  /* live: IP protocol, 0 any; 0x806 ARP */
    u32 port;                   /* live: source or destination port */
    u32 host;                   /* live: source or destination IPv4 (host order) */
    u32 src;
    u32 dst;
    u32 proto_mask;             /* IP protocols that can match (bit n: protocol n; bit 0: ARP);
                                 * 0: nothing is watched, ~0: everything may match */
    u32 ipv6;                   /* 1: an IPv6 fingerprint is watched (IPv6 packets are looked at) */
};

struct nt_event {
    u64 ts_ns;
    u64 skb;                    /* kernel skb address: a short-lived hint */
    u64 location;               /* kfree_skb/consume_skb caller */
    u32 netns;                  /* namespace inode */
    u32 ifindex;                /* device of the event (0 when unknown) */
    u32 in_ifindex;             /* netfilter state->in */
    u32 out_ifindex;            /* netfilter state->out */
    u32 trace_id;               /* watch-map value; 0 in live mode */
    u32 reason;                 /* enum skb_drop_reason */
    u32 len;                    /* skb->len */
    u16 ethertype;              /* L3 protocol, host order */
    u8 point;                   /* NT_P_* */
    u8 hook;                    /* netfilter hook number */
    u8 pf;                      /* netfilter family: 2 IPv4, 10 IPv6 */
    u8 l2;                      /* 1: hdr starts at the Ethernet header, 0: at the IP header */
    u16 hdr_len;
    u8 hdr[NT_HDR_LEN];
};

#endif
