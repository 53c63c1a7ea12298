#!/bin/sh
# man_lint.sh PAGE: the page must render, and render without a single warning
# (`man --warnings -l PAGE` writes nothing on standard error).
# Exit 77 (CTest: skipped) when man is not installed.
page=$1
if ! command -v man >/dev/null 2>&1; then
  echo "SKIPPED: man is not installed, cannot lint $page"
  exit 77
fi
[ -r "$page" ] || { echo "$page: not readable"; exit 1; }
out=$(MANWIDTH=80 man --warnings -l "$page" 2>/dev/null | wc -c)
warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
if [ -n "$warnings" ]; then
  echo "$page: warnings:"
  printf '%s\n' "$warnings"
  exit 1
fi
if [ "$out" -lt 200 ]; then
  echo "$page: renders to almost nothing ($out bytes)"
  exit 1
fi
echo "$page: clean ($out bytes rendered)"
