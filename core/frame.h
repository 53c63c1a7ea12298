// Frame descriptors: one per cache frame, in the arena.
//
// The state word is the single source of truth about a frame. Its low 32
// bits (pins and flags) double as a futex word for readers waiting on I/O;
// the high 32 bits are a version bumped each time the frame is given to
// another page.
//
// Invariants (each transition is one atomic operation on `state`):
//  - The key (file_id, page) and `valid` change only while LOCKED is set by
//    the one owner, or while IO is set by the one issuer (valid only).
//  - LOCKED is taken only from pins == 0 and !IO: a pinned or in-flight frame
//    is never evicted or overwritten. Whoever takes it first claims
//    `lock_owner` (0 -> its owner word, core/owner.h), and clears it again before it
//    lets LOCKED go: a process killed while it holds LOCKED is known by
//    that word, and a reader stuck on the frame finishes the claim for it
//    (CacheImpl::recover_locked). Killed between claiming `lock_owner` and
//    taking LOCKED, a process leaves the word set on an unlocked frame: the
//    clock passes that frame over (two instructions' window; one frame of
//    capacity until a reaper scan clears it).
//  - A reader pins, then re-checks the key: if the key matches after the pin
//    succeeded, the frame holds that page until it unpins. A pin held past
//    a few instructions is noted in the thread's pin journal
//    (pin_journal.h), so the pins of a killed process are given back.
//  - HASHED means the frame is reachable from the index under its key. A
//    frame is unlinked from the index before (or, under a pin, right after)
//    HASHED is cleared: never is an unpinned, idle frame unhashed but still
//    linked, or the clock could give it to another page and link it twice.
//  - UPTODATE and ERROR are set only when IO is cleared; readers sleeping on
//    IO set WAITERS first, and whoever clears IO wakes them.
//  - io_owner names whoever set IO, from before IO is set until after it is
//    cleared: the issuer tags its word ENDED (kIoEnded), then clears IO, and
//    never sets it to 0. So a process killed at any instruction of its read
//    is still named while IO is set, and the reaper fails that read (had
//    the word gone to 0 first, a kill between the two stores left IO set
//    with nobody named, and every reader of the page waited for ever: found
//    by rel_fork_kill). Without IO, an ENDED or dead word is free.
//
// PARTIAL pages. A small random miss reads only the blocks it needs (4 KiB,
// or the O_DIRECT alignment if larger) of a page: the frame then holds the
// bytes [lo, valid) of the page, block aligned (valid may end short at end
// of file), and carries PARTIAL. A frame that is not PARTIAL has lo == 0.
//  - Bytes outside [lo, valid) are never served. A read inside the range is a
//    hit; read_hit checks lo only when PARTIAL is set.
//  - Completion: whoever needs other bytes (a reader, a readahead window,
//    WILLNEED), holding a pin, first claims the completion by naming itself
//    in io_owner (CAS from a free word: 0, ENDED, or a claimant who is gone),
//    then takes IO on the frame with one CAS from HASHED|UPTODATE|PARTIAL
//    without IO or LOCKED, then reads the whole page into the frame. Exactly
//    one completer wins; the others wait on IO like on any read in flight. The held bytes
//    are rewritten with the values they had (the file has not changed, or
//    coherence would have dropped the page); readers copying them meanwhile
//    without a pin (read_hit) throw their copy away anyway, since its re-check
//    rejects a frame whose IO or PARTIAL changed.
//  - Success: lo = 0, valid = the page's bytes, then IO and PARTIAL are cleared
//    in one store (release): a normal up-to-date page of the same version.
//    Failure: the page is unlinked and gets ERROR like any failed read
//    (UPTODATE and PARTIAL cleared); a later read reads it again. A completer
//    killed mid-read is failed the same way by the reaper.
//  - Claim before IO, so IO is never set with nobody named: a completer
//    killed after its claim and before IO leaves only the claim, which the
//    next completer finds gone and takes over; killed after IO, the reaper
//    fails its IO as any dead issuer's. A completer whose IO CAS fails gives
//    its claim back.
//  - A PARTIAL page is evicted and dropped like any other; the cached-bytes
//    counter holds valid - lo for every up-to-date frame.
//  - Completing never sets the READAHEAD mark (core/cache.cc, issue).
#pragma once

#include <atomic>
#include <cstdint>

namespace upcache {

namespace frame_state {
constexpr uint64_t kPinOne = 1;
constexpr uint64_t kPinMask = 0xffff;
constexpr uint64_t kUptodate = 1ull << 16;
constexpr uint64_t kIo = 1ull << 17;          // a read into the frame is in flight
constexpr uint64_t kError = 1ull << 18;       // the read failed; the frame is unhashed
constexpr uint64_t kReadahead = 1ull << 19;   // READAHEAD mark: reaching it triggers async readahead
constexpr uint64_t kReferenced = 1ull << 20;  // touched since the clock hand last passed
constexpr uint64_t kLocked = 1ull << 21;      // one owner is (re)assigning the frame
constexpr uint64_t kHashed = 1ull << 22;      // in the index
constexpr uint64_t kWaiters = 1ull << 23;     // someone sleeps on the futex
constexpr uint64_t kUnread = 1ull << 24;      // read ahead and not read by anyone yet
constexpr uint64_t kPartial = 1ull << 25;     // only bytes [lo, valid) of the page are held
constexpr uint64_t kFlagsMask = 0xffffffffull;
constexpr int kVersionShift = 32;

// Tag of an io_owner word whose read has ended (above). Owner words keep
// the pid in their low 32 bits, and pids are below 2^22 (PID_MAX_LIMIT).
constexpr uint64_t kIoEnded = 1ull << 31;
inline uint64_t io_issuer(uint64_t owner) { return owner & ~kIoEnded; }

inline uint64_t pins(uint64_t s) { return s & kPinMask; }
inline uint32_t version(uint64_t s) { return static_cast<uint32_t>(s >> kVersionShift); }
}  // namespace frame_state

struct alignas(64) FrameDesc {
  std::atomic<uint64_t> state;
  std::atomic<uint64_t> file_id;   // 0: never used
  std::atomic<uint64_t> page;      // page index in the file
  std::atomic<uint32_t> next;      // index chain: frame number + 1, 0 ends
  std::atomic<uint32_t> valid;     // bytes of the page that hold file data
  std::atomic<uint64_t> io_owner;        // owner word (core/owner.h) of the last IO's issuer, maybe tagged kIoEnded
  std::atomic<uint64_t> lock_owner;      // owner word (core/owner.h) of whoever holds LOCKED, 0: nobody
  std::atomic<uint32_t> lo;        // first byte held of a PARTIAL page; 0 otherwise
};

static_assert(sizeof(FrameDesc) == 64, "one cache line per frame descriptor");

}  // namespace upcache
