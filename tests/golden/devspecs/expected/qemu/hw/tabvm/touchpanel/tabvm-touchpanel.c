/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tabvm-touchpanel: Small 5-finger touch panel (parallel reports, no mouse)
 *
 * Generated from devspecs/touchpanel.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * A USB HID touchscreen in the Windows 8 style: a Digitizer / Touch Screen
 * collection with 5 contact(s) per report (parallel mode, 5 in all),
 * Scan Time and Contact Count; feature reports Contact Count Maximum, the
 * 256-byte 0xC5 certification blob and Input Mode.
 *
 * Input comes from QEMU's input layer: multi-touch (mtt) events with slots
 * 0..4, the touch button (a frame whose touch button is up reports
 * the updated contacts as hovering: In Range without Tip Switch), and
 * absolute pointer + button events for the mouse. Each sync builds the
 * reports of one frame; a lifted or cancelled contact is sent once more
 * with Tip Switch off; while a contact is down the frame repeats every
 * 16.6667 ms. Reports wait in a bounded queue for the interrupt endpoint.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bswap.h"
#include "qemu/module.h"
#include "qemu/timer.h"
#include "qom/object.h"
#include "hw/qdev-properties.h"
#include "hw/usb.h"
#include "hw/usb/desc.h"
#include "hw/usb/hid.h"
#include "migration/vmstate.h"
#include "ui/input.h"
#include "trace.h"

#define TYPE_TABVM_TOUCHPANEL "tabvm-touchpanel"
OBJECT_DECLARE_SIMPLE_TYPE(TabvmTouchpanelState, TABVM_TOUCHPANEL)

#define MT_CONTACTS          5
#define MT_PER_REPORT        5
#define MT_CONTACT_SIZE      6
/* touch reports that carry every contact once (hybrid mode) */
#define MT_FRAME_REPORTS     DIV_ROUND_UP(MT_CONTACTS, MT_PER_REPORT)
#define MT_TOUCH_SIZE        34
#define MT_MAX_PACKET        34
#define MT_CERT_SIZE         256
#define MT_PERIOD_NS         16666666
#define MT_X_MIN             100
#define MT_X_MAX             1123
#define MT_Y_MIN             0
#define MT_Y_MAX             599
#define MT_HOVER             false
#define MT_QUEUE_LEN         64

/* Report IDs */
#define MT_ID_TOUCH          1
#define MT_ID_MOUSE          2
#define MT_ID_MAX_COUNT      3
#define MT_ID_CERT           4
#define MT_ID_MODE           5

/* HID report types in GET_REPORT / SET_REPORT wValue */
#define MT_INPUT             1
#define MT_FEATURE           3

/* Contact flags byte */
#define MT_TIP               (1u << 0)
#define MT_IN_RANGE          (1u << 1)
#define MT_CONFIDENCE        (1u << 2)

