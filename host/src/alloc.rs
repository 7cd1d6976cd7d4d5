//! The memory allocator of the host binaries (`wasm-cni`, `wasm-cni-compile`), which are static
//! musl executables (xtask `host_build`: glibc's start-up alone costs ~0.3 ms per exec in a VM).
//!
//! musl's own malloc made an exec's work ~40% slower (artifact load 240 → 450 µs); mimalloc
//! reserved a 1 GiB arena with huge pages and read sysfs at start. Doug Lea's allocator (the
//! `dlmalloc` crate, pure Rust) needs no start-up: a loopback ADD is as fast as with glibc's
//! malloc and its peak RSS smaller (docs/bench.md).
//!
//! The crate's own global wrapper guards the heap with a pthread mutex; an exec makes tens of
//! thousands of small allocations (wasmtime deserializes an artifact's metadata into many small
//! vectors and strings), and musl's mutex is a few calls deep: lock and unlock were ~9% of an
//! exec's user time in a profile of bridge ADDs. This guards the same heap with a spin lock
//! instead: one atomic swap to take it when free, which it almost always is (an exec has at
//! most two threads allocating: the main one and the IPAM prefetch). A waiter spins briefly and
//! then yields its core, so a holder that was preempted gets to run.
//!
//! The heap takes memory from the kernel in steps of 1 MiB (dlmalloc's default is 64 KiB, one
//! `mmap` each) and never gives it back: the binaries are one-shot processes, and returning
//! segments cost an exec `munmap`s (with TLB shootdowns once a second thread runs) for memory
//! the exit frees anyway. Untouched pages of a step are never resident, so peak RSS does not
//! grow with the step.
//!
//! Tests keep the system allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use dlmalloc::Dlmalloc;

/// How much the heap grows by at least, each time it asks the kernel for memory.
const GROWTH: usize = 1 << 20;

/// The global allocator: one `Dlmalloc` heap behind a spin lock.
pub struct Allocator {
    locked: AtomicBool,
    heap: UnsafeCell<Dlmalloc<Pages>>,
}

/// Where the heap's memory comes from: anonymous private mappings, kept until the exit.
pub struct Pages;

// SAFETY: `alloc` returns fresh zeroed mappings of the size it reports; nothing is released,
// so no region dlmalloc still uses is ever unmapped.
unsafe impl dlmalloc::Allocator for Pages {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let addr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            (core::ptr::null_mut(), 0, 0)
        } else {
            (addr.cast(), size, 0)
        }
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

// SAFETY: the heap is only reached with `locked` held (see `with`).
unsafe impl Sync for Allocator {}

impl Allocator {
    pub const fn new() -> Allocator {
        let mut heap = Dlmalloc::new_with_allocator(Pages);
        assert!(heap.set_granularity(GROWTH));
        Allocator {
            locked: AtomicBool::new(false),
            heap: UnsafeCell::new(heap),
        }
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
        // SAFETY: `locked` is held, so no other thread is in the heap.
        let out = f(unsafe { &mut *self.heap.get() });
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

impl Default for Allocator {
    fn default() -> Allocator {
        Allocator::new()
    }
}

unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract is dlmalloc's.
        self.with(|heap| unsafe { heap.malloc(layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this heap with `layout` (GlobalAlloc's contract).
        self.with(|heap| unsafe { heap.free(ptr, layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        self.with(|heap| unsafe { heap.calloc(layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`; `new_size` is non-zero (GlobalAlloc's contract).
        self.with(|heap| unsafe { heap.realloc(ptr, layout.size(), layout.align(), new_size) })
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
