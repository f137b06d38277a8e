//! How core answers reach JS: Promises settled from the store's threads, and
//! message callbacks called through weak threadsafe functions.

use std::future::Future;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;

use crate::args::Callback;
use crate::error::{coded, Failure, Result};
use crate::store::JsMessage;
use eren_machines_core::store as core;

/// Turns a store answer into a Promise that rejects with a coded `Error`.
pub fn promise<'env, T, V>(
  env: &'env Env,
  pending: impl Future<Output = eren_machines_core::Result<T>> + Send + 'static,
  convert: impl FnOnce(T) -> V + 'static,
) -> Result<PromiseRaw<'env, V>>
where
  T: Send + 'static,
  V: ToNapiValue,
{
  env
    .spawn_future_with_callback(async move { Ok(pending.await) }, move |env, answer| {
      answer.map(convert).map_err(|e| coded(env.raw(), e))
    })
    .map_err(Failure::from)
}

/// Calls `cb` on the JS thread with each message a store thread hands over,
/// in order, through a weak threadsafe function: it never keeps the process
/// alive.
pub fn message_sink(cb: &Callback<JsMessage>) -> napi::Result<core::MessageSink> {
  let deliver = cb
    .0
    .build_threadsafe_function::<JsMessage>()
    .weak::<true>()
    .callee_handled::<false>()
    .build()?;
  Ok(Box::new(move |message| {
    deliver.call(
      JsMessage::from(message.clone()),
      ThreadsafeFunctionCallMode::NonBlocking,
    );
  }))
}
