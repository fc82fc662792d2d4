/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tabvm-bluetooth: USB Bluetooth controller passing HCI through to the host
 *
 * Generated from devspecs/hci.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * A USB Bluetooth controller (class e0/01/01, Linux btusb) whose HCI traffic
 * goes to a chardev in H4 framing: a Bluetooth host stack, a virtual
 * controller (Bumble, RootCanal) or a real controller bridged by the host.
 *
 *   EP0 class requests    commands, guest -> host
 *   0x81 interrupt IN     events, 16-byte packets
 *   0x82 bulk IN/0x02 OUT ACL data (ISO from the host too)
 *   0x83 isoc IN/0x03 OUT SCO data, interface 1, alternate settings 0-5
 *
 * Framing, queues and their bounds are in hw/tabvm/h4/h4.h. A full queue
 * towards the guest stops reading the chardev; a full ring towards the host
 * NAKs bulk OUT until the chardev drains. Opening the chardev attaches the
 * device and closing it detaches it, unless always-plugged=on (default:
 * off); both reset it. Migration is blocked while the chardev
 * is connected: the controller's state lives outside QEMU. capture=FILE
 * writes the HCI traffic as btsnoop. coalesce-events=on (default: on)
 * packs several events into one interrupt transfer. high-speed=on lets the
 * device attach at high speed, which polls events every 125 us instead of
 * every 1 ms (default: off).
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bswap.h"
#include "qemu/error-report.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "qemu/timer.h"
#include "qom/object.h"
#include "chardev/char-fe.h"
#include "hw/qdev-properties.h"
#include "hw/qdev-properties-system.h"
#include "hw/usb.h"
#include "hw/usb/desc.h"
#include "migration/blocker.h"
#include "system/runstate.h"
#include "migration/vmstate.h"
#include "hw/tabvm/h4/h4.h"
#include "trace.h"

#define TYPE_TABVM_BLUETOOTH "tabvm-bluetooth"
OBJECT_DECLARE_SIMPLE_TYPE(TabvmBluetoothState, TABVM_BLUETOOTH)

#define BT_EVENT_MAX_PACKET  16
#define BT_ACL_MAX_PACKET    64
#define BT_ACL_MAX           1021
#define BT_SCO_MAX           255
#define BT_ISO_MAX           1021
#define BT_QUEUE_LIMIT       65536
#define BT_RING_SIZE         16384
#define BT_SCO_ALTS          6

/* USB class e0/01/01: wireless controller, RF, Bluetooth */
#define BT_CLASS_WIRELESS    0xe0
#define BT_SUBCLASS_RF       0x01
#define BT_PROTOCOL_BT       0x01

/* btusb sends commands with bmRequestType 0x20 (class, device) */
#define BT_CLASS_DEVICE_OUT \
    ((USB_DIR_OUT | USB_TYPE_CLASS | USB_RECIP_DEVICE) << 8)

/* Endpoint numbers */
#define BT_EP_EVENT          1
#define BT_EP_ACL            2
#define BT_EP_SCO            3

QEMU_BUILD_BUG_ON(BT_RING_SIZE <
                  TABVM_H4_COMMAND_RESERVE + 2 * (5 + BT_ACL_MAX));

struct TabvmBluetoothState {
    USBDevice dev;

    CharBackend chr;
    bool always_plugged;
    bool coalesce_events;
    bool high_speed;
    char *capture;

    TabvmH4 h4;
    USBEndpoint *event_in;
    USBEndpoint *acl_in;
    USBEndpoint *acl_out;
    bool acl_out_blocked;       /* a bulk OUT was NAKed for want of room */
    guint watch;                /* waiting for the chardev to take more */
    bool connected;
    Error *migration_blocker;
    VMChangeStateEntry *vm_state;
    uint8_t sco_alt;
    int capture_fd;
    uint64_t capture_drops;
};

enum {
    BT_STR_MANUFACTURER = 1,
    BT_STR_PRODUCT,
    BT_STR_SERIAL,
};

