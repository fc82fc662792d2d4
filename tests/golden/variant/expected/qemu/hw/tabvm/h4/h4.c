/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * H4 framing and packet queues of the tabvm Bluetooth HCI devices
 *
 * Generated from tests/golden/variant/specs/btlink.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * See h4.h. Uses only the C library and GLib, so the host tests
 * can build this file against a stand-in for qemu/osdep.h.
 */

#include "qemu/osdep.h"
#include "hw/tabvm/h4/h4.h"

#define H4_HDR_MAX 4

/* Events that make and end ISO links (Bluetooth Core 5.4, Vol 4, Part E 7.7) */
#define HCI_EV_DISCONN_COMPLETE         0x05
#define HCI_EV_LE_META                  0x3e
#define HCI_EV_LE_CIS_ESTABLISHED       0x19
#define HCI_EV_LE_CREATE_BIG_COMPLETE   0x1b
#define HCI_EV_LE_TERMINATE_BIG_COMPLETE 0x1c
#define HCI_EV_LE_BIG_SYNC_ESTABLISHED  0x1d
#define HCI_EV_LE_BIG_SYNC_LOST         0x1e
#define HCI_BIG_HANDLE_MAX              0xef

/* Size of the header in front of the payload, 0 for a byte that is no type */
static const uint8_t tabvm_h4_hdr_size[TABVM_H4_TYPES] = {
    [TABVM_H4_COMMAND] = 3,
    [TABVM_H4_ACL] = 4,
    [TABVM_H4_SCO] = 3,
    [TABVM_H4_EVENT] = 2,
    [TABVM_H4_ISO] = 4,
};

static uint32_t tabvm_h4_payload_len(uint8_t type, const uint8_t *hdr)
{
    switch (type) {
    case TABVM_H4_ACL:
        return hdr[2] | (hdr[3] << 8);
    case TABVM_H4_ISO:
        return (hdr[2] | (hdr[3] << 8)) & 0x3fff;
    case TABVM_H4_EVENT:
        return hdr[1];
    default:                    /* command, SCO */
        return hdr[2];
    }
}

static TabvmH4Queue tabvm_h4_queue_of(uint8_t type)
{
    switch (type) {
    case TABVM_H4_EVENT:
        return TABVM_H4_Q_EVENT;
    case TABVM_H4_SCO:
        return TABVM_H4_Q_SCO;
    default:                    /* ACL, ISO */
        return TABVM_H4_Q_ACL;
    }
}

static void tabvm_h4_push(TabvmH4List *l, TabvmH4Packet *p)
{
    p->next = NULL;
    if (l->tail) {
        l->tail->next = p;
    } else {
        l->head = p;
    }
    l->tail = p;
}

static TabvmH4Packet *tabvm_h4_pop(TabvmH4List *l)
{
    TabvmH4Packet *p = l->head;

    l->head = p->next;
    if (!l->head) {
        l->tail = NULL;
    }
    return p;
}

static void tabvm_h4_drop(TabvmH4 *h, TabvmH4Dir dir,
                          TabvmH4DropReason why, uint8_t type, size_t len)
{
    h->drops[why]++;
    h->ops->drop(h->opaque, dir, why, type, len);
}

static size_t tabvm_h4_ring_free(const TabvmH4 *h)
{
    return h->cfg.ring_size - h->ring_used;
}

static void tabvm_h4_ring_put(TabvmH4 *h, const uint8_t *data, size_t len)
{
    while (len > 0) {
        size_t tail = (h->ring_head + h->ring_used) % h->cfg.ring_size;
        size_t n = MIN(len, h->cfg.ring_size - tail);

        memcpy(h->ring + tail, data, n);
        h->ring_used += n;
        data += n;
        len -= n;
    }
}

static void tabvm_h4_parser_reset(TabvmH4Parser *ps)
{
    g_free(ps->pkt);
    ps->pkt = NULL;
    ps->type = 0;
    ps->hdr_len = 0;
    ps->skip = 0;
}

