//! One connection that comes back: after the server went away, the next use
//! connects again.
//!
//! A server that accepts the socket and then says nothing would hold a
//! connection attempt forever (the client's own timeout covers only the
//! socket), so each attempt runs on a thread of its own and is given up
//! after the connect timeout; a later call picks up that same attempt rather
//! than start another. A server that vanishes under an open connection is
//! found by TCP keepalives and the user timeout.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// How long a connection attempt may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Unacknowledged data older than this ends the connection.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle connection is probed after this long.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

type Attempt = mpsc::Receiver<std::result::Result<Client, postgres::Error>>;

/// Whether `location` is a PostgreSQL URL rather than a file path.
pub fn is_url(location: &str) -> bool {
  location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Where and how to connect: the client's settings and the TLS connector
/// (`None`: plain).
#[derive(Clone)]
pub struct Endpoint {
  pub config: Config,
  tls: Option<MakeRustlsConnect>,
}

/// Parses a `postgres://` URL, with this package's defaults where it says
/// nothing; its TLS parameters are read by [`super::tls`].
pub fn parse(url: &str, options: &super::ConnectOptions) -> Result<Endpoint> {
  if !is_url(url) {
    return Err(Error::InvalidArgument(format!(
      "a PostgreSQL URL starts with postgres:// or postgresql://, got '{}'",
      redact(url)
    )));
  }
  let (rest, tls) = super::tls::take_parameters(url)?;
  let mut config: Config = rest.parse().map_err(|e| {
    Error::InvalidArgument(format!("not a PostgreSQL URL ('{}'): {e}", redact(url)))
  })?;
  config.ssl_mode(tls.client_mode());
  if config.get_connect_timeout().is_none() {
    config.connect_timeout(CONNECT_TIMEOUT);
  }
  if config.get_application_name().is_none() {
    // Which host process a connection serves, in pg_stat_activity.
    config.application_name(&format!("eren-machines pid {}", std::process::id()));
  }
  if let Some(timeout) = options.statement_timeout {
    let given = config.get_options().unwrap_or_default().to_owned();
    if !given.contains("statement_timeout") {
      let setting = format!("-c statement_timeout={}", timeout.as_millis());
      config.options(format!("{given} {setting}").trim());
    }
  }
  if config.get_tcp_user_timeout().is_none() {
    config.tcp_user_timeout(TCP_USER_TIMEOUT);
  }
  if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
    config.keepalives_idle(KEEPALIVE_IDLE);
  }
  Ok(Endpoint {
    config,
    tls: tls.connector()?,
  })
}

/// A PostgreSQL URL or connection string fit to print: every password in
/// it becomes `***`, wherever it stands and whatever it holds (`@`, `/` and
/// `:` included): the userinfo's, and each `password=` parameter.
pub fn redact(url: &str) -> String {
  let mut shown = match url.find("://") {
    Some(scheme_end) => {
      let rest = &url[scheme_end + 3..];
      // The userinfo ends at the last `@` before the query: a password may
      // hold `@` and `/` unescaped.
      let query = rest.find('?').unwrap_or(rest.len());
      match rest[..query].rfind('@') {
        Some(at) => match rest[..at].find(':') {
          Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
          ),
          None => url.to_owned(),
        },
        None => url.to_owned(),
      }
    }
    None => url.to_owned(),
  };
  let mut from = 0;
  while let Some(found) = shown[from..].to_ascii_lowercase().find("password=") {
    let start = from + found + "password=".len();
    let value = &shown[start..];
    let end = if let Some(quoted) = value.strip_prefix('\'') {
      quoted.find('\'').map_or(value.len(), |close| close + 2)
    } else {
      value.find(['&', ' ', '\t']).unwrap_or(value.len())
    };
    shown.replace_range(start..start + end, "***");
    from = start + 3;
  }
  shown
}

/// A connection idle this long is checked before it is used: a server that
/// restarted meanwhile closed it, and the client learns that only by trying.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);
/// How long that check may take before the connection counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Link {
  endpoint: Endpoint,
  client: Option<Client>,
  /// An attempt that outlived its timeout, still going on its thread.
  attempt: Option<Attempt>,
  /// When the connection was last used.
  used: Instant,
}

impl Link {
  /// Connects now: an unreachable server fails here.
  pub fn connect(endpoint: Endpoint) -> Result<Self> {
    let mut link = Link::lazy(endpoint);
    link.client()?;
    Ok(link)
  }

  /// Connects on first use.
  pub fn lazy(endpoint: Endpoint) -> Self {
    Link {
      endpoint,
      client: None,
      attempt: None,
      used: Instant::now(),
    }
  }

