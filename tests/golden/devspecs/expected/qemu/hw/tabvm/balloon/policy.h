/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The decision of tabvm-balloon: a pure function of its inputs and state
 *
 * Generated from devspecs/balloon.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * Nothing here depends on QEMU: the object (tabvm-balloon.c) gathers
 * the inputs, calls tabvm_balloon_decide() and applies the target;
 * the tests compile policy.c on its own and replay memory traces
 * through it.
 *
 * Sizes are in bytes, times in milliseconds of one monotonic clock.
 */

#ifndef HW_TABVM_BALLOON_POLICY_H
#define HW_TABVM_BALLOON_POLICY_H

#include <stdbool.h>
#include <stdint.h>

/* Host pressure levels: normal, moderate, low, critical */
#define TABVM_BALLOON_LEVELS 4

/* A keep value meaning "no balloon at all" */
#define TABVM_BALLOON_NO_BALLOON UINT64_MAX

/* Why a target was chosen, in the order of the QMP event's reasons */
enum {
    TABVM_BALLOON_STEADY,
    TABVM_BALLOON_HOST_PRESSURE,
    TABVM_BALLOON_RELIEF,
    TABVM_BALLOON_FOREGROUND,
    TABVM_BALLOON_GUEST_NEED,
    TABVM_BALLOON_GUEST_PRESSURE,
    TABVM_BALLOON_STALL,
    TABVM_BALLOON_REASONS
};

typedef struct TabvmBalloonParams {
    uint64_t min_size;              /* the guest never gets less memory */
    uint64_t emergency_available;   /* guest MemAvailable floor */
    uint64_t emergency_deflate;     /* what guest pressure gives back */
    int64_t pressure_hold_ms;       /* no inflation this long after it */
    uint64_t inflate_max_step;
    uint64_t inflate_min_step;      /* smaller changes are skipped */
    uint64_t deflate_max_step;
    uint64_t stall_rate;            /* bytes per second; 0: never a stall */
    uint64_t stall_backoff;
    int64_t stall_after_ms;         /* a new target gets this long to start */
    int64_t level_down_delay_ms;    /* pressure must stay lower this long */
    int64_t level_down_delay_max_ms;   /* ... or up to this after flapping */
    uint32_t levels;
    uint64_t background_keep[TABVM_BALLOON_LEVELS];   /* per level */
    uint64_t foreground_keep[TABVM_BALLOON_LEVELS];
} TabvmBalloonParams;

/* The parameters devspecs/balloon.yaml sets */
extern const TabvmBalloonParams tabvm_balloon_params;

typedef struct TabvmBalloonInputs {
    int64_t now_ms;
    uint64_t ram;                   /* the guest's RAM */
    uint64_t balloon;               /* the balloon's size now */
    uint32_t level;                 /* host pressure level the sources report */
    bool foreground;
    bool stats_valid;               /* the guest has reported statistics */
    int64_t stats_ms;               /* when they arrived */
    uint64_t available;             /* guest MemAvailable */
    uint64_t free;
    uint64_t cache;
    uint64_t oom_kills;             /* counters; 0 if the guest has none */
    uint64_t alloc_stalls;
} TabvmBalloonInputs;

typedef struct TabvmBalloonHistory {
    bool started;
    bool foreground;
    uint32_t level;                 /* the level the policy acts on */
    int64_t lower_since_ms;         /* sources below it since (-1: not) */
    int64_t hold_until_ms;          /* no inflation before */
    int64_t pressure_ms;            /* last guest-pressure decision */
    uint64_t keep;
    uint64_t target;
    int64_t target_ms;              /* when the target last changed */
    int64_t settled_ms;             /* when the balloon reached it (-1: not) */
    uint64_t last_balloon;
    int64_t last_ms;
    uint64_t oom_kills;
    uint64_t alloc_stalls;
    int64_t down_delay_ms;          /* the down delay now */
    int64_t fell_ms;                /* when the level last fell (-1: never) */
    int64_t level_ms;               /* when the level last changed */
} TabvmBalloonHistory;

typedef struct TabvmBalloonDecision {
    uint64_t target;                /* balloon size */
    int reason;
    uint32_t level;
    uint64_t keep;                  /* guest MemAvailable the policy aims at */
    bool clamped;                   /* the minimum guest size capped it */
} TabvmBalloonDecision;

void tabvm_balloon_init(TabvmBalloonHistory *s);

/*
 * One decision. Returns true when the balloon's target changed; @out tells
 * the target, why, and what the policy saw.
 */
bool tabvm_balloon_decide(const TabvmBalloonParams *p,
                          TabvmBalloonHistory *s,
                          const TabvmBalloonInputs *in,
                          TabvmBalloonDecision *out);

#endif
