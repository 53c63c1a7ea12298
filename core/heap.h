// Allocation for upcache's own objects: a private mimalloc heap, so the host
// program's allocator (and its malloc hooks, arenas and statistics) never
// sees upcache's memory. Only used off the hit path (open, attach, create).
#pragma once

#include <mimalloc.h>

#include <new>
#include <utility>

namespace upcache {

template <typename T, typename... Args>
T* heap_new(Args&&... args) {
  void* p = mi_malloc_aligned(sizeof(T), alignof(T));
  if (p == nullptr) return nullptr;
  return new (p) T(std::forward<Args>(args)...);
}

template <typename T>
void heap_delete(T* p) {
  if (p == nullptr) return;
  p->~T();
  mi_free(p);
}

}  // namespace upcache
