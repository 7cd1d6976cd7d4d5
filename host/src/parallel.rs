//! Helper threads that run beside the exec's main thread from the start.
//!
//! The kernel queues a new thread on its parent's CPU; on a node with idle CPUs it can wait
//! there until the parent blocks. Measured on an idle 2-core machine: the netns worker, spawned
//! so it would enter the container netns while the main thread loads the artifact, started
//! 720–890 µs after the spawn, i.e. only once the main thread waited for it. [`spawn`] gives
//! the new thread an affinity without its parent's current CPU, so it is queued on another
//! CPU at once, and the thread's first act is to take the parent's whole affinity back. With a
//! single usable CPU it is a plain spawn.

use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{Builder, JoinHandle};

/// Spawn `f` on a thread made by `builder`, started on another CPU than the caller's when the
/// caller may use more than one; it then runs with the caller's affinity.
pub fn spawn<T, F>(builder: Builder, f: F) -> io::Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: a zeroed cpu_set_t is the empty set; sched_getaffinity fills at most `size`
    // bytes of it for the calling thread (pid 0).
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let known = unsafe { libc::sched_getaffinity(0, size, &mut allowed) } == 0;
    // SAFETY: sched_getcpu has no preconditions.
    let here = unsafe { libc::sched_getcpu() };
    let elsewhere = (known && here >= 0)
        .then(|| {
            let here = here as usize;
            if here >= libc::CPU_SETSIZE as usize {
                return None;
            }
            // SAFETY: CPU_* only read and write within the set; `here` < CPU_SETSIZE.
            unsafe {
                let others = libc::CPU_COUNT(&allowed) - i32::from(libc::CPU_ISSET(here, &allowed));
                (others > 0).then(|| {
                    let mut set = allowed;
                    libc::CPU_CLR(here, &mut set);
                    set
                })
            }
        })
        .flatten();
    let restore = elsewhere.map(|_| allowed);
    // The thread restores its affinity only after the caller narrowed it (it may already run
    // on another CPU by then), or the narrower set would stick.
    let narrowed = Arc::new(AtomicBool::new(false));
    let seen = narrowed.clone();
    let handle = builder.spawn(move || {
        // The guests' time limit is a process timer's SIGALRM (sandbox::guest::Watchdog): it is
        // for the thread running the guest, not for helpers' blocking calls to be cut short.
        // SAFETY: blocks one signal for this thread only; the sets are initialized here.
        unsafe {
            let mut alarm: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut alarm);
            libc::sigaddset(&mut alarm, libc::SIGALRM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &alarm, std::ptr::null_mut());
        }
        if let Some(all) = restore {
            while !seen.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            // SAFETY: sets this thread's own affinity to a set read above.
            unsafe { libc::pthread_setaffinity_np(libc::pthread_self(), size, &all) };
        }
        f()
    })?;
    if let Some(set) = elsewhere {
        // SAFETY: the thread of `handle` exists (not yet joined); `set` is a valid cpu set.
        // Best effort: without it the thread runs where the scheduler puts it.
        // (`as _`: glibc's pthread_t is an integer, musl's a pointer.)
        unsafe { libc::pthread_setaffinity_np(handle.as_pthread_t() as _, size, &set) };
    }
    narrowed.store(true, Ordering::Release);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity() -> Vec<usize> {
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(unsafe { libc::sched_getaffinity(0, size, &mut set) }, 0);
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    }

    #[test]
    fn the_thread_runs_with_its_callers_affinity() {
        let mine = affinity();
        for _ in 0..20 {
            let theirs = spawn(Builder::new(), affinity).unwrap().join().unwrap();
            assert_eq!(theirs, mine);
        }
    }
}
