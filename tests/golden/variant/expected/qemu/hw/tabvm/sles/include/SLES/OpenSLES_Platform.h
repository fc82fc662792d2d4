/*
 * SPDX-License-Identifier: MIT
 *
 * OpenSLES_Platform.h - base types of the OpenSL ES 1.0.1 API, for the tabvm
 * OpenSL ES test stand-in (see opensles/README.md).
 *
 * Written for tabvm from the Khronos Group OpenSL ES 1.0.1 specification;
 * not a copy of the Khronos or Android header files.  The API it describes is
 * Copyright (c) 2007-2009 The Khronos Group Inc., whose licence reads:
 *
 *   Permission is hereby granted, free of charge, to any person obtaining a
 *   copy of this software and/or associated documentation files (the
 *   "Materials"), to deal in the Materials without restriction, including
 *   without limitation the rights to use, copy, modify, merge, publish,
 *   distribute, sublicense, and/or sell copies of the Materials, and to permit
 *   persons to whom the Materials are furnished to do so, subject to the
 *   following conditions:
 *
 *   The above copyright notice and this permission notice shall be included
 *   in all copies or substantial portions of the Materials.
 *
 *   THE MATERIALS ARE PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
 *   OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
 *   MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN
 *   NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
 *   DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
 *   OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE MATERIALS OR THE
 *   USE OR OTHER DEALINGS IN THE MATERIALS.
 *
 * The widths match Android's platform header: SLuint32 is 32 bits on LP64
 * too (the Khronos reference header's "unsigned long" is not).
 */

#ifndef _OPENSLES_PLATFORM_H_
#define _OPENSLES_PLATFORM_H_

#include <stdint.h>

typedef uint8_t  sl_uint8_t;
typedef int8_t   sl_int8_t;
typedef uint16_t sl_uint16_t;
typedef int16_t  sl_int16_t;
typedef uint32_t sl_uint32_t;
typedef int32_t  sl_int32_t;
typedef int64_t  sl_int64_t;
typedef uint64_t sl_uint64_t;

/* Calling convention of the entry points and callbacks (none on Android). */
#ifndef SLAPIENTRY
#define SLAPIENTRY
#endif

/* Decorates the exported functions and interface IDs; a library may define
 * it (e.g. to a visibility attribute) before including the headers. */
#ifndef SL_API
#define SL_API
#endif

#endif /* _OPENSLES_PLATFORM_H_ */
