/*
 * meshid malloc: glibc heap controls Node has no API for, as an N-API addon (plus one V8 call, v8-heap.cc, which ties
 * the build to the Node whose headers it was compiled with).
 *
 *   trim()                   -> boolean   malloc_trim(0): hand free pages anywhere in the heap back to the kernel;
 *                                         true when memory was released
 *   setMmapThreshold(bytes)  -> boolean   mallopt(M_MMAP_THRESHOLD): allocations of at least `bytes` get their own
 *                                         mapping (returned to the kernel on free), and glibc stops raising the
 *                                         threshold by itself
 *   collectAllGarbage()      -> boolean   V8's memory-reducing full GC (v8-heap.cc), synchronous; false when there
 *                                         is no current isolate
 *
 * Why: V8 frees the native memory behind Buffers, KeyObjects and certificates only when it collects their
 * wrappers, by which time later long-lived allocations sit above the garbage; glibc only shrinks the heap from the
 * top, so without these the agent keeps its burst high-water mark as RSS for good.
 */
#include <malloc.h>
#include <stdint.h>

#include <node_api.h>

/* v8-heap.cc */
int meshid_v8_low_memory(void);

/* glibc only: other C libraries (musl) lack these calls; there the addon builds and both functions return false. */
#ifdef __GLIBC__
static int do_trim(void) { return malloc_trim(0) == 1; }
static int do_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes) == 1; }
#else
static int do_trim(void) { return 0; }
static int do_mmap_threshold(int bytes) { (void)bytes; return 0; }
#endif

static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_get_boolean(env, do_trim(), &result);
  return result;
}

static napi_value collect_all_garbage(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_get_boolean(env, meshid_v8_low_memory(), &result);
  return result;
}

static napi_value set_mmap_threshold(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t bytes = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int64(env, argv[0], &bytes) != napi_ok || bytes < 0 || bytes > INT32_MAX) {
    napi_throw_type_error(env, NULL, "setMmapThreshold(bytes) needs a byte count between 0 and 2^31-1");
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, do_mmap_threshold((int)bytes), &result);
  return result;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  const napi_property_descriptor props[] = {
    { "trim", NULL, trim, NULL, NULL, NULL, napi_enumerable, NULL },
    { "setMmapThreshold", NULL, set_mmap_threshold, NULL, NULL, NULL, napi_enumerable, NULL },
    { "collectAllGarbage", NULL, collect_all_garbage, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
