// splice(2) from a cached regular file into a pipe, served from the cache.
//
// The kernel's file-to-pipe splice (splice_file_to_pipe / filemap_splice_read)
// waits for room in the pipe (or fails with EAGAIN under SPLICE_F_NONBLOCK or
// an O_NONBLOCK pipe, EPIPE plus SIGPIPE without readers), then puts one pipe
// buffer per file page it covers, at most as many as the pipe has free slots,
// stopping at end of file, and advances the offset by what it moved.
//
// Served, the same is done with the kernel's own pipe code doing the waiting
// and the slot accounting:
//   1. the bytes wanted are read from the cache (Cache::read, through the
//      shim's serve path) into a private bounce buffer;
//   2. write(2) puts them into a private pipe of the shim's, cut at the
//      file's page boundaries (head, whole pages, tail in separate writes, a
//      tail that would merge into the head buffer in a second round), so its
//      buffers are the ones the kernel's file splice would make;
//   3. tee(2) (private pipe -> program's pipe) links as many buffers as fit,
//      blocking or not, with the program's flags: its result is the call's.
//      tee rather than splice because tee clears the "can merge" mark that
//      write() gives buffers: page-cache buffers do not have it, so later
//      writes to the program's pipe fill its slots as after the kernel's
//      splice;
//   4. the private pipe is emptied (spliced to /dev/null).
// The pipe buffers are the kernel's own pages holding copies: never cache
// frames (vmsplice(2) of a frame would let a frame reused later change bytes
// already in the pipe) nor the bounce buffer.
// Before copying, the program's pipe is asked for its size and how many
// bytes it holds (F_GETPIPE_SZ, FIONREAD) so that no more is read than can
// fit; a pipe that may be full, end of file, an error from the cache, an
// offset the kernel would refuse, a pipe with more room than the private
// pipe (over 1 MiB), and a call while every slot is busy are passed to the kernel (offsets
// synced as for every pass-through), which gives the exact answer.
//
// Differences from the kernel's splice: the pipe holds copies, not
// references to page-cache pages (the program cannot tell), and a read that
// the cache serves costs five to seven system calls instead of one (see
// upcache(7) for the measurements and the UPCACHE_SPLICE switch).
//
// Resources: kSlots private pipes (made lazily, close-on-exec, at the shim's
// invisible high descriptor numbers) with a bounce buffer each, claimed
// lock-free; one /dev/null descriptor. A forked child closes the parent's
// pipes and makes its own (they would be shared with the parent otherwise).
// Thread-safe; not async-signal-safe (a nested call passes through).
#pragma once

#include <fcntl.h>
#include <sys/types.h>

namespace upcache::shim {

// Serves splice(in, off_in, out, off_out, len, flags) from the cache when it
// can: returns true and sets *result (the call's return value, errno set on
// -1). Returns false when the call should go to the kernel instead (nothing
// was changed). The caller has checked active().
bool splice_from_cache(int in, loff_t* off_in, int out, loff_t* off_out, size_t len, unsigned flags,
                       ssize_t* result);

// Is `fd` one of this module's descriptors?
bool splice_owns_fd(int fd);

// The program dup2()s onto one of this module's descriptors: waits until no
// call uses them, moves that one to another high number (the old number
// stays open, no longer ours, for the dup2 to replace). 0 or -errno.
int splice_relocate_fd(int fd);

// In a forked child: the pipes are the parent's; forget them.
void splice_after_fork_child();

}  // namespace upcache::shim
