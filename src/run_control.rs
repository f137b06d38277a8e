//! What a run object offers beside its input, as execa and node-pty users
//! expect: a `signal` option (an `AbortSignal` whose abort stops the run),
//! `kill()`, `pause()`/`resume()`, `onData()` with the bytes as they are
//! read, and the `process`, `cols` and `rows` getters.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::{Property, PropertyAttributes};

use crate::args::{Callback, Options};
use crate::error::{coded, Result};
use crate::promise::{backlog, mailbox};
use eren_machines_core::runner::{DataTap, RunControl, Stream};
use eren_machines_core::{Error, ProcessRegistry};

/// Reads of output a run's `onData` callback may fall behind by, before
/// the run stops reading (and so slows the program).
const DATA_BACKLOG: usize = 64;

/// An `AbortSignal` given to a run: an abort stops it, whether it comes
/// before the run has started (it is then stopped as soon as it has) or
/// after.
#[derive(Clone, Default)]
pub struct AbortLink(Arc<Mutex<AbortState>>);

/// `signal.addEventListener(type, listener, options)`.
type AddEventListener<'a> =
  Function<'a, FnArgs<(&'a str, Function<'a, (), ()>, Object<'a>)>, Unknown<'a>>;

#[derive(Default)]
struct AbortState {
  aborted: bool,
  run: Option<(Arc<ProcessRegistry>, String, u64)>,
}

impl AbortLink {
  /// The `signal` option: listened to now, so no abort is missed while the
  /// run starts.
  pub fn from_options(env: &Env, opts: &Options) -> Result<Option<AbortLink>> {
    let not_a_signal = || Error::InvalidArgument("signal must be an AbortSignal".into());
    let Some(signal) = opts.get::<Object>("signal", "an AbortSignal")? else {
      return Ok(None);
    };
    let aborted: Unknown = signal.get_named_property("aborted")?;
    let listen: Unknown = signal.get_named_property("addEventListener")?;
    if aborted.get_type()? != ValueType::Boolean || listen.get_type()? != ValueType::Function {
      return Err(not_a_signal().into());
    }
    let link = AbortLink::default();
    // SAFETY: checked to be a boolean just above.
    if unsafe { aborted.cast::<bool>() }? {
      link.abort();
      return Ok(Some(link));
    }
    let on_abort = link.clone();
    let listener = env.create_function_from_closure::<(), (), _>("onAbort", move |_| {
      on_abort.abort();
      Ok(())
    })?;
    let mut once = Object::new(env)?;
    once.set("once", true)?;
    // SAFETY: checked to be a function just above.
    let listen: AddEventListener = unsafe { listen.cast() }?;
    listen.apply(signal, FnArgs::from(("abort", listener, once)))?;
    Ok(Some(link))
  }

  fn abort(&self) {
    let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
    state.aborted = true;
    if let Some((registry, session_id, generation)) = &state.run {
      registry.stop_generation(session_id, *generation);
    }
  }

  /// The run has started: stopped at once if the signal has aborted.
  pub fn started(&self, registry: &Arc<ProcessRegistry>, session_id: &str, generation: u64) {
    let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
    if state.aborted {
      registry.stop_generation(session_id, generation);
    }
    state.run = Some((registry.clone(), session_id.to_owned(), generation));
  }
}

