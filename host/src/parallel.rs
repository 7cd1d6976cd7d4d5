//! Helper threads that run beside the exec's main thread from the start.
//!
//! The kernel queues a new thread on its parent's CPU; on a node with idle CPUs it can wait
//! there until the parent blocks. Measured on an idle 2-core machine: the netns worker, spawned
//! so it would enter the container netns while the main thread loads the artifact, started
//! 720–890 µs after the spawn, i.e. only once the main thread waited for it. [`spawn`] gives
//! the new thread an affinity without its parent's current CPU, so it is queued on another
//! CPU at once, and the thread's first act is to take the parent's whole affinity back. With a
//! single usable CPU it is a plain spawn.
//!
//! An exec's prepare helper is such a thread: it reads the request, loads the policy, starts
//! the netlink runtime and links while the main thread loads the plugin's artifact
//! (`plugin::exec`). The netns worker is not ([`spawn_here`]): the helper starts it and it is
//! queued on the helper's CPU, which the helper leaves before the main thread has loaded;
//! placed elsewhere it takes the loading thread's CPU (measured when a helper loaded and the
//! main thread prepared: 80 interleaved bridge ADDs, 3.65 → 3.55 ms p50 with the worker left
//! on the preparing thread's CPU).

use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
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
        block_alarm();
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

/// Spawn `f` on a thread made by `builder` where the kernel puts it (on the caller's CPU until
/// the caller blocks), as a helper all the same: it does not take the guests' `SIGALRM`.
pub fn spawn_here<T, F>(builder: Builder, f: F) -> io::Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    builder.spawn(move || {
        block_alarm();
        f()
    })
}

/// The guests' time limit is a process timer's SIGALRM (sandbox::guest::Watchdog): it is for
/// the thread running the guest, not for helpers' blocking calls to be cut short.
fn block_alarm() {
    // SAFETY: blocks one signal for this thread only; the set is initialized here.
    unsafe {
        let mut alarm: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut alarm);
        libc::sigaddset(&mut alarm, libc::SIGALRM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &alarm, std::ptr::null_mut());
    }
}

/// Work on a helper thread whose answer is picked up later (see [`task`]).
pub struct Task<T> {
    answer: mpsc::Receiver<T>,
}

impl<T> Task<T> {
    /// The answer; none when the work panicked (and unwound: in the host binaries a panic
    /// anywhere ends the exec with a CNI error, see main.rs).
    pub fn wait(self) -> Option<T> {
        self.answer.recv().ok()
    }
}

/// Work handed to a lingering helper (see [`task`]).
type Job = Box<dyn FnOnce() + Send>;

/// Lingering helpers that answered and wait for more work, each by the sender of its queue.
static IDLE: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());

/// Run `f` on a helper thread ([`spawn`]) and pick its answer up later.
///
/// With `linger` (a one-shot exec) a helper that answered stays until the process exits and
/// takes the next `task` instead of a new thread: an exec does not join its helpers, because
/// reaping a thread unmaps its stack, and an unmap in a process whose threads ran on several
/// CPUs is a TLB shootdown across them (~30 µs per exec in a VM, in a profile of bridge ADDs);
/// and a thread's start is ~36 µs on the caller's critical path (the IPAM prefetch of a
/// bridge ADD ran on the prepare helper, idle by then, instead of a thread of its own: see
/// docs/bench.md). So work given to `task` must leave its thread as it found it: no `setns`,
/// no signal mask or affinity of its own (the netns worker, which enters a netns, is
/// [`spawn_here`]'s).
pub fn task<T, F>(builder: Builder, linger: bool, f: F) -> io::Result<Task<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, answer) = mpsc::sync_channel(1);
    let mut job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    if linger {
        while let Some(helper) = idle_helper() {
            match helper.send(job) {
                Ok(()) => return Ok(Task { answer }),
                // It is gone (it cannot be, while the process runs): try another.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
    }
    spawn(builder, move || {
        job();
        if linger {
            serve();
        }
    })?;
    Ok(Task { answer })
}

fn idle_helper() -> Option<mpsc::Sender<Job>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop()
}

/// A lingering helper's rest of life: offer itself, run what it is given, again.
fn serve() -> ! {
    let (queue, jobs) = mpsc::channel::<Job>();
    loop {
        IDLE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(queue.clone());
        match jobs.recv() {
            Ok(job) => job(),
            // `queue` is still here, so the channel cannot close; park should it ever.
            Err(_) => loop {
                std::thread::park();
            },
        }
    }
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
    fn a_task_answers_once_and_a_panicking_one_answers_nothing() {
        let t = task(Builder::new(), false, || 7).unwrap();
        assert_eq!(t.wait(), Some(7));
        let lingering = task(Builder::new(), true, || "here").unwrap();
        assert_eq!(lingering.wait(), Some("here"));
        let failed = task(Builder::new(), false, || -> u8 { panic!("on purpose") }).unwrap();
        assert_eq!(failed.wait(), None);
    }

    #[test]
    fn a_lingering_helper_that_answered_takes_the_next_task() {
        let id = || std::thread::current().id();
        // Every thread a lingering task ran on so far. Other tests of this process leave
        // lingering helpers too, and one of theirs may take a task: any thread that answered
        // before counts as reused.
        let mut answered = Vec::new();
        let mut reused = false;
        for _ in 0..200 {
            let next = task(Builder::new(), true, id).unwrap().wait().unwrap();
            assert_ne!(next, id());
            if answered.contains(&next) {
                reused = true;
                break;
            }
            answered.push(next);
            // A helper offers itself right after answering: give it a moment to.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            reused,
            "no task ran on a helper that had answered: {answered:?}"
        );
        // Without `linger` every task gets a thread of its own, which ends with it.
        let a = task(Builder::new(), false, id).unwrap().wait().unwrap();
        let b = task(Builder::new(), false, id).unwrap().wait().unwrap();
        assert_ne!(a, b);
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
