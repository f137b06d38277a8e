//! One connection that comes back: after the server went away, the next use
//! connects again.

use std::time::Duration;

use postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};

/// How long a connection attempt may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses a `postgres://` URL (or a `key=value` connection string).
pub fn parse(url: &str) -> Result<Config> {
  if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
    return Err(Error::InvalidArgument(format!(
      "a PostgreSQL URL starts with postgres:// or postgresql://, got '{}'",
      redact(url)
    )));
  }
  let mut config: Config = url.parse().map_err(|e| {
    Error::InvalidArgument(format!("not a PostgreSQL URL ('{}'): {e}", redact(url)))
  })?;
  if config.get_connect_timeout().is_none() {
    config.connect_timeout(CONNECT_TIMEOUT);
  }
  if config.get_application_name().is_none() {
    config.application_name("eren-machines");
  }
  Ok(config)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
  let Some(scheme_end) = url.find("://") else {
    return url.to_owned();
  };
  let rest = &url[scheme_end + 3..];
  let authority_end = rest.find('/').unwrap_or(rest.len());
  match rest[..authority_end].rfind('@') {
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

pub struct Link {
  config: Config,
  client: Option<Client>,
}

impl Link {
  /// Connects now: an unreachable server fails here.
  pub fn connect(config: Config) -> Result<Self> {
    let mut link = Link::lazy(config);
    link.client()?;
    Ok(link)
  }

  /// Connects on first use.
  pub fn lazy(config: Config) -> Self {
    Link {
      config,
      client: None,
    }
  }

  /// The connection, made again if the last one was lost.
  pub fn client(&mut self) -> Result<&mut Client> {
    if self.client.as_ref().is_some_and(Client::is_closed) {
      self.client = None;
    }
    match &mut self.client {
      Some(client) => Ok(client),
      slot => {
        let client = self
          .config
          .connect(NoTls)
          .map_err(|e| Error::Armin(format!("cannot connect to PostgreSQL: {}", describe(&e))))?;
        Ok(slot.insert(client))
      }
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

fn describe(err: &postgres::Error) -> String {
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
    let refused = parse("mysql://me:secret@db/x").unwrap_err();
    assert_eq!(refused.code(), "INVALID_ARGUMENT");
    assert!(!refused.to_string().contains("secret"));
    assert_eq!(
      parse("postgres://db:notaport/x").unwrap_err().code(),
      "INVALID_ARGUMENT"
    );
    let config = parse("postgres://me@127.0.0.1:1/x").unwrap();
    assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
  }
}
