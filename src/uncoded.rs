//! Errors raised before the addon's own code runs, which the contract still
//! wants coded. V8 refuses a method called with the wrong `this`
//! (`const { messages } = store; messages(id)`) with a TypeError "Illegal
//! invocation", and napi-rs's generated glue fails a getter's unwrap or a
//! caught panic with its own status names (`InvalidArg`, `GenericFailure`).
//! At load time every exported function, method, getter and static factory
//! is wrapped so that those errors get `INVALID_ARGUMENT` or `INTERNAL`.
//! Errors that already carry one of the package's codes pass untouched.

use napi::bindgen_prelude::{Function, Object};
use napi::{Env, Result};
use napi_derive::napi;

const GUARD: &str = r#"(function guardErrors(exports) {
  const ARGUMENT = /^(InvalidArg|[A-Za-z]+Expected)$/
  const INTERNAL = /^(GenericFailure|PendingException|Cancelled|EscapeCalledTwice|HandleScopeMismatch|CallbackScopeMismatch|QueueFull|Closing|WouldDeadlock|NoExternalBuffersAllowed|CannotRunJs|Unknown)$/
  const coded = (error) => {
    if (!(error instanceof Error)) return error
    if (error.code === undefined && error instanceof TypeError && error.message === 'Illegal invocation') {
      error.code = 'INVALID_ARGUMENT'
      error.message = 'Illegal invocation: called with a `this` that is not an instance of its class'
    } else if (typeof error.code === 'string' && ARGUMENT.test(error.code)) {
      error.code = 'INVALID_ARGUMENT'
    } else if (typeof error.code === 'string' && INTERNAL.test(error.code)) {
      error.code = 'INTERNAL'
    }
    return error
  }
  const guard = (fn) =>
    ({
      [fn.name](...args) {
        try {
          return Reflect.apply(fn, this, args)
        } catch (error) {
          throw coded(error)
        }
      },
    })[fn.name]
  const guardMembers = (target) => {
    for (const [name, property] of Object.entries(Object.getOwnPropertyDescriptors(target))) {
      if (name === 'constructor' || name === 'prototype' || !property.configurable) continue
      if (typeof property.value === 'function') property.value = guard(property.value)
      if (property.get) property.get = guard(property.get)
      if (property.set) property.set = guard(property.set)
      Object.defineProperty(target, name, property)
    }
  }
  for (const [name, value] of Object.entries(exports)) {
    if (typeof value === 'function' && /^[A-Z]/.test(name)) {
      // A class: its methods and getters, and its static factories.
      guardMembers(value.prototype)
      guardMembers(value)
    } else if (typeof value === 'function') {
      exports[name] = guard(value)
    } else if (value && typeof value === 'object') {
      guardMembers(value)
    }
  }
})"#;

#[napi(module_exports)]
pub fn guard_errors(exports: Object, env: Env) -> Result<()> {
  let guard: Function<Object, ()> = env.run_script(GUARD)?;
  guard.call(exports)
}