/* Keeps iso_link[] current from an event the host sends */
static void tabvm_h4_track_iso(TabvmH4 *h, const uint8_t *ev, uint32_t len)
{
    const uint8_t *p = ev + 2;
    uint32_t plen = len - 2, first, i;
    uint16_t handle;

    if (ev[0] == HCI_EV_DISCONN_COMPLETE && plen >= 4 && p[0] == 0) {
        handle = (p[1] | (p[2] << 8)) & 0x0fff;
        h->iso_link[handle] = 0;
        return;
    }
    /* LE Meta events: subevent code, then status */
    if (ev[0] != HCI_EV_LE_META || plen < 2 || p[1] != 0) {
        return;
    }
    switch (p[0]) {
    case HCI_EV_LE_CIS_ESTABLISHED:
        if (plen >= 4) {
            h->iso_link[(p[2] | (p[3] << 8)) & 0x0fff] = TABVM_H4_CIS;
        }
        return;
    case HCI_EV_LE_CREATE_BIG_COMPLETE:
    case HCI_EV_LE_BIG_SYNC_ESTABLISHED:
        /* p[2] is the BIG handle; Num_BIS comes just before the BIS handles */
        first = p[0] == HCI_EV_LE_CREATE_BIG_COMPLETE ? 19 : 15;
        if (plen < first || p[2] > HCI_BIG_HANDLE_MAX) {
            return;
        }
        for (i = 0; i < p[first - 1] && first + 2 * i + 1 < plen; i++) {
            handle = (p[first + 2 * i] | (p[first + 2 * i + 1] << 8)) & 0x0fff;
            h->iso_link[handle] = TABVM_H4_BIS + p[2];
        }
        return;
    }
}

/* The end of a BIG (Terminate BIG Complete, BIG Sync Lost) ends its BISes */
static void tabvm_h4_track_big_end(TabvmH4 *h, const uint8_t *ev,
                                   uint32_t len)
{
    int i;

    if (ev[0] != HCI_EV_LE_META || len < 4 || ev[3] > HCI_BIG_HANDLE_MAX ||
        (ev[2] != HCI_EV_LE_TERMINATE_BIG_COMPLETE &&
         ev[2] != HCI_EV_LE_BIG_SYNC_LOST)) {
        return;
    }
    for (i = 0; i < TABVM_H4_HANDLES; i++) {
        if (h->iso_link[i] == TABVM_H4_BIS + ev[3]) {
            h->iso_link[i] = 0;
        }
    }
}

/* A packet from the host is complete: queue it for the guest */
static void tabvm_h4_to_guest(TabvmH4 *h, TabvmH4Packet *p)
{
    TabvmH4Queue q = tabvm_h4_queue_of(p->type);

    h->ops->packet(h->opaque, TABVM_H4_TO_GUEST, p->type, p->data, p->len);
    if (p->type == TABVM_H4_EVENT) {
        tabvm_h4_track_iso(h, p->data, p->len);
        tabvm_h4_track_big_end(h, p->data, p->len);
    }
    if (q == TABVM_H4_Q_SCO && !h->sco_in) {
        tabvm_h4_drop(h, TABVM_H4_TO_GUEST, TABVM_H4_DROP_NO_SCO,
                      p->type, p->len);
        h->queued -= p->len;
        g_free(p);
        return;
    }
    p->done = 0;
    tabvm_h4_push(&h->queue[q], p);
}

/* Data from the guest is complete: frame it into the ring, not the reserve */
static void tabvm_h4_to_host(TabvmH4 *h, TabvmH4Packet *p)
{
    uint16_t handle = (p->data[0] | (p->data[1] << 8)) & 0x0fff;

    if (p->type == TABVM_H4_ACL && h->iso_link[handle]) {
        p->type = TABVM_H4_ISO;
    }
    if (tabvm_h4_ring_free(h) < TABVM_H4_COMMAND_RESERVE + 1 + (size_t)p->len) {
        tabvm_h4_drop(h, TABVM_H4_TO_HOST, TABVM_H4_DROP_NO_ROOM,
                      p->type, p->len);
    } else {
        tabvm_h4_ring_put(h, &p->type, 1);
        tabvm_h4_ring_put(h, p->data, p->len);
        h->ops->packet(h->opaque, TABVM_H4_TO_HOST, p->type, p->data, p->len);
    }
    g_free(p);
}

/*
 * Reassembles packets from the byte stream in buf, whatever its cuts;
 * every byte is consumed. A typed stream (from the host) starts each
 * packet with its H4 type byte; a stream from the guest has fixed_type.
 */