static const USBDescStrings tabvm_bluetooth_strings = {
    [BT_STR_MANUFACTURER] = "TabVM",
    [BT_STR_PRODUCT] = "TabVM Bluetooth",
    [BT_STR_SERIAL] = "TVB-0001",
};

/* Full speed: events and SCO every 1 ms frame */
static const USBDescIface tabvm_bluetooth_ifaces_full[] = {
    {
        .bInterfaceNumber = 0,
        .bNumEndpoints = 3,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_EVENT,
                .bmAttributes = USB_ENDPOINT_XFER_INT,
                .wMaxPacketSize = BT_EVENT_MAX_PACKET,
                .bInterval = 1,
            }, {
                .bEndpointAddress = USB_DIR_IN | BT_EP_ACL,
                .bmAttributes = USB_ENDPOINT_XFER_BULK,
                .wMaxPacketSize = 64,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_ACL,
                .bmAttributes = USB_ENDPOINT_XFER_BULK,
                .wMaxPacketSize = 64,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 0,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 0,
                .bInterval = 1,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 0,
                .bInterval = 1,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 1,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 9,
                .bInterval = 1,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 9,
                .bInterval = 1,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 2,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 17,
                .bInterval = 1,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 17,
                .bInterval = 1,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 3,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 25,
                .bInterval = 1,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 25,
                .bInterval = 1,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 4,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 33,
                .bInterval = 1,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 33,
                .bInterval = 1,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 5,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 49,
                .bInterval = 1,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 49,
                .bInterval = 1,
            },
        },
    },
};

static const USBDescDevice tabvm_bluetooth_device_full = {
    .bcdUSB = 0x0200,
    .bDeviceClass = BT_CLASS_WIRELESS,
    .bDeviceSubClass = BT_SUBCLASS_RF,
    .bDeviceProtocol = BT_PROTOCOL_BT,
    .bMaxPacketSize0 = 64,
    .bNumConfigurations = 1,
    .confs = (USBDescConfig[]) {
        {
            .bNumInterfaces = 2,
            .bConfigurationValue = 1,
            .bmAttributes = USB_CFG_ATT_ONE,
            .bMaxPower = 50,
            .nif = ARRAY_SIZE(tabvm_bluetooth_ifaces_full),
            .ifs = tabvm_bluetooth_ifaces_full,
        },
    },
};

/* High speed: events every 125 us, SCO every 2^(4-1) microframes = 1 ms */
static const USBDescIface tabvm_bluetooth_ifaces_high[] = {
    {
        .bInterfaceNumber = 0,
        .bNumEndpoints = 3,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_EVENT,
                .bmAttributes = USB_ENDPOINT_XFER_INT,
                .wMaxPacketSize = BT_EVENT_MAX_PACKET,
                .bInterval = 1,
            }, {
                .bEndpointAddress = USB_DIR_IN | BT_EP_ACL,
                .bmAttributes = USB_ENDPOINT_XFER_BULK,
                .wMaxPacketSize = 512,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_ACL,
                .bmAttributes = USB_ENDPOINT_XFER_BULK,
                .wMaxPacketSize = 512,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 0,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 0,
                .bInterval = 4,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 0,
                .bInterval = 4,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 1,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 9,
                .bInterval = 4,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 9,
                .bInterval = 4,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 2,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 17,
                .bInterval = 4,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 17,
                .bInterval = 4,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 3,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 25,
                .bInterval = 4,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 25,
                .bInterval = 4,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 4,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 33,
                .bInterval = 4,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 33,
                .bInterval = 4,
            },
        },
    }, {
        .bInterfaceNumber = 1,
        .bAlternateSetting = 5,
        .bNumEndpoints = 2,
        .bInterfaceClass = BT_CLASS_WIRELESS,
        .bInterfaceSubClass = BT_SUBCLASS_RF,
        .bInterfaceProtocol = BT_PROTOCOL_BT,
        .eps = (USBDescEndpoint[]) {
            {
                .bEndpointAddress = USB_DIR_IN | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 49,
                .bInterval = 4,
            }, {
                .bEndpointAddress = USB_DIR_OUT | BT_EP_SCO,
                .bmAttributes = USB_ENDPOINT_XFER_ISOC,
                .wMaxPacketSize = 49,
                .bInterval = 4,
            },
        },
    },
};

