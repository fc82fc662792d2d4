/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tabvm-battery: Tablet battery and AC adapter following the host power
 * supply
 *
 * Generated from devspecs/battery.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * The guest sees 9 little-endian DWORD registers at I/O port 0x530.
 * The SSDT rendered from the same spec (battery.asl) reads them from
 * _STA, _BIX, _BIF, _BST and _PSR. The host changes the values with
 * qom-set; every change sets a bit in the EVENTS register and raises
 * GPE0 bit 0, whose _E00 method notifies the battery (BAT0)
 * and the AC adapter (ADP0).
 *
 * Linux's ACPI battery driver keeps _BST for a second after reading it
 * (battery.cache_time): a change notified within that second is answered
 * from its cache, and the guest's power stack (upower) would not hear of it
 * again until it polls. So a change that comes less than GUEST_CACHE_MS
 * after the guest last read _BST is notified once more, RENOTIFY_MS after
 * that read.
 *
 * Battery values are physical state, not guest state: a guest reset
 * clears only the pending events.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "qemu/timer.h"
#include "qom/object.h"
#include "hw/isa/isa.h"
#include "hw/acpi/acpi_dev_interface.h"
#include "hw/resettable.h"
#include "migration/vmstate.h"
#include "trace.h"

#define TYPE_TABVM_BATTERY "tabvm-battery"
OBJECT_DECLARE_SIMPLE_TYPE(TabvmBatteryState, TABVM_BATTERY)

#define TABVM_BATTERY_IO_BASE 0x530
#define TABVM_BATTERY_IO_SIZE 36
#define TABVM_BATTERY_GPE_BIT 0
#define TABVM_BATTERY_GPE_STATUS \
    ((AcpiEventStatusBits)(1u << TABVM_BATTERY_GPE_BIT))
#define TABVM_BATTERY_MAGIC 0x54414254
/* Linux's ACPI battery cache_time, and a notification safely after it */
#define TABVM_BATTERY_GUEST_CACHE_MS 1000
#define TABVM_BATTERY_RENOTIFY_MS 1100

enum {
    /* bits 0-2: _BST state, bit 8: battery present, bit 9: AC online */
    TABVM_BATTERY_REG_STATUS = 0x00,
    /* remaining capacity */
    TABVM_BATTERY_REG_REMAINING = 0x04,
    /* last full charge capacity */
    TABVM_BATTERY_REG_FULL = 0x08,
    /* design capacity */
    TABVM_BATTERY_REG_DESIGN = 0x0c,
    /* present rate */
    TABVM_BATTERY_REG_RATE = 0x10,
    /* present voltage */
    TABVM_BATTERY_REG_VOLTAGE = 0x14,
    /* cycle count */
    TABVM_BATTERY_REG_CYCLES = 0x18,
    /* pending events, cleared by reading: bit 0 _BST, bit 1 _BIX, bit 2 AC */
    TABVM_BATTERY_REG_EVENTS = 0x1c,
    /* identifies the block: 'TBAT' */
    TABVM_BATTERY_REG_MAGIC = 0x20,
};

QEMU_BUILD_BUG_ON(TABVM_BATTERY_REG_MAGIC + 4 !=
                  TABVM_BATTERY_IO_SIZE);
QEMU_BUILD_BUG_ON(TABVM_BATTERY_GPE_BIT > 7);

/* STATUS register */
#define TABVM_BATTERY_STATUS_STATE_MASK    0x7u
#define TABVM_BATTERY_STATUS_PRESENT       (1u << 8)
#define TABVM_BATTERY_STATUS_AC_ONLINE     (1u << 9)

/* _BST state bits */
#define TABVM_BATTERY_BST_DISCHARGING      (1u << 0)
#define TABVM_BATTERY_BST_CHARGING         (1u << 1)
#define TABVM_BATTERY_BST_CRITICAL         (1u << 2)

/* EVENTS register */
#define TABVM_BATTERY_EVENT_BST            (1u << 0)
#define TABVM_BATTERY_EVENT_BIX            (1u << 1)
#define TABVM_BATTERY_EVENT_AC             (1u << 2)

typedef enum {
    TABVM_BATTERY_STATE_IDLE = 0,
    TABVM_BATTERY_STATE_DISCHARGING = 1,
    TABVM_BATTERY_STATE_CHARGING = 2,
    TABVM_BATTERY_STATE__MAX,
} TabvmBatteryKind;

