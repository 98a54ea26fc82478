//! ingot: kept-alive connections wait for their next request in epoll, not on a thread each.
//!
//! With a thread per connection, every request costs at least one sleep and one wake-up (the
//! thread blocks in `read` between requests), and under load many threads are runnable on few
//! cores at once. Here a few threads, the *pollers* (one per core), take whichever connection
//! has bytes waiting (`epoll_wait`, one connection at a time, `EPOLLONESHOT` so no two threads
//! ever hold the same one), serve its request on the spot and put it back. Under load a poller
//! goes from one request to the next without sleeping.
//!
//! A poller that is about to wait on anything other than the CPU (a read or write the socket
//! cannot take now, a group commit, a call to another server: see [`before_block`]) first
//! hands its role to a spare thread, or a new one, so the waiting never stops the others.
//! When its wait is over it finishes its request and then polls again if a poller is missing,
//! or parks as a spare (and ends after [`SPARE_LINGER`] unused). So a connection holds a
//! thread only while it is being served, and the threads are bounded by the connections
//! (`Limits::max_connections`) plus the pollers, as before.
//!
//! Idle connections are closed by a reaper after `Limits::idle_timeout` without a request;
//! a request that has begun is held to the read timeouts as before.

use std::cell::RefCell;
use std::io::{Error as IoError, ErrorKind};
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::ClientConnection;
use crate::connection::Connection;
use crate::{Handler, Live};

/// How long a spare thread waits to be needed before it ends.
pub(crate) const SPARE_LINGER: Duration = Duration::from_secs(5);

/// How often an idle poller looks whether the server has stopped.
const POLL_TICK_MS: i32 = 250;

/// `Watch::idle_since` while a thread is serving the connection.
const BUSY: u64 = u64::MAX;

thread_local! {
    /// The pool this thread polls for, while it is one of its pollers.
    static POLLING: RefCell<Option<Arc<Pool>>> = const { RefCell::new(None) };
}

/// Called before anything that may block the calling thread on something other than the CPU.
/// On a poller, hands the poller's role to another thread (once: the thread is then no longer
/// a poller until its request is done); anywhere else, does nothing.
pub fn before_block() {
    if let Some(pool) = POLLING.with(|p| p.borrow_mut().take()) {
        pool.hand_off();
    }
}

pub(crate) struct Pool {
    epoll: RawFd,
    handler: Handler,
    /// Pollers wanted (one per core).
    target: usize,
    /// Threads at most: one per connection, plus the pollers.
    max_threads: usize,
    roles: Mutex<Roles>,
    promoted: Condvar,
    closed: Arc<AtomicBool>,
    live: Arc<AtomicUsize>,
    idle_timeout: Option<Duration>,
    watches: Mutex<Vec<Arc<Watch>>>,
    epoch: Instant,
}

#[derive(Default)]
struct Roles {
    pollers: usize,
    spares: usize,
    threads: usize,
    /// Spares told to become pollers that have not woken yet.
    promotions: usize,
}

/// What the reaper knows of a connection: its socket (without keeping it open) and since when
/// it has waited for a request.
struct Watch {
    socket: Weak<Connection>,
    idle_since: AtomicU64,
}

struct Conn {
    client: ClientConnection,
    fd: RawFd,
    watch: Arc<Watch>,
    _live: Live,
}

impl Drop for Pool {
    fn drop(&mut self) {
        unsafe { libc::close(self.epoll) };
    }
}