static void tabvm_h4_parse(TabvmH4 *h, TabvmH4Parser *ps, TabvmH4Dir dir,
                           const uint8_t *buf, size_t len)
{
    while (len > 0) {
        TabvmH4Packet *p;
        uint32_t hs, plen;
        size_t n;

        if (ps->skip) {
            n = MIN(ps->skip, len);
            ps->skip -= n;
            buf += n;
            len -= n;
            continue;
        }
        if (!ps->type) {
            if (ps->fixed_type) {
                ps->type = ps->fixed_type;
            } else {
                uint8_t t = *buf++;

                len--;
                if (t >= TABVM_H4_TYPES || !h->cfg.max_payload[t]) {
                    tabvm_h4_drop(h, dir, TABVM_H4_DROP_BAD_TYPE,
                                  t, 0);
                    continue;
                }
                ps->type = t;
            }
            ps->hdr_len = 0;
        }
        hs = tabvm_h4_hdr_size[ps->type];
        if (!ps->pkt) {
            n = MIN(hs - ps->hdr_len, len);
            memcpy(ps->hdr + ps->hdr_len, buf, n);
            ps->hdr_len += n;
            buf += n;
            len -= n;
            if (ps->hdr_len < hs) {
                continue;
            }
            plen = tabvm_h4_payload_len(ps->type, ps->hdr);
            if (plen > h->cfg.max_payload[ps->type]) {
                tabvm_h4_drop(h, dir, TABVM_H4_DROP_TOO_LONG,
                              ps->type, hs + plen);
                ps->skip = plen;
                ps->type = 0;
                continue;
            }
            p = g_malloc(sizeof(*p) + hs + plen);
            p->next = NULL;
            p->seq = h->seq++;
            p->type = ps->type;
            p->len = hs + plen;
            p->done = hs;
            memcpy(p->data, ps->hdr, hs);
            ps->pkt = p;
            if (dir == TABVM_H4_TO_GUEST) {
                h->queued += p->len;
            }
        }
        p = ps->pkt;
        n = MIN(p->len - p->done, len);
        memcpy(p->data + p->done, buf, n);
        p->done += n;
        buf += n;
        len -= n;
        if (p->done == p->len) {
            ps->pkt = NULL;
            ps->type = 0;
            if (dir == TABVM_H4_TO_GUEST) {
                tabvm_h4_to_guest(h, p);
            } else {
                tabvm_h4_to_host(h, p);
            }
        }
    }
}

void tabvm_h4_init(TabvmH4 *h, const TabvmH4Config *cfg,
                   const TabvmH4Ops *ops, void *opaque)
{
    memset(h, 0, sizeof(*h));
    h->cfg = *cfg;
    h->ops = ops;
    h->opaque = opaque;
    h->ring = g_malloc(cfg->ring_size);
    h->from_guest[TABVM_H4_ACL].fixed_type = TABVM_H4_ACL;
    h->from_guest[TABVM_H4_SCO].fixed_type = TABVM_H4_SCO;
}

void tabvm_h4_reset(TabvmH4 *h)
{
    int i;

    for (i = 0; i < TABVM_H4_QUEUES; i++) {
        while (h->queue[i].head) {
            g_free(tabvm_h4_pop(&h->queue[i]));
        }
    }
    tabvm_h4_parser_reset(&h->from_host);
    for (i = 0; i < TABVM_H4_TYPES; i++) {
        tabvm_h4_parser_reset(&h->from_guest[i]);
    }
    memset(h->iso_link, 0, sizeof(h->iso_link));
    h->queued = 0;
    h->seq = 0;
    h->ring_head = 0;
    h->ring_used = 0;
}

void tabvm_h4_cleanup(TabvmH4 *h)
{
    tabvm_h4_reset(h);
    g_free(h->ring);
    h->ring = NULL;
}

size_t tabvm_h4_host_room(const TabvmH4 *h)
{
    return h->queued >= h->cfg.queue_limit ? 0 : h->cfg.queue_limit - h->queued;
}

void tabvm_h4_host_input(TabvmH4 *h, const uint8_t *buf, size_t len)
{
    tabvm_h4_parse(h, &h->from_host, TABVM_H4_TO_GUEST, buf, len);
}

