"""Tests of the guest agent's Bluetooth verbs (hcilist, hciup, hciinfo, hcicmd,
lescan, hcirtt, l2send) and their host client methods, all on the host:

- the client's parsers and argument checks (glue/agent_client.py);
- the client's requests, against a scripted fake agent on a socketpair;
- the real agent on a pty: usage errors, and "no bluetooth" where the host
  kernel has no AF_BLUETOOTH;
- the real agent.c compiled together with a simulated kernel (FAKE_KERNEL below:
  Bluetooth sockets become socketpairs served by a fake controller and a fake
  L2CAP peer, which apply the agent's HCI filter like the kernel does) under
  AddressSanitizer/UBSan, driven through the client. This checks byte order,
  the filter bits, report parsing (malformed and random reports too), the
  legacy/extended scan fallback and the l2send exchange; it cannot check the
  real kernel's behaviour, which only the end-to-end run with the QEMU device does.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from fake_agent import FakeAgent, PtyAgents, compile_with_fakes
from glue.agent_client import (AgentError, HciCmdResult, HciDev, HciInfo,
                               L2SendResult, LeAdvert, _parse_hci_cmd, _parse_hci_info,
                               _parse_hci_list, _parse_l2_send, _parse_le_scan, _parse_rtt)

# -- parsers -------------------------------------------------------------------


def test_parse_hci_list():
    assert _parse_hci_list("") == []
    devs = _parse_hci_list("hci0 f0:12:34:56:78:9a 0x5\nhci1 00:00:00:00:00:00 0x0")
    assert devs == [HciDev(0, "hci0", "f0:12:34:56:78:9a", 5),
                    HciDev(1, "hci1", "00:00:00:00:00:00", 0)]
    assert devs[0].up and not devs[1].up


@pytest.mark.parametrize("text", [
    "hci0", "hci0 f0:12:34:56:78:9a", "hci0 f0:12:34:56:78:9a 5", "hcix f0:12:34:56:78:9a 0x5",
    "hci0 F0:12:34:56:78:9A 0x5", "hci0 f0:12:34:56:78 0x5", "hci0 f0:12:34:56:78:9a 0x5 x",
    "hci0 f0:12:34:56:78:9a 0x5\n", "hci0  f0:12:34:56:78:9a 0x5", "hci0 f0-12-34-56-78-9a 0x5",
])
def test_parse_hci_list_rejects(text):
    with pytest.raises(AgentError, match="hcilist"):
        _parse_hci_list(text)


INFO = ("name hci0 addr f0:12:34:56:78:9a flags 0x5 up 1 bus 1 type 0 acl_mtu 1021 "
        "acl_pkts 8 sco_mtu 64 sco_pkts 8")


def test_parse_hci_info():
    assert _parse_hci_info(INFO) == HciInfo("hci0", "f0:12:34:56:78:9a", 5, True, 1, 0,
                                            1021, 8, 64, 8)
    down = _parse_hci_info(INFO.replace("flags 0x5 up 1", "flags 0x0 up 0"))
    assert (down.flags, down.up) == (0, False)


@pytest.mark.parametrize("text", [
    "", INFO + " extra 1", INFO.replace("up 1", "up 2"), INFO.replace("0x5", "5"),
    INFO.replace("acl_mtu 1021", "acl_mtu -1"), INFO.replace("name hci0", "name"),
    INFO.replace("bus", "bux"), INFO.replace(" sco_pkts 8", ""),
    INFO.replace("f0:12:34:56:78:9a", "f0:12:34:56:78:9a:00"), INFO.replace(" ", "  ", 1),
])
def test_parse_hci_info_rejects(text):
    with pytest.raises(AgentError, match="hciinfo"):
        _parse_hci_info(text)


def test_parse_hci_cmd():
    assert _parse_hci_cmd("complete 00f09a785634") == HciCmdResult(
        "complete", bytes.fromhex("00f09a785634"), 0)
    assert _parse_hci_cmd("complete 0c") == HciCmdResult("complete", b"\x0c", 12)
    assert _parse_hci_cmd("complete -") == HciCmdResult("complete", b"", -1)
    assert _parse_hci_cmd("status 0x01") == HciCmdResult("status", b"", 1)
    assert _parse_hci_cmd("status 0x00").ok


@pytest.mark.parametrize("text", [
    "", "complete", "complete ", "complete 0", "complete 0G", "complete 00 11", "status 1",
    "status 0x1", "status 0x100", "Complete 00", "status 0x01\n", "complete - ",
])
def test_parse_hci_cmd_rejects(text):
    with pytest.raises(AgentError, match="hcicmd"):
        _parse_hci_cmd(text)


def test_parse_le_scan():
    assert _parse_le_scan("") == []
    text = ("01:02:03:04:05:06 public -50 -\n11:22:33:44:55:66 random -41 Tablet_Peer\n"
            "c0:00:00:00:00:01 anon 127 my?dev\nc0:00:00:00:00:02 0x07 0 -x")
    assert _parse_le_scan(text) == [
        LeAdvert("01:02:03:04:05:06", "public", -50, None),
        LeAdvert("11:22:33:44:55:66", "random", -41, "Tablet_Peer"),
        LeAdvert("c0:00:00:00:00:01", "anon", 127, "my?dev"),
        LeAdvert("c0:00:00:00:00:02", "0x07", 0, "-x"),
    ]


@pytest.mark.parametrize("line", [
    "01:02:03:04:05:06 public -50", "01:02:03:04:05:06 public -50 a b",
    "01:02:03:04:05:06 publik -50 x", "01:02:03:04:05:06 public -129 x",
    "01:02:03:04:05:06 public 128 x", "01:02:03:04:05:06 public x x",
    "01:02:03:04:05 public -50 x", "01:02:03:04:05:06 public -50 x\u00e9",
    "01:02:03:04:05:06 public -50 ", "01:02:03:04:05:06 public -50 x\n",
])
def test_parse_le_scan_rejects(line):
    with pytest.raises(AgentError, match="lescan"):
        _parse_le_scan(line)


def test_parse_rtt():
    assert _parse_rtt("120000\n98000", 2) == [120000, 98000]
    assert _parse_rtt("5") == [5]
    for text, count in (("", 1), ("1\n2", 3), ("1\n-2", 2), ("1.5", 1), ("1\n", 1),
                        ("\u0661", 1), ("1 2", 1)):
        with pytest.raises(AgentError, match="hcirtt"):
            _parse_rtt(text, count)


def test_parse_l2_send():
    assert _parse_l2_send("sent 1000 acked 1000 ns 123456789") == L2SendResult(
        1000, 1000, 123456789)
    for text in ("", "sent 1 acked 1", "sent 1 acked 1 ns -5", "sent x acked 1 ns 1",
                 "sent 1 acked 1 ns 1 ", "sent 1  acked 1 ns 1", "acked 1 sent 1 ns 1"):
        with pytest.raises(AgentError, match="l2send"):
            _parse_l2_send(text)


# -- client requests against a scripted fake agent --------------------------------


def test_client_requests_and_answers():
    fake = FakeAgent([
        ("ok", "hci0 f0:12:34:56:78:9a 0x5"), ("ok", "up"), ("ok", INFO),
        ("ok", "complete 009a78563412f0"), ("ok", "status 0x01"),
        ("ok", "11:22:33:44:55:66 public -41 Tablet_Peer"), ("ok", "1000\n2000\n3000"),
        ("ok", "sent 100 acked 100 ns 5000"),
    ])
    c = fake.client
    assert c.hci_list() == [HciDev(0, "hci0", "f0:12:34:56:78:9a", 5)]
    c.hci_up(0)
    assert c.hci_info(0).acl_mtu == 1021
    r = c.hci_cmd(0, 0x1009)
    assert r.ok and r.data[1:7][::-1].hex(":") == "f0:12:34:56:78:9a"
    assert c.hci_cmd(3, 0xFC00, bytes([1, 0xAB]), timeout_ms=500) == HciCmdResult(
        "status", b"", 1)
    assert c.le_scan(0, 1500) == [LeAdvert("11:22:33:44:55:66", "public", -41, "Tablet_Peer")]
    assert c.hci_rtt(0, 3) == [1000, 2000, 3000]
    assert c.l2_send(0, "AA:BB:CC:DD:EE:FF", "random", 0x80, 100, 23) == L2SendResult(
        100, 100, 5000)
    assert fake.requests == [
        "hcilist", "hciup 0", "hciinfo 0", "hcicmd 0 0x1009 - 2000", "hcicmd 3 0xfc00 01ab 500",
        "lescan 0 1500", "hcirtt 0 3", "l2send 0 aa:bb:cc:dd:ee:ff random 0x80 100 23",
    ]


def test_client_err_and_malformed_answers():
    fake = FakeAgent([("err", "no bluetooth: socket(AF_BLUETOOTH, BTPROTO_HCI): nope"),
                      ("ok", "1000\n2000"), ("ok", "down")])
    with pytest.raises(AgentError, match="hcilist: no bluetooth"):
        fake.client.hci_list()
    with pytest.raises(AgentError, match="hcirtt: malformed"):
        fake.client.hci_rtt(0, 3)  # 2 lines for 3 round trips
    with pytest.raises(AgentError, match="hciup"):
        fake.client.hci_up(0)


BAD_CALLS = {
    "dev negative": lambda c: c.hci_info(-1),
    "dev too big": lambda c: c.hci_up(0xFFFF),
    "dev str": lambda c: c.hci_info("0"),
    "dev bool": lambda c: c.hci_up(True),
    "opcode 0": lambda c: c.hci_cmd(0, 0),
    "opcode big": lambda c: c.hci_cmd(0, 0x10000),
    "params long": lambda c: c.hci_cmd(0, 0x1009, bytes(256)),
    "params str": lambda c: c.hci_cmd(0, 0x1009, "00"),
    "params int": lambda c: c.hci_cmd(0, 0x1009, 5),
    "cmd timeout 0": lambda c: c.hci_cmd(0, 0x1009, timeout_ms=0),
    "cmd timeout big": lambda c: c.hci_cmd(0, 0x1009, timeout_ms=60_001),
    "scan 0": lambda c: c.le_scan(0, 0),
    "scan long": lambda c: c.le_scan(0, 60_001),
    "scan float": lambda c: c.le_scan(0, 1.5),
    "rtt 0": lambda c: c.hci_rtt(0, 0),
    "rtt many": lambda c: c.hci_rtt(0, 100_001),
    "l2 address": lambda c: c.l2_send(0, "aa:bb:cc:dd:ee", "public", 0x80, 1, 1),
    "l2 address junk": lambda c: c.l2_send(0, "aa:bb:cc:dd:ee:fg", "public", 0x80, 1, 1),
    "l2 address sep": lambda c: c.l2_send(0, "aa-bb-cc-dd-ee-ff", "public", 0x80, 1, 1),
    "l2 type": lambda c: c.l2_send(0, "aa:bb:cc:dd:ee:ff", "static", 0x80, 1, 1),
    "l2 psm 0": lambda c: c.l2_send(0, "aa:bb:cc:dd:ee:ff", "public", 0, 1, 1),
    "l2 psm big": lambda c: c.l2_send(0, "aa:bb:cc:dd:ee:ff", "public", 0x100, 1, 1),
    "l2 total 0": lambda c: c.l2_send(0, "aa:bb:cc:dd:ee:ff", "public", 0x80, 0, 1),
    "l2 total big": lambda c: c.l2_send(0, "aa:bb:cc:dd:ee:ff", "public", 0x80, 10**9 + 1, 1),
    "l2 sdu 0": lambda c: c.l2_send(0, "aa:bb:cc:dd:ee:ff", "public", 0x80, 1, 0),
    "l2 sdu big": lambda c: c.l2_send(0, "aa:bb:cc:dd:ee:ff", "public", 0x80, 1, 65_536),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_client_checks_args_before_sending(name):
    fake = FakeAgent([])
    with pytest.raises(ValueError):
        BAD_CALLS[name](fake.client)
    assert fake.nothing_sent()


def test_client_limits_are_inclusive():
    fake = FakeAgent([("ok", "complete -"), ("ok", ""), ("ok", "1"),
                      ("ok", "sent 1000000000 acked 0 ns 1")])
    c = fake.client
    c.hci_cmd(0xFFFE, 0xFFFF, bytes(255), timeout_ms=60_000)
    c.le_scan(0, 60_000)
    c.hci_rtt(0, 1)
    c.l2_send(0, "00:00:00:00:00:00", "public", 0xFF, 10**9, 65_535, timeout=5)
    assert fake.requests[0] == f"hcicmd 65534 0xffff {'00' * 255} 60000"
    assert fake.requests[3] == "l2send 0 00:00:00:00:00:00 public 0xff 1000000000 65535"


# -- the real agent on a pty ------------------------------------------------------


def host_has_bluetooth() -> bool:
    try:
        socket.socket(31, socket.SOCK_RAW, 1).close()  # AF_BLUETOOTH, BTPROTO_HCI
        return True
    except OSError:
        return False


@pytest.mark.skipif(host_has_bluetooth(), reason="the host kernel has AF_BLUETOOTH")
@pytest.mark.parametrize("request_line", [
    "hcilist", "hciup 0", "hciinfo 0", "hcicmd 0 0x1009 - 2000", "lescan 0 100", "hcirtt 0 1",
    "l2send 0 aa:bb:cc:dd:ee:ff public 0x80 10 5",
])
def test_no_bluetooth_is_a_clear_err(real_agent, request_line):
    client, proc = real_agent
    with pytest.raises(AgentError, match=r": no bluetooth: socket\(AF_BLUETOOTH, BTPROTO_HCI\): "
                                         r"Address family not supported"):
        client.call(*request_line.split(" "))
    assert proc.poll() is None
    client.ping()


BAD_REQUESTS = [
    "hcilist x", "hcilist 0",
    "hciup", "hciup x", "hciup -1", "hciup 65535", "hciup 0 1", "hciup 0x0",
    "hciinfo", "hciinfo 1x", "hciinfo 0 0",
    "hcicmd", "hcicmd 0", "hcicmd 0 0x1009", "hcicmd 0 0x1009 -", "hcicmd 0 0x1009 - 0",
    "hcicmd 0 0x1009 - 60001", "hcicmd 0 0 - 10", "hcicmd 0 0x10000 - 10", "hcicmd 0 0x - 10",
    "hcicmd 0 0x1009 0 10", "hcicmd 0 0x1009 0g 10", "hcicmd 0 0x1009 " + "00" * 256 + " 10",
    "hcicmd 0 0x1009 - 10 x", "hcicmd 0 0x1009  - 10", "hcicmd x 0x1009 - 10",
    "hcicmd 0 -1 - 10",
    "lescan", "lescan 0", "lescan 0 0", "lescan 0 60001", "lescan 0 1 2", "lescan 0 1.5",
    "hcirtt", "hcirtt 0", "hcirtt 0 0", "hcirtt 0 100001", "hcirtt 0 1 1",
    "l2send", "l2send 0 aa:bb:cc:dd:ee:ff public 0x80 10",
    "l2send 0 aa:bb:cc:dd:ee:ff public 0x80 10 5 6",
    "l2send 0 aa:bb:cc:dd:ee public 0x80 10 5", "l2send 0 aa:bb:cc:dd:ee:fg public 0x80 10 5",
    "l2send 0 aa-bb-cc-dd-ee-ff public 0x80 10 5", "l2send 0 aa:bb:cc:dd:ee:ff: public 128 1 1",
    "l2send 0 aa:bb:cc:dd:ee:ff Public 0x80 10 5", "l2send 0 aa:bb:cc:dd:ee:ff public 0 10 5",
    "l2send 0 aa:bb:cc:dd:ee:ff public 0x100 10 5", "l2send 0 aa:bb:cc:dd:ee:ff public 256 10 5",
    "l2send 0 aa:bb:cc:dd:ee:ff public 0x80 0 5",
    "l2send 0 aa:bb:cc:dd:ee:ff public 0x80 1000000001 5",
    "l2send 0 aa:bb:cc:dd:ee:ff public 0x80 10 0", "l2send 0 aa:bb:cc:dd:ee:ff public 0x80 10 65536",
    "l2send 0 aa:bb:cc:dd:ee:ff public 0x80 99999999999999999999999 5",
]


@pytest.mark.parametrize("request_line", BAD_REQUESTS)
def test_bt_verbs_bad_args(real_agent, request_line):
    client, proc = real_agent
    verb = request_line.split(" ")[0]
    with pytest.raises(AgentError, match=f"{verb}: usage: {verb}"):
        client.call(verb, *request_line.split(" ")[1:])
    assert proc.poll() is None


# -- the real agent with a simulated Bluetooth kernel --------------------------------

# Included before agent.c: the Bluetooth calls agent.c makes (socket, bind,
# connect, setsockopt, getsockopt, ioctl, write, close) go to fakes. A Bluetooth
# socket is one end of an AF_UNIX SOCK_SEQPACKET socketpair; a thread on the other
# end plays the controller (HCI) or the peer (L2CAP). The controller applies the
# socket's HCI filter as the kernel's is_filtered_packet() does, so an event the
# agent did not ask for is never delivered. FAKE_BT selects the controller's
# behaviour, FAKE_L2 the peer's, FAKE_MTU the channel's outgoing MTU; FAKE_LOG
# names a file that gets one line per command and per L2CAP transfer.
FAKE_KERNEL = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <linux/usbdevice_fs.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/io.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define F_HCI 1
#define F_L2 2
struct fake {
    int kind, theirs, bound, dev;
    uint8_t filter[16];     /* as setsockopt(SOL_HCI, HCI_FILTER) got it */
    int filter_len;
    uint8_t bind_addr[14], conn_addr[14];
    struct timespec connect_at;
    int connecting, err;
};
static struct fake *fakes[4096];
static int dev_up[2] = {1, 0};
static const uint8_t dev_addr[2][6] = {{0x9a, 0x78, 0x56, 0x34, 0x12, 0xf0},
                                       {0x01, 0x00, 0x00, 0xdc, 0x1b, 0x00}};
static const char *mode(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}
static void logf_(const char *fmt, ...)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    const char *path = getenv("FAKE_LOG");
    va_list ap;
    if (!path)
        return;
    pthread_mutex_lock(&mu);
    FILE *f = fopen(path, "a");
    if (f) {
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        fputc('\n', f);
        fclose(f);
    }
    pthread_mutex_unlock(&mu);
}
static struct fake *fake_of(int fd)
{
    return fd >= 0 && fd < 4096 ? fakes[fd] : NULL;
}

/* ---- the controller ---- */
static int passes(struct fake *f, const uint8_t *pkt)
{
    uint32_t type_mask, ev_mask[2];
    if (f->filter_len != 16)
        return 0;               /* no filter set: the kernel's is all zero */
    memcpy(&type_mask, f->filter, 4);
    memcpy(ev_mask, f->filter + 4, 8);
    if (!(type_mask >> (pkt[0] & 31) & 1))
        return 0;
    return ev_mask[(pkt[1] & 63) >> 5] >> (pkt[1] & 31) & 1;
}
static void emit(struct fake *f, const uint8_t *params, size_t n, uint8_t code)
{
    uint8_t pkt[300] = {0x04, code, (uint8_t)n};
    if (n)
        memcpy(pkt + 3, params, n);
    if (passes(f, pkt))
        send(f->theirs, pkt, 3 + n, MSG_NOSIGNAL);
}
static void complete(struct fake *f, unsigned op, const uint8_t *rp, size_t n)
{
    uint8_t p[260] = {1, op & 0xff, op >> 8};
    if (n)
        memcpy(p + 3, rp, n);
    emit(f, p, 3 + n, 0x0e);
}
static void cmd_status(struct fake *f, unsigned op, uint8_t status)
{
    uint8_t p[4] = {status, 1, op & 0xff, op >> 8};
    emit(f, p, 4, 0x0f);
}
static size_t put_ad(uint8_t *p, uint8_t type, const char *s)
{
    size_t n = strlen(s);
    p[0] = (uint8_t)(n + 1);
    p[1] = type;
    memcpy(p + 2, s, n);
    return n + 2;
}
/* A legacy or extended report: event type, address type, address (MSB first
 * as a string), rssi, AD data. Returns its length. */
static size_t put_report(uint8_t *p, int ext, uint8_t addr_type, const char *addr, int8_t rssi,
                         const uint8_t *ad, size_t ad_len)
{
    uint8_t a[6];
    unsigned v[6];
    sscanf(addr, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]);
    for (int i = 0; i < 6; i++)
        a[5 - i] = (uint8_t)v[i];
    if (!ext) {
        p[0] = 0x00;                    /* ADV_IND */
        p[1] = addr_type;
        memcpy(p + 2, a, 6);
        p[8] = (uint8_t)ad_len;
        memcpy(p + 9, ad, ad_len);
        p[9 + ad_len] = (uint8_t)rssi;
        return 10 + ad_len;
    }
    memset(p, 0, 24);
    p[0] = 0x13;                        /* legacy ADV_IND */
    p[2] = addr_type;
    memcpy(p + 3, a, 6);
    p[9] = 1;                           /* primary PHY 1M */
    p[11] = 0xff;                       /* no SID */
    p[12] = 0x7f;                       /* TX power n/a */
    p[13] = (uint8_t)rssi;
    p[23] = (uint8_t)ad_len;
    memcpy(p + 24, ad, ad_len);
    return 24 + ad_len;
}
static void adverts(struct fake *f, int ext)
{
    uint8_t ev[255], ad[64];
    size_t n, k;
    uint8_t sub = ext ? 0x0d : 0x02;

    /* two reports in one event; a shortened name, a complete one with a space
     * and an unprintable byte */
    ev[0] = sub;
    ev[1] = 2;
    n = 2;
    k = put_ad(ad, 0x01, "\x06");
    k += put_ad(ad + k, 0x08, "Tab");
    n += put_report(ev + n, ext, 0, "11:22:33:44:55:66", -40, ad, k);
    k = put_ad(ad, 0x09, "my dev\x01");
    n += put_report(ev + n, ext, 1, "c0:00:00:00:00:01", -70, ad, k);
    emit(f, ev, n, 0x3e);
    /* the scan response: complete name, then another advert with the short one */
    k = put_ad(ad, 0x09, "Tablet Peer");
    n = 2 + put_report(ev + 2, ext, 0, "11:22:33:44:55:66", -42, ad, k);
    emit(f, ev, n, 0x3e);
    k = put_ad(ad, 0x08, "Tab");
    n = 2 + put_report(ev + 2, ext, 0, "11:22:33:44:55:66", -41, ad, k);
    ev[1] = 1;
    emit(f, ev, n, 0x3e);
    /* an AD structure running past the data: no name */
    ad[0] = 9;
    ad[1] = 0x09;
    memcpy(ad + 2, "Cut", 3);
    n = 2 + put_report(ev + 2, ext, 0, "01:02:03:04:05:06", -50, ad, 5);
    emit(f, ev, n, 0x3e);
    /* three reports announced, one present, and that one cut short */
    k = put_ad(ad, 0x09, "Ghost");
    n = 2 + put_report(ev + 2, ext, 0, "00:00:00:00:00:09", -60, ad, k);
    ev[1] = 3;
    emit(f, ev, n - 3, 0x3e);
    /* a report missing only its last byte (legacy: the RSSI) */
    k = put_ad(ad, 0x09, "Almost");
    n = 2 + put_report(ev + 2, ext, 0, "00:00:00:00:00:0a", -60, ad, k);
    ev[1] = 1;
    emit(f, ev, n - 1, 0x3e);
    /* another subevent, an empty LE meta event, and one not asked for */
    emit(f, (const uint8_t *)"\x01\x00", 2, 0x3e);
    emit(f, ev, 0, 0x3e);
    emit(f, (const uint8_t *)"\x01\x01\x00\x01\x00", 5, 0x13);
    if (ext) {
        k = put_ad(ad, 0x09, "Nobody");
        n = 2 + put_report(ev + 2, ext, 0xff, "00:00:00:00:00:00", 127, ad, k);
        ev[1] = 1;
        emit(f, ev, n, 0x3e);
    }
}
static void random_adverts(struct fake *f)
{
    uint8_t ev[255];
    unsigned seed = 12345;
    for (int i = 0; i < 3000; i++) {
        size_t n = rand_r(&seed) % 256;
        for (size_t j = 0; j < n; j++)
            ev[j] = (uint8_t)rand_r(&seed);
        if (n > 0)
            ev[0] = i % 3 == 0 ? 0x02 : i % 3 == 1 ? 0x0d : ev[0];
        if (n > 1 && i % 2)
            ev[1] = 1 + ev[1] % 4;
        emit(f, ev, n, 0x3e);
    }
}
static void *controller(void *arg)
{
    struct fake *f = arg;
    const char *bt = mode("FAKE_BT", "ok");
    uint8_t pkt[300];
    for (;;) {
        ssize_t n = recv(f->theirs, pkt, sizeof(pkt), 0);
        if (n <= 0)
            break;
        if (n < 4 || pkt[0] != 0x01 || (size_t)n != 4u + pkt[3]) {
            logf_("bad command packet of %zd bytes", n);
            continue;
        }
        unsigned op = pkt[1] | pkt[2] << 8;
        char hex[600] = "";
        for (int i = 0; i < pkt[3]; i++)
            sprintf(hex + 2 * i, "%02x", pkt[4 + i]);
        logf_("cmd 0x%04x %s", op, hex);
        if (!strcmp(bt, "silent"))
            continue;
        /* an LE meta event (not asked for by hcicmd/hcirtt), a Command Complete of
         * another opcode and an unrelated event come first */
        emit(f, (const uint8_t *)"\x02\x00", 2, 0x3e);
        complete(f, 0x0c03, (const uint8_t *)"\x00", 1);
        emit(f, (const uint8_t *)"\x01\x01\x00\x01\x00", 5, 0x13);
        int ext_only = !strcmp(bt, "extonly") || !strcmp(bt, "extfail");
        uint8_t st = 0;
        switch (op) {
        case 0x1009: {
            uint8_t rp[7] = {0};
            memcpy(rp + 1, dev_addr[f->dev], 6);
            complete(f, op, rp, 7);
            break;
        }
        case 0x200b:
            st = ext_only ? 0x01 : 0;
            complete(f, op, &st, 1);
            break;
        case 0x200c:
            st = !strcmp(bt, "disallow") && pkt[4] ? 0x0c : 0;
            complete(f, op, &st, 1);
            if (!st && pkt[4])
                !strcmp(bt, "fuzz") ? random_adverts(f) : adverts(f, 0);
            break;
        case 0x2041:
            st = !strcmp(bt, "extfail") ? 0x12 : 0;
            complete(f, op, &st, 1);
            break;
        case 0x2042:
            complete(f, op, &st, 1);
            if (pkt[4])
                adverts(f, 1);
            break;
        case 0x0c99:
            complete(f, op, NULL, 0);   /* no return parameters at all */
            break;
        case 0xfc00:
            cmd_status(f, op, 0x01);
            break;
        default:
            complete(f, op, &st, 1);
        }
    }
    close(f->theirs);
    return NULL;
}

/* ---- the L2CAP peer ---- */
static void *l2peer(void *arg)
{
    struct fake *f = arg;
    const char *l2 = mode("FAKE_L2", "ok");
    static uint8_t sdu[70000];
    unsigned long long total = 0, got = 0, sdus = 0, max_sdu = 0, bad = 0;
    ssize_t n = recv(f->theirs, sdu, sizeof(sdu), 0);
    if (n != 8) {
        logf_("l2 first SDU is %zd bytes, not 8", n);
        close(f->theirs);
        return NULL;
    }
    for (int i = 0; i < 8; i++)
        total = total << 8 | sdu[i];
    while (got < total) {
        n = recv(f->theirs, sdu, sizeof(sdu), 0);
        if (n <= 0)
            break;
        if (sdus && (unsigned long long)n > max_sdu)
            bad++;                      /* only the first SDUs are full-size */
        if ((unsigned long long)n > max_sdu)
            max_sdu = n;
        for (ssize_t i = 0; i < n; i++)
            if (sdu[i] != (uint8_t)(got + i))
                bad++;
        got += n;
        sdus++;
    }
    logf_("l2 total %llu got %llu sdus %llu max %llu bad %llu", total, got, sdus, max_sdu, bad);
    char ans[64];
    if (!strcmp(l2, "close")) {
        close(f->theirs);
        return NULL;
    }
    if (!strcmp(l2, "garbage"))
        snprintf(ans, sizeof(ans), "%llu bytes\x01", got);
    else
        snprintf(ans, sizeof(ans), "%llu\n", got - !strcmp(l2, "short") - bad);
    send(f->theirs, ans, strlen(ans), MSG_NOSIGNAL);
    sleep(1);
    close(f->theirs);
    return NULL;
}

/* ---- the fakes ---- */
static int fake_socket(int domain, int type, int proto)
{
    int sv[2];
    pthread_t t;
    if (domain != 31)
        return socket(domain, type, proto);
    if (!strcmp(mode("FAKE_BT", "ok"), "none")) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    int base = type & ~(SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (!((proto == 1 && base == SOCK_RAW) || (proto == 0 && base == SOCK_SEQPACKET))) {
        errno = EPROTONOSUPPORT;
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    if (type & SOCK_NONBLOCK)   /* the agent's end only: the fake's threads block */
        fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    struct fake *f = calloc(1, sizeof(*f));
    f->kind = proto == 1 ? F_HCI : F_L2;
    f->theirs = sv[1];
    fakes[sv[0]] = f;
    pthread_create(&t, NULL, f->kind == F_HCI ? controller : l2peer, f);
    pthread_detach(t);
    return sv[0];
}
static int fake_close(int fd)
{
    if (fake_of(fd))
        fakes[fd] = NULL;       /* the thread sees EOF and ends; f is never freed */
    return close(fd);
}
static int fake_bind(int fd, const struct sockaddr *a, socklen_t len)
{
    struct fake *f = fake_of(fd);
    const uint8_t *p = (const uint8_t *)a;
    if (!f)
        return bind(fd, a, len);
    if (f->bound || len < 6 || p[0] != 31 || p[1] != 0) {
        errno = EINVAL;
        return -1;
    }
    if (f->kind == F_HCI) {
        unsigned dev = p[2] | p[3] << 8, channel = p[4] | p[5] << 8;
        if (len != 6 || channel != 0) {
            errno = EINVAL;
            return -1;
        }
        if (dev > 1) {
            errno = ENODEV;
            return -1;
        }
        f->dev = (int)dev;
    } else {
        /* family, psm 0, the controller's address, cid 0, LE public */
        if (len != 14 || p[2] || p[3] || memcmp(p + 4, dev_addr[0], 6) || p[10] || p[11] ||
            p[12] != 1) {
            logf_("l2 bind: unexpected address");
            errno = EADDRNOTAVAIL;
            return -1;
        }
        memcpy(f->bind_addr, p, 14);
    }
    f->bound = 1;
    return 0;
}
static int fake_connect(int fd, const struct sockaddr *a, socklen_t len)
{
    static const uint8_t peer[6] = {0xef, 0xbe, 0x00, 0x00, 0x0d, 0xd0}; /* d0:0d:00:00:be:ef */
    struct fake *f = fake_of(fd);
    const uint8_t *p = (const uint8_t *)a;
    if (!f)
        return connect(fd, a, len);
    if (f->kind != F_L2 || !f->bound || len != 14 || p[0] != 31 || p[1] != 0) {
        errno = EINVAL;
        return -1;
    }
    memcpy(f->conn_addr, p, 14);
    /* psm 0x0080 little endian, the peer's address, cid 0 */
    if (p[2] != 0x80 || p[3] || memcmp(p + 4, peer, 6) || p[10] || p[11] ||
        (p[12] != 1 && p[12] != 2)) {
        logf_("l2 connect: unexpected address");
        errno = EHOSTUNREACH;
        return -1;
    }
    logf_("l2 connect type %d", p[12]);
    clock_gettime(CLOCK_MONOTONIC, &f->connect_at);
    f->connect_at.tv_nsec += 200000000;
    if (f->connect_at.tv_nsec >= 1000000000) {
        f->connect_at.tv_sec++;
        f->connect_at.tv_nsec -= 1000000000;
    }
    f->connecting = 1;
    errno = EINPROGRESS;
    return -1;
}
static int connected(struct fake *f)
{
    struct timespec now;
    const char *l2 = mode("FAKE_L2", "ok");
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!f->connecting || !strcmp(l2, "never"))
        return 0;
    int due = now.tv_sec > f->connect_at.tv_sec ||
              (now.tv_sec == f->connect_at.tv_sec && now.tv_nsec >= f->connect_at.tv_nsec);
    if (due && !strcmp(l2, "refuse")) {
        f->err = ECONNREFUSED;
        f->connecting = 0;
        return 0;
    }
    return due;
}
static int fake_setsockopt(int fd, int level, int name, const void *v, socklen_t len)
{
    struct fake *f = fake_of(fd);
    if (!f || level == SOL_SOCKET)
        return setsockopt(fd, level, name, v, len);
    if (f->kind == F_HCI && level == 0 && name == 2 && len <= 16) {
        memcpy(f->filter, v, len);
        f->filter_len = (int)len;
        return 0;
    }
    errno = ENOPROTOOPT;
    return -1;
}
static int fake_getsockopt(int fd, int level, int name, void *v, socklen_t *len)
{
    struct fake *f = fake_of(fd);
    if (!f)
        return getsockopt(fd, level, name, v, len);
    if (level == SOL_SOCKET && name == SO_ERROR && *len >= sizeof(int)) {
        connected(f);
        *(int *)v = f->err;
        f->err = 0;
        return 0;
    }
    if (f->kind == F_L2 && level == 274 && name == 12 && *len >= 2) {
        struct pollfd pfd = {.fd = fd};
        poll(&pfd, 1, 0);
        if (!connected(f) || (pfd.revents & POLLHUP)) {   /* the peer hung up */
            errno = ENOTCONN;
            return -1;
        }
        uint16_t mtu = (uint16_t)atoi(mode("FAKE_MTU", "247"));
        memcpy(v, &mtu, 2);
        *len = 2;
        return 0;
    }
    errno = ENOPROTOOPT;
    return -1;
}
static int fake_ioctl(int fd, unsigned long req, unsigned long arg)
{
    struct fake *f = fake_of(fd);
    if (!f)
        return ioctl(fd, req, arg);
    if (req == _IOW('H', 201, int)) {             /* HCIDEVUP */
        if (arg > 1) {
            errno = ENODEV;
            return -1;
        }
        if (dev_up[arg]) {
            errno = EALREADY;
            return -1;
        }
        dev_up[arg] = 1;
        return 0;
    }
    if (req == _IOR('H', 210, int)) {             /* HCIGETDEVLIST, newest first */
        uint8_t *p = (uint8_t *)arg;
        uint16_t num;
        memcpy(&num, p, 2);
        if (num < 2) {
            errno = EINVAL;
            return -1;
        }
        uint16_t two = 2, id1 = 1, id0 = 0;
        uint32_t o1 = dev_up[1] ? 5 : 0, o0 = dev_up[0] ? 5 : 0;
        memcpy(p, &two, 2);
        memcpy(p + 4, &id1, 2);
        memcpy(p + 8, &o1, 4);
        memcpy(p + 12, &id0, 2);
        memcpy(p + 16, &o0, 4);
        return 0;
    }
    if (req == _IOR('H', 211, int)) {             /* HCIGETDEVINFO */
        uint8_t *p = (uint8_t *)arg;
        uint16_t id, v16;
        uint32_t flags;
        memcpy(&id, p, 2);
        if (id > 1) {
            errno = ENODEV;
            return -1;
        }
        memset(p + 2, 0, 90);
        snprintf((char *)p + 2, 8, "hci%u", id);
        memcpy(p + 10, dev_addr[id], 6);
        flags = dev_up[id] ? 0x5 : 0;
        memcpy(p + 16, &flags, 4);
        p[20] = 0x01;                             /* bus USB, primary */
        v16 = 1021; memcpy(p + 44, &v16, 2);
        v16 = 8;    memcpy(p + 46, &v16, 2);
        v16 = 64;   memcpy(p + 48, &v16, 2);
        v16 = 7;    memcpy(p + 50, &v16, 2);
        memset(p + 52, 0xee, 40);                 /* stats: must not be read as fields */
        return 0;
    }
    errno = ENOTTY;
    return -1;
}
static ssize_t fake_write(int fd, const void *p, size_t n)
{
    struct fake *f = fake_of(fd);
    if (f && f->kind == F_HCI) {
        if (!f->bound) {
            errno = EBADFD;
            return -1;
        }
        if (!dev_up[f->dev]) {
            errno = ENETDOWN;
            return -1;
        }
    }
    return write(fd, p, n);
}

#define socket(d, t, p) fake_socket(d, t, p)
#define close(fd) fake_close(fd)
#define bind(fd, a, l) fake_bind(fd, a, l)
#define connect(fd, a, l) fake_connect(fd, a, l)
#define setsockopt(fd, l, n, v, s) fake_setsockopt(fd, l, n, v, s)
#define getsockopt(fd, l, n, v, s) fake_getsockopt(fd, l, n, v, s)
#define ioctl(fd, r, ...) fake_ioctl(fd, r, (unsigned long)(0 __VA_OPT__(,) __VA_ARGS__))
#define write(fd, p, n) fake_write(fd, p, n)
#define main agent_main
#include AGENT_C
#undef main

int main(int argc, char **argv)
{
    return agent_main(argc, argv);
}
"""