impl Pool {
    /// Starts the pollers and the reaper. `closed` is the server's stop flag and `live` its
    /// count of open connections: the threads end once both say so.
    pub(crate) fn start(
        handler: Handler,
        limits: &crate::Limits,
        closed: Arc<AtomicBool>,
        live: Arc<AtomicUsize>,
    ) -> std::io::Result<Arc<Pool>> {
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(IoError::last_os_error());
        }
        let target = limits.pollers.max(1);
        let pool = Arc::new(Pool {
            epoll,
            handler,
            target,
            max_threads: limits.max_connections + target,
            roles: Mutex::new(Roles::default()),
            promoted: Condvar::new(),
            closed,
            live,
            idle_timeout: limits.idle_timeout,
            watches: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        });
        {
            let mut r = pool.roles();
            for _ in 0..target {
                pool.spawn_poller(&mut r)?;
            }
        }
        let reaper = pool.clone();
        thread::Builder::new()
            .name("http-reaper".into())
            .spawn(move || reaper.reap())?;
        Ok(pool)
    }

    fn roles(&self) -> MutexGuard<'_, Roles> {
        self.roles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Takes a new connection: it waits in epoll for its first request.
    pub(crate) fn add(&self, client: ClientConnection, socket: &Arc<Connection>, live: Live) {
        let watch = Arc::new(Watch {
            socket: Arc::downgrade(socket),
            idle_since: AtomicU64::new(self.now_ms()),
        });
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(watch.clone());
        let conn = Box::new(Conn {
            client,
            fd: socket.as_raw_fd(),
            watch,
            _live: live,
        });
        self.arm(conn, libc::EPOLL_CTL_ADD);
    }

    /// Hands `conn` to epoll until its next bytes arrive; it is closed if epoll refuses it.
    fn arm(&self, conn: Box<Conn>, op: libc::c_int) {
        let fd = conn.fd;
        let ptr = Box::into_raw(conn);
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
            u64: ptr as u64,
        };
        // After this call another poller may already own the connection.
        if unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut ev) } < 0 {
            log::warn!(
                "could not wait for a connection: {}",
                IoError::last_os_error()
            );
            drop(unsafe { Box::from_raw(ptr) });
        }
    }

    fn spawn_poller(self: &Arc<Self>, r: &mut Roles) -> std::io::Result<()> {
        let me = self.clone();
        thread::Builder::new()
            .name("http".into())
            .spawn(move || me.work())?;
        r.threads += 1;
        r.pollers += 1;
        Ok(())
    }

    /// A poller's role passes to a spare, or to a new thread while there may be more.
    fn hand_off(self: &Arc<Self>) {
        let mut r = self.roles();
        r.pollers -= 1;
        if r.spares > 0 {
            r.spares -= 1;
            r.promotions += 1;
            r.pollers += 1;
            self.promoted.notify_one();
        } else if r.threads < self.max_threads {
            if let Err(e) = self.spawn_poller(&mut r) {
                log::warn!("could not start a thread to poll connections: {e}");
            }
        }
    }

    /// After a request whose thread handed its role off: poll again if a poller is missing,
    /// else wait as a spare. `false`: the thread ends.
    fn rejoin(&self) -> bool {
        let mut r = self.roles();
        loop {
            if r.pollers < self.target {
                r.pollers += 1;
                return true;
            }
            if self.closed.load(Ordering::SeqCst) {
                r.threads -= 1;
                return false;
            }
            r.spares += 1;
            let (g, wait) = self
                .promoted
                .wait_timeout(r, SPARE_LINGER)
                .unwrap_or_else(|p| p.into_inner());
            r = g;
            if r.promotions > 0 {
                // The promoter counted this thread out of the spares and into the pollers.
                r.promotions -= 1;
                return true;
            }
            r.spares -= 1;
            if wait.timed_out() {
                r.threads -= 1;
                return false;
            }
        }
    }

    fn work(self: Arc<Self>) {
        loop {
            POLLING.with(|p| *p.borrow_mut() = Some(self.clone()));
            let conn = match self.next_ready() {
                Some(c) => c,
                None => {
                    POLLING.with(|p| p.borrow_mut().take());
                    let mut r = self.roles();
                    r.pollers -= 1;
                    r.threads -= 1;
                    return;
                }
            };
            self.serve(conn);
            let still_polling = POLLING.with(|p| p.borrow_mut().take()).is_some();
            if !still_polling && !self.rejoin() {
                return;
            }
        }
    }

    /// The next connection with bytes waiting; `None` once the server has stopped and every
    /// connection is gone.
    fn next_ready(&self) -> Option<Box<Conn>> {
        loop {
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            let n = unsafe { libc::epoll_wait(self.epoll, &mut ev, 1, POLL_TICK_MS) };
            if n == 1 {
                return Some(unsafe { Box::from_raw(ev.u64 as *mut Conn) });
            }
            if n < 0 {
                let e = IoError::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    log::warn!("epoll_wait failed: {e}");
                    thread::sleep(Duration::from_millis(10));
                }
            }
            if self.closed.load(Ordering::SeqCst) && self.live.load(Ordering::SeqCst) == 0 {
                return None;
            }
        }
    }

    /// Serves the requests `conn` has waiting, then puts it back in epoll or closes it.
    fn serve(&self, mut conn: Box<Conn>) {
        conn.watch.idle_since.store(BUSY, Ordering::SeqCst);
        loop {
            let handler = &self.handler;
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match conn.client.next() {
                    Some(rq) => {
                        handler(rq);
                        true
                    }
                    None => false,
                }
            }));
            if !matches!(served, Ok(true)) || conn.client.finished() {
                return self.close(conn);
            }
            // Bytes already read past this request are the next one: epoll will not tell.
            if conn.client.buffered() == 0 {
                break;
            }
        }
        conn.watch.idle_since.store(self.now_ms(), Ordering::SeqCst);
        self.arm(conn, libc::EPOLL_CTL_MOD);
    }

    fn close(&self, conn: Box<Conn>) {
        unsafe {
            libc::epoll_ctl(
                self.epoll,
                libc::EPOLL_CTL_DEL,
                conn.fd,
                std::ptr::null_mut(),
            );
        }
        drop(conn);
    }

    /// Closes connections idle past the idle timeout (their poller then finds them at their
    /// end) and forgets closed ones; ends with the pool.
    fn reap(self: Arc<Self>) {
        let tick = self
            .idle_timeout
            .map_or(Duration::from_secs(1), |t| t / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            thread::sleep(tick);
            let now = self.now_ms();
            let limit = self.idle_timeout.map(|t| t.as_millis() as u64);
            let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            watches.retain(|w| {
                let Some(socket) = w.socket.upgrade() else {
                    return false;
                };
                let since = w.idle_since.load(Ordering::SeqCst);
                if let Some(limit) = limit {
                    if since != BUSY && now.saturating_sub(since) > limit {
                        let _ = socket.shutdown(std::net::Shutdown::Both);
                    }
                }
                true
            });
            let done = watches.is_empty() && self.closed.load(Ordering::SeqCst);
            drop(watches);
            if done && self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
        }
    }
}