static const QEnumLookup tabvm_battery_state_lookup = {
    .array = (const char *const[]) {
        [TABVM_BATTERY_STATE_IDLE] = "idle",
        [TABVM_BATTERY_STATE_DISCHARGING] = "discharging",
        [TABVM_BATTERY_STATE_CHARGING] = "charging",
    },
    .size = TABVM_BATTERY_STATE__MAX,
};

/* What the host sets; validated as a whole before it is committed. */
typedef struct TabvmBatteryValues {
    bool present;
    bool ac_online;
    bool critical;
    uint32_t state;
    uint32_t remaining;
    uint32_t full;
    uint32_t design;
    uint32_t rate;
    uint32_t voltage;
    uint32_t cycles;
} TabvmBatteryValues;

struct TabvmBatteryState {
    ISADevice parent_obj;

    MemoryRegion io;
    Object *acpi;       /* the machine's ACPI device (GPE block) */

    TabvmBatteryValues v;
    uint32_t events;    /* pending EVENTS bits, cleared by a guest read */
    QEMUTimer *renotify;        /* raises renotify_events again */
    uint32_t renotify_events;
    int64_t bst_read_ms;        /* the guest's last _BST read (virtual clock) */
};

static bool tabvm_battery_values_valid(const TabvmBatteryValues *v,
                                       Error **errp)
{
    if (v->state >= TABVM_BATTERY_STATE__MAX) {
        error_setg(errp, "state %" PRIu32
                   " is not idle, discharging or charging", v->state);
        return false;
    }
    if (v->full == 0) {
        error_setg(errp, "full capacity must be at least 1");
        return false;
    }
    if (v->design == 0) {
        error_setg(errp, "design capacity must be at least 1");
        return false;
    }
    if (v->remaining > v->full) {
        error_setg(errp, "remaining capacity %" PRIu32 " is more than the full "
                   "capacity %" PRIu32, v->remaining, v->full);
        return false;
    }
    return true;
}

static uint32_t tabvm_battery_status(const TabvmBatteryState *s)
{
    uint32_t val = 0;

    if (s->v.state == TABVM_BATTERY_STATE_DISCHARGING) {
        val |= TABVM_BATTERY_BST_DISCHARGING;
    } else if (s->v.state == TABVM_BATTERY_STATE_CHARGING) {
        val |= TABVM_BATTERY_BST_CHARGING;
    }
    if (s->v.critical) {
        val |= TABVM_BATTERY_BST_CRITICAL;
    }
    if (s->v.present) {
        val |= TABVM_BATTERY_STATUS_PRESENT;
    }
    if (s->v.ac_online) {
        val |= TABVM_BATTERY_STATUS_AC_ONLINE;
    }
    return val;
}

static uint64_t tabvm_battery_read(void *opaque, hwaddr addr,
                                   unsigned size)
{
    TabvmBatteryState *s = opaque;
    uint32_t val;

    if (size != 4 || (addr & 3)) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "%s: %u-byte read at offset 0x%" HWADDR_PRIx
                      " ignored (registers are aligned DWORDs)\n",
                      __func__, size, addr);
        return 0;
    }
    switch (addr) {
    case TABVM_BATTERY_REG_STATUS:
        val = tabvm_battery_status(s);
        break;
    case TABVM_BATTERY_REG_REMAINING:       /* every _BST reads it */
        val = s->v.remaining;
        s->bst_read_ms = qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL);
        break;
    case TABVM_BATTERY_REG_FULL:
        val = s->v.full;
        break;
    case TABVM_BATTERY_REG_DESIGN:
        val = s->v.design;
        break;
    case TABVM_BATTERY_REG_RATE:
        val = s->v.rate;
        break;
    case TABVM_BATTERY_REG_VOLTAGE:
        val = s->v.voltage;
        break;
    case TABVM_BATTERY_REG_CYCLES:
        val = s->v.cycles;
        break;
    case TABVM_BATTERY_REG_EVENTS:
        val = s->events;
        s->events = 0;
        break;
    case TABVM_BATTERY_REG_MAGIC:
        val = TABVM_BATTERY_MAGIC;
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR,
                      "%s: read at unknown offset 0x%" HWADDR_PRIx
                      " ignored\n", __func__, addr);
        return 0;
    }
    trace_tabvm_battery_read(addr, val);
    return val;
}

