/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tabvm-balloon: the decision, and the parameters from the spec
 *
 * Generated from devspecs/balloon.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * In the background the guest keeps only as much available memory
 * (MemAvailable: free memory plus what it can reclaim, mostly page cache)
 * as the host's pressure level allows, and the balloon takes the rest; in
 * the foreground it keeps more, by default everything. Pressure rising acts
 * at once; pressure falling acts once it has stayed lower for a while, so a
 * level flickering at a threshold does not make the balloon flap. A guest
 * short of memory gets memory back at once, and no inflation for a while.
 *
 * Decisions from guest statistics need statistics taken after the balloon
 * settled on its last target, so the same surplus is never taken twice.
 */

#include "policy.h"

#define TABVM_BALLOON_MIB ((uint64_t)1 << 20)
#define MiB TABVM_BALLOON_MIB

const TabvmBalloonParams tabvm_balloon_params = {
    .min_size = 256 * MiB,
    .emergency_available = 32 * MiB,
    .emergency_deflate = 128 * MiB,
    .pressure_hold_ms = 10000,
    .inflate_max_step = 1024 * MiB,
    .inflate_min_step = 16 * MiB,
    .deflate_max_step = 4096 * MiB,
    .stall_rate = 15 * MiB,
    .stall_backoff = 128 * MiB,
    .stall_after_ms = 2000,
    .level_down_delay_ms = 5000,
    .level_down_delay_max_ms = 80000,
    .levels = TABVM_BALLOON_LEVELS,
    .background_keep = {
        512 * MiB,       /* normal */
        256 * MiB,       /* moderate */
        128 * MiB,       /* low */
        64 * MiB,       /* critical */
    },
    .foreground_keep = {
        TABVM_BALLOON_NO_BALLOON,       /* normal */
        TABVM_BALLOON_NO_BALLOON,       /* moderate */
        TABVM_BALLOON_NO_BALLOON,       /* low */
        256 * MiB,       /* critical */
    },
};

#undef MiB