/* Computed by the generator from devspecs/touchpanel.yaml */
static const uint8_t tabvm_touchpanel_report_descriptor[] = {
    0x05, 0x0d, 0x09, 0x04, 0xa1, 0x01, 0x85, 0x01, 0x05, 0x0d, 0x09, 0x22,
    0xa1, 0x02, 0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x01, 0x09, 0x42,
    0x81, 0x02, 0x09, 0x32, 0x81, 0x02, 0x09, 0x47, 0x81, 0x02, 0x95, 0x05,
    0x81, 0x01, 0x75, 0x08, 0x95, 0x01, 0x25, 0x04, 0x09, 0x51, 0x81, 0x02,
    0xa4, 0x05, 0x01, 0x65, 0x11, 0x55, 0x0f, 0x75, 0x10, 0x15, 0x64, 0x26,
    0x63, 0x04, 0x35, 0x00, 0x46, 0xa0, 0x00, 0x09, 0x30, 0x81, 0x02, 0x15,
    0x00, 0x26, 0x57, 0x02, 0x35, 0x00, 0x45, 0x64, 0x09, 0x31, 0x81, 0x02,
    0xb4, 0xc0, 0x05, 0x0d, 0x09, 0x22, 0xa1, 0x02, 0x15, 0x00, 0x25, 0x01,
    0x75, 0x01, 0x95, 0x01, 0x09, 0x42, 0x81, 0x02, 0x09, 0x32, 0x81, 0x02,
    0x09, 0x47, 0x81, 0x02, 0x95, 0x05, 0x81, 0x01, 0x75, 0x08, 0x95, 0x01,
    0x25, 0x04, 0x09, 0x51, 0x81, 0x02, 0xa4, 0x05, 0x01, 0x65, 0x11, 0x55,
    0x0f, 0x75, 0x10, 0x15, 0x64, 0x26, 0x63, 0x04, 0x35, 0x00, 0x46, 0xa0,
    0x00, 0x09, 0x30, 0x81, 0x02, 0x15, 0x00, 0x26, 0x57, 0x02, 0x35, 0x00,
    0x45, 0x64, 0x09, 0x31, 0x81, 0x02, 0xb4, 0xc0, 0x05, 0x0d, 0x09, 0x22,
    0xa1, 0x02, 0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x01, 0x09, 0x42,
    0x81, 0x02, 0x09, 0x32, 0x81, 0x02, 0x09, 0x47, 0x81, 0x02, 0x95, 0x05,
    0x81, 0x01, 0x75, 0x08, 0x95, 0x01, 0x25, 0x04, 0x09, 0x51, 0x81, 0x02,
    0xa4, 0x05, 0x01, 0x65, 0x11, 0x55, 0x0f, 0x75, 0x10, 0x15, 0x64, 0x26,
    0x63, 0x04, 0x35, 0x00, 0x46, 0xa0, 0x00, 0x09, 0x30, 0x81, 0x02, 0x15,
    0x00, 0x26, 0x57, 0x02, 0x35, 0x00, 0x45, 0x64, 0x09, 0x31, 0x81, 0x02,
    0xb4, 0xc0, 0x05, 0x0d, 0x09, 0x22, 0xa1, 0x02, 0x15, 0x00, 0x25, 0x01,
    0x75, 0x01, 0x95, 0x01, 0x09, 0x42, 0x81, 0x02, 0x09, 0x32, 0x81, 0x02,
    0x09, 0x47, 0x81, 0x02, 0x95, 0x05, 0x81, 0x01, 0x75, 0x08, 0x95, 0x01,
    0x25, 0x04, 0x09, 0x51, 0x81, 0x02, 0xa4, 0x05, 0x01, 0x65, 0x11, 0x55,
    0x0f, 0x75, 0x10, 0x15, 0x64, 0x26, 0x63, 0x04, 0x35, 0x00, 0x46, 0xa0,
    0x00, 0x09, 0x30, 0x81, 0x02, 0x15, 0x00, 0x26, 0x57, 0x02, 0x35, 0x00,
    0x45, 0x64, 0x09, 0x31, 0x81, 0x02, 0xb4, 0xc0, 0x05, 0x0d, 0x09, 0x22,
    0xa1, 0x02, 0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x01, 0x09, 0x42,
    0x81, 0x02, 0x09, 0x32, 0x81, 0x02, 0x09, 0x47, 0x81, 0x02, 0x95, 0x05,
    0x81, 0x01, 0x75, 0x08, 0x95, 0x01, 0x25, 0x04, 0x09, 0x51, 0x81, 0x02,
    0xa4, 0x05, 0x01, 0x65, 0x11, 0x55, 0x0f, 0x75, 0x10, 0x15, 0x64, 0x26,
    0x63, 0x04, 0x35, 0x00, 0x46, 0xa0, 0x00, 0x09, 0x30, 0x81, 0x02, 0x15,
    0x00, 0x26, 0x57, 0x02, 0x35, 0x00, 0x45, 0x64, 0x09, 0x31, 0x81, 0x02,
    0xb4, 0xc0, 0x05, 0x0d, 0xa4, 0x66, 0x01, 0x10, 0x55, 0x0c, 0x15, 0x00,
    0x27, 0xff, 0xff, 0x00, 0x00, 0x75, 0x10, 0x95, 0x01, 0x09, 0x56, 0x81,
    0x02, 0xb4, 0x15, 0x00, 0x25, 0x05, 0x75, 0x08, 0x95, 0x01, 0x09, 0x54,
    0x81, 0x02, 0x85, 0x03, 0x09, 0x55, 0xb1, 0x02, 0x85, 0x04, 0x06, 0x00,
    0xff, 0x09, 0xc5, 0x15, 0x00, 0x26, 0xff, 0x00, 0x75, 0x08, 0x96, 0x00,
    0x01, 0xb1, 0x02, 0xc0, 0x05, 0x0d, 0x09, 0x0e, 0xa1, 0x01, 0x85, 0x05,
    0x09, 0x23, 0xa1, 0x02, 0x09, 0x52, 0x09, 0x53, 0x15, 0x00, 0x25, 0x0a,
    0x75, 0x08, 0x95, 0x02, 0xb1, 0x02, 0xc0, 0xc0,
};

