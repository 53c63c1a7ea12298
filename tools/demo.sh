#!/usr/bin/env bash
# The main job: one program reads a generated file twice (a cold pass, then
# a warm one), first on the kernel's page cache, then under `upcache run`,
# and prints the times side by side with upcache's statistics.
#
# Usage: tools/demo.sh [BUILD_DIR] [SIZE_MIB]
set -euo pipefail
build=${1:-build}
size_mib=${2:-512}
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)
upcache="$build/tools/upcache"
data="$build/demo"
file="$data/demo.dat"
mkdir -p "$data"
# The system's python3 (a version manager's wrapper script would add its own
# processes to the statistics).
py=/usr/bin/python3
[ -x "$py" ] || py=python3

if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" != $((size_mib << 20)) ]; then
  echo "== generating $file ($size_mib MiB)"
  python3 - "$file" "$size_mib" <<'PY'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
block = os.urandom(1 << 20)
with open(path, "wb") as f:
    for i in range(mib):
        f.write(block[i % 97:] + block[: i % 97])
PY
fi

# The reader: two passes of 64 KiB read() calls, timing each; prints a checksum
# so the two runs can be compared.
reader=$(cat <<'PY'
import os, sys, time, zlib
path = sys.argv[1]
times, sums = [], []
for name in ("cold", "warm"):
    fd = os.open(path, os.O_RDONLY)
    t0 = time.perf_counter(); crc = 0; n = 0
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        crc = zlib.crc32(b, crc); n += len(b)
    times.append(time.perf_counter() - t0); sums.append(crc)
    os.close(fd)
print(" ".join(f"{t:.3f}" for t in times), n, f"{sums[0]:08x}", f"{sums[1]:08x}")
PY
)

drop_kernel_cache() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then
    echo 3 > /proc/sys/vm/drop_caches
  else
    python3 -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$file"
  fi
}

echo "== kernel page cache: python3 reads the file twice with 64 KiB read() calls"
drop_kernel_cache
read -r kcold kwarm kbytes ksum1 ksum2 < <("$py" -c "$reader" "$file")

echo "== upcache: the same program under 'upcache run' (page cache in user space, O_DIRECT backend)"
drop_kernel_cache
read -r ucold uwarm ubytes usum1 usum2 < <("$upcache" run -- "$py" -c "$reader" "$file")

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}x' if b>0 else '-')" "$1" "$2"; }
mib_s() { python3 -c "import sys; print(f'{int(sys.argv[2])/float(sys.argv[1])/1048576:.0f} MiB/s')" "$1" "$2"; }
echo
printf '%-6s %14s %14s %14s %14s %10s\n' pass kernel "" upcache "" "kernel/upcache"
printf '%-6s %12ss %14s %12ss %14s %10s\n' cold "$kcold" "$(mib_s "$kcold" "$kbytes")" "$ucold" "$(mib_s "$ucold" "$ubytes")" "$(ratio "$kcold" "$ucold")"
printf '%-6s %12ss %14s %12ss %14s %10s\n' warm "$kwarm" "$(mib_s "$kwarm" "$kbytes")" "$uwarm" "$(mib_s "$uwarm" "$ubytes")" "$(ratio "$kwarm" "$uwarm")"
if [ "$ksum1 $ksum2" = "$usum1 $usum2" ] && [ "$kbytes" = "$ubytes" ]; then
  echo "bytes: identical ($kbytes bytes per pass, crc32 $ksum1)"
else
  echo "bytes: DIFFERENT (kernel $kbytes $ksum1 $ksum2, upcache $ubytes $usum1 $usum2)" >&2
  exit 1
fi
if command -v fincore >/dev/null; then
  echo "kernel page cache now holds: $(fincore -nb -o RES "$file" | tr -d ' ') bytes of the file (O_DIRECT kept it out)"
fi
