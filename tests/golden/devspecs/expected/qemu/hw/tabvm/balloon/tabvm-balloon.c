/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tabvm-balloon: Automatic ballooning driven by host memory pressure and
 * foreground state
 *
 * Generated from devspecs/balloon.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * A user-creatable object that runs the ballooning policy inside QEMU, so
 * memory keeps being managed when nothing outside QEMU is:
 *
 *   -device virtio-balloon-pci,id=balloon0,deflate-on-oom=on,\
 *           free-page-reporting=on
 *   -object tabvm-balloon,id=bp,balloon=balloon0[,chardev=ID][,psi=PATH]\
 *           [,foreground=on]
 *
 * Every 1 s, and at once when an input changes, it reads the guest's
 * statistics from the balloon, decides (policy.c, no QEMU inside) and sets the
 * balloon's target. Inputs:
 *   - host pressure levels (normal, moderate, low, critical):
 *     from Linux PSI triggers on the file @psi names (/proc/pressure/memory,
 *     or a cgroup's memory.pressure), woken by the kernel, never polled; and
 *     from the host as lines on the chardev ("level NAME") or with qom-set
 *     host-level;
 *   - foreground or background: qom-set foreground, or "foreground" /
 *     "background" lines on the chardev.
 * Each new target is reported by the TABVM_BALLOON_DECISION event.
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qemu/error-report.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qapi/qapi-commands-machine.h"
#include "qapi/qapi-events-machine.h"
#include "qobject/qdict.h"
#include "qobject/qnum.h"
#include "qom/object.h"
#include "qom/object_interfaces.h"
#include "qom/qom-qobject.h"
#include "chardev/char-fe.h"
#include "hw/boards.h"
#include "hw/virtio/virtio-balloon.h"
#include "system/runstate.h"
#include "system/system.h"
#include "policy.h"
#include "trace.h"

#define TYPE_TABVM_BALLOON "tabvm-balloon"
OBJECT_DECLARE_SIMPLE_TYPE(TabvmBalloonState, TABVM_BALLOON)

#define TABVM_BALLOON_LINE_MAX 128

QEMU_BUILD_BUG_ON((int)TABVM_BALLOON_REASONS !=
                  (int)TABVM_BALLOON_REASON__MAX);

static const char *const level_names[TABVM_BALLOON_LEVELS] = {
    "normal",
    "moderate",
    "low",
    "critical",
};

/* PSI trigger of each level ("some|full STALL_US WINDOW_US"), NULL: none */
static const char *const psi_triggers[TABVM_BALLOON_LEVELS] = {
    NULL,
    "some 70000 1000000",
    "some 150000 1000000",
    "full 100000 1000000",
};

/* How long a PSI trigger's level holds after it fires: two of its windows */
static const int64_t psi_hold_ms[TABVM_BALLOON_LEVELS] = {
    0,
    2000,
    2000,
    2000,
};

typedef struct TabvmBalloonPsi {
    TabvmBalloonState *s;
    uint32_t level;
    int fd;
    guint watch;
} TabvmBalloonPsi;

struct TabvmBalloonState {
    Object parent_obj;

    /* properties */
    char *balloon_id;
    char *chardev_id;
    char *psi_path;
    bool foreground;
    uint64_t min_size;
    uint32_t interval_ms;

    Object *balloon;              /* the VirtIOBalloon, once machine is up */
    CharBackend chr;
    char line[TABVM_BALLOON_LINE_MAX];
    size_t line_len;
    bool line_too_long;
    TabvmBalloonPsi psi[TABVM_BALLOON_LEVELS];
    int64_t psi_until_ms[TABVM_BALLOON_LEVELS];
    uint32_t host_level;          /* from the chardev or qom-set */
    QEMUTimer *timer;
    Notifier machine_done;
    bool started;

    int64_t stats_update;         /* the balloon's last-update we saw */
    int64_t stats_ms;             /* and when we saw it change */
    TabvmBalloonParams params;
    TabvmBalloonHistory history;
    TabvmBalloonDecision last;
    uint64_t decisions;
    uint64_t bad_messages;
};

static int64_t tabvm_balloon_now(void)
{
    return qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
}

/* The highest level a source reports now */
static uint32_t tabvm_balloon_host_level(TabvmBalloonState *s,
                                         int64_t now)
{
    uint32_t level = s->host_level;

    for (uint32_t i = level + 1; i < TABVM_BALLOON_LEVELS; i++) {
        if (s->psi_until_ms[i] > now) {
            level = i;
        }
    }
    return level;
}

static uint64_t tabvm_balloon_ram_size(void)
{
    MachineState *ms = MACHINE(qdev_get_machine());

    return ms->ram_size +
           (ms->device_memory ? ms->device_memory->dimm_size : 0);
}

static bool tabvm_balloon_stat(QDict *stats, const char *name,
                               uint64_t *value)
{
    QNum *num = qobject_to(QNum, qdict_get(stats, name));

    /* virtio-balloon reports a statistic the guest never sent as -1 */
    return num && qnum_get_try_uint(num, value) && *value != UINT64_MAX;
}

/* The guest's statistics, as virtio-balloon's guest-stats property has them */
static void tabvm_balloon_read_stats(TabvmBalloonState *s,
                                     TabvmBalloonInputs *in)
{
    QObject *obj = object_property_get_qobject(s->balloon, "guest-stats", NULL);
    g_autoptr(QDict) all = qobject_to(QDict, obj);
    QDict *stats = all ? qdict_get_qdict(all, "stats") : NULL;
    int64_t update = all ? qdict_get_try_int(all, "last-update", 0) : 0;

    if (!stats || !update) {
        return;
    }
    if (update != s->stats_update) {
        s->stats_update = update;
        s->stats_ms = in->now_ms;
    }
    in->stats_ms = s->stats_ms;
    in->stats_valid =
        tabvm_balloon_stat(stats, "stat-available-memory", &in->available) &&
        tabvm_balloon_stat(stats, "stat-free-memory", &in->free);
    /* optional: older guests do not send these */
    if (!tabvm_balloon_stat(stats, "stat-disk-caches", &in->cache)) {
        in->cache = 0;
    }
    if (!tabvm_balloon_stat(stats, "stat-oom-kills", &in->oom_kills)) {
        in->oom_kills = 0;
    }
    if (!tabvm_balloon_stat(stats, "stat-alloc-stalls",
                               &in->alloc_stalls)) {
        in->alloc_stalls = 0;
    }
}

static void tabvm_balloon_report(TabvmBalloonState *s,
                                 const TabvmBalloonInputs *in,
                                 const TabvmBalloonDecision *out)
{
    const char *id = object_get_canonical_path_component(OBJECT(s));
    bool limited = out->keep != TABVM_BALLOON_NO_BALLOON;
    bool stats = in->stats_valid;

    qapi_event_send_tabvm_balloon_decision(
        id, (TabvmBalloonReason)out->reason, out->target, in->balloon,
        in->ram - out->target, level_names[out->level], in->foreground,
        limited, out->keep, stats, in->available, stats, in->free,
        stats, in->cache, out->clamped);
}

static void tabvm_balloon_tick(TabvmBalloonState *s)
{
    TabvmBalloonInputs in = {
        .now_ms = tabvm_balloon_now(),
        .ram = tabvm_balloon_ram_size(),
        .foreground = s->foreground,
    };
    TabvmBalloonDecision out;
    g_autoptr(BalloonInfo) info = NULL;
    Error *err = NULL;

    if (!s->balloon || !runstate_is_running()) {
        return;
    }
    info = qmp_query_balloon(&err);
    if (!info) {
        trace_tabvm_balloon_apply_failed(0, error_get_pretty(err));
        error_free(err);
        return;
    }
    in.balloon = in.ram > (uint64_t)info->actual ? in.ram - info->actual : 0;
    in.level = tabvm_balloon_host_level(s, in.now_ms);
    tabvm_balloon_read_stats(s, &in);

    if (!tabvm_balloon_decide(&s->params, &s->history, &in, &out)) {
        return;
    }
    trace_tabvm_balloon_decision(
        TabvmBalloonReason_str((TabvmBalloonReason)out.reason),
        level_names[out.level], in.foreground, in.balloon, in.available,
        out.target);
    s->decisions++;
    s->last = out;
    qmp_balloon(in.ram - out.target, &err);
    if (err) {
        trace_tabvm_balloon_apply_failed(out.target,
                                            error_get_pretty(err));
        error_free(err);
        return;
    }
    tabvm_balloon_report(s, &in, &out);
}

static void tabvm_balloon_timer(void *opaque)
{
    TabvmBalloonState *s = opaque;

    tabvm_balloon_tick(s);
    timer_mod(s->timer, tabvm_balloon_now() + s->interval_ms);
}

/* An input changed: decide now, from the main loop */
static void tabvm_balloon_kick(TabvmBalloonState *s)
{
    if (s->started) {
        timer_mod(s->timer, tabvm_balloon_now());
    }
}

static int tabvm_balloon_level_by_name(const char *name)
{
    for (int i = 0; i < TABVM_BALLOON_LEVELS; i++) {
        if (!strcmp(name, level_names[i])) {
            return i;
        }
    }
    return -1;
}

/* Host messages on the chardev, one per line */

static void tabvm_balloon_reply(TabvmBalloonState *s, const char *text)
{
    /* best effort: a host that does not read its replies loses them */
    qemu_chr_fe_write(&s->chr, (const uint8_t *)text, strlen(text));
}

static void tabvm_balloon_bad(TabvmBalloonState *s, const char *why)
{
    g_autofree char *reply = g_strdup_printf("error: %s\n", why);

    s->bad_messages++;
    trace_tabvm_balloon_bad_message(why);
    tabvm_balloon_reply(s, reply);
}

static void tabvm_balloon_message(TabvmBalloonState *s, char *line)
{
    g_autofree char *reply = NULL;
    int level;

    trace_tabvm_balloon_message(line);
    if (g_str_has_prefix(line, "level ")) {
        level = tabvm_balloon_level_by_name(line + strlen("level "));
        if (level < 0) {
            tabvm_balloon_bad(s, "unknown level "
                                 "(levels: normal, moderate, low, critical)");
            return;
        }
        s->host_level = level;
        trace_tabvm_balloon_host_level("chardev", level_names[level]);
    } else if (!strcmp(line, "foreground") || !strcmp(line, "background")) {
        s->foreground = line[0] == 'f';
    } else if (strcmp(line, "query")) {
        tabvm_balloon_bad(s, "unknown message (level NAME, foreground, "
                             "background, query)");
        return;
    }
    reply = g_strdup_printf("ok level=%s host-level=%s foreground=%d "
                            "target=%" PRIu64 "\n",
                            level_names[s->history.level],
                            level_names[s->host_level], s->foreground,
                            s->history.target);
    tabvm_balloon_reply(s, reply);
    tabvm_balloon_kick(s);
}

static int tabvm_balloon_can_read(void *opaque)
{
    return TABVM_BALLOON_LINE_MAX;
}

static void tabvm_balloon_read(void *opaque, const uint8_t *buf, int size)
{
    TabvmBalloonState *s = opaque;

    for (int i = 0; i < size; i++) {
        char c = buf[i];

        if (c == '\n') {
            if (s->line_too_long) {
                tabvm_balloon_bad(s, "line too long, or not text");
            } else {
                s->line[s->line_len] = '\0';
                if (s->line_len && s->line[s->line_len - 1] == '\r') {
                    s->line[s->line_len - 1] = '\0';
                }
                tabvm_balloon_message(s, s->line);
            }
            s->line_len = 0;
            s->line_too_long = false;
        } else if (c == '\0' || s->line_len >= sizeof(s->line) - 1) {
            s->line_too_long = true;    /* dropped up to the next newline */
        } else if (!s->line_too_long) {
            s->line[s->line_len++] = c;
        }
    }
}

static void tabvm_balloon_chr_event(void *opaque, QEMUChrEvent event)
{
    TabvmBalloonState *s = opaque;

    /* a new peer starts a new line; the level it set stays */
    if (event == CHR_EVENT_OPENED || event == CHR_EVENT_CLOSED) {
        s->line_len = 0;
        s->line_too_long = false;
    }
}

/* Linux PSI triggers: the kernel wakes us with POLLPRI when one fires */

static gboolean tabvm_balloon_psi_fired(gint fd, GIOCondition cond,
                                        gpointer opaque)
{
    TabvmBalloonPsi *psi = opaque;
    TabvmBalloonState *s = psi->s;

    if (cond & (G_IO_ERR | G_IO_HUP | G_IO_NVAL)) {
        warn_report("tabvm-balloon: the PSI trigger of level %s on %s "
                    "stopped working", level_names[psi->level], s->psi_path);
        psi->watch = 0;
        return G_SOURCE_REMOVE;
    }
    trace_tabvm_balloon_psi(level_names[psi->level]);
    s->psi_until_ms[psi->level] = tabvm_balloon_now() +
                                  psi_hold_ms[psi->level];
    tabvm_balloon_kick(s);
    return G_SOURCE_CONTINUE;
}

static void tabvm_balloon_psi_close(TabvmBalloonState *s)
{
    for (int i = 0; i < TABVM_BALLOON_LEVELS; i++) {
        if (s->psi[i].watch) {
            g_source_remove(s->psi[i].watch);
            s->psi[i].watch = 0;
        }
        if (s->psi[i].fd >= 0) {
            close(s->psi[i].fd);
            s->psi[i].fd = -1;
        }
    }
}

static bool tabvm_balloon_psi_open(TabvmBalloonState *s, Error **errp)
{
    g_autofree char *text = NULL;
    g_autoptr(GError) gerr = NULL;

    if (!g_file_get_contents(s->psi_path, &text, NULL, &gerr)) {
        error_setg(errp, "cannot read %s: %s", s->psi_path, gerr->message);
        return false;
    }
    if (!g_str_has_prefix(text, "some avg10=")) {
        error_setg(errp, "%s is not a Linux pressure (PSI) file", s->psi_path);
        return false;
    }
    for (int i = 0; i < TABVM_BALLOON_LEVELS; i++) {
        const char *trigger = psi_triggers[i];
        int fd;

        if (!trigger) {
            continue;
        }
        fd = qemu_open(s->psi_path, O_RDWR | O_NONBLOCK, errp);
        if (fd < 0) {
            return false;
        }
        s->psi[i].fd = fd;
        if (write(fd, trigger, strlen(trigger) + 1) < 0) {
            error_setg_errno(errp, errno, "cannot set the PSI trigger '%s' "
                             "of level %s on %s", trigger, level_names[i],
                             s->psi_path);
            return false;
        }
        s->psi[i].watch = g_unix_fd_add(fd, G_IO_PRI | G_IO_ERR | G_IO_HUP,
                                        tabvm_balloon_psi_fired, &s->psi[i]);
    }
    return true;
}

/* The balloon: by id or QOM path of a virtio-balloon device, else the one */
static Object *tabvm_balloon_find_balloon(TabvmBalloonState *s, Error **errp)
{
    Object *obj;
    bool ambiguous = false;

    if (!s->balloon_id) {
        obj = object_resolve_path_type("", TYPE_VIRTIO_BALLOON, &ambiguous);
        if (!obj) {
            error_setg(errp, ambiguous
                       ? "there are several virtio-balloon devices: name one "
                         "with balloon=ID"
                       : "there is no virtio-balloon device");
        }
        return obj;
    }
    obj = object_resolve_path_component(machine_get_container("peripheral"),
                                        s->balloon_id);
    if (!obj) {
        obj = object_resolve_path(s->balloon_id, NULL);
    }
    if (obj && !object_dynamic_cast(obj, TYPE_VIRTIO_BALLOON)) {
        /* a proxy such as virtio-balloon-pci holds the device */
        obj = object_resolve_path_component(obj, "virtio-backend");
    }
    if (!obj || !object_dynamic_cast(obj, TYPE_VIRTIO_BALLOON)) {
        error_setg(errp, "balloon '%s' is not a virtio-balloon device",
                   s->balloon_id);
        return NULL;
    }
    return obj;
}

static void tabvm_balloon_start(TabvmBalloonState *s, Error **errp)
{
    uint64_t ram = tabvm_balloon_ram_size();

    if (s->min_size >= ram) {
        error_setg(errp, "min-size %" PRIu64 " MiB is not below the guest's "
                   "RAM (%" PRIu64 " MiB)", s->min_size / MiB, ram / MiB);
        return;
    }
    s->balloon = tabvm_balloon_find_balloon(s, errp);
    if (!s->balloon) {
        return;
    }
    object_ref(s->balloon);
    if (!object_property_set_int(s->balloon, "guest-stats-polling-interval",
                                 MAX(s->interval_ms / 1000, 1), errp)) {
        return;
    }
    s->params.min_size = s->min_size;
    s->started = true;
    timer_mod(s->timer, tabvm_balloon_now() + s->interval_ms);
}

static void tabvm_balloon_machine_done(Notifier *notifier, void *data)
{
    TabvmBalloonState *s = container_of(notifier, TabvmBalloonState,
                                     machine_done);
    Error *err = NULL;

    tabvm_balloon_start(s, &err);
    if (err) {
        error_prepend(&err, "tabvm-balloon: ");
        error_report_err(err);
        exit(1);
    }
}

static void tabvm_balloon_complete(UserCreatable *uc, Error **errp)
{
    TabvmBalloonState *s = TABVM_BALLOON(uc);

    if (s->chardev_id) {
        Chardev *chr = qemu_chr_find(s->chardev_id);

        if (!chr) {
            error_setg(errp, "chardev '%s' not found", s->chardev_id);
            return;
        }
        if (!qemu_chr_fe_init(&s->chr, chr, errp)) {
            return;
        }
        qemu_chr_fe_set_handlers(&s->chr, tabvm_balloon_can_read,
                                 tabvm_balloon_read, tabvm_balloon_chr_event,
                                 NULL, s, NULL, true);
    }
    if (s->psi_path && !tabvm_balloon_psi_open(s, errp)) {
        tabvm_balloon_psi_close(s);
        return;
    }
    s->timer = timer_new_ms(QEMU_CLOCK_REALTIME, tabvm_balloon_timer, s);
    /* the balloon device comes after -object: find it once the machine is up */
    s->machine_done.notify = tabvm_balloon_machine_done;
    qemu_add_machine_init_done_notifier(&s->machine_done);
}

/* Properties */

static char *tabvm_balloon_get_balloon(Object *obj, Error **errp)
{
    return g_strdup(TABVM_BALLOON(obj)->balloon_id);
}

static void tabvm_balloon_set_balloon(Object *obj,
                                      const char *value, Error **errp)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);

    g_free(s->balloon_id);
    s->balloon_id = g_strdup(value);
}