static void tabvm_battery_write(void *opaque, hwaddr addr, uint64_t val,
                                unsigned size)
{
    qemu_log_mask(LOG_GUEST_ERROR,
                  "%s: %u-byte write of 0x%" PRIx64 " at offset 0x%"
                  HWADDR_PRIx " ignored (registers are read-only)\n",
                  __func__, size, val, addr);
}

static const MemoryRegionOps tabvm_battery_ops = {
    .read = tabvm_battery_read,
    .write = tabvm_battery_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 1,
        .max_access_size = 4,
    },
    .impl = {
        .min_access_size = 1,
        .max_access_size = 4,
    },
};

/* Make @v current and tell the guest about @events. */
static void tabvm_battery_commit(TabvmBatteryState *s,
                                 const TabvmBatteryValues *v,
                                 uint32_t events)
{
    s->v = *v;
    if (!events) {
        return;
    }
    s->events |= events;
    trace_tabvm_battery_event(events, s->events);
    if (DEVICE(s)->realized) {
        acpi_send_event(DEVICE(s->acpi), TABVM_BATTERY_GPE_STATUS);
        if (qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL) - s->bst_read_ms <
            TABVM_BATTERY_GUEST_CACHE_MS) {
            s->renotify_events |= events;
            timer_mod(s->renotify,
                      s->bst_read_ms + TABVM_BATTERY_RENOTIFY_MS);
        }
    }
}

static void tabvm_battery_renotify(void *opaque)
{
    TabvmBatteryState *s = opaque;

    s->events |= s->renotify_events;
    trace_tabvm_battery_renotify(s->renotify_events, s->events);
    s->renotify_events = 0;
    acpi_send_event(DEVICE(s->acpi), TABVM_BATTERY_GPE_STATUS);
}

/* A bool or uint32 member of the values, with the events a change raises. */
typedef struct TabvmBatteryField {
    const char *name;
    const char *type;
    size_t offset;
    uint32_t events;
    const char *description;
} TabvmBatteryField;

static const TabvmBatteryField tabvm_battery_fields[] = {
    { "present", "bool", offsetof(TabvmBatteryValues, present),
      TABVM_BATTERY_EVENT_BST | TABVM_BATTERY_EVENT_BIX,
      "battery inserted" },
    { "ac-online", "bool", offsetof(TabvmBatteryValues, ac_online),
      TABVM_BATTERY_EVENT_AC, "AC adapter plugged in" },
    { "critical", "bool", offsetof(TabvmBatteryValues, critical),
      TABVM_BATTERY_EVENT_BST, "battery in a critical energy state" },
    { "remaining", "uint32", offsetof(TabvmBatteryValues, remaining),
      TABVM_BATTERY_EVENT_BST, "remaining capacity (mWh)" },
    { "full", "uint32", offsetof(TabvmBatteryValues, full),
      TABVM_BATTERY_EVENT_BIX | TABVM_BATTERY_EVENT_BST,
      "last full charge capacity (mWh)" },
    { "design-capacity", "uint32", offsetof(TabvmBatteryValues, design),
      TABVM_BATTERY_EVENT_BIX, "design capacity (mWh)" },
    { "rate", "uint32", offsetof(TabvmBatteryValues, rate),
      TABVM_BATTERY_EVENT_BST, "present (dis)charge rate" },
    { "voltage", "uint32", offsetof(TabvmBatteryValues, voltage),
      TABVM_BATTERY_EVENT_BST, "present voltage (mV)" },
    { "cycle-count", "uint32", offsetof(TabvmBatteryValues, cycles),
      TABVM_BATTERY_EVENT_BIX, "charge cycles" },
};

static void tabvm_battery_get_field(Object *obj, Visitor *v,
                                    const char *name, void *opaque,
                                    Error **errp)
{
    TabvmBatteryState *s = TABVM_BATTERY(obj);
    const TabvmBatteryField *f = opaque;
    void *ptr = (char *)&s->v + f->offset;

    if (!strcmp(f->type, "bool")) {
        visit_type_bool(v, name, ptr, errp);
    } else {
        visit_type_uint32(v, name, ptr, errp);
    }
}

