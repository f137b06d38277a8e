//! `ProcessRegistry` and `StopHandle` for JS.
//!
//! This is the one binding file that holds logic, and it must: what it
//! delivers to are JS objects (callbacks, an `AbortController`), which live
//! only on the JS thread that created them, so the bookkeeping of who waits
//! for which registration cannot move into the core. The core registry owns
//! the registrations and their stop broadcast; this file only routes each
//! registration's outcome to its JS subscribers.
//!
//! Stop signals reach JS through the context's one channel (see
//! `promise.rs`), as a mailbox per registry instance. A Tokio task waits on
//! each watched registration and posts its outcome; the JS-thread side then
//! aborts the handle's `AbortSignal` and calls the callbacks in
//! subscription order. A stop issued from JS is delivered on a
//! microtask instead. The callback lists live in per-instance state on the JS
//! thread, never in a static, so every worker thread and context has its own.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::args::{Callback, SessionId};
use crate::error::{Failure, Result};
use crate::promise::{mailbox, Mailbox};
use eren_machines_core::registry::{self as core, StopOutcome, Subscription};

/// Whether a session has a registered process.
#[napi(string_enum)]
pub enum ProcessStatus {
  #[napi(value = "running")]
  Running,
  #[napi(value = "not_running")]
  NotRunning,
}

impl From<core::ProcessStatus> for ProcessStatus {
  fn from(status: core::ProcessStatus) -> Self {
    match status {
      core::ProcessStatus::Running => ProcessStatus::Running,
      core::ProcessStatus::NotRunning => ProcessStatus::NotRunning,
    }
  }
}

type StopCallback = FunctionRef<String, Unknown<'static>>;
type AbortFn = FunctionRef<(), Unknown<'static>>;

/// A registration's outcome, posted from a Tokio task to the JS thread: its
/// generation, and whether it was stopped (not released).
type Delivery = (u64, bool);

/// The JS subscribers of one registration that are waiting for its outcome.
/// While a `Watch` exists, exactly one delivery for it is on its way.
struct Watch {
  session_id: String,
  abort: Option<AbortFn>,
  callbacks: Vec<(u64, StopCallback)>,
}

#[derive(Default)]
struct Watches {
  by_generation: HashMap<u64, Watch>,
  next_token: u64,
}

/// State shared by a registry instance and its handles, on the JS thread.
struct Subscribers {
  watches: RefCell<Watches>,
  deliveries: Mailbox<Delivery>,
}

impl Subscribers {
  fn new(env: &Env) -> napi::Result<Rc<Self>> {
    // The receiver holds the state weakly, so a registry that JS drops is
    // freed even while tasks still hold its mailbox.
    let cell: Rc<RefCell<Option<Weak<Subscribers>>>> = Rc::new(RefCell::new(None));
    let target = cell.clone();
    let deliveries = mailbox(env, move |env, (generation, stopped): Delivery| {
      let subscribers = target.borrow().as_ref().and_then(Weak::upgrade);
      if let Some(subscribers) = subscribers {
        subscribers.deliver(env, generation, stopped);
      }
    })?;
    let subscribers = Rc::new(Subscribers {
      watches: RefCell::new(Watches::default()),
      deliveries,
    });
    *cell.borrow_mut() = Some(Rc::downgrade(&subscribers));
    Ok(subscribers)
  }

  /// Runs on the JS thread: aborts the signal, then calls every callback.
  fn deliver(&self, env: &Env, generation: u64, stopped: bool) {
    let Some(watch) = self.watches.borrow_mut().by_generation.remove(&generation) else {
      return;
    };
    if !stopped {
      return;
    }
    if let Some(abort) = watch.abort {
      report(env, abort.borrow_back(env).and_then(|f| f.call(())));
    }
    for (_, callback) in watch.callbacks {
      let session_id = watch.session_id.clone();
      report(
        env,
        callback.borrow_back(env).and_then(|f| f.call(session_id)),
      );
    }
  }

  /// Ensures a watch exists for `subscription` and applies `add` to it.
  fn with_watch<R>(
    self: &Rc<Self>,
    env: &Env,
    subscription: &Subscription,
    add: impl FnOnce(&mut Watch) -> R,
  ) -> napi::Result<R> {
    let mut watches = self.watches.borrow_mut();
    let generation = subscription.generation;
    let watch = match watches.by_generation.entry(generation) {
      Entry::Occupied(entry) => entry.into_mut(),
      Entry::Vacant(entry) => {
        if subscription.is_stopped() {
          // Already stopped: deliver right after this call, never inside it.
          self.queue_delivery(env, generation)?;
        } else {
          let deliveries = self.deliveries.clone();
          let waiting = subscription.resubscribe();
          napi::bindgen_prelude::spawn(async move {
            let stopped = waiting.wait().await == StopOutcome::Stopped;
            deliveries.post((generation, stopped));
          });
        }
        entry.insert(Watch {
          session_id: subscription.session_id.clone(),
          abort: None,
          callbacks: Vec::new(),
        })
      }
    };
    Ok(add(watch))
  }