static const USBDescDevice tabvm_bluetooth_device_high = {
    .bcdUSB = 0x0200,
    .bDeviceClass = BT_CLASS_WIRELESS,
    .bDeviceSubClass = BT_SUBCLASS_RF,
    .bDeviceProtocol = BT_PROTOCOL_BT,
    .bMaxPacketSize0 = 64,
    .bNumConfigurations = 1,
    .confs = (USBDescConfig[]) {
        {
            .bNumInterfaces = 2,
            .bConfigurationValue = 1,
            .bmAttributes = USB_CFG_ATT_ONE,
            .bMaxPower = 50,
            .nif = ARRAY_SIZE(tabvm_bluetooth_ifaces_high),
            .ifs = tabvm_bluetooth_ifaces_high,
        },
    },
};

static const USBDesc tabvm_bluetooth_desc = {
    .id = {
        .idVendor = 0x1209,
        .idProduct = 0x7464,
        .bcdDevice = 0x0100,
        .iManufacturer = BT_STR_MANUFACTURER,
        .iProduct = BT_STR_PRODUCT,
        .iSerialNumber = BT_STR_SERIAL,
    },
    .full = &tabvm_bluetooth_device_full,
    .high = &tabvm_bluetooth_device_high,
    .str = tabvm_bluetooth_strings,
};

/* ---- capture ------------------------------------------------------ */

/* btsnoop version 1, datalink 1002: HCI UART (H4) */
static const uint8_t tabvm_bluetooth_capture_header[] = {
    'b', 't', 's', 'n', 'o', 'o', 'p', 0, 0, 0, 0, 1, 0, 0, 0x03, 0xea,
};

/* microseconds from 0000-01-01 to 1970-01-01, btsnoop's epoch */
#define BT_BTSNOOP_EPOCH_US  0x00dcddb30f2f8000ULL

static void tabvm_bluetooth_capture_record(uint8_t *rec, bool to_guest,
                                           uint8_t type, size_t len,
                                           uint64_t drops)
{
    uint64_t us = qemu_clock_get_us(QEMU_CLOCK_HOST) + BT_BTSNOOP_EPOCH_US;
    uint32_t flags = to_guest ? 1 : 0;

    if (type == TABVM_H4_COMMAND || type == TABVM_H4_EVENT) {
        flags |= 2;
    }
    stl_be_p(rec, 1 + len);         /* original length */
    stl_be_p(rec + 4, 1 + len);     /* included length */
    stl_be_p(rec + 8, flags);
    stl_be_p(rec + 12, drops);
    stq_be_p(rec + 16, us);
}

#define BT_CAPTURE_RECORD    24

static void tabvm_bluetooth_capture_close(TabvmBluetoothState *s)
{
    if (s->capture_fd >= 0) {
        qemu_close(s->capture_fd);
        s->capture_fd = -1;
    }
}

static void tabvm_bluetooth_capture(TabvmBluetoothState *s, bool to_guest,
                                    uint8_t type, const uint8_t *data,
                                    size_t len)
{
    uint8_t rec[BT_CAPTURE_RECORD + 1];

    if (s->capture_fd < 0) {
        return;
    }
    tabvm_bluetooth_capture_record(rec, to_guest, type, len, s->capture_drops);
    rec[BT_CAPTURE_RECORD] = type;
    if (qemu_write_full(s->capture_fd, rec, sizeof(rec)) != sizeof(rec) ||
        qemu_write_full(s->capture_fd, data, len) != len) {
        error_report("%s: writing %s failed, capture stopped: %s",
                     TYPE_TABVM_BLUETOOTH, s->capture, strerror(errno));
        tabvm_bluetooth_capture_close(s);
    }
}

