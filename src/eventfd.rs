//! A non-blocking Linux eventfd: one thread signals, another sleeps on it (a loop's
//! `add_reader`, a blocking caller's `poll`). Writes coalesce: any number of signals
//! before a `clear` leave it readable once.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Makes it readable. Never blocks: a full counter is still readable.
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an eventfd we own.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes it unreadable until the next `signal` (EAGAIN when it already was is fine).
    pub fn clear(&self) {
        let mut counter: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from an eventfd we own.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut counter as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
