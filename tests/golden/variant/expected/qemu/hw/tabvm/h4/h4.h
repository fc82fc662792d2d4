/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * H4 framing and packet queues of the tabvm Bluetooth HCI devices
 *
 * Generated from tests/golden/variant/specs/btlink.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * The transport core of the usb-hci devices, with no QEMU dependency so that
 * it can also be compiled on its own and tested from the host
 * (tests/test_h4_core.py).
 *
 * Host -> guest: an H4 byte stream (packet type byte, then the packet with
 * its own length field) is reassembled into packets, however it is split or
 * merged. Complete packets wait in three queues (events, ACL + ISO, SCO)
 * until the guest polls the matching USB endpoint; an ACL or ISO packet is
 * not handed out while an event that arrived before it is still pending.
 * The queued bytes are bounded: the caller stops reading the stream when
 * tabvm_h4_host_room() is 0 (at most one packet more is allowed in
 * flight). A type byte that cannot start a packet is dropped on its own;
 * a packet longer than the configured limit is skipped; both are reported.
 *
 * Guest -> host: commands arrive whole; ACL and SCO data arrive as byte
 * streams cut at arbitrary points and are reassembled by their length
 * fields. Complete packets are framed with their type byte into a bounded
 * ring that the caller drains into the chardev; the last
 * TABVM_H4_COMMAND_RESERVE bytes of the ring are kept for commands.
 * USB carries ISO data on the bulk endpoint like ACL: a packet goes to the
 * host as ISO when its connection handle is one the host's events (CIS
 * Established, BIG Complete, BIG Sync Established) made an ISO link and no
 * later event (Disconnection Complete, BIG Terminate/Sync Lost) ended.
 */

#ifndef TABVM_H4_H
#define TABVM_H4_H

/* H4 packet indicators */
#define TABVM_H4_COMMAND        0x01
#define TABVM_H4_ACL            0x02
#define TABVM_H4_SCO            0x03
#define TABVM_H4_EVENT          0x04
#define TABVM_H4_ISO            0x05
#define TABVM_H4_TYPES          6

#define TABVM_H4_COMMAND_MAX    (3 + 255)
#define TABVM_H4_HANDLES        4096    /* 12-bit connection handles */
#define TABVM_H4_CIS            1
#define TABVM_H4_BIS            2       /* + BIG handle */
#define TABVM_H4_COMMAND_RESERVE 518

/* Queues towards the guest, one per kind of USB endpoint */
typedef enum {
    TABVM_H4_Q_EVENT,       /* interrupt IN */
    TABVM_H4_Q_ACL,         /* bulk IN: ACL and ISO */
    TABVM_H4_Q_SCO,         /* isochronous IN */
    TABVM_H4_QUEUES,
} TabvmH4Queue;

/* Directions, as seen from the guest (the Bluetooth host stack) */
typedef enum {
    TABVM_H4_TO_GUEST,
    TABVM_H4_TO_HOST,
} TabvmH4Dir;

typedef enum {
    TABVM_H4_DROP_BAD_TYPE,     /* byte that cannot start a packet */
    TABVM_H4_DROP_TOO_LONG,     /* length field over the limit */
    TABVM_H4_DROP_BAD_COMMAND,  /* length field and size disagree */
    TABVM_H4_DROP_NO_ROOM,      /* guest -> host ring full */
    TABVM_H4_DROP_NO_SCO,       /* SCO data while the guest polls none */
    TABVM_H4_DROP_REASONS,
} TabvmH4DropReason;

typedef struct TabvmH4Packet TabvmH4Packet;
struct TabvmH4Packet {
    TabvmH4Packet *next;
    uint64_t seq;           /* position in the host's stream */
    uint32_t len;           /* header + payload */
    uint32_t done;          /* bytes received (parser) or handed out (queue) */
    uint8_t type;
    uint8_t data[];
};

typedef struct {
    TabvmH4Packet *head, *tail;
} TabvmH4List;

/* Reassembles one byte stream; typed streams start packets with type bytes */
typedef struct {
    uint8_t fixed_type;     /* 0: typed stream */
    uint8_t type;           /* type of the packet being read, 0: none */
    uint8_t hdr[4];
    uint32_t hdr_len;
    uint32_t skip;          /* bytes of a dropped packet still to skip */
    TabvmH4Packet *pkt;
} TabvmH4Parser;

typedef struct {
    /* largest payload per type, both ways; 0: the host may not send it */
    uint32_t max_payload[TABVM_H4_TYPES];
    size_t queue_limit;     /* bytes waiting for the guest */
    size_t ring_size;       /* bytes waiting for the host */
} TabvmH4Config;

typedef struct {
    /* a complete packet crossed the device (for capture and tracing) */
    void (*packet)(void *opaque, TabvmH4Dir dir, uint8_t type,
                   const uint8_t *data, size_t len);
    /* something was dropped; len is what the packet declared, if known */
    void (*drop)(void *opaque, TabvmH4Dir dir, TabvmH4DropReason why,
                 uint8_t type, size_t len);
} TabvmH4Ops;

typedef struct {
    TabvmH4Config cfg;
    const TabvmH4Ops *ops;
    void *opaque;

    TabvmH4Parser from_host;
    TabvmH4List queue[TABVM_H4_QUEUES];
    size_t queued;          /* bytes in queue[] and from_host.pkt */
    uint64_t seq;
    bool sco_in;            /* the guest polls for SCO data */

    TabvmH4Parser from_guest[TABVM_H4_TYPES];   /* ACL, SCO used */
    uint8_t iso_link[TABVM_H4_HANDLES];  /* 0, CIS, or BIS of BIG n + BIS */
    uint8_t *ring;
    size_t ring_head;       /* first byte waiting for the host */
    size_t ring_used;

    uint64_t drops[TABVM_H4_DROP_REASONS];
} TabvmH4;

void tabvm_h4_init(TabvmH4 *h, const TabvmH4Config *cfg,
                   const TabvmH4Ops *ops, void *opaque);
void tabvm_h4_cleanup(TabvmH4 *h);
/* Forgets every queued and half-received packet in both directions */
void tabvm_h4_reset(TabvmH4 *h);

/* Host -> guest */
size_t tabvm_h4_host_room(const TabvmH4 *h);
void tabvm_h4_host_input(TabvmH4 *h, const uint8_t *buf, size_t len);
bool tabvm_h4_pending(const TabvmH4 *h, TabvmH4Queue q);
size_t tabvm_h4_take(TabvmH4 *h, TabvmH4Queue q, uint8_t *buf, size_t max);
void tabvm_h4_set_sco_in(TabvmH4 *h, bool on);

/* Guest -> host */
int tabvm_h4_command(TabvmH4 *h, const uint8_t *buf, size_t len);
bool tabvm_h4_fits(const TabvmH4 *h, uint8_t type, size_t len);
void tabvm_h4_guest_data(TabvmH4 *h, uint8_t type, const uint8_t *buf,
                         size_t len);
size_t tabvm_h4_ring_peek(const TabvmH4 *h, const uint8_t **data);
void tabvm_h4_ring_consume(TabvmH4 *h, size_t n);

#endif