QEMU_BUILD_BUG_ON(sizeof(tabvm_touchpanel_report_descriptor) != 488);
QEMU_BUILD_BUG_ON(MT_TOUCH_SIZE !=
                  1 + MT_PER_REPORT * MT_CONTACT_SIZE + 3);
QEMU_BUILD_BUG_ON(MT_CONTACTS > INPUT_EVENT_SLOTS_MAX);
QEMU_BUILD_BUG_ON(MT_PER_REPORT > MT_CONTACTS);
QEMU_BUILD_BUG_ON(MT_MAX_PACKET < MT_TOUCH_SIZE);
QEMU_BUILD_BUG_ON(MT_MAX_PACKET > 1024);

enum {
    MT_STR_MANUFACTURER = 1,
    MT_STR_PRODUCT,
    MT_STR_SERIAL,
};

static const USBDescStrings tabvm_touchpanel_strings = {
    [MT_STR_MANUFACTURER] = "TabVM",
    [MT_STR_PRODUCT] = "TabVM Touch Panel",
    [MT_STR_SERIAL] = "TVP-0001",
};

static const USBDescIface tabvm_touchpanel_iface = {
    .bInterfaceNumber = 0,
    .bNumEndpoints = 1,
    .bInterfaceClass = USB_CLASS_HID,
    .ndesc = 1,
    .descs = (USBDescOther[]) {
        {
            /* HID descriptor */
            .data = (uint8_t[]) {
                0x09,                   /* u8 bLength */
                USB_DT_HID,             /* u8 bDescriptorType */
                0x11, 0x01,             /* u16 bcdHID: 1.11 */
                0x00,                   /* u8 country code */
                0x01,                   /* u8 num descriptors */
                USB_DT_REPORT,          /* u8 type: report */
                sizeof(tabvm_touchpanel_report_descriptor) & 0xff,
                sizeof(tabvm_touchpanel_report_descriptor) >> 8,
            },
        },
    },
    .eps = (USBDescEndpoint[]) {
        {
            .bEndpointAddress = USB_DIR_IN | 0x01,
            .bmAttributes = USB_ENDPOINT_XFER_INT,
            .wMaxPacketSize = MT_MAX_PACKET,
            .bInterval = 4,             /* 2^(4-1) microframes: 1 ms */
        },
    },
};

static const USBDescDevice tabvm_touchpanel_device_high = {
    .bcdUSB = 0x0200,
    .bMaxPacketSize0 = 64,
    .bNumConfigurations = 1,
    .confs = (USBDescConfig[]) {
        {
            .bNumInterfaces = 1,
            .bConfigurationValue = 1,
            .bmAttributes = USB_CFG_ATT_ONE | USB_CFG_ATT_WAKEUP,
            .bMaxPower = 50,
            .nif = 1,
            .ifs = &tabvm_touchpanel_iface,
        },
    },
};

static const USBDesc tabvm_touchpanel_desc = {
    .id = {
        .idVendor = 0x1209,
        .idProduct = 0x7463,
        .bcdDevice = 0x0100,
        .iManufacturer = MT_STR_MANUFACTURER,
        .iProduct = MT_STR_PRODUCT,
        .iSerialNumber = MT_STR_SERIAL,
    },
    .high = &tabvm_touchpanel_device_high,
    .str = tabvm_touchpanel_strings,
};

