{
  "targets": [
    {
      "target_name": "malloc",
      "sources": ["malloc.c", "v8-heap.cc"],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra"],
      "ldflags": ["-Wl,-z,now"]
    }
  ]
}
