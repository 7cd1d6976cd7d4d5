//! The memory allocator of the host binaries (`wasm-cni`, `wasm-cni-compile`), which are static
//! musl executables (xtask `host_build`: glibc's start-up alone costs ~0.3 ms per exec in a VM).
//!
//! musl's own malloc made an exec's work ~40% slower (artifact load 240 → 450 µs); mimalloc
//! reserved a 1 GiB arena with huge pages and read sysfs at start. Doug Lea's allocator (the
//! `dlmalloc` crate, pure Rust) needs no start-up: a loopback ADD is as fast as with glibc's
//! malloc and its peak RSS smaller (docs/bench.md).
//!
//! The crate's own global wrapper guards one heap with a pthread mutex; an exec makes tens of
//! thousands of small allocations (wasmtime deserializes an artifact's metadata into many small
//! vectors and strings), and musl's mutex is a few calls deep: lock and unlock were ~9% of an
//! exec's user time in a profile of bridge ADDs. And one heap serializes threads: an exec's main
//! thread loads its plugin's artifact while a helper parses the request and links the
//! sandbox's interfaces, and a delegating plugin's IPAM artifact loads on a helper while the
//! main thread runs the plugin.
//!
//! So every thread gets a heap of its own ([`HEAPS`] of them, handed out round-robin on a
//! thread's first allocation), each a `Dlmalloc` behind a spin lock that its thread almost
//! always finds free: one compare-exchange. A block is freed into the heap it came from, found
//! by its address: each heap takes its memory from a reservation of address space of its own
//! ([`SPAN`]), so a free from another thread (a result handed over by a helper thread) takes
//! the owner's lock. A waiter spins briefly, then yields its core, so a
//! holder that was preempted gets to run.
//!
//! A heap takes memory from its span in steps of 1 MiB (dlmalloc's default is 64 KiB, one
//! system call each) and never gives it back: the binaries are one-shot processes, and
//! returning segments cost an exec `munmap`s (with TLB shootdowns once a second thread runs)
//! for memory the exit frees anyway. Steps are contiguous, so dlmalloc grows its top chunk
//! instead of adding segments. The reservation is `PROT_NONE` and `MAP_NORESERVE` (address
//! space only, no memory, no commit charge); a step is made readable and writable when taken,
//! and untouched pages of it are never resident, so peak RSS does not grow with the step.
//!
//! Tests keep the system allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dlmalloc::Dlmalloc;

/// How many heaps: the main thread (which loads the artifact), the prepare helper (which also
/// prefetches a delegating plugin's IPAM plugin once it has answered, see `parallel::task`)
/// and the netns worker each get their own in an exec; a fourth for a helper started when
/// none is idle.
pub const HEAPS: usize = 4;
/// The address space of one heap: far beyond what any exec or compile allocates (tens of MiB;
/// compiling a plugin, a few hundred), and little beside wasmtime's own reservation of
/// several GiB per linear memory, should a runtime cap a plugin's address space.
pub const SPAN: usize = 4 << 30;
/// How much a heap grows by at least, each time it takes memory from its span.
const GROWTH: usize = 1 << 20;

/// Which heap the next thread gets.
static NEXT_HEAP: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's heap; `HEAPS` until its first allocation.
    static MY_HEAP: Cell<usize> = const { Cell::new(HEAPS) };
}

/// Where one heap's memory comes from: the next piece of its span (see `Heap::reserve`).
pub struct Pages {
    /// The span's start; 0 until reserved. The same value as `Heap::span`: dlmalloc owns its
    /// `Pages` inside the heap's `UnsafeCell`, which no thread may read without the lock, while
    /// finding a block's owner reads the heap's copy without it.
    base: AtomicUsize,
    /// How much of the span is taken.
    used: AtomicUsize,
}

