/*
 * meshid malloc, the V8 half: a memory-reducing full GC, which Node's JS has no call for.
 *
 * Why: the agent collects once itself after a burst when V8's memory reducer has not (src/common/memory/
 * native-heap.ts). `gc()` of --expose-gc is a plain full GC: V8 shrinks the young generation after it only when its
 * allocation rate over the last 5 s is low, which after a quiet spell it is in some runs and not in others, so the
 * young generation kept its burst size (16 MB semi-spaces, ~30 MB of RSS) in about a third of bench P5's runs; the
 * agent calls this only then.
 * LowMemoryNotification is V8's memory-reducing collection: full GCs until a round frees nothing more, with the flag
 * that compacts the old generation and always shrinks the young one.
 *
 * This uses V8's C++ API besides N-API, so the addon is tied to the Node it was built against (build-native.mjs
 * builds it at install with that Node's headers). Both calls have kept their signatures across Node's majors.
 */
#include <v8.h>

extern "C" int meshid_v8_low_memory(void) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate == nullptr) return 0;
  isolate->LowMemoryNotification();
  return 1;
}