bool tabvm_h4_pending(const TabvmH4 *h, TabvmH4Queue q)
{
    const TabvmH4Packet *p = h->queue[q].head;
    const TabvmH4Packet *ev = h->queue[TABVM_H4_Q_EVENT].head;

    if (!p) {
        return false;
    }
    /* e.g. Connection Complete must reach the host before the link's data */
    return q != TABVM_H4_Q_ACL || !ev || ev->seq > p->seq;
}

size_t tabvm_h4_take(TabvmH4 *h, TabvmH4Queue q, uint8_t *buf, size_t max)
{
    TabvmH4Packet *p = h->queue[q].head;
    size_t n;

    if (!tabvm_h4_pending(h, q)) {
        return 0;
    }
    n = MIN(max, p->len - p->done);
    memcpy(buf, p->data + p->done, n);
    p->done += n;
    if (p->done == p->len) {
        tabvm_h4_pop(&h->queue[q]);
        h->queued -= p->len;
        g_free(p);
    }
    return n;
}

void tabvm_h4_set_sco_in(TabvmH4 *h, bool on)
{
    TabvmH4List *l = &h->queue[TABVM_H4_Q_SCO];

    h->sco_in = on;
    while (!on && l->head) {
        TabvmH4Packet *p = tabvm_h4_pop(l);

        tabvm_h4_drop(h, TABVM_H4_TO_GUEST, TABVM_H4_DROP_NO_SCO,
                      p->type, p->len);
        h->queued -= p->len;
        g_free(p);
    }
}

int tabvm_h4_command(TabvmH4 *h, const uint8_t *buf, size_t len)
{
    uint8_t type = TABVM_H4_COMMAND;

    if (len < 3 || len != 3 + (size_t)buf[2]) {
        tabvm_h4_drop(h, TABVM_H4_TO_HOST, TABVM_H4_DROP_BAD_COMMAND,
                      type, len);
        return -EINVAL;
    }
    if (tabvm_h4_ring_free(h) < 1 + len) {
        tabvm_h4_drop(h, TABVM_H4_TO_HOST, TABVM_H4_DROP_NO_ROOM,
                      type, len);
        return -ENOSPC;
    }
    tabvm_h4_ring_put(h, &type, 1);
    tabvm_h4_ring_put(h, buf, len);
    h->ops->packet(h->opaque, TABVM_H4_TO_HOST, type, buf, len);
    return 0;
}

/* The guest sends ACL on bulk OUT and SCO on isochronous OUT */
static bool tabvm_h4_guest_stream(uint8_t type)
{
    return type == TABVM_H4_ACL || type == TABVM_H4_SCO;
}

/*
 * Whether len more bytes of ACL or SCO data from the guest surely fit in
 * the ring outside the command reserve, with what the parser holds: every
 * packet they complete adds a type byte and has at least a header.
 */
bool tabvm_h4_fits(const TabvmH4 *h, uint8_t type, size_t len)
{
    const TabvmH4Parser *ps;
    size_t held, bytes, need, room;

    if (!tabvm_h4_guest_stream(type)) {
        return false;
    }
    ps = &h->from_guest[type];
    held = ps->pkt ? ps->pkt->done : ps->hdr_len;
    bytes = held + len;
    need = bytes + bytes / tabvm_h4_hdr_size[type] + 1;
    room = tabvm_h4_ring_free(h);
    return room > TABVM_H4_COMMAND_RESERVE &&
           room - TABVM_H4_COMMAND_RESERVE >= need;
}

void tabvm_h4_guest_data(TabvmH4 *h, uint8_t type, const uint8_t *buf,
                         size_t len)
{
    if (!tabvm_h4_guest_stream(type)) {
        return;
    }
    tabvm_h4_parse(h, &h->from_guest[type], TABVM_H4_TO_HOST, buf, len);
}

size_t tabvm_h4_ring_peek(const TabvmH4 *h, const uint8_t **data)
{
    *data = h->ring + h->ring_head;
    return MIN(h->ring_used, h->cfg.ring_size - h->ring_head);
}

void tabvm_h4_ring_consume(TabvmH4 *h, size_t n)
{
    n = MIN(n, h->ring_used);
    h->ring_head = (h->ring_head + n) % h->cfg.ring_size;
    h->ring_used -= n;
}
