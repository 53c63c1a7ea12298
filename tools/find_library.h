// Where libupcache.so is, for the programs that preload it (`upcache run`,
// upcache-bench): --lib, else $UPCACHE_LIB, else next to the running
// executable (build tree: ../shim/; installed: ../lib[/multiarch]/), else the
// configured install libdir. The compiling target defines
// UPCACHE_INSTALL_LIBDIR and UPCACHE_MULTIARCH.
#pragma once

#include <string>

namespace upcache {

// Sets *out to the library's real path; false with *error listing what was
// tried otherwise.
bool find_library(const std::string& flag, std::string* out, std::string* error);

}  // namespace upcache
