// Keeping the kernel's file offset exact whenever someone else can see it.
//
// Mechanism (documented in upcache(7)):
//
// Private mode (the default for a description opened in this process). The
// file offset of a cached description lives in the Description. A cached
// read() advances only that offset and makes no system call; the kernel's
// offset of the same open file description is left behind and the
// description is flagged `kernel_stale`. The kernel's offset is made exact
// (lseek(fd, offset, SEEK_SET) on the real descriptor, under the position
// lock) before anything that lets the kernel or another process see it:
//   - a call on that descriptor that passes through and uses the offset (a
//     read or readv that the cache does not serve, write, writev, and
//     lseek SEEK_END/SEEK_DATA/SEEK_HOLE which compute from the kernel's
//     state); afterwards the kernel's offset is read back into ours;
//   - fork (pthread_atfork prepare handler, so forks inside libc are covered
//     too), vfork (which the shim turns into fork: a vfork child would share
//     the parent's descriptor table mirror), posix_spawn, posix_spawnp,
//     system, popen, and every exec* (execve, execv, execvp, execvpe, execl,
//     execlp, execle, fexecve, execveat).
//
// Shared mode. After fork, posix_spawn, system or popen another process holds
// the same open file descriptions, so every description alive at that moment
// is marked `shared`, in the parent and in a forked child. The kernel's offset
// is then the only offset: a cached read does lseek(fd, 0, SEEK_CUR) to learn
// the position, serves the bytes from the cache, and lseek(fd, pos + n,
// SEEK_SET) (two cheap system calls instead of the read's copy from the page
// cache, and the data still comes from upcache); lseek passes through. The
// offset is exact at every moment another process can look, though two
// processes reading one shared description at the same instant are not
// serialized against each other as the kernel's f_pos_lock would (each
// process's own threads still are). Descriptions opened after the fork are
// private again. exec needs no shared mode: the image that used the private
// offsets is gone, and a failed exec leaves everything synced and valid.
#pragma once

namespace upcache::shim {

struct Description;

// Writes the description's offset to the kernel if it is stale. The caller
// holds d->pos_lock. Returns 0 or -errno (the lseek's error).
int sync_kernel_offset(int fd, Description* d);

// Syncs every stale description (each under its position lock; from a nested
// context, best effort without waiting) and, if `mark_shared`, marks every
// description shared.
void sync_all_offsets(bool mark_shared);

// Installs the pthread_atfork handlers (called once by the constructor).
void install_fork_handlers();

}  // namespace upcache::shim
