//! How core answers reach JS: every Promise of the addon, every message
//! callback, and every other value a thread hands to JS (a registration's
//! stop, a tool permission request) goes through one channel per JS
//! context: the one delivery path of the binding.
//!
//! A store thread that answers pushes a settlement onto the context's queue
//! and, if none is on its way, wakes the JS thread through the context's one
//! threadsafe function. The JS thread then settles at most [`SLICE`] items
//! per turn and yields (`setImmediate`) between slices, so a commit that
//! answers a thousand appends never blocks the event loop for long. The
//! threadsafe function is weak, and referenced only while Promises are
//! pending: a pending Promise keeps the process alive, a subscription never
//! does.
//!
//! This file holds per-context state and a few raw Node-API calls (promise
//! creation and settlement on the JS thread, and ref/unref of the
//! threadsafe function), which napi-rs wraps only in a per-call
//! threadsafe function: exactly the cost this channel exists to avoid.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};

use crate::args::Callback;
use crate::error::{coded, Failure, Result};
use crate::message::JsMessage;
use eren_machines_core::runner::RunSink;
use eren_machines_core::store as core;
use tokio::sync::Semaphore;

/// Items settled per turn of the event loop.
const SLICE: usize = 32;

/// Settles one item on the JS thread.
type Settle = Box<dyn FnOnce(&Env, &Channel) + Send>;
type Wake = ThreadsafeFunction<(), (), (), Status, false, true>;

/// What crosses threads: the queue and the way to wake the JS thread.
struct Shared {
  queue: Mutex<VecDeque<Settle>>,
  /// A wake (or a scheduled slice) is on its way to the JS thread.
  waking: AtomicBool,
  wake: Wake,
}

impl Shared {
  fn push(self: &Arc<Self>, settle: Settle) {
    self
      .queue
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .push_back(settle);
    if !self.waking.swap(true, Ordering::AcqRel) {
      self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
    }
  }
}

/// One JS context's channel. Lives in the context's instance data; its
/// JS-thread fields are touched on that thread only.
pub struct Channel {
  shared: Arc<Shared>,
  deferreds: RefCell<HashMap<u64, sys::napi_deferred>>,
  sinks: RefCell<HashMap<u64, SinkEntry>>,
  /// The JS-thread ends of mailboxes, by id.
  receivers: RefCell<HashMap<u64, Receive>>,
  /// Pending Promises and unfinished replays: while any, the process stays
  /// alive.
  holds: Cell<usize>,
  next_id: Cell<u64>,
  /// The function that settles the next slice, for `setImmediate`.
  next_slice: RefCell<Option<FunctionRef<(), ()>>>,
  /// Runs started from this context, stopped when it goes away.
  runs: RefCell<Vec<OwnedRun>>,
  /// The backlogs of runs' callbacks: closed with the context, so that no
  /// run waits for a callback that will never be called again.
  backlogs: RefCell<Vec<Weak<Semaphore>>>,
}

/// What a mailbox's value does on the JS thread.
type Receive = Rc<dyn Fn(&Env, Box<dyn Any>)>;

/// A message callback, and the sequence its replay runs to while it holds
/// the process alive.
struct SinkEntry {
  callback: FunctionRef<JsMessage, Unknown<'static>>,
  replay_until: Option<i64>,
}

/// A run and the registration that stops it.
pub struct OwnedRun {
  pub registry: Arc<eren_machines_core::ProcessRegistry>,
  pub session_id: String,
  pub generation: u64,
}

/// The context is torn down (a worker's `terminate()`, the end of the
/// process): its runs must not outlive it with nobody left to stop them.
impl Drop for Channel {
  fn drop(&mut self) {
    for backlog in self.backlogs.take() {
      if let Some(backlog) = backlog.upgrade() {
        backlog.close();
      }
    }
    for run in self.runs.take() {
      run
        .registry
        .stop_generation(&run.session_id, run.generation);
    }
  }
}