// SAFETY: `alloc` returns fresh zeroed memory of the size it reports, from this heap's span
// only; nothing is released, so no region dlmalloc still uses is ever unmapped.
unsafe impl dlmalloc::Allocator for Pages {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let fail = (core::ptr::null_mut(), 0, 0);
        let base = self.base.load(Ordering::Relaxed);
        let used = self.used.load(Ordering::Relaxed);
        if base == 0 || size > SPAN - used {
            return fail;
        }
        let start = base + used;
        // SAFETY: the range lies in this heap's span of our reservation and was never handed
        // out; making it accessible touches no memory in use.
        let ok = unsafe {
            libc::mprotect(
                start as *mut libc::c_void,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        } == 0;
        if !ok {
            return fail;
        }
        self.used.store(used + size, Ordering::Relaxed);
        (start as *mut u8, size, 0)
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        core::ptr::null_mut()
    }

    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }

    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        // SAFETY: sysconf has no preconditions (musl answers from the auxiliary vector).
        match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        }
    }
}

/// One `Dlmalloc` heap behind a spin lock.
struct Heap {
    locked: AtomicBool,
    /// The start of the heap's span of address space; 0 until its first allocation. Read
    /// without the lock by whoever frees a block (see [`Allocator::owner`]).
    span: AtomicUsize,
    dl: UnsafeCell<Dlmalloc<Pages>>,
}

impl Heap {
    const fn new() -> Heap {
        let mut dl = Dlmalloc::new_with_allocator(Pages {
            base: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
        });
        assert!(dl.set_granularity(GROWTH));
        Heap {
            locked: AtomicBool::new(false),
            span: AtomicUsize::new(0),
            dl: UnsafeCell::new(dl),
        }
    }

    /// Reserve the heap's span on its first use: `PROT_NONE` and `MAP_NORESERVE`, address
    /// space only. Called with the lock held. On failure the span stays 0 and the heap's
    /// allocations fail.
    #[cold]
    fn reserve(&self, dl: &mut Dlmalloc<Pages>) {
        // SAFETY: a fresh anonymous mapping without access: no memory in use is touched.
        let addr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                SPAN,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr != libc::MAP_FAILED {
            dl.allocator().base.store(addr as usize, Ordering::Relaxed);
            self.span.store(addr as usize, Ordering::Release);
        }
    }

    /// Whether `ptr` lies in this heap's span.
    #[inline]
    fn holds(&self, ptr: *mut u8) -> bool {
        let span = self.span.load(Ordering::Acquire);
        span != 0 && (ptr as usize).wrapping_sub(span) < SPAN
    }

    #[inline]
    fn with<T>(&self, f: impl FnOnce(&mut Dlmalloc<Pages>) -> T) -> T {
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.wait();
        }
        // SAFETY: `locked` is held, so no other thread is in this heap.
        let dl = unsafe { &mut *self.dl.get() };
        if self.span.load(Ordering::Relaxed) == 0 {
            self.reserve(dl);
        }
        let out = f(dl);
        self.locked.store(false, Ordering::Release);
        out
    }

    /// Take the lock when another thread holds it. Kept out of line: the fast path is one
    /// compare-exchange.
    #[cold]
    #[inline(never)]
    fn wait(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 100 {
                    spins += 1;
                    core::hint::spin_loop();
                } else {
                    // The holder may have been preempted: give up the core (sched_yield does
                    // not allocate).
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        let span = *self.span.get_mut();
        if span != 0 {
            // SAFETY: the heap is gone, and with it every block of its span.
            unsafe { libc::munmap(span as *mut libc::c_void, SPAN) };
        }
    }
}

/// The global allocator: a heap per thread (see the module's documentation).
pub struct Allocator {
    heaps: [Heap; HEAPS],
}

// SAFETY: a heap is only reached with its lock held (see `Heap::with`).
unsafe impl Sync for Allocator {}

impl Allocator {
    pub const fn new() -> Allocator {
        Allocator {
            heaps: [Heap::new(), Heap::new(), Heap::new(), Heap::new()],
        }
    }

    /// The calling thread's heap.
    #[inline]
    fn mine(&self) -> &Heap {
        let i = MY_HEAP
            .try_with(|h| {
                let mut i = h.get();
                if i == HEAPS {
                    i = NEXT_HEAP.fetch_add(1, Ordering::Relaxed) % HEAPS;
                    h.set(i);
                }
                i
            })
            .unwrap_or(0);
        &self.heaps[i]
    }

    /// The heap `ptr` came from.
    #[inline]
    fn owner(&self, ptr: *mut u8) -> &Heap {
        self.heaps
            .iter()
            .find(|h| h.holds(ptr))
            .unwrap_or(&self.heaps[0])
    }
}