typedef enum {
    MT_IDLE = 0,       /* slot unused */
    MT_ACTIVE,         /* touching or hovering */
    MT_RELEASED,       /* lifted: one more report, tip off */
} TabvmTouchpanelContactState;

typedef struct TabvmTouchpanelContact {
    uint8_t state;
    bool tip;
    bool confidence;
    uint16_t x;
    uint16_t y;
} TabvmTouchpanelContact;

struct TabvmTouchpanelState {
    USBDevice dev;
    USBEndpoint *intr;
    QemuInputHandlerState *input;
    QEMUTimer *repeat;
    char *display;
    uint32_t head;

    TabvmTouchpanelContact contacts[MT_CONTACTS];
    uint32_t touched;           /* slots changed in the current frame */
    bool touch_seen;            /* touch button event in the current frame */
    bool touch_down;
    uint8_t buttons;            /* mouse */
    uint16_t mouse_x;
    uint16_t mouse_y;
    bool mouse_changed;
    uint8_t device_mode;        /* Input Mode feature: 0 mouse, 2 touch */
    uint8_t device_index;
    uint8_t idle;

    /* input reports waiting for the interrupt IN endpoint */
    uint8_t queue[MT_QUEUE_LEN][MT_MAX_PACKET];
    uint8_t queue_size[MT_QUEUE_LEN];
    uint32_t queue_head;
    uint32_t queue_count;
    uint32_t dropped;
};

static uint8_t *tabvm_touchpanel_queue_slot(TabvmTouchpanelState *s,
                                            uint8_t size)
{
    uint32_t tail;

    if (s->queue_count == MT_QUEUE_LEN) {
        /* the guest is not polling: drop the oldest report */
        s->queue_head = (s->queue_head + 1) % MT_QUEUE_LEN;
        s->queue_count--;
        s->dropped++;
        trace_tabvm_touchpanel_drop(s->dropped);
    }
    tail = (s->queue_head + s->queue_count) % MT_QUEUE_LEN;
    s->queue_count++;
    s->queue_size[tail] = size;
    memset(s->queue[tail], 0, sizeof(s->queue[tail]));
    return s->queue[tail];
}

static uint16_t tabvm_touchpanel_scan_time(void)
{
    /* 100 us units, wrapping at 16 bits */
    return qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) / 100000;
}

/*
 * The touch reports of the current state into @out (each
 * MT_TOUCH_SIZE bytes); returns how many. Hybrid mode: the first
 * report carries the contact count, the others 0.
 */
static int tabvm_touchpanel_touch_frame(TabvmTouchpanelState *s,
                                        uint8_t out[][MT_TOUCH_SIZE])
{
    uint16_t scan = tabvm_touchpanel_scan_time();
    int n = 0, reports, i;

    for (i = 0; i < MT_CONTACTS; i++) {
        const TabvmTouchpanelContact *c = &s->contacts[i];
        uint8_t *report, *e;

        if (c->state == MT_IDLE) {
            continue;
        }
        report = out[n / MT_PER_REPORT];
        if (n % MT_PER_REPORT == 0) {
            memset(report, 0, MT_TOUCH_SIZE);
        }
        e = report + 1 + (n % MT_PER_REPORT) * MT_CONTACT_SIZE;
        e[0] = (c->tip ? MT_TIP : 0) |
               (c->state == MT_ACTIVE ? MT_IN_RANGE : 0) |
               (c->confidence ? MT_CONFIDENCE : 0);
        e[1] = i;
        stw_le_p(e + 2, c->x);
        stw_le_p(e + 4, c->y);
        n++;
    }
    reports = n ? DIV_ROUND_UP(n, MT_PER_REPORT) : 1;
    if (!n) {
        memset(out[0], 0, MT_TOUCH_SIZE);
    }
    for (i = 0; i < reports; i++) {
        uint8_t *r = out[i];

        r[0] = MT_ID_TOUCH;
        stw_le_p(r + MT_TOUCH_SIZE - 3, scan);
        r[MT_TOUCH_SIZE - 1] = i == 0 ? n : 0;
    }
    return reports;
}

