#!/bin/bash
# Cold random reads, many short rounds: the kernel, the device and upcache
# alternating, every run with a seed of its own (so that no run reads blocks
# an earlier one brought into the host's cache), caches dropped before each.
# Prints the median time of each mode. Needs root (drop_caches).
#
#   bench/cold_rounds.sh ROUNDS OPS [FILE] [LIB]
#   bench/cold_rounds.sh 21 1000 /var/tmp/ub/upcache-bench-1G.dat
#
# Modes: kernel (buffered pread), device (O_DIRECT 4 KiB blocks into memory
# already faulted in: the round trip alone), upcache (the preload).
# UPCACHE_* variables apply to the upcache runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:?rounds} ops=${2:?ops}
file=${3:-/var/tmp/ub/upcache-bench-1G.dat}
bench=${BENCH:-$here/../build/bench/upcache-bench}
lib=${4:-$here/../build/shim/libupcache.so}
size=$(stat -c %s "$file")
declare -A times
for ((r = 0; r < rounds; ++r)); do
  for mode in kernel device upcache; do
    seed=$((RANDOM * 32768 + RANDOM))
    sync
    echo 3 > /proc/sys/vm/drop_caches
    case $mode in
      kernel)  t=$(env -u LD_PRELOAD "$bench" --worker rand-pread:4K "$ops" "$size" 1 0 fd "$seed" "$file") ;;
      device)  t=$(env -u LD_PRELOAD "$bench" --worker rand-pread:4K "$ops" "$size" 1 0 direct "$seed" "$file") ;;
      upcache) t=$(LD_PRELOAD=$lib "$bench" --worker rand-pread:4K "$ops" "$size" 1 0 fd "$seed" "$file") ;;
    esac
    times[$mode]+="${t%% *} "
  done
done
for mode in kernel device upcache; do
  printf '%-8s median %s ms of %d runs\n' "$mode" \
    "$(tr ' ' '\n' <<< "${times[$mode]}" | grep . | sort -g | awk '{v[NR] = $1} END {printf "%.1f", v[int((NR + 1) / 2)] * 1000}')" "$rounds"
done