/* ---- H4 core callbacks -------------------------------------------- */

static const char *const tabvm_bluetooth_drop_reasons[] = {
    [TABVM_H4_DROP_BAD_TYPE] = "byte that starts no packet",
    [TABVM_H4_DROP_TOO_LONG] = "length over the limit",
    [TABVM_H4_DROP_BAD_COMMAND] = "command length mismatch",
    [TABVM_H4_DROP_NO_ROOM] = "no room towards the host",
    [TABVM_H4_DROP_NO_SCO] = "SCO while the guest polls none",
};

static void tabvm_bluetooth_h4_packet(void *opaque, TabvmH4Dir dir,
                                      uint8_t type, const uint8_t *data,
                                      size_t len)
{
    TabvmBluetoothState *s = opaque;
    bool to_guest = dir == TABVM_H4_TO_GUEST;

    trace_tabvm_bluetooth_packet(to_guest ? "to guest" : "to host", type, len);
    tabvm_bluetooth_capture(s, to_guest, type, data, len);
}

static void tabvm_bluetooth_h4_drop(void *opaque, TabvmH4Dir dir,
                                    TabvmH4DropReason why,
                                    uint8_t type, size_t len)
{
    TabvmBluetoothState *s = opaque;
    const char *from = dir == TABVM_H4_TO_GUEST ? "host" : "guest";
    const char *reason = tabvm_bluetooth_drop_reasons[why];

    s->capture_drops++;
    trace_tabvm_bluetooth_drop(from, reason, type, len);
    qemu_log_mask(dir == TABVM_H4_TO_GUEST ? LOG_UNIMP : LOG_GUEST_ERROR,
                  "%s: dropped from the %s: %s (type 0x%02x, %zu bytes)\n",
                  TYPE_TABVM_BLUETOOTH, from, reason, type, len);
}

static const TabvmH4Ops tabvm_bluetooth_h4_ops = {
    .packet = tabvm_bluetooth_h4_packet,
    .drop = tabvm_bluetooth_h4_drop,
};

/* ---- host side: the chardev --------------------------------------- */

static void tabvm_bluetooth_wakeup(TabvmBluetoothState *s)
{
    if (!s->dev.attached) {
        return;
    }
    if (tabvm_h4_pending(&s->h4, TABVM_H4_Q_EVENT)) {
        usb_wakeup(s->event_in, 0);
    }
    if (tabvm_h4_pending(&s->h4, TABVM_H4_Q_ACL)) {
        usb_wakeup(s->acl_in, 0);
    }
}

static gboolean tabvm_bluetooth_writable(void *do_not_use, GIOCondition cond,
                                         void *opaque);

/* Writes what the ring holds until the chardev would block */
static void tabvm_bluetooth_flush(TabvmBluetoothState *s)
{
    const uint8_t *data;
    size_t len;

    while ((len = tabvm_h4_ring_peek(&s->h4, &data)) > 0) {
        int n = qemu_chr_fe_write(&s->chr, data, MIN(len, 4096));

        if (n <= 0) {
            break;
        }
        tabvm_h4_ring_consume(&s->h4, n);
    }
    if (tabvm_h4_ring_peek(&s->h4, &data) > 0 && !s->watch) {
        s->watch = qemu_chr_fe_add_watch(&s->chr, G_IO_OUT | G_IO_HUP,
                                         tabvm_bluetooth_writable, s);
        if (!s->watch) {
            /* nothing will tell us when to go on: do not hold the guest */
            trace_tabvm_bluetooth_discard(s->h4.ring_used);
            tabvm_h4_ring_consume(&s->h4, s->h4.ring_used);
        }
    }
    if (s->acl_out_blocked &&
        tabvm_h4_fits(&s->h4, TABVM_H4_ACL, BT_ACL_MAX + 4)) {
        s->acl_out_blocked = false;
        if (s->dev.attached) {
            usb_wakeup(s->acl_out, 0);
        }
    }
}