static void tabvm_touchpanel_queue_touch(TabvmTouchpanelState *s)
{
    uint8_t frame[MT_FRAME_REPORTS][MT_TOUCH_SIZE];
    int reports = tabvm_touchpanel_touch_frame(s, frame);
    int i;

    for (i = 0; i < reports; i++) {
        memcpy(tabvm_touchpanel_queue_slot(s, MT_TOUCH_SIZE), frame[i],
               MT_TOUCH_SIZE);
    }
    trace_tabvm_touchpanel_frame(reports, frame[0][MT_TOUCH_SIZE - 1]);
}

static bool tabvm_touchpanel_any_active(TabvmTouchpanelState *s)
{
    int i;

    for (i = 0; i < MT_CONTACTS; i++) {
        if (s->contacts[i].state == MT_ACTIVE) {
            return true;
        }
    }
    return false;
}

/* Released contacts have been reported once more: free their slots. */
static void tabvm_touchpanel_retire(TabvmTouchpanelState *s)
{
    int i;

    for (i = 0; i < MT_CONTACTS; i++) {
        if (s->contacts[i].state == MT_RELEASED) {
            s->contacts[i].state = MT_IDLE;
        }
    }
}

static void tabvm_touchpanel_schedule(TabvmTouchpanelState *s)
{
    if (tabvm_touchpanel_any_active(s) || s->queue_count) {
        if (!timer_pending(s->repeat)) {
            timer_mod(s->repeat, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) +
                      MT_PERIOD_NS);
        }
    } else {
        timer_del(s->repeat);
    }
}

static void tabvm_touchpanel_repeat(void *opaque)
{
    TabvmTouchpanelState *s = opaque;

    /* Windows and hid-multitouch want reports while a finger is down. */
    if (tabvm_touchpanel_any_active(s) && s->queue_count == 0) {
        tabvm_touchpanel_queue_touch(s);
    }
    /* Kick the host controller while reports wait (also after migration). */
    if (s->queue_count) {
        usb_wakeup(s->intr, 0);
    }
    tabvm_touchpanel_schedule(s);
}

static uint16_t tabvm_touchpanel_scale(int value, int min, int max)
{
    value = MAX(INPUT_EVENT_ABS_MIN, MIN(INPUT_EVENT_ABS_MAX, value));
    return qemu_input_scale_axis(value, INPUT_EVENT_ABS_MIN,
                                 INPUT_EVENT_ABS_MAX, min, max);
}

static void tabvm_touchpanel_mtt(TabvmTouchpanelState *s,
                                 InputMultiTouchEvent *mtt)
{
    TabvmTouchpanelContact *c;

    if (mtt->slot < 0 || mtt->slot >= MT_CONTACTS) {
        trace_tabvm_touchpanel_bad_slot(mtt->slot);
        return;
    }
    c = &s->contacts[mtt->slot];
    switch (mtt->type) {
    case INPUT_MULTI_TOUCH_TYPE_BEGIN:
    case INPUT_MULTI_TOUCH_TYPE_UPDATE:
        if (c->state != MT_ACTIVE) {
            c->state = MT_ACTIVE;
            c->tip = true;
        }
        c->confidence = true;
        break;
    case INPUT_MULTI_TOUCH_TYPE_END:
    case INPUT_MULTI_TOUCH_TYPE_CANCEL:
        if (c->state != MT_ACTIVE) {
            return;
        }
        c->state = MT_RELEASED;
        c->tip = false;
        c->confidence = mtt->type == INPUT_MULTI_TOUCH_TYPE_END;
        break;
    case INPUT_MULTI_TOUCH_TYPE_DATA:
        if (mtt->axis == INPUT_AXIS_X) {
            c->x = tabvm_touchpanel_scale(mtt->value, MT_X_MIN,
                                          MT_X_MAX);
        } else if (mtt->axis == INPUT_AXIS_Y) {
            c->y = tabvm_touchpanel_scale(mtt->value, MT_Y_MIN,
                                          MT_Y_MAX);
        }
        break;
    default:
        return;
    }
    s->touched |= 1u << mtt->slot;
}