@pytest.fixture(scope="module")
def fake_agent_bin(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fake-bt")
    src = d / "fake_kernel.c"
    src.write_text(FAKE_KERNEL)
    return compile_with_fakes(d / "agent-fake-bt", [src], flags=["-pthread"])


@pytest.fixture
def fake_bt(fake_agent_bin, tmp_path):
    """start(**env) -> (client, proc, log path); the agent with a simulated kernel."""
    agents, logs = PtyAgents(), []

    def start(**env: str):
        log = tmp_path / f"fake{len(logs)}.log"
        logs.append(log)
        env = {"FAKE_LOG": str(log), "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1", **env}
        client, proc = agents.start(fake_agent_bin, env)
        return client, proc, log

    yield start
    assert agents.stop() == []


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_fake_hci_list_info_up(fake_bt):
    client, _, _ = fake_bt()
    assert client.hci_list() == [HciDev(0, "hci0", "f0:12:34:56:78:9a", 5),
                                 HciDev(1, "hci1", "00:1b:dc:00:00:01", 0)]
    assert client.hci_info(0) == HciInfo("hci0", "f0:12:34:56:78:9a", 5, True, 1, 0,
                                         1021, 8, 64, 7)
    assert not client.hci_info(1).up
    client.hci_up(0)  # EALREADY
    client.hci_up(1)
    assert client.hci_info(1).up
    with pytest.raises(AgentError, match="hciinfo: hci5: no such controller"):
        client.hci_info(5)
    with pytest.raises(AgentError, match="hciup: hci2: no such controller"):
        client.hci_up(2)


def test_fake_no_bluetooth(fake_bt):
    client, _, _ = fake_bt(FAKE_BT="none")
    for call in (client.hci_list, lambda: client.hci_up(0), lambda: client.hci_rtt(0, 1),
                 lambda: client.l2_send(0, "d0:0d:00:00:be:ef", "public", 0x80, 1, 1)):
        with pytest.raises(AgentError, match="no bluetooth: socket.*Address family not"):
            call()


def test_fake_hci_cmd(fake_bt):
    client, _, log = fake_bt()
    r = client.hci_cmd(0, 0x1009)
    assert r.kind == "complete" and r.ok
    assert r.data[1:][::-1].hex(":") == "f0:12:34:56:78:9a"  # BD_ADDR is little endian
    assert client.hci_cmd(0, 0xFC00, bytes([1, 0xAB])) == HciCmdResult("status", b"", 1)
    assert client.hci_cmd(0, 0x0C99) == HciCmdResult("complete", b"", -1)
    assert client.hci_cmd(0, 0x0C03, bytes(range(255))).ok
    assert log_lines(log) == ["cmd 0x1009 ", "cmd 0xfc00 01ab", "cmd 0x0c99 ",
                              "cmd 0x0c03 " + bytes(range(255)).hex()]
    with pytest.raises(AgentError, match=r"hcicmd: hci1 is down \(hciup 1 first\)"):
        client.hci_cmd(1, 0x1009)
    with pytest.raises(AgentError, match="hcicmd: hci7: no such controller"):
        client.hci_cmd(7, 0x1009)


def test_fake_hci_cmd_timeout(fake_bt):
    client, _, _ = fake_bt(FAKE_BT="silent")
    start = time.monotonic()
    with pytest.raises(AgentError, match="no Command Complete/Status for 0x1009 within 300 ms"):
        client.hci_cmd(0, 0x1009, timeout_ms=300)
    assert 0.3 <= time.monotonic() - start < 3
    with pytest.raises(AgentError, match="round trip 1 of 5: no answer .* within 2000 ms"):
        client.hci_rtt(0, 5)
    client.ping()


def test_fake_hci_rtt(fake_bt):
    client, _, log = fake_bt()
    rtts = client.hci_rtt(0, 200)
    assert len(rtts) == 200 and all(0 < ns < 2_000_000_000 for ns in rtts)
    assert log_lines(log) == ["cmd 0x1009 "] * 200


EXPECTED_SCAN = [
    LeAdvert("01:02:03:04:05:06", "public", -50, None),
    LeAdvert("11:22:33:44:55:66", "public", -41, "Tablet_Peer"),
    LeAdvert("c0:00:00:00:00:01", "random", -70, "my_dev?"),
]


def test_fake_le_scan_legacy(fake_bt):
    client, _, log = fake_bt()
    start = time.monotonic()
    assert client.le_scan(0, 500) == EXPECTED_SCAN
    assert 0.5 <= time.monotonic() - start < 5
    assert log_lines(log) == ["cmd 0x200b 01100010000000", "cmd 0x200c 0100", "cmd 0x200c 0000"]


@pytest.mark.parametrize("bt", ["extonly", "disallow"])
def test_fake_le_scan_falls_back_to_extended(fake_bt, bt):
    client, _, log = fake_bt(FAKE_BT=bt)
    assert client.le_scan(0, 300) == [LeAdvert("00:00:00:00:00:00", "anon", 127, "Nobody"),
                                      *EXPECTED_SCAN]
    first = ["cmd 0x200b 01100010000000"] + (["cmd 0x200c 0100"] if bt == "disallow" else [])
    assert log_lines(log) == first + ["cmd 0x2041 0000010110001000", "cmd 0x2042 010000000000",
                                      "cmd 0x2042 000000000000"]


def test_fake_le_scan_errors(fake_bt):
    client, _, log = fake_bt(FAKE_BT="extfail")
    with pytest.raises(AgentError, match=r"LE Set Extended Scan Parameters \(0x2041\) failed: "
                                         r"status 0x12 \(after the legacy scan commands failed: "
                                         r"status 0x01\)"):
        client.le_scan(0, 100)
    with pytest.raises(AgentError, match=r"lescan: hci1 is down"):
        client.le_scan(1, 100)
    client, _, _ = fake_bt(FAKE_BT="silent")
    with pytest.raises(AgentError, match=r"LE Set Scan Parameters \(0x200b\): no answer within "
                                         r"2000 ms"):
        client.le_scan(0, 100)


def test_fake_le_scan_random_reports(fake_bt):
    client, proc, _ = fake_bt(FAKE_BT="fuzz")
    adverts = client.le_scan(0, 1500)
    assert 0 < len(adverts) <= 256
    assert [a.address for a in adverts] == sorted(a.address for a in adverts)
    assert proc.poll() is None
    client.ping()


PEER = "d0:0d:00:00:be:ef"


@pytest.mark.parametrize("total,sdu", [(1, 1), (1000, 247), (100_000, 200), (70_001, 247)])
def test_fake_l2_send(fake_bt, total, sdu):
    client, _, log = fake_bt()
    r = client.l2_send(0, PEER.upper(), "random", 0x80, total, sdu)
    assert (r.sent, r.acked) == (total, total) and r.elapsed_ns > 0
    sdus = -(-total // sdu)
    assert log_lines(log) == ["l2 connect type 2",
                              f"l2 total {total} got {total} sdus {sdus} max {min(sdu, total)} bad 0"]


def test_fake_l2_send_errors(fake_bt):
    client, _, _ = fake_bt()
    with pytest.raises(AgentError, match="SDU 248 is larger than the channel's outgoing MTU 247"):
        client.l2_send(0, PEER, "public", 0x80, 1000, 248)
    with pytest.raises(AgentError, match=r"hci1 is down \(hciup 1 first\)"):
        client.l2_send(1, PEER, "public", 0x80, 1000, 100)
    with pytest.raises(AgentError, match="connect to d0:0d:00:00:be:ee psm 0x80: No route"):
        client.l2_send(0, "d0:0d:00:00:be:ee", "public", 0x80, 1000, 100)
    with pytest.raises(AgentError, match="hci3: no such controller"):
        client.l2_send(3, PEER, "public", 0x80, 1000, 100)
    client.ping()


@pytest.mark.parametrize("l2,message", [
    ("refuse", "connect to d0:0d:00:00:be:ef psm 0x80: Connection refused"),
    ("short", None),
    ("garbage", r"the peer's answer is not a decimal count: \"1000 bytes\?\""),
    ("close", "the peer closed the channel without answering"),
])
def test_fake_l2_send_peer_misbehaves(fake_bt, l2, message):
    client, _, _ = fake_bt(FAKE_L2=l2)
    if message is None:
        r = client.l2_send(0, PEER, "public", 0x80, 1000, 100)
        assert (r.sent, r.acked) == (1000, 999)  # reported as is; judging it is the caller's
        return
    with pytest.raises(AgentError, match=message):
        client.l2_send(0, PEER, "public", 0x80, 1000, 100)
    client.ping()


def test_fake_l2_send_connect_timeout(fake_bt):
    client, _, _ = fake_bt(FAKE_L2="never")
    start = time.monotonic()
    with pytest.raises(AgentError, match="not connected within 10000 ms"):
        client.l2_send(0, PEER, "public", 0x80, 10, 10)
    assert 10 <= time.monotonic() - start < 15