  /// Delivers a stop on a microtask of the JS thread. Unlike the channel,
  /// whose wake is weak, a queued microtask runs even when nothing else keeps
  /// the process alive, so a stop issued from JS always reaches its callbacks.
  fn queue_delivery(self: &Rc<Self>, env: &Env, generation: u64) -> napi::Result<()> {
    let subscribers = Rc::downgrade(self);
    let task = env.create_function_from_closure("deliverStop", move |ctx| {
      if let Some(subscribers) = subscribers.upgrade() {
        subscribers.deliver(ctx.env, generation, true);
      }
      Ok(())
    })?;
    let queue_microtask: Function<Function<(), ()>, ()> =
      env.get_global()?.get_named_property("queueMicrotask")?;
    queue_microtask.call(task)
  }

  /// After a JS-side stop: deliver now-ish if anyone in this instance waits.
  fn stopped(self: &Rc<Self>, env: &Env, generation: u64) -> napi::Result<()> {
    if self
      .watches
      .borrow()
      .by_generation
      .contains_key(&generation)
    {
      self.queue_delivery(env, generation)?;
    }
    Ok(())
  }

  /// After a JS-side remove: nobody is signalled, the subscriptions go now.
  fn released(&self, generation: u64) {
    let released = self.watches.borrow_mut().by_generation.remove(&generation);
    drop(released);
  }

  fn add_callback<'env>(
    self: &Rc<Self>,
    env: &'env Env,
    subscription: &Subscription,
    callback: &Function<String, Unknown<'static>>,
  ) -> napi::Result<Function<'env, (), ()>> {
    let callback = callback.create_ref()?;
    let token = {
      let mut watches = self.watches.borrow_mut();
      watches.next_token += 1;
      watches.next_token
    };
    self.with_watch(env, subscription, |watch| {
      watch.callbacks.push((token, callback))
    })?;
    let generation = subscription.generation;
    let subscribers = Rc::downgrade(self);
    env.create_function_from_closure("unsubscribe", move |_ctx| {
      if let Some(subscribers) = subscribers.upgrade() {
        let mut watches = subscribers.watches.borrow_mut();
        if let Some(watch) = watches.by_generation.get_mut(&generation) {
          watch.callbacks.retain(|(t, _)| *t != token);
        }
      }
      Ok(())
    })
  }
}

/// A thrown callback surfaces as an uncaught exception, like an
/// `EventTarget` listener's, and does not stop the other callbacks.
fn report<T>(env: &Env, result: napi::Result<T>) {
  if let Err(err) = result {
    crate::error::report_uncaught(env, err);
  }
}

/// Tracks one running process per session id and broadcasts stop signals to
/// Rust tasks, JS callbacks and `AbortSignal`s.
///
/// Every method is synchronous and in-memory. Callbacks run later on the JS
/// thread and never keep the process alive by themselves.
#[napi]
pub struct ProcessRegistry {
  pub(crate) core: Arc<core::ProcessRegistry>,
  subscribers: Rc<Subscribers>,
}

#[napi]
impl ProcessRegistry {
  #[napi(constructor, catch_unwind)]
  pub fn new(env: Env) -> Result<Self> {
    Ok(Self {
      core: Arc::new(core::ProcessRegistry::new()),
      subscribers: Subscribers::new(&env)?,
    })
  }

  /// Registers a session. Throws `ALREADY_RUNNING` if it is registered, and
  /// `INVALID_ARGUMENT` for an empty id or one over 256 UTF-8 bytes.
  #[napi(catch_unwind)]
  pub fn register(
    &self,
    #[napi(ts_arg_type = "string")] session_id: SessionId,
  ) -> Result<StopHandle> {
    let SessionId(session_id) = session_id;
    let registration = self.core.register_tracked(&session_id)?;
    Ok(StopHandle {
      session_id,
      subscription: registration.subscription,
      subscribers: self.subscribers.clone(),
      controller: None,
    })
  }

  /// Removes the registration and signals every subscriber once, after this
  /// call returns. Returns true if the id was registered.
  #[napi(catch_unwind)]
  pub fn stop(
    &self,
    env: Env,
    #[napi(ts_arg_type = "string")] session_id: SessionId,
  ) -> Result<bool> {
    let Some(generation) = self.core.stop_registration(&session_id.0) else {
      return Ok(false);
    };
    self.subscribers.stopped(&env, generation)?;
    Ok(true)
  }

  /// Releases the registration without a stop signal (the natural-exit
  /// path); its subscriptions are dropped uncalled. Returns true if the id was
  /// registered.
  #[napi(catch_unwind)]
  pub fn remove(&self, #[napi(ts_arg_type = "string")] session_id: SessionId) -> bool {
    let Some(generation) = self.core.remove_registration(&session_id.0) else {
      return false;
    };
    self.subscribers.released(generation);
    true
  }

  #[napi(catch_unwind)]
  pub fn status(&self, #[napi(ts_arg_type = "string")] session_id: SessionId) -> ProcessStatus {
    self.core.status(&session_id.0).into()
  }

