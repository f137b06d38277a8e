//! Listing sessions: filters, order and pages with a stable cursor, as one
//! SQL text for either backend. Keyset paging on `(order column, key)`, so
//! a page costs the same at the 1,000th page as at the first, and a
//! session created meanwhile never shifts what the next page holds.

use super::model::AgentStatus;
use crate::error::{Error, Result};

/// The most sessions in one page.
pub const MAX_PAGE: i64 = 10_000;
pub const DEFAULT_PAGE: i64 = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderBy {
  /// Oldest first: the order sessions were created in.
  #[default]
  CreatedAt,
  /// Most recently changed first.
  UpdatedAt,
}

impl OrderBy {
  pub fn parse(text: &str) -> Result<Self> {
    match text {
      "createdAt" => Ok(OrderBy::CreatedAt),
      "updatedAt" => Ok(OrderBy::UpdatedAt),
      other => Err(Error::InvalidArgument(format!(
        "orderBy must be 'createdAt' or 'updatedAt', got '{other}'"
      ))),
    }
  }

  fn column(self) -> &'static str {
    match self {
      OrderBy::CreatedAt => "created_at",
      OrderBy::UpdatedAt => "updated_at",
    }
  }

  fn tag(self) -> &'static str {
    match self {
      OrderBy::CreatedAt => "c",
      OrderBy::UpdatedAt => "u",
    }
  }

  /// Comparison and direction of the keyset.
  fn direction(self) -> (&'static str, &'static str) {
    match self {
      OrderBy::CreatedAt => (">", "ASC"),
      OrderBy::UpdatedAt => ("<", "DESC"),
    }
  }
}

/// Which sessions, in which order, how many.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
  pub status: Option<AgentStatus>,
  pub tag: Option<String>,
  pub archived: Option<bool>,
  pub cwd: Option<String>,
  /// Case-insensitive, in the title, the command or the id.
  pub query: Option<String>,
  pub order_by: OrderBy,
  pub limit: Option<i64>,
  pub cursor: Option<String>,
}

/// Where a page ended: the order value and key of its last session, as
/// `<order>.<value>.<key>`.
pub struct Cursor;

impl Cursor {
  pub fn after(order_by: OrderBy, value: i64, key: i64) -> String {
    format!("{}.{value}.{key}", order_by.tag())
  }

  fn parse(text: &str, order_by: OrderBy) -> Result<(i64, i64)> {
    let bad = || {
      Error::InvalidArgument(format!(
        "'{}' is not a cursor of this listing",
        text.escape_debug()
      ))
    };
    let mut parts = text.split('.');
    let (Some(tag), Some(value), Some(key), None) =
      (parts.next(), parts.next(), parts.next(), parts.next())
    else {
      return Err(bad());
    };
    if tag != order_by.tag() {
      return Err(Error::InvalidArgument(
        "the cursor comes from a listing in another order".into(),
      ));
    }
    Ok((
      value.parse().map_err(|_| bad())?,
      key.parse().map_err(|_| bad())?,
    ))
  }
}

/// A bound value of a listing's SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
  Text(String),
  Int(i64),
  Bool(bool),
}

/// The SQL a backend runs for a listing.
pub struct ListSql {
  /// `WHERE … ORDER BY … LIMIT …`, placeholders numbered from 1.
  pub tail: String,
  pub params: Vec<Param>,
  pub limit: Option<i64>,
}

/// How a backend spells what differs.
pub struct Dialect {
  /// `?` or `$`.
  pub placeholder: char,
  /// A condition that the session's tags hold the placeholder `{}`.
  pub has_tag: &'static str,
  /// Where a text is found in another, 0 if nowhere.
  pub find: &'static str,
}

pub const SQLITE: Dialect = Dialect {
  placeholder: '?',
  has_tag: "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = {})",
  find: "instr",
};
pub const POSTGRES: Dialect = Dialect {
  placeholder: '$',
  has_tag: "tags::jsonb ? {}",
  find: "strpos",
};