static char *tabvm_balloon_get_chardev(Object *obj, Error **errp)
{
    return g_strdup(TABVM_BALLOON(obj)->chardev_id);
}

static void tabvm_balloon_set_chardev(Object *obj,
                                      const char *value, Error **errp)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);

    g_free(s->chardev_id);
    s->chardev_id = g_strdup(value);
}

static char *tabvm_balloon_get_psi(Object *obj, Error **errp)
{
    return g_strdup(TABVM_BALLOON(obj)->psi_path);
}

static void tabvm_balloon_set_psi(Object *obj,
                                  const char *value, Error **errp)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);

    g_free(s->psi_path);
    s->psi_path = g_strdup(value);
}

static bool tabvm_balloon_get_foreground(Object *obj, Error **errp)
{
    return TABVM_BALLOON(obj)->foreground;
}

static void tabvm_balloon_set_foreground(Object *obj, bool value, Error **errp)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);

    s->foreground = value;
    tabvm_balloon_kick(s);
}

static char *tabvm_balloon_get_host_level(Object *obj, Error **errp)
{
    return g_strdup(level_names[TABVM_BALLOON(obj)->host_level]);
}

static void tabvm_balloon_set_host_level(Object *obj,
                                         const char *value, Error **errp)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);
    int level = tabvm_balloon_level_by_name(value);

    if (level < 0) {
        error_setg(errp, "unknown level '%s' "
                   "(levels: normal, moderate, low, critical)", value);
        return;
    }
    s->host_level = level;
    trace_tabvm_balloon_host_level("qom-set", value);
    tabvm_balloon_kick(s);
}