impl Default for Allocator {
    fn default() -> Allocator {
        Allocator::new()
    }
}

unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract is dlmalloc's.
        self.mine()
            .with(|heap| unsafe { heap.malloc(layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from its owner heap with `layout` (GlobalAlloc's contract).
        self.owner(ptr)
            .with(|heap| unsafe { heap.free(ptr, layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        self.mine()
            .with(|heap| unsafe { heap.calloc(layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`; `new_size` is non-zero (GlobalAlloc's contract). The block
        // stays in (or moves within) the heap it came from.
        self.owner(ptr)
            .with(|heap| unsafe { heap.realloc(ptr, layout.size(), layout.align(), new_size) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn allocations_from_many_threads_stay_distinct_and_intact() {
        let alloc = Arc::new(Allocator::new());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let alloc = alloc.clone();
                std::thread::spawn(move || {
                    for round in 0..2000usize {
                        let layout = Layout::from_size_align(8 + round % 300, 8 << (round % 4))
                            .expect("layout");
                        // SAFETY: layout has a non-zero size; the block is written within
                        // its size and freed with the same layout.
                        unsafe {
                            let p = alloc.alloc(layout);
                            assert!(!p.is_null());
                            assert_eq!(p as usize % layout.align(), 0);
                            p.write_bytes(t, layout.size());
                            let p = alloc.realloc(p, layout, layout.size() * 2);
                            let grown = Layout::from_size_align(layout.size() * 2, layout.align())
                                .expect("layout");
                            assert!(std::slice::from_raw_parts(p, layout.size())
                                .iter()
                                .all(|b| *b == t));
                            alloc.dealloc(p, grown);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    }

    #[test]
    fn threads_get_heaps_of_their_own_and_free_into_the_owner() {
        let alloc = Arc::new(Allocator::new());
        let layout = Layout::from_size_align(100, 8).expect("layout");
        // SAFETY: non-zero sizes; every block is freed once, with its layout.
        unsafe {
            let here = alloc.alloc(layout);
            let h = alloc.owner(here);
            assert!(h.holds(here));
            // Threads get heaps round-robin (other tests' threads count too): one of a few
            // new threads gets another heap than this one.
            let mut there = core::ptr::null_mut();
            for _ in 0..64 {
                let alloc2 = alloc.clone();
                let p = std::thread::spawn(move || alloc2.alloc(layout) as usize)
                    .join()
                    .expect("thread") as *mut u8;
                if std::ptr::eq(alloc.owner(p), h) {
                    alloc.dealloc(p, layout);
                } else {
                    there = p;
                    break;
                }
            }
            assert!(
                !there.is_null(),
                "new threads all shared this thread's heap"
            );
            let t = alloc.owner(there);
            assert!(t.holds(there) && !h.holds(there));
            // Freed and reallocated from this thread: the block goes back to its owner.
            there.write_bytes(7, 100);
            let grown = alloc.realloc(there, layout, 5000);
            assert!(t.holds(grown), "realloc moved a block out of its heap");
            assert!(std::slice::from_raw_parts(grown, 100)
                .iter()
                .all(|b| *b == 7));
            alloc.dealloc(grown, Layout::from_size_align(5000, 8).expect("layout"));
            alloc.dealloc(here, layout);
            // A block larger than a growth step spans several contiguous steps.
            let big = Layout::from_size_align(3 << 20, 4096).expect("layout");
            let p = alloc.alloc_zeroed(big);
            assert!(!p.is_null() && alloc.owner(p).holds(p.add(big.size() - 1)));
            alloc.dealloc(p, big);
        }
    }

    #[test]
    fn zeroed_allocations_are_zero() {
        let alloc = Allocator::new();
        let layout = Layout::from_size_align(4096, 64).expect("layout");
        // SAFETY: non-zero size; freed with the same layout.
        unsafe {
            let p = alloc.alloc(layout);
            p.write_bytes(0xAB, layout.size());
            alloc.dealloc(p, layout);
            let z = alloc.alloc_zeroed(layout);
            assert!(std::slice::from_raw_parts(z, layout.size())
                .iter()
                .all(|b| *b == 0));
            alloc.dealloc(z, layout);
        }
    }
}
