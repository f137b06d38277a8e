//! A descriptor that the reactor reads and writes without blocking: a
//! run's pipes, its pseudo-terminal's controlling side, and the guardian's
//! report socket. A run that waits for its child costs a registration in the
//! reactor's epoll set, not a thread.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Bytes taken per read: one terminal chunk (see [`super::chunks`]).
const READ_SIZE: usize = 64 * 1024;

thread_local! {
  // One buffer per reactor thread rather than one per run: a read hands
  // its bytes on before the task can yield, so no two reads share it.
  static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
}

pub struct Nonblocking(AsyncFd<OwnedFd>);

impl Nonblocking {
  /// Makes `fd` non-blocking and registers it with the reactor; must be
  /// called on the reactor. A pseudo-terminal's controlling side is one
  /// open file for every duplicate, so it is made once and shared.
  pub fn new(fd: OwnedFd) -> io::Result<Self> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let interest = Interest::READABLE | Interest::WRITABLE;
    Ok(Nonblocking(register(fd, interest)?))
  }

  /// Waits until there is something to read and hands it to `take`; zero
  /// bytes mean the writers are gone. A pseudo-terminal whose program side
  /// is closed reads as an error (`EIO`).
  pub async fn read_with<R>(&self, mut take: impl FnMut(&[u8]) -> R) -> io::Result<R> {
    self
      .0
      .async_io(Interest::READABLE, |fd| {
        uninterrupted(|| read_into_buffer(fd, &mut take))
      })
      .await
  }

  /// Reads once, when there is something to read, and hands the bytes to
  /// `take`; for waiting on several descriptors in one task.
  pub fn poll_read_with<R>(
    &self,
    cx: &mut Context<'_>,
    take: &mut impl FnMut(&[u8]) -> R,
  ) -> Poll<io::Result<R>> {
    loop {
      let mut guard = std::task::ready!(self.0.poll_read_ready(cx))?;
      // Nothing there after all: its readiness is cleared, so the next
      // poll waits.
      if let Ok(read) = guard.try_io(|fd| uninterrupted(|| read_into_buffer(fd.get_ref(), take))) {
        return Poll::Ready(read);
      }
    }
  }

  /// Writes all of `data`, waiting whenever the other side is full.
  pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
      let written = self
        .0
        .async_io(Interest::WRITABLE, |fd| {
          uninterrupted(|| Ok(nix::unistd::write(fd, data)?))
        })
        .await?;
      if written == 0 {
        return Err(io::ErrorKind::WriteZero.into());
      }
      data = &data[written..];
    }
    Ok(())
  }

  /// Reads a Unix socket until the other side is gone: what was said, and
  /// the descriptors passed with it (`SCM_RIGHTS`), close-on-exec. The
  /// guardian's report. macOS has no `MSG_CMSG_CLOEXEC`: there the flag is
  /// set just after, and a fork by another thread in between could copy a
  /// descriptor into that child.
  #[cfg(any(target_os = "linux", target_os = "macos"))]
  pub async fn receive_to_end(&self) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    let mut said = Vec::new();
    let mut passed = Vec::new();
    let mut receive = |fd: &OwnedFd| {
      let mut buffer = [0u8; 256];
      let mut space = nix::cmsg_space!([RawFd; 4]);
      let mut parts = [io::IoSliceMut::new(&mut buffer)];
      #[cfg(target_os = "linux")]
      let flags = MsgFlags::MSG_CMSG_CLOEXEC;
      #[cfg(target_os = "macos")]
      let flags = MsgFlags::empty();
      let message = recvmsg::<UnixAddr>(fd.as_raw_fd(), &mut parts, Some(&mut space), flags)?;
      for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = control {
          for fd in fds {
            // SAFETY: each descriptor received is new and ours alone.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            #[cfg(target_os = "macos")]
            set_cloexec(&fd)?;
            passed.push(fd);
          }
        }
      }
      let read = message.bytes;
      said.extend_from_slice(&buffer[..read]);
      Ok(read)
    };
    loop {
      let read = self
        .0
        .async_io(Interest::READABLE, |fd| uninterrupted(|| receive(fd)))
        .await?;
      if read == 0 {
        return Ok((said, passed));
      }
    }
  }
}

/// Marks `fd` close-on-exec, where it could not be made so at birth.
#[cfg(target_os = "macos")]
pub fn set_cloexec(fd: &impl AsFd) -> io::Result<()> {
  use nix::fcntl::{fcntl, FcntlArg, FdFlag};
  fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
  Ok(())
}

impl AsFd for Nonblocking {
  fn as_fd(&self) -> BorrowedFd<'_> {
    self.0.get_ref().as_fd()
  }
}

/// Registers `fd` with the reactor for `interest`; must be called on the
/// reactor.
pub fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
  // SAFETY: an `OwnedFd` stays open and always returns the same descriptor
  // until the `AsyncFd` that owns it is dropped.
  Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

/// One read into this thread's buffer, its bytes handed to `take`.
fn read_into_buffer<R>(fd: &OwnedFd, take: &mut impl FnMut(&[u8]) -> R) -> io::Result<R> {
  BUFFER.with_borrow_mut(|buffer| {
    let read = nix::unistd::read(fd, buffer)?;
    Ok(take(&buffer[..read]))
  })
}

/// Runs a system call again for as long as a signal interrupts it.
fn uninterrupted<R>(mut call: impl FnMut() -> io::Result<R>) -> io::Result<R> {
  loop {
    match call() {
      Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
      result => return result,
    }
  }
}