/// Notes a run started from `env`'s context, so that the context's end stops
/// it; runs that already ended are forgotten as new ones come.
pub fn own_run(env: &Env, run: OwnedRun) -> napi::Result<()> {
  let channel = Channel::of(env)?;
  let mut runs = channel.runs.borrow_mut();
  runs.retain(|owned| owned.registry.is_running(&owned.session_id));
  runs.push(run);
  Ok(())
}

impl Channel {
  /// The channel of `env`'s context, made on first use.
  fn of(env: &Env) -> napi::Result<&'static Channel> {
    if let Some(channel) = env.get_instance_data::<Channel>()? {
      return Ok(&*channel);
    }
    let drain = env.create_function_from_closure("settle", |ctx| {
      if let Some(channel) = ctx.env.get_instance_data::<Channel>()? {
        channel.drain(ctx.env)?;
      }
      Ok(())
    })?;
    let wake: Wake = drain
      .build_threadsafe_function::<()>()
      .weak::<true>()
      .callee_handled::<false>()
      .build()?;
    let next_slice = drain.create_ref()?;
    let channel = Channel {
      shared: Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        waking: AtomicBool::new(false),
        wake,
      }),
      deferreds: RefCell::default(),
      sinks: RefCell::default(),
      receivers: RefCell::default(),
      holds: Cell::new(0),
      next_id: Cell::new(0),
      next_slice: RefCell::new(Some(next_slice)),
      runs: RefCell::default(),
      backlogs: RefCell::default(),
    };
    env.set_instance_data(channel, (), |_| {})?;
    env
      .get_instance_data::<Channel>()?
      .map(|channel| &*channel)
      .ok_or_else(|| napi::Error::new(Status::GenericFailure, "no instance data"))
  }

  fn next_id(&self) -> u64 {
    let id = self.next_id.get() + 1;
    self.next_id.set(id);
    id
  }

  /// Something the process must stay alive for: the wake function is
  /// referenced while anything holds it.
  fn hold(&self, env: &Env) {
    let holds = self.holds.get();
    self.holds.set(holds + 1);
    if holds == 0 {
      // SAFETY: on the JS thread of `env`, with the function this context made.
      unsafe { sys::napi_ref_threadsafe_function(env.raw(), self.shared.wake.raw()) };
    }
  }

  fn release(&self, env: &Env) {
    let holds = self.holds.get().saturating_sub(1);
    self.holds.set(holds);
    if holds == 0 {
      // SAFETY: as in `hold`.
      unsafe { sys::napi_unref_threadsafe_function(env.raw(), self.shared.wake.raw()) };
    }
  }

  /// Forgets a callback, releasing what its replay held.
  fn remove_sink(&self, env: &Env, id: u64) {
    let removed = self.sinks.borrow_mut().remove(&id);
    if removed.is_some_and(|entry| entry.replay_until.is_some()) {
      self.release(env);
    }
  }

  /// Settles one slice, then yields to the event loop before the next.
  fn drain(&self, env: &Env) -> napi::Result<()> {
    let slice: Vec<Settle> = {
      let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
      let n = queue.len().min(SLICE);
      queue.drain(..n).collect()
    };
    for settle in slice {
      settle(env, self);
    }
    self.shared.waking.store(false, Ordering::Release);
    let more = !self
      .shared
      .queue
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .is_empty();
    if more && !self.shared.waking.swap(true, Ordering::AcqRel) {
      let set_immediate: Function<Function<(), ()>, Unknown> =
        env.get_global()?.get_named_property("setImmediate")?;
      if let Some(next) = self.next_slice.borrow().as_ref() {
        set_immediate.call(next.borrow_back(env)?)?;
      }
    }
    Ok(())
  }

  fn settle_promise(&self, env: &Env, id: u64, outcome: napi::Result<sys::napi_value>) {
    let Some(deferred) = self.deferreds.borrow_mut().remove(&id) else {
      return;
    };
    // SAFETY: `deferred` was made by napi_create_promise on this thread and
    // is settled exactly once, here.
    unsafe {
      match outcome {
        Ok(value) => sys::napi_resolve_deferred(env.raw(), deferred, value),
        Err(error) => {
          let value = napi::JsError::from(error).into_value(env.raw());
          sys::napi_reject_deferred(env.raw(), deferred, value)
        }
      };
    }
    self.release(env);
  }
}