impl ListOptions {
  /// The page size: `limit`, or `default` without one.
  fn page(&self, default: Option<i64>) -> Result<Option<i64>> {
    match self.limit {
      None => Ok(default),
      Some(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(Some(limit)),
      Some(limit) => Err(Error::InvalidArgument(format!(
        "limit must be between 1 and {MAX_PAGE}, got {limit}"
      ))),
    }
  }

  /// The listing as SQL for `dialect`. `paged` gives a page size even
  /// without `limit`.
  pub fn sql(&self, dialect: &Dialect, paged: bool) -> Result<ListSql> {
    let limit = self.page(paged.then_some(DEFAULT_PAGE))?;
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    let next = |param: Param, params: &mut Vec<Param>| {
      params.push(param);
      format!("{}{}", dialect.placeholder, params.len())
    };
    if let Some(status) = self.status {
      let p = next(Param::Text(status.as_str().into()), &mut params);
      conditions.push(format!("agent_status = {p}"));
    }
    if let Some(tag) = &self.tag {
      let p = next(Param::Text(tag.clone()), &mut params);
      conditions.push(dialect.has_tag.replace("{}", &p));
    }
    if let Some(archived) = self.archived {
      let p = next(Param::Bool(archived), &mut params);
      conditions.push(format!("archived = {p}"));
    }
    if let Some(cwd) = &self.cwd {
      let p = next(Param::Text(cwd.clone()), &mut params);
      conditions.push(format!("cwd = {p}"));
    }
    if let Some(query) = &self.query {
      let p = next(Param::Text(query.to_lowercase()), &mut params);
      let find = dialect.find;
      conditions.push(format!(
        "({find}(lower(coalesce(title, auto_title, '')), {p}) > 0 \
          OR {find}(lower(coalesce(command, '')), {p}) > 0 \
          OR {find}(lower(session_id), {p}) > 0)"
      ));
    }
    let column = self.order_by.column();
    let (compare, direction) = self.order_by.direction();
    if let Some(cursor) = &self.cursor {
      let (value, key) = Cursor::parse(cursor, self.order_by)?;
      let (v, k) = (
        next(Param::Int(value), &mut params),
        next(Param::Int(key), &mut params),
      );
      conditions.push(format!("({column}, key) {compare} ({v}, {k})"));
    }
    for param in &params {
      if let Param::Text(text) = param {
        if text.contains('\0') {
          return Err(Error::InvalidArgument(
            "a filter must not contain NUL".into(),
          ));
        }
      }
    }
    let mut tail = String::new();
    if !conditions.is_empty() {
      tail.push_str(" WHERE ");
      tail.push_str(&conditions.join(" AND "));
    }
    tail.push_str(&format!(" ORDER BY {column} {direction}, key {direction}"));
    if let Some(limit) = limit {
      tail.push_str(&format!(" LIMIT {limit}"));
    }
    Ok(ListSql {
      tail,
      params,
      limit,
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn filters_become_conditions_in_either_dialect() {
    let options = ListOptions {
      status: Some(AgentStatus::Idle),
      tag: Some("x".into()),
      order_by: OrderBy::UpdatedAt,
      cursor: Some(Cursor::after(OrderBy::UpdatedAt, 5, 7)),
      ..ListOptions::default()
    };
    let sql = options.sql(&POSTGRES, true).unwrap();
    assert!(sql.tail.contains("tags::jsonb ? $2"));
    assert!(sql.tail.contains("(updated_at, key) < ($3, $4)"));
    assert!(sql
      .tail
      .ends_with("ORDER BY updated_at DESC, key DESC LIMIT 100"));
    assert_eq!(sql.params[2], Param::Int(5));
  }

  #[test]
  fn bad_cursors_and_limits_are_refused() {
    let with = |cursor: &str, order_by| ListOptions {
      cursor: Some(cursor.into()),
      order_by,
      ..ListOptions::default()
    };
    for cursor in ["", "c.1", "c.x.2", "c.1.2.3", "z.1.2"] {
      let error = with(cursor, OrderBy::CreatedAt)
        .sql(&SQLITE, true)
        .err()
        .unwrap();
      assert_eq!(error.code(), "INVALID_ARGUMENT", "{cursor}");
    }
    let other_order = Cursor::after(OrderBy::CreatedAt, 1, 2);
    assert!(with(&other_order, OrderBy::UpdatedAt)
      .sql(&SQLITE, true)
      .is_err());
    let too_many = ListOptions {
      limit: Some(0),
      ..ListOptions::default()
    };
    assert!(too_many.sql(&SQLITE, false).is_err());
  }
}
