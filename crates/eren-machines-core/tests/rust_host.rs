//! A Rust host using the crate as the original daemon did: only the public
//! API, linked without Node.

use eren_machines_core::{
  claude_bridge, terminal_bridge, AgentStatus, ProcessError, ProcessRegistry, ProcessStatus,
  SessionReader, SessionStore, SessionWriter,
};

#[tokio::test]
async fn a_spawned_task_stops_when_its_session_is_stopped() {
  let registry = ProcessRegistry::new();
  let sender = registry.register("agent-1").unwrap();
  let mut stop = sender.subscribe();
  let task = tokio::spawn(async move { stop.recv().await.is_ok() });
  assert_eq!(registry.status("agent-1"), ProcessStatus::Running);
  assert!(registry.stop("agent-1"));
  assert!(task.await.unwrap());
  assert_eq!(registry.status("agent-1"), ProcessStatus::NotRunning);
  assert!(registry.is_empty());
}

#[test]
fn registering_twice_is_already_running_and_remove_sends_nothing() {
  let registry = ProcessRegistry::new();
  let sender = registry.register("agent-1").unwrap();
  let mut receiver = sender.subscribe();
  drop(sender);
  assert!(matches!(
    registry.register("agent-1"),
    Err(ProcessError::AlreadyRunning(id)) if id == "agent-1"
  ));
  assert_eq!(registry.session_ids(), vec!["agent-1"]);
  assert_eq!(registry.count(), 1);
  assert!(registry.remove("agent-1"));
  assert!(receiver.try_recv().is_err());
  assert!(!registry.stop("agent-1"));
}

#[tokio::test]
async fn the_bridges_store_through_the_session_writer() {
  let store = SessionStore::in_memory().unwrap();
  let id = store.create_session(None).await.unwrap();
  claude_bridge::set_running(&store, &id).await.unwrap();
  claude_bridge::store_event(
    &store,
    &id,
    r#"{"type":"system","session_id":"c-1"}"#.into(),
  )
  .await
  .unwrap();
  assert!(claude_bridge::update_claude_session_id(&store, &id, "c-1")
    .await
    .unwrap());
  terminal_bridge::store_stdout(&store, &id, "built")
    .await
    .unwrap();
  terminal_bridge::store_stderr(&store, &id, "warned")
    .await
    .unwrap();
  terminal_bridge::store_finished(&store, &id, Some(0))
    .await
    .unwrap();
  claude_bridge::set_idle(&store, &id).await.unwrap();

  let session = store.get_session(&id).await.unwrap().unwrap();
  assert_eq!(session.claude_session_id.as_deref(), Some("c-1"));
  assert_eq!(session.agent_status, AgentStatus::Idle);
  let messages = store.messages(&id, 0, None).await.unwrap();
  let sequences: Vec<i64> = messages.iter().map(|m| m.sequence_number).collect();
  assert_eq!(sequences, vec![1, 2, 3, 4]);
  assert_eq!(
    messages[3].content,
    r#"{"exit_code":0,"type":"terminal_finished"}"#
  );
}

#[tokio::test]
async fn a_store_error_keeps_its_code() {
  let store = SessionStore::in_memory().unwrap();
  let err = terminal_bridge::store_stdout(&store, "ghost", "x")
    .await
    .unwrap_err();
  assert_eq!(err.code(), "SESSION_NOT_FOUND");
  store.close().await.unwrap();
  let err = store.create_session(None).await.unwrap_err();
  assert_eq!(err.code(), "STORE_CLOSED");
}