/// Turns a core answer into a Promise that settles through the context's
/// channel, rejecting with a coded `Error`.
pub fn promise<'env, T, V>(
  env: &'env Env,
  pending: impl Future<Output = eren_machines_core::Result<T>> + Send + 'static,
  convert: impl FnOnce(T) -> V + Send + 'static,
) -> Result<PromiseRaw<'env, V>>
where
  T: Send + 'static,
  V: ToNapiValue,
{
  let channel = Channel::of(env)?;
  let mut deferred = std::ptr::null_mut();
  let mut value = std::ptr::null_mut();
  // SAFETY: a plain Node-API call on the JS thread of `env`.
  check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut value) })
    .map_err(Failure::from)?;
  let id = channel.next_id();
  channel.hold(env);
  channel.deferreds.borrow_mut().insert(id, deferred);
  let shared = channel.shared.clone();
  napi::bindgen_prelude::spawn(async move {
    let answer = pending.await;
    shared.push(Box::new(move |env, channel| {
      let outcome = match answer {
        // SAFETY: converting on the JS thread of `env`.
        Ok(t) => unsafe { V::to_napi_value(env.raw(), convert(t)) },
        Err(e) => Err(coded(env.raw(), e)),
      };
      channel.settle_promise(env, id, outcome);
    }));
  });
  Ok(PromiseRaw::new(env.raw(), value))
}

/// Calls `cb` on the JS thread with each message a store thread hands over,
/// in order, through the context's channel. It never keeps the process
/// alive, and once the returned sink is dropped (the subscription or run is
/// over) nothing more is delivered, also what was already queued.
pub fn message_sink(
  env: &Env,
  cb: &Callback<JsMessage>,
) -> napi::Result<(core::MessageSink, SinkId)> {
  sink(env, cb, None)
}

/// A run's `onMessage`: like [`message_sink`], and the run waits while the
/// callback is [`BACKLOG`] messages behind. It then stops reading the
/// child, whose pipe fills and slows it, so memory never grows with the
/// output; the wait is a task's on the runner's reactor, so it holds up
/// that run alone.
pub fn run_sink(env: &Env, cb: &Callback<JsMessage>) -> napi::Result<RunSink> {
  let backlog = backlog(env, BACKLOG)?;
  let (deliver, _) = sink(env, cb, Some(backlog.clone()))?;
  Ok(RunSink {
    deliver,
    backlog: Some(backlog),
  })
}

/// Room for `permits` deliveries a run's callback may fall behind by (see
/// [`run_sink`]); closed with `env`'s context, so that no run waits for a
/// callback that will never be called again.
pub fn backlog(env: &Env, permits: usize) -> napi::Result<Arc<Semaphore>> {
  let backlog = Arc::new(Semaphore::new(permits));
  let channel = Channel::of(env)?;
  let mut backlogs = channel.backlogs.borrow_mut();
  backlogs.retain(|backlog| backlog.strong_count() > 0);
  backlogs.push(Arc::downgrade(&backlog));
  Ok(backlog)
}

fn sink(
  env: &Env,
  cb: &Callback<JsMessage>,
  backlog: Option<Arc<Semaphore>>,
) -> napi::Result<(core::MessageSink, SinkId)> {
  let channel = Channel::of(env)?;
  let id = channel.next_id();
  channel.sinks.borrow_mut().insert(
    id,
    SinkEntry {
      callback: cb.0.create_ref()?,
      replay_until: None,
    },
  );
  let sink = Sink {
    id,
    shared: channel.shared.clone(),
    backlog,
  };
  Ok((Box::new(move |message| sink.deliver(message)), SinkId(id)))
}

/// Names a message callback, to stop it from the JS thread.
#[derive(Clone, Copy)]
pub struct SinkId(u64);

/// Stops a callback at once: deliveries already queued are dropped too, so
/// after `unsubscribe()` returns the callback is never called again, also
/// when it unsubscribes from inside itself.
pub fn forget_sink(env: &Env, id: SinkId) -> napi::Result<()> {
  Channel::of(env)?.remove_sink(env, id.0);
  Ok(())
}

