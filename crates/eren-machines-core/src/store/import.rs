//! Importing the Claude CLI's own history: each `<session id>.jsonl` under
//! `~/.claude/projects/<project>/` becomes a session of that id, its lines
//! its messages in order, stored as the CLI wrote them. A line that is not
//! a JSON object is kept as a `claude_output` message and counted. An
//! import adds to a session only the lines past those it already holds, so
//! a second import of the same files adds nothing, and one after the CLI
//! wrote more adds just that.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::model::Session;
use super::{Pending, SessionReader, SessionStore, SessionWriter};
use crate::content;
use crate::error::{Error, Result};
use crate::session_id::validate_session_id;

/// Lines appended per request.
const CHUNK: usize = 1000;

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
  /// Sessions created or given new messages.
  pub sessions: i64,
  /// Messages stored.
  pub messages: i64,
  /// Lines that were not a JSON object, stored as `claude_output`.
  pub malformed: i64,
}

/// The CLI's projects directory: `~/.claude/projects`.
pub fn default_projects_dir() -> Option<PathBuf> {
  std::env::home_dir().map(|home| home.join(".claude").join("projects"))
}

/// Imports every transcript under `projects_dir` modified at or after
/// `since` (ms since the epoch), on a thread of its own.
pub fn import_claude_sessions(
  store: &SessionStore,
  projects_dir: PathBuf,
  since: Option<i64>,
) -> Pending<ImportSummary> {
  let store = store.clone();
  let (reply, pending) = super::pending::reply_channel();
  let spawned = std::thread::Builder::new()
    .name("eren-claude-import".into())
    .spawn(move || drop(reply.send(import(&store, &projects_dir, since))));
  match spawned {
    Ok(_) => pending,
    Err(e) => Pending::ready(Err(Error::storage(
      format!("cannot start a thread to import: {e}"),
      e,
    ))),
  }
}

fn import(store: &SessionStore, projects_dir: &Path, since: Option<i64>) -> Result<ImportSummary> {
  let projects = std::fs::read_dir(projects_dir).map_err(|e| {
    Error::InvalidArgument(format!(
      "cannot read the Claude projects directory {}: {e}",
      projects_dir.display()
    ))
  })?;
  let mut transcripts = Vec::new();
  for project in projects.flatten() {
    let Ok(files) = std::fs::read_dir(project.path()) else {
      continue;
    };
    for file in files.flatten() {
      let path = file.path();
      if path.extension().is_some_and(|e| e == "jsonl") && modified_since(&path, since) {
        transcripts.push(path);
      }
    }
  }
  transcripts.sort();
  let mut summary = ImportSummary::default();
  for path in transcripts {
    import_file(store, &path, &mut summary)?;
  }
  Ok(summary)
}

fn modified_since(path: &Path, since: Option<i64>) -> bool {
  let Some(since) = since else { return true };
  let modified = std::fs::metadata(path)
    .and_then(|m| m.modified())
    .ok()
    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
    .map_or(i64::MAX, |d| d.as_millis() as i64);
  modified >= since
}

fn import_file(store: &SessionStore, path: &Path, summary: &mut ImportSummary) -> Result<()> {
  let Some(session_id) = path.file_stem().and_then(|s| s.to_str()) else {
    return Ok(());
  };
  // Not a session's transcript (the CLI keeps other files there too).
  if validate_session_id(session_id).is_err() {
    return Ok(());
  }
  let text = std::fs::read(path)
    .map_err(|e| Error::storage(format!("cannot read {}: {e}", path.display()), e))?;
  let text = String::from_utf8_lossy(&text);
  let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
  let session = match store.get_session(session_id).wait()? {
    Some(session) => session,
    None => {
      match store.create_session(Some(session_id)).wait() {
        Ok(_) | Err(Error::SessionExists(_)) => {}
        Err(e) => return Err(e),
      }
      match store.get_session(session_id).wait()? {
        Some(session) => session,
        None => return Ok(()),
      }
    }
  };
  let held = session.last_sequence.max(0) as usize;
  if lines.len() <= held {
    return Ok(());
  }
  let mut malformed = 0;
  let contents: Vec<String> = lines[held..]
    .iter()
    .map(
      |line| match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(_)) => (*line).to_owned(),
        _ => {
          malformed += 1;
          content::claude_output(line)
        }
      },
    )
    .collect();
  let stored = contents.len() as i64;
  if held == 0 {
    describe(store, &session, &lines)?;
  }
  for chunk in contents.chunks(CHUNK) {
    store.append_many(session_id, chunk.to_vec()).wait()?;
  }
  summary.sessions += 1;
  summary.messages += stored;
  summary.malformed += malformed;
  Ok(())
}

/// The session's Claude session id (the file's, so `resume` finds it) and
/// the directory the CLI ran in.
fn describe(store: &SessionStore, session: &Session, lines: &[&str]) -> Result<()> {
  store
    .update_claude_session_id(&session.id, &session.id)
    .wait()?;
  let cwd = lines.iter().find_map(|line| {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("cwd")?.as_str().map(str::to_owned)
  });
  store
    .pin(&session.id, session.incarnation)
    .set_run_info(cwd, "claude".into(), false)
    .wait()
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::test_support::TempDir;

  #[test]
  fn an_import_adds_only_what_is_new_and_keeps_malformed_lines() {
    let dir = TempDir::new("import");
    let project = dir.path().join("-home-me-app");
    std::fs::create_dir_all(&project).unwrap();
    let id = "0b6e3c1e-8f7a-4d2b-9c1d-2e3f4a5b6c7d";
    let file = project.join(format!("{id}.jsonl"));
    let first = r#"{"type":"user","cwd":"/home/me/app","sessionId":"x","message":{"role":"user","content":"Add a login page"}}"#;
    std::fs::write(&file, format!("{first}\nnot json\n")).unwrap();
    std::fs::write(project.join("notes.txt"), "ignored").unwrap();
    let store = SessionStore::in_memory().unwrap();
    let summary = import_claude_sessions(&store, dir.path().into(), None)
      .wait()
      .unwrap();
    assert_eq!(
      summary,
      ImportSummary {
        sessions: 1,
        messages: 2,
        malformed: 1
      }
    );
    let session = store.get_session(id).wait().unwrap().unwrap();
    assert_eq!(session.title.as_deref(), Some("Add a login page"));
    assert_eq!(session.cwd.as_deref(), Some("/home/me/app"));
    assert_eq!(session.claude_session_id.as_deref(), Some(id));
    let again = import_claude_sessions(&store, dir.path().into(), None)
      .wait()
      .unwrap();
    assert_eq!(again, ImportSummary::default());
    std::fs::write(
      &file,
      format!("{first}\nnot json\n{{\"type\":\"assistant\"}}\n"),
    )
    .unwrap();
    let more = import_claude_sessions(&store, dir.path().into(), None)
      .wait()
      .unwrap();
    assert_eq!(
      more,
      ImportSummary {
        sessions: 1,
        messages: 1,
        malformed: 0
      }
    );
    let stored = store.messages(id, 0, None).wait().unwrap();
    assert_eq!(stored[0].content, first);
    assert!(stored[1].content.contains("claude_output"));
    let later = import_claude_sessions(&store, dir.path().into(), Some(i64::MAX))
      .wait()
      .unwrap();
    assert_eq!(later, ImportSummary::default());
    let missing = import_claude_sessions(&store, dir.path().join("nope"), None).wait();
    assert_eq!(missing.unwrap_err().code(), "INVALID_ARGUMENT");
  }
}