static gboolean tabvm_bluetooth_writable(void *do_not_use, GIOCondition cond,
                                         void *opaque)
{
    TabvmBluetoothState *s = opaque;

    s->watch = 0;
    tabvm_bluetooth_flush(s);
    return G_SOURCE_REMOVE;
}

static int tabvm_bluetooth_can_read(void *opaque)
{
    TabvmBluetoothState *s = opaque;

    return MIN(tabvm_h4_host_room(&s->h4), 4096);
}

static void tabvm_bluetooth_read(void *opaque, const uint8_t *buf, int size)
{
    TabvmBluetoothState *s = opaque;

    tabvm_h4_host_input(&s->h4, buf, size);
    tabvm_bluetooth_wakeup(s);
}

static void tabvm_bluetooth_reset_transport(TabvmBluetoothState *s)
{
    tabvm_h4_reset(&s->h4);
    s->acl_out_blocked = false;
    if (s->watch) {
        g_source_remove(s->watch);
        s->watch = 0;
    }
}

static void tabvm_bluetooth_event(void *opaque, QEMUChrEvent event)
{
    TabvmBluetoothState *s = opaque;
    Error *err = NULL;

    switch (event) {
    case CHR_EVENT_OPENED:
        trace_tabvm_bluetooth_link(true);
        tabvm_bluetooth_reset_transport(s);
        s->connected = true;
        if (!s->migration_blocker) {
            error_setg(&s->migration_blocker,
                       "%s: the link to its host controller is up, and the "
                       "controller's state lives outside QEMU",
                       TYPE_TABVM_BLUETOOTH);
            if (migrate_add_blocker(&s->migration_blocker, &err) < 0) {
                warn_report_err(err);
            }
        }
        if (!s->always_plugged && !s->dev.attached) {
            usb_device_attach(&s->dev, &err);
            if (err) {
                warn_report_err(err);
            }
        }
        break;
    case CHR_EVENT_CLOSED:
        trace_tabvm_bluetooth_link(false);
        s->connected = false;
        migrate_del_blocker(&s->migration_blocker);
        tabvm_bluetooth_reset_transport(s);
        if (!s->always_plugged && s->dev.attached) {
            usb_device_detach(&s->dev);
        }
        break;
    default:
        break;
    }
}

/*
 * A VM resumed from a state saved with the link down comes back detached even
 * when the link came up while the state was loading (the load restores the
 * detached USB port), and no new link event follows: attach once it runs.
 * The host controller's restored slot for the old device may still point at
 * the port (the guest had no time to see the unplug before the state was
 * saved): attaching, detaching and attaching again makes the controller drop
 * that slot before anything can reach the new, unaddressed device.
 */
static void tabvm_bluetooth_vm_state_change(void *opaque, bool running,
                                            RunState state)
{
    TabvmBluetoothState *s = opaque;
    Error *err = NULL;

    if (!running || !s->connected || s->always_plugged || s->dev.attached) {
        return;
    }
    usb_device_attach(&s->dev, &err);
    if (err) {
        warn_report_err(err);
        return;
    }
    usb_device_detach(&s->dev);
    usb_device_attach(&s->dev, &err);
    if (err) {
        warn_report_err(err);
    }
}

/*
 * chardev-change swapped the backend (QEMU sent CLOSED for the old one if it
 * was open): listen on the new one. Swapping in a null backend takes the link
 * down, which lifts the migration blocker; that is how the glue suspends a VM
 * with the controller.
 */
static int tabvm_bluetooth_be_change(void *opaque)
{
    TabvmBluetoothState *s = opaque;

    qemu_chr_fe_set_handlers(&s->chr, tabvm_bluetooth_can_read,
                             tabvm_bluetooth_read, tabvm_bluetooth_event,
                             tabvm_bluetooth_be_change, s, NULL, true);
    return 0;
}