static void tabvm_battery_set_field(Object *obj, Visitor *v,
                                    const char *name, void *opaque,
                                    Error **errp)
{
    TabvmBatteryState *s = TABVM_BATTERY(obj);
    const TabvmBatteryField *f = opaque;
    TabvmBatteryValues next = s->v;
    void *ptr = (char *)&next + f->offset;
    bool changed;

    if (!strcmp(f->type, "bool")) {
        bool value;

        if (!visit_type_bool(v, name, &value, errp)) {
            return;
        }
        changed = *(bool *)ptr != value;
        *(bool *)ptr = value;
        trace_tabvm_battery_set(name, value);
    } else {
        uint32_t value;

        if (!visit_type_uint32(v, name, &value, errp)) {
            return;
        }
        changed = *(uint32_t *)ptr != value;
        *(uint32_t *)ptr = value;
        trace_tabvm_battery_set(name, value);
    }
    if (!tabvm_battery_values_valid(&next, errp)) {
        return;
    }
    tabvm_battery_commit(s, &next, changed ? f->events : 0);
}

static int tabvm_battery_get_state(Object *obj, Error **errp)
{
    return TABVM_BATTERY(obj)->v.state;
}

static void tabvm_battery_set_state(Object *obj, int value, Error **errp)
{
    TabvmBatteryState *s = TABVM_BATTERY(obj);
    TabvmBatteryValues next = s->v;
    uint32_t events;

    next.state = value;
    if (!tabvm_battery_values_valid(&next, errp)) {
        return;
    }
    events = next.state != s->v.state ?
             TABVM_BATTERY_EVENT_BST : 0;
    trace_tabvm_battery_set("state", value);
    tabvm_battery_commit(s, &next, events);
}

/* capacity: remaining as a percentage of full, rounded to nearest */
static void tabvm_battery_get_capacity(Object *obj, Visitor *v,
                                       const char *name, void *opaque,
                                       Error **errp)
{
    TabvmBatteryState *s = TABVM_BATTERY(obj);
    uint64_t scaled = (uint64_t)s->v.remaining * 100 + s->v.full / 2;
    uint8_t percent = scaled / s->v.full;

    visit_type_uint8(v, name, &percent, errp);
}

static void tabvm_battery_set_capacity(Object *obj, Visitor *v,
                                       const char *name, void *opaque,
                                       Error **errp)
{
    TabvmBatteryState *s = TABVM_BATTERY(obj);
    TabvmBatteryValues next = s->v;
    uint32_t events;
    uint8_t percent;

    if (!visit_type_uint8(v, name, &percent, errp)) {
        return;
    }
    if (percent > 100) {
        error_setg(errp, "capacity %u%% is more than 100%%", percent);
        return;
    }
    next.remaining = ((uint64_t)next.full * percent + 50) / 100;
    if (!tabvm_battery_values_valid(&next, errp)) {
        return;
    }
    trace_tabvm_battery_set(name, percent);
    events = next.remaining != s->v.remaining ?
             TABVM_BATTERY_EVENT_BST : 0;
    tabvm_battery_commit(s, &next, events);
}

static void tabvm_battery_realize(DeviceState *dev, Error **errp)
{
    TabvmBatteryState *s = TABVM_BATTERY(dev);
    bool ambiguous = false;

    object_resolve_path_type("", TYPE_TABVM_BATTERY, &ambiguous);
    if (ambiguous) {
        error_setg(errp, "only one %s device is allowed",
                   TYPE_TABVM_BATTERY);
        return;
    }
    s->acpi = object_resolve_path_type("", TYPE_ACPI_DEVICE_IF, NULL);
    if (!s->acpi) {
        error_setg(errp, "%s needs a machine with ACPI GPE support (q35)",
                   TYPE_TABVM_BATTERY);
        return;
    }
    memory_region_init_io(&s->io, OBJECT(s), &tabvm_battery_ops, s,
                          TYPE_TABVM_BATTERY, TABVM_BATTERY_IO_SIZE);
    isa_register_ioport(ISA_DEVICE(dev), &s->io, TABVM_BATTERY_IO_BASE);
    s->renotify = timer_new_ms(QEMU_CLOCK_VIRTUAL,
                               tabvm_battery_renotify, s);
}

static void tabvm_battery_unrealize(DeviceState *dev)
{
    TabvmBatteryState *s = TABVM_BATTERY(dev);

    timer_free(s->renotify);
}

static void tabvm_battery_init(Object *obj)
{
    TabvmBatteryState *s = TABVM_BATTERY(obj);

    /* Initial values from devspecs/battery.yaml */
    s->v = (TabvmBatteryValues) {
        .present = true,
        .ac_online = false,
        .critical = false,
        .state = TABVM_BATTERY_STATE_DISCHARGING,
        .remaining = 30400,
        .full = 38000,
        .design = 38000,
        .rate = 4000,
        .voltage = 7600,
        .cycles = 0,
    };
    s->bst_read_ms = INT64_MIN / 2;     /* never */
}

