//! `loginShellPath()` for JS.

use std::time::Duration;

use eren_machines_core::shell_path::{login_shell_path as resolve, DEFAULT_TIMEOUT};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::args::read_options;
use crate::error::Result;
use crate::promise::promise;

/// The `PATH` of the user's login shell (`$SHELL`, else the account's
/// shell), resolved once and cached: a desktop app launched from the Dock,
/// Finder or a launcher inherits a minimal `PATH`, so `claude`, `node` and
/// the tools an agent runs are not found. Pass it to either runner as
/// `env: { PATH }`. The shell runs for at most `timeoutMs` (default 3000)
/// in its own process group, which is killed on every path; only `PATH` is
/// taken from what it prints. When the shell fails, the inherited `PATH` is
/// returned (and not cached). Never rejects except for bad options.
#[napi(
  catch_unwind,
  ts_args_type = "opts?: LoginShellPathOptions",
  ts_return_type = "Promise<string>"
)]
pub fn login_shell_path<'env>(
  env: &'env Env,
  opts: LoginShellPathOptions,
) -> Result<PromiseRaw<'env, String>> {
  let timeout = opts
    .timeout_ms
    .map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms as u64));
  promise(env, resolve(timeout), |path| path)
}

/// The options of `loginShellPath()`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct LoginShellPathOptions {
  /// How long the shell may take (default 3000).
  #[napi(ts_type = "number")]
  pub timeout_ms: Option<i64>,
}

read_options!(LoginShellPathOptions, |env, opts| Ok(
  LoginShellPathOptions {
    timeout_ms: opts.count("timeoutMs")?,
  }
));
