// Symbol names for return addresses of another (running) process, from its
// /proc/<pid>/maps and the ELF symbol tables (.symtab, else .dynsym) of the
// mapped files. No libelf, no DWARF: function name + offset and module.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace upcache::tool {

struct ElfSymbols;  // one mapped file's symbols, loaded lazily

class Symbolizer {
 public:
  explicit Symbolizer(int pid);
  ~Symbolizer();

  // False when /proc/<pid>/maps could not be read (process gone, no access).
  bool ok() const { return !maps_.empty(); }

  struct Frame {
    std::string module;    // path of the mapped file ("" if unknown)
    std::string function;  // demangled name ("" if unknown)
    uint64_t offset = 0;   // from the function, or from the module when no function
    bool has_function = false;
    bool known = false;    // inside some file mapping
  };
  // `pc` is a return address (the call is at pc - 1).
  Frame lookup(uint64_t pc);
  // "name+0x1c (module)", "module+0x1234", or "0x7f..." when unknown.
  std::string describe(uint64_t pc);

 private:
  struct Mapping {
    uint64_t start, end, offset;
    std::string path;
  };
  std::vector<Mapping> maps_;
  std::map<std::string, std::unique_ptr<ElfSymbols>> files_;
};

// Basename of a path.
std::string base_name(const std::string& path);

}  // namespace upcache::tool