/* ---- guest side: USB ---------------------------------------------- */

static void tabvm_bluetooth_handle_control(USBDevice *dev, USBPacket *p,
                                           int request, int value, int index,
                                           int length, uint8_t *data)
{
    TabvmBluetoothState *s = TABVM_BLUETOOTH(dev);
    int ret;

    ret = usb_desc_handle_control(dev, p, request, value, index, length, data);
    if (ret >= 0) {
        return;
    }
    switch (request) {
    case BT_CLASS_DEVICE_OUT:
    case ClassInterfaceOutRequest:
        if (tabvm_h4_command(&s->h4, data, length) < 0) {
            goto stall;
        }
        trace_tabvm_bluetooth_command(data[0] | (data[1] << 8), length);
        tabvm_bluetooth_flush(s);
        return;
    default:
        break;
    }
stall:
    trace_tabvm_bluetooth_stall(request, value, index, length);
    p->status = USB_RET_STALL;
}

/*
 * Fills an IN packet from queue q, or NAKs. With coalesce-events=on an
 * event transfer carries as many events (and pieces) as fit: btusb, like
 * other USB Bluetooth hosts, reassembles the event stream by its lengths.
 */
static void tabvm_bluetooth_in(TabvmBluetoothState *s, USBPacket *p,
                               TabvmH4Queue q, size_t max, bool coalesce)
{
    uint8_t buf[4096];
    size_t room = MIN(MIN(max, p->iov.size), sizeof(buf));
    size_t n = 0, got;

    do {
        got = tabvm_h4_take(&s->h4, q, buf + n, room - n);
        n += got;
    } while (coalesce && got && n < room);
    if (n == 0) {
        p->status = USB_RET_NAK;
        return;
    }
    usb_packet_copy(p, buf, n);
    qemu_chr_fe_accept_input(&s->chr);
    /* the end of an event may let ACL data that came after it go */
    if (q == TABVM_H4_Q_EVENT &&
        tabvm_h4_pending(&s->h4, TABVM_H4_Q_ACL)) {
        usb_wakeup(s->acl_in, 0);
    }
}

static void tabvm_bluetooth_acl_out(TabvmBluetoothState *s, USBPacket *p)
{
    uint8_t buf[4096];
    size_t n = p->iov.size;

    if (n > sizeof(buf)) {
        qemu_log_mask(LOG_GUEST_ERROR, "%s: %zu-byte bulk OUT transfer\n",
                      TYPE_TABVM_BLUETOOTH, n);
        p->status = USB_RET_STALL;
        return;
    }
    if (!tabvm_h4_fits(&s->h4, TABVM_H4_ACL, n)) {
        s->acl_out_blocked = true;
        trace_tabvm_bluetooth_nak(BT_EP_ACL);
        p->status = USB_RET_NAK;
        return;
    }
    usb_packet_copy(p, buf, n);
    tabvm_h4_guest_data(&s->h4, TABVM_H4_ACL, buf, n);
    tabvm_bluetooth_flush(s);
}

static void tabvm_bluetooth_sco(TabvmBluetoothState *s, USBPacket *p)
{
    uint8_t buf[1024];
    size_t n = MIN(p->iov.size, sizeof(buf));

    if (s->sco_alt == 0) {
        /* alternate setting 0 has no bandwidth */
        p->status = USB_RET_STALL;
        return;
    }
    if (p->pid == USB_TOKEN_IN) {
        n = tabvm_h4_take(&s->h4, TABVM_H4_Q_SCO, buf, n);
        usb_packet_copy(p, buf, n);     /* an empty packet when nothing waits */
        qemu_chr_fe_accept_input(&s->chr);
        return;
    }
    usb_packet_copy(p, buf, n);
    /* isochronous data cannot wait: what does not fit is dropped */
    tabvm_h4_guest_data(&s->h4, TABVM_H4_SCO, buf, n);
    tabvm_bluetooth_flush(s);
}