static void tabvm_touchpanel_event(DeviceState *dev, QemuConsole *src,
                                   InputEvent *evt)
{
    TabvmTouchpanelState *s = TABVM_TOUCHPANEL(dev);
    InputBtnEvent *btn;

    switch (evt->type) {
    case INPUT_EVENT_KIND_MTT:
        tabvm_touchpanel_mtt(s, evt->u.mtt.data);
        break;
    case INPUT_EVENT_KIND_BTN:
        btn = evt->u.btn.data;
        if (btn->button == INPUT_BUTTON_TOUCH) {
            s->touch_seen = true;
            s->touch_down = btn->down;
        }
        break;
    default:
        break;
    }
}

static void tabvm_touchpanel_sync(DeviceState *dev)
{
    TabvmTouchpanelState *s = TABVM_TOUCHPANEL(dev);
    bool queued = false;
    int i;

    if (s->touch_seen) {
        for (i = 0; i < MT_CONTACTS; i++) {
            TabvmTouchpanelContact *c = &s->contacts[i];

            if ((s->touched & (1u << i)) && c->state == MT_ACTIVE) {
                c->tip = s->touch_down || !MT_HOVER;
            }
        }
    }
    if (s->touched) {
        tabvm_touchpanel_queue_touch(s);
        tabvm_touchpanel_retire(s);
        queued = true;
    }
    s->touched = 0;
    s->touch_seen = false;
    s->mouse_changed = false;
    if (queued) {
        usb_wakeup(s->intr, 0);
    }
    tabvm_touchpanel_schedule(s);
}

static const QemuInputHandler tabvm_touchpanel_handler = {
    .name = "TabVM Touch Panel",
    .mask = INPUT_EVENT_MASK_MTT | INPUT_EVENT_MASK_BTN | INPUT_EVENT_MASK_ABS,
    .event = tabvm_touchpanel_event,
    .sync = tabvm_touchpanel_sync,
};

/* Report @id of @type into @buf; its size, or -1 if there is none. */
static int tabvm_touchpanel_get_report(TabvmTouchpanelState *s,
                                       int type, int id, uint8_t *buf)
{
    uint8_t frame[MT_FRAME_REPORTS][MT_TOUCH_SIZE];

    if (type == MT_INPUT && id == MT_ID_TOUCH) {
        tabvm_touchpanel_touch_frame(s, frame);
        memcpy(buf, frame[0], MT_TOUCH_SIZE);
        return MT_TOUCH_SIZE;
    }
    if (type != MT_FEATURE) {
        return -1;
    }
    switch (id) {
    case MT_ID_MAX_COUNT:
        buf[0] = id;
        buf[1] = MT_CONTACTS;
        return 2;
    case MT_ID_CERT:
        /* not signed by Microsoft: Windows sees an uncertified device */
        buf[0] = id;
        memset(buf + 1, 0, MT_CERT_SIZE);
        return 1 + MT_CERT_SIZE;
    case MT_ID_MODE:
        buf[0] = id;
        buf[1] = s->device_mode;
        buf[2] = s->device_index;
        return 3;
    default:
        return -1;
    }
}

