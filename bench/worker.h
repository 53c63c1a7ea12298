// The worker: one measurement in a fresh process.
//
// upcache-bench re-executes itself as
//   upcache-bench --worker KIND:BS OPS BYTES THREADS WARM SOURCE SEED TARGET
// (SOURCE is "fd", "mem" (the memcpy limit) or "direct" (the device
// limit, runner.h), WARM 0 or 1, TARGET the file, or the shell command for
// kind cmd), with or without LD_PRELOAD. With WARM=1 the worker
// first does one untimed pass of the same access pattern (which fills the
// kernel's cache or upcache's, both living where the timed pass can use them)
// and times only the second. It prints one line:
//   ELAPSED_SECONDS BYTES MAXRSS_KIB
// and exits 0, or prints a message on stderr and exits 1.
#pragma once

namespace upcache::bench {

int worker_main(int argc, char** argv);  // argv[0] is "--worker"

}  // namespace upcache::bench