/// Keeps the process alive until the callback has seen the stored messages
/// up to `until` (its replay), or is gone.
pub fn hold_replay(env: &Env, id: SinkId, until: i64) -> napi::Result<()> {
  let channel = Channel::of(env)?;
  if let Some(entry) = channel.sinks.borrow_mut().get_mut(&id.0) {
    entry.replay_until = Some(until);
  } else {
    return Ok(());
  }
  channel.hold(env);
  Ok(())
}

/// Messages a run's callback may fall behind by.
const BACKLOG: usize = 1024;

/// A store thread's handle on one JS callback.
struct Sink {
  id: u64,
  shared: Arc<Shared>,
  /// A run's backlog: a permit comes back as each message is taken.
  backlog: Option<Arc<Semaphore>>,
}

impl Sink {
  fn deliver(&self, message: &core::Message) {
    let id = self.id;
    let message = JsMessage::from(message.clone());
    let backlog = self.backlog.clone();
    self.shared.push(Box::new(move |env, channel| {
      if let Some(backlog) = backlog {
        backlog.add_permits(1);
      }
      let sequence = message.sequence_number;
      let (callback, replayed) = {
        let mut sinks = channel.sinks.borrow_mut();
        let Some(entry) = sinks.get_mut(&id) else {
          return;
        };
        let replayed = entry.replay_until.is_some_and(|until| sequence >= until);
        if replayed {
          entry.replay_until = None;
        }
        (entry.callback.borrow_back(env).ok(), replayed)
      };
      if let Some(callback) = callback {
        if let Err(error) = callback.call(message) {
          // Like an EventTarget listener: reported, not swallowed.
          crate::error::report_uncaught(env, error);
        }
      }
      if replayed {
        channel.release(env);
      }
    }));
  }
}

impl Drop for Sink {
  fn drop(&mut self) {
    let id = self.id;
    // The callback's reference is released on the JS thread.
    self
      .shared
      .push(Box::new(move |env, channel| channel.remove_sink(env, id)));
  }
}

/// Where other threads post values of type `T` for one JS-thread receiver
/// (see [`mailbox`]). Posting never blocks and never keeps the process
/// alive. Once the last clone is dropped, the receiver is forgotten on the
/// JS thread, after what was posted before.
pub struct Mailbox<T> {
  inner: Arc<MailboxInner>,
  _values: PhantomData<fn(T)>,
}

struct MailboxInner {
  id: u64,
  shared: Arc<Shared>,
}

impl<T> Clone for Mailbox<T> {
  fn clone(&self) -> Self {
    Mailbox {
      inner: self.inner.clone(),
      _values: PhantomData,
    }
  }
}

impl<T: Send + 'static> Mailbox<T> {
  pub fn post(&self, value: T) {
    let id = self.inner.id;
    self.inner.shared.push(Box::new(move |env, channel| {
      // Taken out first: the receiver may open or drop mailboxes itself.
      let receive = channel.receivers.borrow().get(&id).cloned();
      if let Some(receive) = receive {
        receive(env, Box::new(value));
      }
    }));
  }
}

impl Drop for MailboxInner {
  fn drop(&mut self) {
    let id = self.id;
    self.shared.push(Box::new(move |_, channel| {
      channel.receivers.borrow_mut().remove(&id);
    }));
  }
}

/// A mailbox whose values `receive` takes on `env`'s JS thread, in the
/// order they were posted, through the context's channel.
pub fn mailbox<T: 'static>(
  env: &Env,
  receive: impl Fn(&Env, T) + 'static,
) -> napi::Result<Mailbox<T>> {
  let channel = Channel::of(env)?;
  let id = channel.next_id();
  let receive: Receive = Rc::new(move |env, value| {
    if let Ok(value) = value.downcast::<T>() {
      receive(env, *value);
    }
  });
  channel.receivers.borrow_mut().insert(id, receive);
  Ok(Mailbox {
    inner: Arc::new(MailboxInner {
      id,
      shared: channel.shared.clone(),
    }),
    _values: PhantomData,
  })
}
