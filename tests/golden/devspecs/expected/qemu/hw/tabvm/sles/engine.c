/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The OpenSL ES engine shared by the generated audiodev drivers
 *
 * Generated from devspecs/opensles.yaml, devspecs/opensles_lowlat.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "hw/tabvm/sles/engine.h"

static struct {
    SLObjectItf obj;
    TabvmSlesCreateEngine create;
    unsigned users;
} tabvm_sles_engine;

SLObjectItf tabvm_sles_engine_get(TabvmSlesCreateEngine create, Error **errp)
{
    SLObjectItf obj;
    SLresult r;

    if (tabvm_sles_engine.users) {
        if (create != tabvm_sles_engine.create) {
            error_setg(errp, "an OpenSL ES engine from another library is in "
                       "use, and a process can have only one");
            return NULL;
        }
        tabvm_sles_engine.users++;
        return tabvm_sles_engine.obj;
    }
    r = create(&obj, 0, NULL, 0, NULL, NULL);
    if (r != SL_RESULT_SUCCESS) {
        error_setg(errp, "slCreateEngine failed (SLresult %u)", (unsigned)r);
        return NULL;
    }
    r = (*obj)->Realize(obj, SL_BOOLEAN_FALSE);
    if (r != SL_RESULT_SUCCESS) {
        error_setg(errp, "realizing the OpenSL ES engine failed (SLresult %u)",
                   (unsigned)r);
        (*obj)->Destroy(obj);
        return NULL;
    }
    tabvm_sles_engine.obj = obj;
    tabvm_sles_engine.create = create;
    tabvm_sles_engine.users = 1;
    return obj;
}

void tabvm_sles_engine_put(void)
{
    assert(tabvm_sles_engine.users);
    if (--tabvm_sles_engine.users == 0) {
        (*tabvm_sles_engine.obj)->Destroy(tabvm_sles_engine.obj);
        tabvm_sles_engine.obj = NULL;
        tabvm_sles_engine.create = NULL;
    }
}