static char *tabvm_balloon_get_level(Object *obj, Error **errp)
{
    return g_strdup(level_names[TABVM_BALLOON(obj)->history.level]);
}

static void tabvm_balloon_get_u64(Object *obj, Visitor *v, const char *name,
                                     void *opaque, Error **errp)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);
    uint64_t value;

    if (!strcmp(name, "target")) {
        value = s->history.target;
    } else if (!strcmp(name, "decisions")) {
        value = s->decisions;
    } else {
        value = s->bad_messages;
    }
    visit_type_uint64(v, name, &value, errp);
}

static void tabvm_balloon_get_min_size(Object *obj, Visitor *v,
                                       const char *name, void *opaque,
                                       Error **errp)
{
    visit_type_size(v, name, &TABVM_BALLOON(obj)->min_size, errp);
}

static void tabvm_balloon_set_min_size(Object *obj, Visitor *v,
                                       const char *name, void *opaque,
                                       Error **errp)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);
    uint64_t value;

    if (s->started) {
        error_setg(errp, "min-size cannot change once the policy runs");
        return;
    }
    if (visit_type_size(v, name, &value, errp)) {
        s->min_size = value;
    }
}

static void tabvm_balloon_get_interval(Object *obj, Visitor *v,
                                       const char *name, void *opaque,
                                       Error **errp)
{
    visit_type_uint32(v, name, &TABVM_BALLOON(obj)->interval_ms, errp);
}

