//! A run's watcher, on the reactor: it waits for the run's stop signal or
//! its exit; a stop becomes the first signal of its style, the grace
//! period, then SIGKILL for the whole tree; and the exit, once reaped, goes
//! to the supervisor.

use std::process::Child;
use std::time::Duration;

use tokio::sync::mpsc;

use super::control::RunControl;
use super::handler::{HostInput, RunInput};
use super::io::Event;
use crate::registry::{StopOutcome, Subscription};
use crate::sys::{self, StopStyle};

/// How long a guardian may take to end its tree after the SIGKILL of a
/// stop before it is killed itself.
const GUARDIAN_ANSWER: Duration = Duration::from_secs(1);

/// What watches a run on the reactor: its stop signal, then the grace
/// before SIGKILL, and its exit, which it reports to the supervisor.
pub(super) struct Watcher {
  pub(super) watched: Subscription,
  pub(super) stop_style: StopStyle,
  pub(super) stop_input: RunInput,
  pub(super) kill_grace: Duration,
  pub(super) control: RunControl,
  pub(super) events: mpsc::Sender<Event>,
}

impl Watcher {
  pub(super) async fn watch(self, mut child: Child, handle: sys::Handle, exit: sys::Exit) {
    let exited = exit.wait();
    tokio::pin!(exited);
    let mut ended = false;
    let stopped = tokio::select! {
      () = &mut exited => {
        ended = true;
        false
      }
      // Released (a `remove()` while it runs) is no stop: the run goes on.
      outcome = self.watched.wait() => outcome == StopOutcome::Stopped,
    };
    let mut stopping = sys::Stopping::default();
    if stopped {
      stopping = handle.begin_stop(self.stop_style);
      if self.stop_style == StopStyle::Interrupt {
        if !sys::INTERRUPTS_BY_SIGNAL {
          // No SIGINT here: the program is asked in its own protocol (the
          // Claude CLI's interrupt request), then its input ends.
          let (reply, _) = crate::store::reply_channel();
          let _ = self.stop_input.send(HostInput::Interrupt { reply });
        }
        let _ = self.stop_input.send(HostInput::End);
      }
      ended = tokio::select! {
        () = &mut exited => true,
        () = tokio::time::sleep(self.kill_grace) => {
          handle.kill(&stopping);
          false
        }
      };
      if !ended {
        // A guardian that does not end soon after the SIGKILL it was asked
        // for is held (SIGSTOP from its program, say): it is killed itself,
        // and its program's tree then ends as an orphaned one does below.
        ended = tokio::select! {
          () = &mut exited => true,
          () = tokio::time::sleep(GUARDIAN_ANSWER) => {
            handle.kill_guardian();
            false
          }
        };
      }
    }
    if !ended {
      exited.await;
    }
    // A guardian that ended while its program runs on was killed (by the
    // program, say, or the OOM killer): its tree is ended here instead.
    let reason = handle.end_orphaned_program().then(|| {
      "the run's guardian ended while the program ran; the runner ended the program".to_owned()
    });
    handle.after_end(&stopping);
    // Before the reap, which frees the pid for reuse.
    self.control.program_ended();
    // Ended already: this only reaps it.
    if let Ok(status) = child.wait() {
      let _ = self.events.send(Event::Exited(status, reason)).await;
    }
  }
}
