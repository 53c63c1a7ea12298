// Decimal digits of an unsigned number, without libc.
//
// For code that may run where libc must not be called: a signal handler, a
// fork handler (a sanitizer's fork interceptor holds its locks there), a
// helper task running on borrowed thread-local storage. Async-signal-safe.
#pragma once

#include <cstdint>

namespace upcache {

// Writes the digits of v and a terminating NUL to buf (at least 21 bytes).
// Returns a pointer to the NUL.
inline char* format_decimal(char* buf, uint64_t v) {
  char digits[20];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) *buf++ = digits[--n];
  *buf = '\0';
  return buf;
}

}  // namespace upcache