static void tabvm_touchpanel_handle_control(USBDevice *dev, USBPacket *p,
                                            int request, int value, int index,
                                            int length, uint8_t *data)
{
    TabvmTouchpanelState *s = TABVM_TOUCHPANEL(dev);
    uint8_t buf[1 + MT_CERT_SIZE];
    int ret, size;

    trace_tabvm_touchpanel_control(request, value, index, length);
    ret = usb_desc_handle_control(dev, p, request, value, index, length, data);
    if (ret >= 0) {
        return;
    }
    if ((request >> 8) & USB_TYPE_CLASS && (index & 0xff) != 0) {
        goto stall;     /* class requests for an interface we do not have */
    }
    switch (request) {
    case InterfaceRequest | USB_REQ_GET_DESCRIPTOR:
        if ((value >> 8) != USB_DT_REPORT) {
            goto stall;
        }
        size = MIN(length, sizeof(tabvm_touchpanel_report_descriptor));
        memcpy(data, tabvm_touchpanel_report_descriptor, size);
        p->actual_length = size;
        break;
    case HID_GET_REPORT:
        size = tabvm_touchpanel_get_report(s, value >> 8, value & 0xff, buf);
        if (size < 0) {
            goto stall;
        }
        size = MIN(length, size);
        memcpy(data, buf, size);
        p->actual_length = size;
        break;
    case HID_SET_REPORT:
        if ((value >> 8) != MT_FEATURE ||
            (value & 0xff) != MT_ID_MODE || length != 3 ||
            data[0] != MT_ID_MODE) {
            goto stall;
        }
        s->device_mode = data[1];
        s->device_index = data[2];
        trace_tabvm_touchpanel_mode(s->device_mode, s->device_index);
        break;
    case HID_GET_IDLE:
        if (length < 1) {
            goto stall;
        }
        data[0] = s->idle;
        p->actual_length = 1;
        break;
    case HID_SET_IDLE:
        s->idle = value >> 8;
        break;
    case HID_GET_PROTOCOL:
        if (length < 1) {
            goto stall;
        }
        data[0] = 1;            /* report protocol: this is no boot device */
        p->actual_length = 1;
        break;
    case HID_SET_PROTOCOL:
        if (value != 1) {
            goto stall;
        }
        break;
    default:
        goto stall;
    }
    return;

stall:
    trace_tabvm_touchpanel_stall(request, value, index, length);
    p->status = USB_RET_STALL;
}

static void tabvm_touchpanel_handle_data(USBDevice *dev, USBPacket *p)
{
    TabvmTouchpanelState *s = TABVM_TOUCHPANEL(dev);
    size_t size;

    if (p->pid != USB_TOKEN_IN || p->ep->nr != 1) {
        p->status = USB_RET_STALL;
        return;
    }
    if (s->queue_count == 0) {
        p->status = USB_RET_NAK;
        return;
    }
    size = MIN(s->queue_size[s->queue_head], p->iov.size);
    usb_packet_copy(p, s->queue[s->queue_head], size);
    trace_tabvm_touchpanel_report(s->queue[s->queue_head][0], size);
    s->queue_head = (s->queue_head + 1) % MT_QUEUE_LEN;
    s->queue_count--;
}

static void tabvm_touchpanel_reset_state(TabvmTouchpanelState *s)
{
    memset(s->contacts, 0, sizeof(s->contacts));
    s->touched = 0;
    s->touch_seen = false;
    s->touch_down = false;
    s->buttons = 0;
    s->mouse_changed = false;
    s->device_mode = 0;
    s->device_index = 0;
    s->idle = 0;
    s->queue_head = 0;
    s->queue_count = 0;
    timer_del(s->repeat);
}

static void tabvm_touchpanel_handle_reset(USBDevice *dev)
{
    tabvm_touchpanel_reset_state(TABVM_TOUCHPANEL(dev));
}

static void tabvm_touchpanel_realize(USBDevice *dev, Error **errp)
{
    TabvmTouchpanelState *s = TABVM_TOUCHPANEL(dev);

    dev->usb_desc = &tabvm_touchpanel_desc;
    usb_desc_create_serial(dev);
    usb_desc_init(dev);
    s->intr = usb_ep_get(dev, USB_TOKEN_IN, 1);
    s->repeat = timer_new_ns(QEMU_CLOCK_VIRTUAL, tabvm_touchpanel_repeat, s);
    s->input = qemu_input_handler_register(DEVICE(dev),
                                           &tabvm_touchpanel_handler);
    if (s->display) {
        Error *err = NULL;

        qemu_input_handler_bind(s->input, s->display, s->head, &err);
        if (err) {
            error_propagate(errp, err);
            return;
        }
    }
    qemu_input_handler_activate(s->input);
    tabvm_touchpanel_reset_state(s);
}

static void tabvm_touchpanel_unrealize(USBDevice *dev)
{
    TabvmTouchpanelState *s = TABVM_TOUCHPANEL(dev);

    qemu_input_handler_unregister(s->input);
    timer_free(s->repeat);
}