static void tabvm_balloon_set_interval(Object *obj, Visitor *v,
                                       const char *name, void *opaque,
                                       Error **errp)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);
    uint32_t value;

    if (s->started) {
        error_setg(errp, "interval cannot change once the policy runs");
        return;
    }
    if (!visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    if (value < 100 || value > 60000) {
        error_setg(errp, "interval must be 100 to 60000 ms");
        return;
    }
    s->interval_ms = value;
}

static void tabvm_balloon_instance_init(Object *obj)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);

    s->params = tabvm_balloon_params;
    s->min_size = s->params.min_size;
    s->interval_ms = 1000;
    tabvm_balloon_init(&s->history);
    for (int i = 0; i < TABVM_BALLOON_LEVELS; i++) {
        s->psi[i] = (TabvmBalloonPsi) { .s = s, .level = i, .fd = -1 };
    }
}

static void tabvm_balloon_finalize(Object *obj)
{
    TabvmBalloonState *s = TABVM_BALLOON(obj);

    if (s->machine_done.notify) {
        qemu_remove_machine_init_done_notifier(&s->machine_done);
    }
    if (s->timer) {
        timer_free(s->timer);
    }
    tabvm_balloon_psi_close(s);
    qemu_chr_fe_deinit(&s->chr, false);
    if (s->balloon) {
        object_unref(s->balloon);
    }
    g_free(s->balloon_id);
    g_free(s->chardev_id);
    g_free(s->psi_path);
}

