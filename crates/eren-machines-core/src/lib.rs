//! eren-machines: one process per session, everything it prints stored.
//!
//! The core that the Node binding and Rust hosts share, free of any Node
//! type:
//! - [`ProcessRegistry`]: one registration per session id, with a stop signal
//!   broadcast to every subscriber;
//! - [`store`]: an embedded SQLite session store with per-session sequence
//!   numbers, group commit and live subscriptions, behind the
//!   [`SessionWriter`] and [`SessionReader`] traits;
//! - [`claude_bridge`] and [`terminal_bridge`]: what a Claude CLI or a
//!   terminal prints, as stored messages;
//! - [`runner`]: spawning and supervising processes into sessions.
//!
//! ```
//! use eren_machines_core::{terminal_bridge, ProcessRegistry, SessionStore, SessionWriter};
//!
//! let registry = ProcessRegistry::new();
//! let stop = registry.register("build-1").unwrap();
//! let mut stopped = stop.subscribe();
//! assert!(registry.stop("build-1"));
//! assert_eq!(stopped.try_recv(), Ok(()));
//!
//! let store = SessionStore::in_memory().unwrap();
//! store.create_session(Some("build-1")).wait().unwrap();
//! let message = terminal_bridge::store_stdout(&store, "build-1", "ok").wait().unwrap();
//! assert_eq!(message.sequence_number, 1);
//! ```

pub mod bridge;
pub mod content;
pub mod error;
pub mod output;
pub mod registry;
pub mod runner;
pub mod session_id;
pub mod shell_path;
pub mod store;
pub mod sys;
#[cfg(test)]
pub(crate) mod test_support;

pub use bridge::{claude as claude_bridge, terminal as terminal_bridge};
pub use error::{Error, ProcessError, Result};
pub use registry::{ProcessRegistry, ProcessStatus};
pub use store::{
  AgentStatus, Message, Pending, Session, SessionReader, SessionStore, SessionWriter,
};
