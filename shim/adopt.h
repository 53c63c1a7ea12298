// Adopting descriptors the shim did not see being made: inherited at
// start-up (`prog < file`, descriptors a parent left open across exec),
// opened before the library's constructor ran, or made by calls the shim
// does not wrap (fopen's internal open, raw system calls, pipe, socket...).
// Their fd-table slot is kNone (shim/fd_table.h).
//
// At the first wrapped call on such a descriptor (DescRef, at top level
// only), the descriptor is classified once: not open (EBADF) stays kNone;
// a regular file that Cache::attach accepts, open for reading without
// O_DIRECT/O_PATH, gets a Description (writes through it then keep the
// cache coherent, as for any description); anything else kUnseen: it passes
// through as before, with no system call added (pipes, sockets, terminals,
// and output files: `prog > file` pays nothing per write, so writes through
// an inherited write-only descriptor are not seen by the cache, as before).
//
// An adopted description is created `shared` (shim/kernel_offset.h): the
// open file description may be shared with other processes (the shell that
// ran `(head -n 1; cat) < file`, a parent, a sibling), which read and move
// the same kernel offset at any moment and see it when this process exits
// without any hook running. So the kernel's offset is the offset: a read
// takes it with lseek, serves the bytes from the cache and moves it with
// lseek, and the status flags are asked of the kernel (another process may
// set O_DIRECT). Exact whenever another process looks, at two or three
// system calls per read instead of one.
//
// Races: a descriptor closed by another thread while it is being adopted
// is checked again after the slot is set (same inode, or the slot is
// emptied), as a program that reads a descriptor another thread is closing
// gets either answer from the kernel too.
//
// Thread-safe (the slot is set with compare-and-swap); not for nested calls.
#pragma once

#include <cstdint>

namespace upcache::shim {

struct Description;

// Classifies `fd` (slot kNone). Returns the description with one reference
// for the caller, or null; *seen gets the slot's new value.
Description* adopt_unseen(int fd, uintptr_t* seen);

}  // namespace upcache::shim