  /// The connection, made again if the last one was lost, or if, after a
  /// while unused, it no longer answers (the server restarted, say): so the
  /// first read or write after a restart does not fail on a dead socket.
  pub fn client(&mut self) -> Result<&mut Client> {
    let idle = self.used.elapsed() >= CHECK_AFTER_IDLE;
    self.used = Instant::now();
    let alive = |client: &mut Client| {
      !client.is_closed() && (!idle || client.is_valid(CHECK_TIMEOUT).is_ok())
    };
    let client = match self.client.take() {
      Some(mut client) => {
        if alive(&mut client) {
          client
        } else {
          self.connect_now()?
        }
      }
      None => self.connect_now()?,
    };
    Ok(self.client.insert(client))
  }

  fn connect_now(&mut self) -> Result<Client> {
    let attempt = match self.attempt.take() {
      Some(attempt) => attempt,
      None => {
        let (sender, attempt) = mpsc::channel();
        let Endpoint { config, tls } = self.endpoint.clone();
        let connect = move || match tls {
          Some(tls) => config.connect(tls),
          None => config.connect(NoTls),
        };
        std::thread::Builder::new()
          .name("eren-pg-connect".into())
          .spawn(move || drop(sender.send(connect())))
          .map_err(|e| Error::storage(format!("cannot start a thread to connect: {e}"), e))?;
        attempt
      }
    };
    let timeout = self
      .endpoint
      .config
      .get_connect_timeout()
      .copied()
      .unwrap_or(CONNECT_TIMEOUT);
    match attempt.recv_timeout(timeout) {
      Ok(Ok(client)) => Ok(client),
      Ok(Err(e)) => Err(Error::storage(
        format!("cannot connect to PostgreSQL: {}", describe(&e)),
        e,
      )),
      Err(mpsc::RecvTimeoutError::Timeout) => {
        self.attempt = Some(attempt);
        Err(Error::Armin(format!(
          "cannot connect to PostgreSQL: no answer within {} ms",
          timeout.as_millis()
        )))
      }
      Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Armin(
        "cannot connect to PostgreSQL: the attempt ended without an answer".into(),
      )),
    }
  }

  /// Whether the connection is up (without trying to make one).
  pub fn is_connected(&self) -> bool {
    self.client.as_ref().is_some_and(|c| !c.is_closed())
  }

  /// Runs `work` on the connection; a failure that lost the connection
  /// drops it, so the next call connects again.
  pub fn with<T>(&mut self, work: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
    let outcome = work(self.client()?);
    if outcome.is_err() && !self.is_connected() {
      self.client = None;
    }
    outcome
  }
}

/// What went wrong: the server's own message, else the client's error with
/// its causes.
pub fn describe(err: &postgres::Error) -> String {
  match err.as_db_error() {
    Some(db) => db.message().to_owned(),
    None => {
      let mut text = err.to_string();
      let mut source = std::error::Error::source(err);
      while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
      }
      text
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn urls_are_checked_and_passwords_never_shown() {
    assert_eq!(
      redact("postgres://me:secret@db:5432/x"),
      "postgres://me:***@db:5432/x"
    );
    assert_eq!(redact("postgres://me@db/x"), "postgres://me@db/x");
    for (url, secret) in [
      ("postgres://me:p@ss/w0rd@db:5432/x", "w0rd"),
      ("postgres://me:p@ss@db/x", "p@ss"),
      ("postgres://me:a:b/c@db/x", "b/c"),
      (
        "postgres://db/x?user=me&password=hunter2&sslmode=require",
        "hunter2",
      ),
      ("postgres://db/x?PASSWORD=hunter2", "hunter2"),
      ("host=db user=me password=hunter2 dbname=x", "hunter2"),
      ("host=db password='two words' dbname=x", "two words"),
    ] {
      let shown = redact(url);
      assert!(!shown.contains(secret), "{url} shown as {shown}");
      assert!(shown.contains("***"), "{shown}");
      assert!(shown.contains("db"), "{shown}");
    }
    let defaults = super::super::ConnectOptions::default();
    let parse = |url: &str| parse(url, &defaults);
    let refused = parse("mysql://me:secret@db/x").err().unwrap();
    assert_eq!(refused.code(), "INVALID_ARGUMENT");
    assert!(!refused.to_string().contains("secret"));
    assert_eq!(
      parse("postgres://db:notaport/x").err().unwrap().code(),
      "INVALID_ARGUMENT"
    );
    let config = parse("postgres://me@127.0.0.1:1/x").unwrap().config;
    assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    assert_eq!(config.get_options(), Some("-c statement_timeout=30000"));
    let with_path = parse("postgres://me@h/x?options=-c%20search_path%3Ds&sslmode=verify-full")
      .unwrap()
      .config;
    assert_eq!(
      with_path.get_options(),
      Some("-c search_path=s -c statement_timeout=30000")
    );
    let own = parse("postgres://me@h/x?options=-c%20statement_timeout%3D5")
      .unwrap()
      .config;
    assert_eq!(own.get_options(), Some("-c statement_timeout=5"));
  }
}