static void tabvm_bluetooth_handle_data(USBDevice *dev, USBPacket *p)
{
    TabvmBluetoothState *s = TABVM_BLUETOOTH(dev);

    switch (p->ep->nr) {
    case BT_EP_EVENT:
        if (p->pid != USB_TOKEN_IN) {
            break;
        }
        tabvm_bluetooth_in(s, p, TABVM_H4_Q_EVENT, BT_EVENT_MAX_PACKET,
                           s->coalesce_events);
        return;
    case BT_EP_ACL:
        if (p->pid == USB_TOKEN_IN) {
            tabvm_bluetooth_in(s, p, TABVM_H4_Q_ACL, SIZE_MAX, false);
        } else {
            tabvm_bluetooth_acl_out(s, p);
        }
        return;
    case BT_EP_SCO:
        tabvm_bluetooth_sco(s, p);
        return;
    default:
        break;
    }
    p->status = USB_RET_STALL;
}

static void tabvm_bluetooth_set_interface(USBDevice *dev, int iface,
                                          int old, int value)
{
    TabvmBluetoothState *s = TABVM_BLUETOOTH(dev);

    if (iface != 1 || value < 0 || value >= BT_SCO_ALTS) {
        return;
    }
    trace_tabvm_bluetooth_sco_alt(value);
    s->sco_alt = value;
    tabvm_h4_set_sco_in(&s->h4, value != 0);
}

static void tabvm_bluetooth_handle_reset(USBDevice *dev)
{
    TabvmBluetoothState *s = TABVM_BLUETOOTH(dev);

    tabvm_bluetooth_reset_transport(s);
    s->sco_alt = 0;
    tabvm_h4_set_sco_in(&s->h4, false);
}

static void tabvm_bluetooth_realize(USBDevice *dev, Error **errp)
{
    TabvmBluetoothState *s = TABVM_BLUETOOTH(dev);
    const TabvmH4Config cfg = {
        .max_payload = {
            [TABVM_H4_ACL] = BT_ACL_MAX,
            [TABVM_H4_SCO] = BT_SCO_MAX,
            [TABVM_H4_EVENT] = 255,
            [TABVM_H4_ISO] = BT_ISO_MAX,
        },
        .queue_limit = BT_QUEUE_LIMIT,
        .ring_size = BT_RING_SIZE,
    };
    Error *err = NULL;

    if (!qemu_chr_fe_backend_connected(&s->chr)) {
        error_setg(errp, "property chardev is required");
        return;
    }
    s->capture_fd = -1;
    if (s->capture) {
        s->capture_fd = qemu_create(s->capture, O_WRONLY | O_TRUNC | O_BINARY,
                                    0644, errp);
        if (s->capture_fd < 0) {
            return;
        }
        if (qemu_write_full(s->capture_fd, tabvm_bluetooth_capture_header,
                            sizeof(tabvm_bluetooth_capture_header)) !=
            sizeof(tabvm_bluetooth_capture_header)) {
            error_setg_errno(errp, errno, "cannot write %s", s->capture);
            tabvm_bluetooth_capture_close(s);
            return;
        }
    }
    dev->usb_desc = &tabvm_bluetooth_desc;
    usb_desc_create_serial(dev);
    usb_desc_init(dev);
    if (!s->high_speed) {
        dev->speedmask &= ~USB_SPEED_MASK_HIGH;
    }
    dev->auto_attach = 0;
    usb_check_attach(dev, &err);
    if (err) {
        error_propagate(errp, err);
        tabvm_bluetooth_capture_close(s);
        return;
    }
    s->event_in = usb_ep_get(dev, USB_TOKEN_IN, BT_EP_EVENT);
    s->acl_in = usb_ep_get(dev, USB_TOKEN_IN, BT_EP_ACL);
    s->acl_out = usb_ep_get(dev, USB_TOKEN_OUT, BT_EP_ACL);
    tabvm_h4_init(&s->h4, &cfg, &tabvm_bluetooth_h4_ops, s);
    qemu_chr_fe_set_handlers(&s->chr, tabvm_bluetooth_can_read,
                             tabvm_bluetooth_read, tabvm_bluetooth_event,
                             tabvm_bluetooth_be_change, s, NULL, true);
    s->vm_state = qemu_add_vm_change_state_handler(
        tabvm_bluetooth_vm_state_change, s);
    if ((s->always_plugged || qemu_chr_fe_backend_open(&s->chr)) &&
        !dev->attached) {
        usb_device_attach(dev, errp);
    }
}