/// `kill`, `pause`, `resume`, `onData` and `process` on every terminal or
/// Claude run, and `cols` and `rows` on one in a pseudo-terminal.
pub fn control_methods(env: &Env, object: &mut Object, control: RunControl) -> napi::Result<()> {
  let killer = control.clone();
  object.set(
    "kill",
    env.create_function_from_closure::<Unknown, _, _>("kill", move |ctx| {
      let signal: Option<Unknown> = match ctx.length() {
        0 => None,
        _ => Some(ctx.get(0)?),
      };
      let kind = signal.map(|s| s.get_type()).transpose()?;
      let name = match (signal, kind) {
        (None, _) | (_, Some(ValueType::Undefined)) => "SIGTERM".to_owned(),
        // SAFETY: checked to be a string.
        (Some(signal), Some(ValueType::String)) => unsafe { signal.cast::<String>() }?,
        _ => {
          return Err(coded(
            ctx.env.raw(),
            Error::InvalidArgument("kill() takes a signal name such as 'SIGTERM'".into()),
          ))
        }
      };
      killer.kill(&name).map_err(|e| coded(ctx.env.raw(), e))
    })?,
  )?;
  let pauser = control.clone();
  object.set(
    "pause",
    env.create_function_from_closure::<(), (), _>("pause", move |_| {
      pauser.pause();
      Ok(())
    })?,
  )?;
  let resumer = control.clone();
  object.set(
    "resume",
    env.create_function_from_closure::<(), (), _>("resume", move |_| {
      resumer.resume();
      Ok(())
    })?,
  )?;
  let tapper = control.clone();
  object.set(
    "onData",
    env.create_function_from_closure::<Unknown, _, _>("onData", move |ctx| {
      let callback: Callback<FnArgs<(Buffer, String)>> = ctx.get(0).map_err(|_| {
        coded(
          ctx.env.raw(),
          Error::InvalidArgument("onData() takes a function".into()),
        )
      })?;
      on_data(ctx.env, &tapper, &callback)
    })?,
  )?;
  let mut getters = vec![getter("process", {
    let control = control.clone();
    move |_env| Ok(control.foreground_process())
  })];
  if control.terminal_size().is_some() {
    let columns = control.clone();
    getters.push(getter("cols", move |_env| {
      Ok(columns.terminal_size().map(|size| u32::from(size.cols)))
    }));
    let lines = control;
    getters.push(getter("rows", move |_env| {
      Ok(lines.terminal_size().map(|size| u32::from(size.rows)))
    }));
  }
  object.define_properties(&getters)
}

/// A read-only, enumerable property computed on each read.
fn getter<R: ToNapiValue>(name: &str, read: impl Fn(Env) -> napi::Result<R> + 'static) -> Property {
  Property::new()
    .with_utf8_name(name)
    .expect("property names here hold no NUL byte")
    .with_getter_closure(move |env, _this| read(env))
    .with_property_attributes(PropertyAttributes::Enumerable)
}

/// Subscribes `callback` to the run's output as it is read; returns the
/// function that unsubscribes it, after which it is never called again.
fn on_data(
  env: &Env,
  control: &RunControl,
  callback: &Callback<FnArgs<(Buffer, String)>>,
) -> napi::Result<Unknown<'static>> {
  let callback = callback.0.create_ref()?;
  let unsubscribed = Rc::new(Cell::new(false));
  let backlog = backlog(env, DATA_BACKLOG)?;
  let given_back = backlog.clone();
  let live = unsubscribed.clone();
  let deliveries = mailbox(env, move |env, (stream, bytes): (Stream, Vec<u8>)| {
    given_back.add_permits(1);
    if live.get() {
      return;
    }
    let called = callback.borrow_back(env).and_then(|f| {
      f.call(FnArgs::from((
        Buffer::from(bytes),
        stream.as_str().to_owned(),
      )))
    });
    if let Err(error) = called {
      // Like an EventTarget listener: reported, not swallowed.
      crate::error::report_uncaught(env, error);
    }
  })?;
  let id = control.tap(DataTap {
    deliver: Box::new(move |stream, bytes| deliveries.post((stream, bytes.to_vec()))),
    backlog: Some(backlog.clone()),
  });
  let control = control.clone();
  let unsubscribe = env.create_function_from_closure::<(), (), _>("unsubscribe", move |_| {
    unsubscribed.set(true);
    control.untap(id);
    // A reader waiting for room waits no more.
    backlog.close();
    Ok(())
  })?;
  // SAFETY: returned to JS right away, from the same call.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), unsubscribe.raw()) })
}
