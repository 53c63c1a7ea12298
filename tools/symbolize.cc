#include "tools/symbolize.h"

#include <cxxabi.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace upcache::tool {

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

struct ElfSymbols {
  struct Load {
    uint64_t offset, vaddr, filesz;
  };
  struct Sym {
    uint64_t value, size;
    std::string name;
  };
  std::vector<Load> loads;
  std::vector<Sym> syms;  // sorted by value

  // Reads the program headers and the symbol tables of a 64-bit ELF file.
  bool load(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st{};
    if (fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(Elf64_Ehdr))) {
      close(fd);
      return false;
    }
    size_t size = static_cast<size_t>(st.st_size);
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return false;
    const auto* base = static_cast<const unsigned char*>(p);
    bool ok = parse(base, size);
    munmap(p, size);
    return ok;
  }

  bool parse(const unsigned char* base, size_t size) {
    const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64)
      return false;
    auto in = [&](uint64_t off, uint64_t len) { return off <= size && len <= size - off; };
    if (!in(eh->e_phoff, uint64_t(eh->e_phnum) * sizeof(Elf64_Phdr))) return false;
    const auto* ph = reinterpret_cast<const Elf64_Phdr*>(base + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; ++i)
      if (ph[i].p_type == PT_LOAD) loads.push_back({ph[i].p_offset, ph[i].p_vaddr, ph[i].p_filesz});
    if (!in(eh->e_shoff, uint64_t(eh->e_shnum) * sizeof(Elf64_Shdr))) return !loads.empty();
    const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
    // .symtab when present (unstripped), else .dynsym.
    for (uint32_t want : {uint32_t(SHT_SYMTAB), uint32_t(SHT_DYNSYM)}) {
      for (int i = 0; i < eh->e_shnum; ++i) {
        if (sh[i].sh_type != want || sh[i].sh_link >= eh->e_shnum) continue;
        const Elf64_Shdr& strs = sh[sh[i].sh_link];
        if (!in(sh[i].sh_offset, sh[i].sh_size) || !in(strs.sh_offset, strs.sh_size)) continue;
        const auto* sym = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
        size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
        const char* names = reinterpret_cast<const char*>(base + strs.sh_offset);
        for (size_t k = 0; k < n; ++k) {
          int type = ELF64_ST_TYPE(sym[k].st_info);
          if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym[k].st_value == 0) continue;
          if (sym[k].st_name >= strs.sh_size) continue;
          const char* name = names + sym[k].st_name;
          size_t len = strnlen(name, strs.sh_size - sym[k].st_name);
          syms.push_back({sym[k].st_value, sym[k].st_size, std::string(name, len)});
        }
      }
      if (!syms.empty()) break;
    }
    std::sort(syms.begin(), syms.end(),
              [](const Sym& a, const Sym& b) { return a.value < b.value; });
    return true;
  }

  bool to_vaddr(uint64_t file_offset, uint64_t* vaddr) const {
    for (const Load& l : loads) {
      if (file_offset >= l.offset && file_offset < l.offset + l.filesz) {
        *vaddr = file_offset - l.offset + l.vaddr;
        return true;
      }
    }
    return false;
  }

  const Sym* find(uint64_t vaddr) const {
    auto it = std::upper_bound(syms.begin(), syms.end(), vaddr,
                               [](uint64_t v, const Sym& s) { return v < s.value; });
    while (it != syms.begin()) {
      --it;
      if (it->size == 0 || vaddr < it->value + it->size) return &*it;
      // A sized symbol that ends before vaddr: an earlier, larger one may
      // still contain it (nested local symbols); look back a little.
      if (vaddr - it->value > (1u << 20)) break;
    }
    return nullptr;
  }
};

Symbolizer::Symbolizer(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line)) {
    // start-end perms offset dev inode path
    Mapping m{};
    char perms[8] = {};
    int path_at = 0;
    if (sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %*s %*s %n", &m.start, &m.end,
               perms, &m.offset, &path_at) < 4)
      continue;
    if (path_at > 0 && static_cast<size_t>(path_at) < line.size()) m.path = line.substr(path_at);
    static const std::string kDeleted = " (deleted)";
    if (m.path.size() > kDeleted.size() &&
        m.path.compare(m.path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0)
      m.path.resize(m.path.size() - kDeleted.size());
    maps_.push_back(std::move(m));
  }
}

Symbolizer::~Symbolizer() = default;

Symbolizer::Frame Symbolizer::lookup(uint64_t pc) {
  Frame f;
  uint64_t at = pc > 0 ? pc - 1 : pc;  // inside the call instruction
  for (const Mapping& m : maps_) {
    if (at < m.start || at >= m.end) continue;
    if (m.path.empty() || m.path[0] != '/') {
      f.module = m.path;  // [vdso], [heap], anonymous
      f.offset = pc - m.start;
      f.known = !m.path.empty();
      return f;
    }
    f.known = true;
    f.module = m.path;
    uint64_t file_offset = at - m.start + m.offset;
    f.offset = file_offset + 1;
    auto& syms = files_[m.path];
    if (!syms) {
      syms = std::make_unique<ElfSymbols>();
      if (!syms->load(m.path)) syms->loads.clear();
    }
    uint64_t vaddr = 0;
    if (!syms->to_vaddr(file_offset, &vaddr)) return f;
    f.offset = vaddr + 1;
    if (const ElfSymbols::Sym* s = syms->find(vaddr)) {
      int status = -1;
      char* d = abi::__cxa_demangle(s->name.c_str(), nullptr, nullptr, &status);
      f.function = status == 0 && d != nullptr ? d : s->name;
      free(d);
      f.offset = vaddr + 1 - s->value;
      f.has_function = true;
    }
    return f;
  }
  return f;
}

std::string Symbolizer::describe(uint64_t pc) {
  char buf[64];
  Frame f = lookup(pc);
  if (!f.known) {
    snprintf(buf, sizeof buf, "0x%" PRIx64, pc);
    return buf;
  }
  snprintf(buf, sizeof buf, "+0x%" PRIx64, f.offset);
  if (f.has_function) return f.function + buf + " (" + base_name(f.module) + ")";
  return base_name(f.module) + buf;
}

}  // namespace upcache::tool