static int tabvm_touchpanel_post_load(void *opaque, int version_id)
{
    TabvmTouchpanelState *s = opaque;
    int i;

    if (s->queue_head >= MT_QUEUE_LEN ||
        s->queue_count > MT_QUEUE_LEN) {
        return -EINVAL;
    }
    for (i = 0; i < MT_QUEUE_LEN; i++) {
        if (s->queue_size[i] > MT_MAX_PACKET) {
            return -EINVAL;
        }
    }
    for (i = 0; i < MT_CONTACTS; i++) {
        if (s->contacts[i].state > MT_RELEASED) {
            return -EINVAL;
        }
    }
    tabvm_touchpanel_schedule(s);
    return 0;
}

static const VMStateDescription vmstate_tabvm_touchpanel_contact = {
    .name = TYPE_TABVM_TOUCHPANEL "/contact",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8(state, TabvmTouchpanelContact),
        VMSTATE_BOOL(tip, TabvmTouchpanelContact),
        VMSTATE_BOOL(confidence, TabvmTouchpanelContact),
        VMSTATE_UINT16(x, TabvmTouchpanelContact),
        VMSTATE_UINT16(y, TabvmTouchpanelContact),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_tabvm_touchpanel = {
    .name = TYPE_TABVM_TOUCHPANEL,
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = tabvm_touchpanel_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_USB_DEVICE(dev, TabvmTouchpanelState),
        VMSTATE_STRUCT_ARRAY(contacts, TabvmTouchpanelState, MT_CONTACTS, 1,
                             vmstate_tabvm_touchpanel_contact,
                             TabvmTouchpanelContact),
        VMSTATE_BOOL(touch_down, TabvmTouchpanelState),
        VMSTATE_UINT8(buttons, TabvmTouchpanelState),
        VMSTATE_UINT16(mouse_x, TabvmTouchpanelState),
        VMSTATE_UINT16(mouse_y, TabvmTouchpanelState),
        VMSTATE_UINT8(device_mode, TabvmTouchpanelState),
        VMSTATE_UINT8(device_index, TabvmTouchpanelState),
        VMSTATE_UINT8(idle, TabvmTouchpanelState),
        VMSTATE_UINT8_2DARRAY(queue, TabvmTouchpanelState, MT_QUEUE_LEN,
                              MT_MAX_PACKET),
        VMSTATE_UINT8_ARRAY(queue_size, TabvmTouchpanelState, MT_QUEUE_LEN),
        VMSTATE_UINT32(queue_head, TabvmTouchpanelState),
        VMSTATE_UINT32(queue_count, TabvmTouchpanelState),
        VMSTATE_UINT32(dropped, TabvmTouchpanelState),
        VMSTATE_TIMER_PTR(repeat, TabvmTouchpanelState),
        VMSTATE_END_OF_LIST()
    },
};

static const Property tabvm_touchpanel_properties[] = {
    DEFINE_PROP_STRING("display", TabvmTouchpanelState, display),
    DEFINE_PROP_UINT32("head", TabvmTouchpanelState, head, 0),
};

static void tabvm_touchpanel_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    USBDeviceClass *uc = USB_DEVICE_CLASS(klass);

    uc->realize = tabvm_touchpanel_realize;
    uc->unrealize = tabvm_touchpanel_unrealize;
    uc->handle_reset = tabvm_touchpanel_handle_reset;
    uc->handle_control = tabvm_touchpanel_handle_control;
    uc->handle_data = tabvm_touchpanel_handle_data;
    uc->handle_attach = usb_desc_attach;
    uc->product_desc = "TabVM Touch Panel";
    dc->desc = "Small 5-finger touch panel (parallel reports, no mouse)";
    dc->vmsd = &vmstate_tabvm_touchpanel;
    device_class_set_props(dc, tabvm_touchpanel_properties);
    set_bit(DEVICE_CATEGORY_INPUT, dc->categories);
}

static const TypeInfo tabvm_touchpanel_info = {
    .name = TYPE_TABVM_TOUCHPANEL,
    .parent = TYPE_USB_DEVICE,
    .instance_size = sizeof(TabvmTouchpanelState),
    .class_init = tabvm_touchpanel_class_init,
};

static void tabvm_touchpanel_register_types(void)
{
    type_register_static(&tabvm_touchpanel_info);
}

type_init(tabvm_touchpanel_register_types)