static void tabvm_battery_reset_hold(Object *obj, ResetType type)
{
    TabvmBatteryState *s = TABVM_BATTERY(obj);

    s->events = 0;
    s->renotify_events = 0;
    s->bst_read_ms = INT64_MIN / 2;
    timer_del(s->renotify);
}

static int tabvm_battery_post_load(void *opaque, int version_id)
{
    TabvmBatteryState *s = opaque;

    return tabvm_battery_values_valid(&s->v, NULL) ? 0 : -EINVAL;
}

static bool tabvm_battery_renotify_needed(void *opaque)
{
    TabvmBatteryState *s = opaque;

    return timer_pending(s->renotify) ||
           qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL) - s->bst_read_ms <
           TABVM_BATTERY_GUEST_CACHE_MS;
}

static const VMStateDescription vmstate_tabvm_battery_renotify = {
    .name = TYPE_TABVM_BATTERY "/renotify",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = tabvm_battery_renotify_needed,
    .fields = (const VMStateField[]) {
        VMSTATE_TIMER_PTR(renotify, TabvmBatteryState),
        VMSTATE_UINT32(renotify_events, TabvmBatteryState),
        VMSTATE_INT64(bst_read_ms, TabvmBatteryState),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_tabvm_battery = {
    .name = TYPE_TABVM_BATTERY,
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = tabvm_battery_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_BOOL(v.present, TabvmBatteryState),
        VMSTATE_BOOL(v.ac_online, TabvmBatteryState),
        VMSTATE_BOOL(v.critical, TabvmBatteryState),
        VMSTATE_UINT32(v.state, TabvmBatteryState),
        VMSTATE_UINT32(v.remaining, TabvmBatteryState),
        VMSTATE_UINT32(v.full, TabvmBatteryState),
        VMSTATE_UINT32(v.design, TabvmBatteryState),
        VMSTATE_UINT32(v.rate, TabvmBatteryState),
        VMSTATE_UINT32(v.voltage, TabvmBatteryState),
        VMSTATE_UINT32(v.cycles, TabvmBatteryState),
        VMSTATE_UINT32(events, TabvmBatteryState),
        VMSTATE_END_OF_LIST()
    },
    .subsections = (const VMStateDescription * const []) {
        &vmstate_tabvm_battery_renotify,
        NULL
    },
};

static void tabvm_battery_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    ResettableClass *rc = RESETTABLE_CLASS(klass);
    ObjectProperty *op;
    size_t i;

    dc->desc = "Tablet battery and AC adapter following the host power "
        "supply";
    dc->realize = tabvm_battery_realize;
    dc->unrealize = tabvm_battery_unrealize;
    dc->vmsd = &vmstate_tabvm_battery;
    dc->hotpluggable = false;
    rc->phases.hold = tabvm_battery_reset_hold;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);

    for (i = 0; i < ARRAY_SIZE(tabvm_battery_fields); i++) {
        const TabvmBatteryField *f = &tabvm_battery_fields[i];

        op = object_class_property_add(klass, f->name, f->type,
                                       tabvm_battery_get_field,
                                       tabvm_battery_set_field,
                                       NULL, (void *)f);
        object_class_property_set_description(klass, op->name, f->description);
    }
    object_class_property_add_enum(klass, "state", "TabvmBatteryKind",
                                   &tabvm_battery_state_lookup,
                                   tabvm_battery_get_state,
                                   tabvm_battery_set_state);
    object_class_property_set_description(klass, "state",
                                          "idle, discharging or charging");
    object_class_property_add(klass, "capacity", "uint8",
                              tabvm_battery_get_capacity,
                              tabvm_battery_set_capacity, NULL, NULL);
    object_class_property_set_description(klass, "capacity",
                                          "remaining capacity in percent of full");
}

static const TypeInfo tabvm_battery_info = {
    .name          = TYPE_TABVM_BATTERY,
    .parent        = TYPE_ISA_DEVICE,
    .instance_size = sizeof(TabvmBatteryState),
    .instance_init = tabvm_battery_init,
    .class_init    = tabvm_battery_class_init,
};

static void tabvm_battery_register_types(void)
{
    type_register_static(&tabvm_battery_info);
}

type_init(tabvm_battery_register_types)
