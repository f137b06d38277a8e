//! A pipe that the reactor reads and writes without blocking, on Windows:
//! the host's end of an overlapped named pipe, driven by the reactor's I/O
//! completion port. The same interface as the Unix `nonblocking.rs`.

use std::cell::RefCell;
use std::io;
use std::task::{Context, Poll};

use tokio::net::windows::named_pipe::NamedPipeServer;

/// Bytes taken per read, as on Unix.
const READ_SIZE: usize = 64 * 1024;

thread_local! {
  // One buffer per reactor thread: a read hands its bytes on before the
  // task can yield.
  static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
}

pub struct Nonblocking(NamedPipeServer);

impl Nonblocking {
  /// The host's end of a connected pipe, registered with the reactor.
  pub fn new(pipe: NamedPipeServer) -> io::Result<Self> {
    Ok(Nonblocking(pipe))
  }

  /// Waits until there is something to read and hands it to `take`; zero
  /// bytes mean the writer is gone.
  pub async fn read_with<R>(&self, mut take: impl FnMut(&[u8]) -> R) -> io::Result<R> {
    std::future::poll_fn(|cx| self.poll_read_with(cx, &mut take)).await
  }

  /// Reads once, when there is something to read, and hands the bytes to
  /// `take`; for waiting on several pipes in one task.
  pub fn poll_read_with<R>(
    &self,
    cx: &mut Context<'_>,
    take: &mut impl FnMut(&[u8]) -> R,
  ) -> Poll<io::Result<R>> {
    loop {
      std::task::ready!(self.0.poll_read_ready(cx))?;
      let read = BUFFER.with_borrow_mut(|buffer| match self.0.try_read(buffer) {
        Ok(read) => Some(Ok(take(&buffer[..read]))),
        // The program's end is closed: the end of the output.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Some(Ok(take(&[]))),
        // Its readiness is cleared: the next poll waits.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) => Some(Err(e)),
      });
      if let Some(read) = read {
        return Poll::Ready(read);
      }
    }
  }

  /// Writes all of `data`, waiting whenever the other side is full.
  pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
      self.0.writable().await?;
      match self.0.try_write(data) {
        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
        Ok(written) => data = &data[written..],
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
        Err(e) => return Err(e),
      }
    }
    Ok(())
  }
}