static void tabvm_bluetooth_unrealize(USBDevice *dev)
{
    TabvmBluetoothState *s = TABVM_BLUETOOTH(dev);

    qemu_del_vm_change_state_handler(s->vm_state);
    qemu_chr_fe_deinit(&s->chr, false);
    migrate_del_blocker(&s->migration_blocker);
    tabvm_bluetooth_reset_transport(s);
    tabvm_h4_cleanup(&s->h4);
    tabvm_bluetooth_capture_close(s);
}

static int tabvm_bluetooth_post_load(void *opaque, int version_id)
{
    TabvmBluetoothState *s = opaque;

    if (s->sco_alt >= BT_SCO_ALTS) {
        return -EINVAL;
    }
    tabvm_h4_set_sco_in(&s->h4, s->sco_alt != 0);
    return 0;
}

/*
 * Only reachable while the link is down (see the migration blocker), when
 * nothing is queued: the device state is the USB state and the SCO setting.
 */
static const VMStateDescription vmstate_tabvm_bluetooth = {
    .name = TYPE_TABVM_BLUETOOTH,
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = tabvm_bluetooth_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_USB_DEVICE(dev, TabvmBluetoothState),
        VMSTATE_UINT8(sco_alt, TabvmBluetoothState),
        VMSTATE_END_OF_LIST()
    },
};

static const Property tabvm_bluetooth_properties[] = {
    DEFINE_PROP_CHR("chardev", TabvmBluetoothState, chr),
    DEFINE_PROP_BOOL("always-plugged", TabvmBluetoothState, always_plugged,
                     false),
    DEFINE_PROP_BOOL("high-speed", TabvmBluetoothState, high_speed,
                     false),
    DEFINE_PROP_BOOL("coalesce-events", TabvmBluetoothState, coalesce_events,
                     true),
    DEFINE_PROP_STRING("capture", TabvmBluetoothState, capture),
};

static void tabvm_bluetooth_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    USBDeviceClass *uc = USB_DEVICE_CLASS(klass);

    uc->realize = tabvm_bluetooth_realize;
    uc->unrealize = tabvm_bluetooth_unrealize;
    uc->handle_reset = tabvm_bluetooth_handle_reset;
    uc->handle_control = tabvm_bluetooth_handle_control;
    uc->handle_data = tabvm_bluetooth_handle_data;
    uc->set_interface = tabvm_bluetooth_set_interface;
    uc->handle_attach = usb_desc_attach;
    uc->product_desc = "TabVM Bluetooth";
    dc->desc = "USB Bluetooth controller passing HCI through to the host";
    dc->vmsd = &vmstate_tabvm_bluetooth;
    device_class_set_props(dc, tabvm_bluetooth_properties);
    set_bit(DEVICE_CATEGORY_NETWORK, dc->categories);
}

static const TypeInfo tabvm_bluetooth_info = {
    .name = TYPE_TABVM_BLUETOOTH,
    .parent = TYPE_USB_DEVICE,
    .instance_size = sizeof(TabvmBluetoothState),
    .class_init = tabvm_bluetooth_class_init,
};

static void tabvm_bluetooth_register_types(void)
{
    type_register_static(&tabvm_bluetooth_info);
}

type_init(tabvm_bluetooth_register_types)