  #[napi(catch_unwind)]
  pub fn count(&self) -> u32 {
    self.core.count() as u32
  }

  #[napi(catch_unwind)]
  pub fn is_empty(&self) -> bool {
    self.core.is_empty()
  }

  /// Registered session ids, sorted ascending.
  #[napi(catch_unwind)]
  pub fn session_ids(&self) -> Vec<String> {
    self.core.session_ids()
  }

  /// Calls `cb` once when the current registration of `sessionId` is
  /// stopped. Throws `NOT_RUNNING` if the id is not registered. Returns an
  /// unsubscribe function that may be called any number of times.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string, cb: (sessionId: string) => void",
    ts_return_type = "() => void"
  )]
  pub fn on_stop<'env>(
    &self,
    env: &'env Env,
    session_id: SessionId,
    cb: Callback<String>,
  ) -> Result<Function<'env, (), ()>> {
    let SessionId(session_id) = session_id;
    let subscription = self
      .core
      .subscribe(&session_id)
      .ok_or_else(|| Failure::from(eren_machines_core::Error::NotRunning(session_id)))?;
    self
      .subscribers
      .add_callback(env, &subscription, &cb.0)
      .map_err(Failure::from)
  }
}

/// One registration of a session id. Its `signal` aborts, and its callbacks
/// run, when this registration (and no later one) is stopped.
#[napi(custom_finalize)]
pub struct StopHandle {
  session_id: String,
  subscription: Subscription,
  subscribers: Rc<Subscribers>,
  controller: Option<ObjectRef<false>>,
}

#[napi]
impl StopHandle {
  /// Not for use: a handle comes from `registry.register(sessionId)`.
  /// Throws `INVALID_ARGUMENT`.
  #[napi(constructor, skip_typescript)]
  pub fn new() -> Result<Self> {
    Err(Failure::from(eren_machines_core::Error::InvalidArgument(
      "use registry.register(sessionId), not new StopHandle()".into(),
    )))
  }

  #[napi(getter)]
  pub fn session_id(&self) -> String {
    self.session_id.clone()
  }

  /// True once this registration has been stopped. `remove()` does not set it.
  #[napi(getter)]
  pub fn stopped(&self) -> bool {
    self.subscription.is_stopped()
  }

  /// An `AbortSignal` aborted when this registration is stopped; hand it to
  /// `child_process.spawn`, `fetch` or anything else that takes one.
  #[napi(getter, catch_unwind, ts_return_type = "AbortSignal")]
  pub fn signal<'env>(&mut self, env: &'env Env) -> Result<Unknown<'env>> {
    self.signal_inner(env).map_err(Failure::from)
  }

  /// Calls `cb` once when this registration is stopped, or on a later turn if
  /// it already was. Returns an unsubscribe function.
  #[napi(
    catch_unwind,
    ts_args_type = "cb: (sessionId: string) => void",
    ts_return_type = "() => void"
  )]
  pub fn on_stop<'env>(
    &self,
    env: &'env Env,
    cb: Callback<String>,
  ) -> Result<Function<'env, (), ()>> {
    self
      .subscribers
      .add_callback(env, &self.subscription, &cb.0)
      .map_err(Failure::from)
  }
}

impl StopHandle {
  fn signal_inner<'env>(&mut self, env: &'env Env) -> napi::Result<Unknown<'env>> {
    if let Some(controller) = &self.controller {
      return controller.get_value(env)?.get_named_property("signal");
    }
    // Created on first use: most registrations never look at their signal.
    let constructor: Function<(), Unknown> =
      env.get_global()?.get_named_property("AbortController")?;
    let controller = constructor.new_instance(())?;
    let controller = Object::from_unknown(controller)?;
    let abort: Function<(), Unknown> = controller.get_named_property("abort")?;
    let abort = abort.bind(controller)?;
    if self.subscription.is_stopped() {
      // No listener can exist yet, so aborting now runs no user code.
      abort.call(())?;
    } else {
      let abort = abort.create_ref()?;
      self
        .subscribers
        .with_watch(env, &self.subscription, |watch| watch.abort = Some(abort))?;
    }
    self.controller = Some(controller.create_ref()?);
    controller.get_named_property("signal")
  }
}

impl ObjectFinalize for StopHandle {
  fn finalize(mut self, env: Env) -> napi::Result<()> {
    if let Some(controller) = self.controller.take() {
      controller.unref(&env)?;
    }
    Ok(())
  }
}

/// A `ProcessRegistry` argument, checked like every other argument.
pub struct RegistryArg(pub Arc<core::ProcessRegistry>);

impl FromNapiValue for RegistryArg {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
    // SAFETY: `env` and `value` come valid from our caller on the JS thread
    // (this trait method's contract); the conversion checks the class.
    match unsafe { ClassInstance::<ProcessRegistry>::from_napi_value(env, value) } {
      Ok(instance) => Ok(RegistryArg(instance.core.clone())),
      Err(_) => Err(super::args::invalid_argument(
        env,
        "expected a ProcessRegistry".into(),
      )),
    }
  }
}
