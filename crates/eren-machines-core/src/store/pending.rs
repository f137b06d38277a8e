//! How the store answers: a request is handed to a store thread at once, and
//! its answer arrives later through a [`Pending`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::{Error, Result};

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// The answer to a request already handed to the writer or reader thread.
/// The request is sent when the method is called, not when this is polled,
/// so a caller may issue many writes and await them later.
pub struct Pending<T>(PendingState<T>);

enum PendingState<T> {
  Waiting(oneshot::Receiver<Result<T>>),
  Ready(Option<Result<T>>),
}

/// A reply channel and the `Pending` that receives it.
pub(crate) fn reply_channel<T>() -> (Reply<T>, Pending<T>) {
  let (reply, receiver) = oneshot::channel();
  (reply, Pending(PendingState::Waiting(receiver)))
}

impl<T> Pending<T> {
  pub(crate) fn ready(result: Result<T>) -> Self {
    Pending(PendingState::Ready(Some(result)))
  }

  /// Like [`wait`](Self::wait), for at most `timeout`: `None` if the
  /// answer has not come by then. Looks every millisecond.
  pub fn wait_for(self, timeout: std::time::Duration) -> Option<Result<T>> {
    let deadline = std::time::Instant::now() + timeout;
    match self.0 {
      PendingState::Ready(result) => Some(result.unwrap_or(Err(Error::StoreClosed))),
      PendingState::Waiting(mut receiver) => loop {
        match receiver.try_recv() {
          Ok(answer) => return Some(answer),
          Err(oneshot::error::TryRecvError::Closed) => return Some(Err(Error::StoreClosed)),
          Err(oneshot::error::TryRecvError::Empty) if std::time::Instant::now() >= deadline => {
            return None
          }
          Err(oneshot::error::TryRecvError::Empty) => {
            std::thread::sleep(std::time::Duration::from_millis(1))
          }
        }
      },
    }
  }

  /// Blocks the current thread until the answer arrives. Not for async code.
  pub fn wait(self) -> Result<T> {
    match self.0 {
      PendingState::Waiting(receiver) => {
        receiver.blocking_recv().unwrap_or(Err(Error::StoreClosed))
      }
      PendingState::Ready(result) => result.unwrap_or(Err(Error::StoreClosed)),
    }
  }
}

// Nothing in `Pending` is ever pinned in place: the receiver is `Unpin` and
// the ready value is moved out by value.
impl<T> Unpin for Pending<T> {}

impl<T> Future for Pending<T> {
  type Output = Result<T>;

  fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
    match &mut self.get_mut().0 {
      PendingState::Waiting(receiver) => Pin::new(receiver)
        .poll(cx)
        .map(|answer| answer.unwrap_or(Err(Error::StoreClosed))),
      PendingState::Ready(result) => Poll::Ready(result.take().unwrap_or(Err(Error::StoreClosed))),
    }
  }
}
