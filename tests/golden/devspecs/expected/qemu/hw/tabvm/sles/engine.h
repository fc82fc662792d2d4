/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The OpenSL ES engine shared by the generated audiodev drivers
 *
 * Generated from devspecs/opensles.yaml, devspecs/opensles_lowlat.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

#ifndef TABVM_SLES_ENGINE_H
#define TABVM_SLES_ENGINE_H

#include <SLES/OpenSLES.h>

typedef SLresult (*TabvmSlesCreateEngine)(SLObjectItf *engine,
                                          SLuint32 num_options,
                                          const SLEngineOption *options,
                                          SLuint32 num_interfaces,
                                          const SLInterfaceID *ids,
                                          const SLboolean *required);

/*
 * Android allows one OpenSL ES engine per process, so every audiodev of
 * every generated driver shares one: the first user creates and realizes
 * it with @create (slCreateEngine of the library it loaded), the last
 * tabvm_sles_engine_put() destroys it. Called from QEMU's main thread.
 */
SLObjectItf tabvm_sles_engine_get(TabvmSlesCreateEngine create, Error **errp);
void tabvm_sles_engine_put(void);

#endif