/// Reads what the socket has now; only if that would block, calls [`before_block`] and waits
/// (within the socket's timeout).
pub(crate) fn read(
    fd: RawFd,
    buf: &mut [u8],
    blocking: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
) -> std::io::Result<usize> {
    let len = buf.len();
    let ptr = buf.as_mut_ptr();
    match at_once(|| unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) }) {
        Some(done) => done,
        None => blocking(buf),
    }
}

/// Writes what the socket takes now; only if that would block, calls [`before_block`] and
/// waits (within the socket's timeout).
pub(crate) fn write(
    fd: RawFd,
    buf: &[u8],
    blocking: impl FnOnce(&[u8]) -> std::io::Result<usize>,
) -> std::io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    match at_once(|| unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) }) {
        Some(done) => done,
        None => blocking(buf),
    }
}

/// Runs a non-blocking `recv` or `send` (again if interrupted); `None`, after
/// [`before_block`], when it would have blocked.
fn at_once(mut call: impl FnMut() -> isize) -> Option<std::io::Result<usize>> {
    loop {
        let n = call();
        if n >= 0 {
            return Some(Ok(n as usize));
        }
        let e = IoError::last_os_error();
        match e.kind() {
            ErrorKind::Interrupted => continue,
            ErrorKind::WouldBlock => break,
            _ => return Some(Err(e)),
        }
    }
    before_block();
    None
}