static void tabvm_balloon_class_init(ObjectClass *oc, void *data)
{
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(oc);

    ucc->complete = tabvm_balloon_complete;

    object_class_property_add_str(oc, "balloon", tabvm_balloon_get_balloon,
                                  tabvm_balloon_set_balloon);
    object_class_property_set_description(oc, "balloon",
        "id or QOM path of the virtio-balloon device (default: the only one)");
    object_class_property_add_str(oc, "chardev", tabvm_balloon_get_chardev,
                                  tabvm_balloon_set_chardev);
    object_class_property_set_description(oc, "chardev",
        "chardev the host sends lines to: level NAME, foreground, background, query");
    object_class_property_add_str(oc, "psi", tabvm_balloon_get_psi,
                                  tabvm_balloon_set_psi);
    object_class_property_set_description(oc, "psi",
        "Linux memory pressure file for PSI triggers, e.g. /proc/pressure/memory");
    object_class_property_add_bool(oc, "foreground",
                                   tabvm_balloon_get_foreground,
                                   tabvm_balloon_set_foreground);
    object_class_property_set_description(oc, "foreground",
        "the user is in the VM");
    object_class_property_add_str(oc, "host-level",
                                  tabvm_balloon_get_host_level,
                                  tabvm_balloon_set_host_level);
    object_class_property_set_description(oc, "host-level",
        "host memory pressure level the host reports (normal, moderate, low, critical)");
    object_class_property_add_str(oc, "level", tabvm_balloon_get_level, NULL);
    object_class_property_set_description(oc, "level",
        "the pressure level the policy acts on");
    object_class_property_add(oc, "min-size", "size",
                              tabvm_balloon_get_min_size,
                              tabvm_balloon_set_min_size, NULL, NULL);
    object_class_property_set_description(oc, "min-size",
        "the balloon never leaves the guest less memory (default 256M)");
    object_class_property_add(oc, "interval", "uint32",
                              tabvm_balloon_get_interval,
                              tabvm_balloon_set_interval, NULL, NULL);
    object_class_property_set_description(oc, "interval",
        "milliseconds between decisions and guest statistics (default 1000)");
    object_class_property_add(oc, "target", "uint64", tabvm_balloon_get_u64,
                              NULL, NULL, NULL);
    object_class_property_add(oc, "decisions", "uint64", tabvm_balloon_get_u64,
                              NULL, NULL, NULL);
    object_class_property_add(oc, "bad-messages", "uint64",
                              tabvm_balloon_get_u64, NULL, NULL, NULL);
}

static const TypeInfo tabvm_balloon_info = {
    .name = TYPE_TABVM_BALLOON,
    .parent = TYPE_OBJECT,
    .instance_size = sizeof(TabvmBalloonState),
    .instance_init = tabvm_balloon_instance_init,
    .instance_finalize = tabvm_balloon_finalize,
    .class_init = tabvm_balloon_class_init,
    .interfaces = (InterfaceInfo[]) {
        { TYPE_USER_CREATABLE },
        { }
    },
};

static void tabvm_balloon_register_types(void)
{
    type_register_static(&tabvm_balloon_info);
}

type_init(tabvm_balloon_register_types)