static uint64_t sub_sat(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a + b >= a ? a + b : UINT64_MAX;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t distance(uint64_t a, uint64_t b)
{
    return a > b ? a - b : b - a;
}

void tabvm_balloon_init(TabvmBalloonHistory *s)
{
    *s = (TabvmBalloonHistory) { .started = false };
}

/*
 * Pressure rising is taken at once; falling, once it has stayed lower for the
 * down delay. In the background, pressure that comes back soon after the
 * policy relaxed doubles that delay, up to level_down_delay_max_ms: the
 * memory the relief gave back brought the pressure back, and relaxing again
 * at the same pace would make the balloon flap for as long as the host stays
 * where it is. A level held for four delays halves the delay again.
 */
static void update_level(const TabvmBalloonParams *p, TabvmBalloonHistory *s,
                         uint32_t level, bool foreground, int64_t now)
{
    int64_t base = p->level_down_delay_ms;
    int64_t cap = p->level_down_delay_max_ms > base ? p->level_down_delay_max_ms
                                                    : base;

    if (level >= p->levels) {
        level = p->levels - 1;
    }
    if (s->down_delay_ms < base || s->down_delay_ms > cap) {
        s->down_delay_ms = base;
    }
    if (level > s->level) {
        if (!foreground && s->fell_ms >= 0 &&
            now - s->fell_ms < 2 * s->down_delay_ms) {
            int64_t twice = 2 * s->down_delay_ms;

            s->down_delay_ms = s->down_delay_ms > cap / 2 ? cap : twice;
        }
        s->level = level;
        s->level_ms = now;
        s->lower_since_ms = -1;
        return;
    }
    if (level == s->level) {
        int64_t half = s->down_delay_ms / 2;

        s->lower_since_ms = -1;
        if (s->down_delay_ms > base &&
            now - s->level_ms >= 4 * s->down_delay_ms) {
            s->down_delay_ms = half > base ? half : base;
            s->level_ms = now;
        }
        return;
    }
    if (s->lower_since_ms < 0) {
        s->lower_since_ms = now;
    }
    if (now - s->lower_since_ms >= (foreground ? base : s->down_delay_ms)) {
        s->level = level;
        s->level_ms = now;
        s->fell_ms = now;
        s->lower_since_ms = -1;
    }
}

static void start(const TabvmBalloonParams *p, TabvmBalloonHistory *s,
                  const TabvmBalloonInputs *in)
{
    s->started = true;
    s->foreground = in->foreground;
    s->level = in->level < p->levels ? in->level : p->levels - 1;
    s->lower_since_ms = -1;
    s->hold_until_ms = in->now_ms;
    s->pressure_ms = in->now_ms - 1;
    s->keep = in->foreground ? p->foreground_keep[s->level]
                             : p->background_keep[s->level];
    s->target = in->balloon;
    s->target_ms = in->now_ms;
    s->settled_ms = in->now_ms - 1;
    s->last_balloon = in->balloon;
    s->last_ms = in->now_ms;
    s->oom_kills = in->oom_kills;
    s->alloc_stalls = in->alloc_stalls;
    s->down_delay_ms = p->level_down_delay_ms;
    s->fell_ms = -1;
    s->level_ms = in->now_ms;
}

/* Has inflation been slower than the stall rate since the last decision? */
static bool stalled(const TabvmBalloonParams *p, const TabvmBalloonHistory *s,
                    const TabvmBalloonInputs *in)
{
    int64_t dt = in->now_ms - s->last_ms;

    if (!p->stall_rate || s->target < in->balloon + p->inflate_min_step ||
        in->now_ms - s->target_ms < p->stall_after_ms || dt <= 0) {
        return false;
    }
    return sub_sat(in->balloon, s->last_balloon) * 1000 <
           p->stall_rate * (uint64_t)dt;
}

bool tabvm_balloon_decide(const TabvmBalloonParams *p,
                          TabvmBalloonHistory *s,
                          const TabvmBalloonInputs *in,
                          TabvmBalloonDecision *out)
{
    uint64_t max_balloon = sub_sat(in->ram, p->min_size);
    uint64_t target, keep, available;
    bool keep_changed, fresh, inflating, guest_short, deflated_itself;
    int reason = TABVM_BALLOON_STEADY;

    if (!s->started) {
        start(p, s, in);
    }
    update_level(p, s, in->level, in->foreground, in->now_ms);
    keep = in->foreground ? p->foreground_keep[s->level]
                          : p->background_keep[s->level];
    keep_changed = keep != s->keep || in->foreground != s->foreground;

    if (s->settled_ms < 0 &&
        distance(in->balloon, s->target) < p->inflate_min_step) {
        s->settled_ms = in->now_ms;
    }
    fresh = in->stats_valid && s->settled_ms >= 0 &&
            in->stats_ms > s->settled_ms;
    /*
     * The balloon's own allocations stall while it inflates from page cache:
     * allocation stalls count as the guest's need only when it is not.
     */
    inflating = s->target >= in->balloon + p->inflate_min_step ||
                in->balloon > s->last_balloon;
    guest_short = in->stats_valid && in->stats_ms > s->pressure_ms &&
                  (in->available < p->emergency_available ||
                   in->oom_kills > s->oom_kills ||
                   (!inflating && in->alloc_stalls > s->alloc_stalls));
    /* e.g. virtio-balloon's deflate-on-oom: smaller, and we did not ask */
    deflated_itself = s->target >= s->last_balloon &&
                      in->balloon + p->inflate_min_step <= s->last_balloon;

    /*
     * Statistics from before the balloon settled do not show what it took
     * since: a keep change acted on them would take the same surplus twice.
     * The guest was to be left s->keep at the current target, so at the
     * balloon's current size it has at most that plus the distance to go.
     */
    available = in->available;
    if (!fresh && s->keep != TABVM_BALLOON_NO_BALLOON) {
        available = min_u64(available,
                            in->balloon <= s->target
                            ? add_sat(s->keep, s->target - in->balloon)
                            : sub_sat(s->keep, in->balloon - s->target));
    }

    target = s->target;
    if (guest_short || deflated_itself) {
        /* no inflation for a while, even with an empty balloon */
        s->hold_until_ms = in->now_ms + p->pressure_hold_ms;
        s->pressure_ms = in->now_ms;
    }
    if ((guest_short || deflated_itself) && (in->balloon || s->target)) {
        target = sub_sat(min_u64(in->balloon, s->target), p->emergency_deflate);
        reason = TABVM_BALLOON_GUEST_PRESSURE;
    } else if (keep == TABVM_BALLOON_NO_BALLOON) {
        target = 0;
        reason = in->foreground ? TABVM_BALLOON_FOREGROUND
                                : TABVM_BALLOON_RELIEF;
    } else if (stalled(p, s, in)) {
        target = sub_sat(in->balloon, p->stall_backoff);
        reason = TABVM_BALLOON_STALL;
        s->hold_until_ms = in->now_ms + p->pressure_hold_ms;
    } else if (in->stats_valid && (fresh || keep_changed)) {
        if (available > keep) {
            uint64_t surplus = available - keep;

            if (in->now_ms >= s->hold_until_ms &&
                surplus >= p->inflate_min_step) {
                target = add_sat(in->balloon,
                                 min_u64(surplus, p->inflate_max_step));
                reason = TABVM_BALLOON_HOST_PRESSURE;
            }
        } else if (keep - available >= p->inflate_min_step) {
            target = sub_sat(in->balloon,
                             min_u64(keep - available, p->deflate_max_step));
            reason = in->foreground ? TABVM_BALLOON_FOREGROUND
                   : keep > s->keep ? TABVM_BALLOON_RELIEF
                   : TABVM_BALLOON_GUEST_NEED;
        }
    }

    out->clamped = target > max_balloon;
    if (out->clamped) {
        target = max_balloon;
        if (reason == TABVM_BALLOON_STEADY && target != s->target) {
            /* e.g. a balloon found above it: give the guest its minimum */
            reason = TABVM_BALLOON_GUEST_NEED;
        }
    }
    if (target == s->target) {
        reason = TABVM_BALLOON_STEADY;
    } else {
        s->target = target;
        s->target_ms = in->now_ms;
        s->settled_ms = distance(in->balloon, target) < p->inflate_min_step
                        ? in->now_ms : -1;
    }

    s->keep = keep;
    s->foreground = in->foreground;
    s->last_balloon = in->balloon;
    s->last_ms = in->now_ms;
    if (in->stats_valid) {
        s->oom_kills = in->oom_kills;
        s->alloc_stalls = in->alloc_stalls;
    }
    out->target = s->target;
    out->reason = reason;
    out->level = s->level;
    out->keep = keep;
    return reason != TABVM_BALLOON_STEADY;
}
