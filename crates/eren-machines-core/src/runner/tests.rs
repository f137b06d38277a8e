use std::sync::{mpsc, Arc, Mutex};

use super::lines::Line;
use super::*;
use crate::store::{SessionReader, SessionWriter};
use serde_json::Value;

fn setup(session_id: &str) -> (SessionStore, Arc<ProcessRegistry>) {
  (
    crate::test_support::store_with_session(session_id),
    Arc::new(ProcessRegistry::new()),
  )
}

fn sh(script: &str) -> Program {
  Program {
    command: "sh".into(),
    args: vec!["-c".into(), script.into()],
    ..Program::default()
  }
}

fn contents(store: &SessionStore, session_id: &str) -> Vec<Value> {
  store
    .messages(session_id, 0, None)
    .wait()
    .unwrap()
    .iter()
    .map(|m| serde_json::from_str(&m.content).unwrap())
    .collect()
}

fn run(store: &SessionStore, registry: &Arc<ProcessRegistry>, id: &str, program: Program) -> Run {
  spawn_terminal(store, registry, id, program, DEFAULT_KILL_GRACE, None)
    .wait()
    .unwrap()
}

#[test]
fn output_lines_then_the_exit_are_stored_and_the_registration_released() {
  let (store, registry) = setup("t");
  let seen = Arc::new(Mutex::new(Vec::new()));
  let sink_seen = seen.clone();
  let sink: MessageSink = Box::new(move |m| sink_seen.lock().unwrap().push(m.sequence_number));
  let run = spawn_terminal(
    &store,
    &registry,
    "t",
    sh("echo out; echo err >&2; printf 'no newline'; exit 3"),
    DEFAULT_KILL_GRACE,
    Some(sink.into()),
  )
  .wait()
  .unwrap();
  assert!(run.pid > 0);
  let result = run.exited.wait().unwrap();
  // The duration is the clock's; everything else is known.
  assert_eq!(
    RunResult {
      duration_ms: 0,
      ..result
    },
    RunResult {
      exit_code: Some(3),
      signal: None,
      stopped: false,
      reason: None,
      timed_out: false,
      duration_ms: 0,
    }
  );
  let stored = contents(&store, "t");
  let last = stored.last().unwrap();
  assert_eq!(
    *last,
    serde_json::json!({"type": "terminal_finished", "exit_code": 3, "signal": null, "stopped": false})
  );
  let lines: Vec<(String, String)> = stored[..stored.len() - 1]
    .iter()
    .map(|v| {
      (
        v["stream"].as_str().unwrap().into(),
        v["content"].as_str().unwrap().into(),
      )
    })
    .collect();
  assert!(lines.contains(&("stdout".into(), "out".into())));
  assert!(lines.contains(&("stderr".into(), "err".into())));
  assert!(lines.contains(&("stdout".into(), "no newline".into())));
  assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3, 4]);
  assert!(!registry.is_running("t"));
}

#[test]
fn a_missing_command_is_spawn_failed_and_leaves_no_registration() {
  let (store, registry) = setup("t");
  let program = Program {
    command: "/definitely/not/here".into(),
    ..Program::default()
  };
  let err = spawn_terminal(&store, &registry, "t", program, DEFAULT_KILL_GRACE, None)
    .wait()
    .err()
    .unwrap();
  assert_eq!(err.code(), "SPAWN_FAILED");
  assert!(err.to_string().contains("'t'"));
  // The OS's own error stays reachable, not only its text.
  let cause = std::error::Error::source(&err).expect("the OS error as the source");
  let cause = cause.downcast_ref::<std::io::Error>().unwrap();
  assert_eq!(cause.kind(), std::io::ErrorKind::NotFound);
  assert!(registry.is_empty());
}

#[test]
fn an_already_running_session_spawns_nothing() {
  let (store, registry) = setup("t");
  registry.register("t").unwrap();
  let err = spawn_terminal(
    &store,
    &registry,
    "t",
    sh("echo hi"),
    DEFAULT_KILL_GRACE,
    None,
  )
  .wait()
  .err()
  .unwrap();
  assert_eq!(err.code(), "ALREADY_RUNNING");
  assert_eq!(store.last_sequence("t"), 0);
}

#[test]
fn an_unknown_or_closed_session_is_refused() {
  let (store, registry) = setup("t");
  let unknown = spawn_terminal(&store, &registry, "x", sh("true"), DEFAULT_KILL_GRACE, None)
    .wait()
    .err()
    .unwrap();
  assert_eq!(unknown.code(), "SESSION_NOT_FOUND");
  store.close_session("t").wait().unwrap();
  let closed = spawn_terminal(&store, &registry, "t", sh("true"), DEFAULT_KILL_GRACE, None)
    .wait()
    .err()
    .unwrap();
  assert_eq!(closed.code(), "SESSION_CLOSED");
  assert!(registry.is_empty());
}

#[test]
fn stop_terminates_the_group() {
  let (store, registry) = setup("t");
  let run = run(&store, &registry, "t", sh("echo ready; exec sleep 30"));
  assert!(registry.stop("t"));
  let result = run.exited.wait().unwrap();
  assert_eq!(result.signal.as_deref(), Some("SIGTERM"));
  assert!(result.stopped);
  assert_eq!(contents(&store, "t").last().unwrap()["stopped"], true);
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
  let (store, registry) = setup("t");
  let started = Arc::new(Mutex::new(None::<mpsc::Sender<()>>));
  let (ready_tx, ready_rx) = mpsc::channel();
  *started.lock().unwrap() = Some(ready_tx);
  let sink: MessageSink = Box::new(move |_| {
    if let Some(tx) = started.lock().unwrap().take() {
      let _ = tx.send(());
    }
  });
  // The trap is set before "ready" is printed, so the stop finds it in place.
  let program = sh("trap '' TERM; echo ready; while :; do sleep 1; done");
  let run = spawn_terminal(
    &store,
    &registry,
    "t",
    program,
    Duration::from_millis(300),
    Some(sink.into()),
  )
  .wait()
  .unwrap();
  ready_rx.recv().unwrap();
  registry.stop("t");
  let result = run.exited.wait().unwrap();
  assert_eq!(result.signal.as_deref(), Some("SIGKILL"));
  assert!(result.stopped);
}

/// A run that prints "ready", then a line every 20 ms until it is stopped.
fn ticking(store: &SessionStore, registry: &Arc<ProcessRegistry>, id: &str) -> Run {
  let (ready_tx, ready_rx) = mpsc::channel();
  let ready = Mutex::new(Some(ready_tx));
  let sink: MessageSink = Box::new(move |_| {
    if let Some(tx) = ready.lock().unwrap().take() {
      let _ = tx.send(());
    }
  });
  let run = spawn_terminal(
    store,
    registry,
    id,
    sh("echo ready; while :; do echo tick; sleep 0.02; done"),
    Duration::from_millis(500),
    Some(sink.into()),
  )
  .wait()
  .unwrap();
  ready_rx.recv().unwrap();
  run
}

#[test]
fn deleting_the_session_stops_its_run_which_never_writes_into_a_new_one_of_the_same_id() {
  let (store, registry) = setup("t");
  let run = ticking(&store, &registry, "t");
  assert!(store.delete_session("t").wait().unwrap());
  store.create_session(Some("t")).wait().unwrap();
  let result = run.exited.wait().unwrap();
  assert!(result.stopped);
  assert!(store.messages("t", 0, None).wait().unwrap().is_empty());
  assert!(registry.is_empty());
}

#[test]
fn closing_the_session_stops_its_run() {
  let (store, registry) = setup("t");
  let run = ticking(&store, &registry, "t");
  store.close_session("t").wait().unwrap();
  assert!(run.exited.wait().unwrap().stopped);
  assert!(registry.is_empty());
}

#[test]
fn closing_the_store_stops_its_runs() {
  let (store, registry) = setup("t");
  store.create_session(Some("u")).wait().unwrap();
  let first = ticking(&store, &registry, "t");
  let second = ticking(&store, &registry, "u");
  store.close().wait().unwrap();
  assert!(first.exited.wait().unwrap().stopped);
  assert!(second.exited.wait().unwrap().stopped);
  assert!(registry.is_empty());
}

#[test]
fn a_run_cannot_start_on_a_store_that_is_closed() {
  let (store, registry) = setup("t");
  store.close().wait().unwrap();
  let err = spawn_terminal(&store, &registry, "t", sh("true"), DEFAULT_KILL_GRACE, None)
    .wait()
    .err()
    .unwrap();
  assert_eq!(err.code(), "STORE_CLOSED");
  assert!(registry.is_empty());
}

#[test]
fn a_run_waiting_for_room_in_its_backlog_holds_up_no_other_run() {
  let (store, registry) = setup("slow");
  store.create_session(Some("quick")).wait().unwrap();
  // Room for one message, never given back until the consumer goes away.
  let backlog = Arc::new(tokio::sync::Semaphore::new(1));
  let delivered = Arc::new(Mutex::new(0));
  let counted = delivered.clone();
  let sink = RunSink {
    deliver: Box::new(move |_| *counted.lock().unwrap() += 1),
    backlog: Some(backlog.clone()),
  };
  let slow = spawn_terminal(
    &store,
    &registry,
    "slow",
    sh("seq 5000"),
    DEFAULT_KILL_GRACE,
    Some(sink),
  )
  .wait()
  .unwrap();
  let quick = run(&store, &registry, "quick", sh("echo quick"));
  assert_eq!(quick.exited.wait().unwrap().exit_code, Some(0));
  assert_eq!(contents(&store, "quick")[0]["content"], "quick");
  assert!(*delivered.lock().unwrap() <= 1);
  backlog.close();
  assert_eq!(slow.exited.wait().unwrap().exit_code, Some(0));
  // Everything was stored all the same, the exit included.
  assert_eq!(contents(&store, "slow").len(), 5001);
}

/// A handler with a bug: it panics on the first line.
struct PanicsOnOutput;

impl OutputHandler for PanicsOnOutput {
  fn line(&mut self, _: Stream, _: Line) -> Vec<Op> {
    panic!("a handler bug")
  }

  fn finished(&mut self, _: &RunResult) -> Vec<Op> {
    Vec::new()
  }
}

#[test]
fn a_run_whose_handler_panics_is_stopped_released_and_answered_internal() {
  let (store, registry) = setup("t");
  let program = sh("echo hi; exec sleep 30");
  let handler = Box::new(PanicsOnOutput);
  let started = start(
    &store,
    &registry,
    "t",
    program,
    Supervision::default(),
    handler,
  )
  .wait()
  .unwrap();
  assert_eq!(started.exited.wait().unwrap_err().code(), "INTERNAL");
  assert!(registry.is_empty());
  // The program is ended, not left running with nobody reading it. It may
  // be another process's child (the guardian's), so no event tells of its
  // end: look until it is gone (bounded).
  let deadline = std::time::Instant::now() + Duration::from_secs(10);
  while crate::sys::host::is_running(started.pid) {
    assert!(
      std::time::Instant::now() < deadline,
      "the program still runs"
    );
    std::thread::sleep(Duration::from_millis(10));
  }
  let again = run(&store, &registry, "t", sh("echo again"));
  assert_eq!(again.exited.wait().unwrap().exit_code, Some(0));
}

#[test]
fn lines_written_apart_are_stored_in_the_order_written_across_stdout_and_stderr() {
  let (store, registry) = setup("t");
  // Apart by more than a scheduling hiccup of a loaded 2-core machine.
  let script =
    "echo out1; sleep 0.02; echo err1 >&2; sleep 0.02; echo out2; sleep 0.02; echo err2 >&2";
  for round in 0..20 {
    store.delete_session("t").wait().unwrap();
    store.create_session(Some("t")).wait().unwrap();
    let run = run(&store, &registry, "t", sh(script));
    run.exited.wait().unwrap();
    let order: Vec<String> = contents(&store, "t")
      .iter()
      .filter_map(|v| v["content"].as_str().map(str::to_owned))
      .collect();
    assert_eq!(order, ["out1", "err1", "out2", "err2"], "round {round}");
  }
}

fn piped(script: &str) -> Program {
  Program {
    stdin: true,
    ..sh(script)
  }
}

#[test]
fn a_run_whose_registration_is_removed_goes_on_and_other_runs_still_stop() {
  let store = crate::test_support::store_with_session("kept");
  store.create_session(Some("other")).wait().unwrap();
  let registry = Arc::new(ProcessRegistry::new());
  let kept = run(&store, &registry, "kept", piped("cat; exit 4"));
  // remove() releases the registration without a stop: the run goes on,
  // and its exit is still waited for on the reactor.
  assert!(registry.remove("kept"));
  let other = run(&store, &registry, "other", sh("exec sleep 30"));
  assert!(registry.stop("other"));
  assert!(other.exited.wait().unwrap().stopped);
  kept.input.send(HostInput::End).unwrap();
  let result = kept.exited.wait().unwrap();
  assert_eq!((result.exit_code, result.stopped), (Some(4), false));
}

#[test]
fn stdin_pipe_takes_writes_in_order_and_end_closes_it_and_input_is_never_stored() {
  let (store, registry) = setup("t");
  let run = run(
    &store,
    &registry,
    "t",
    piped("read a; echo \"got $a\"; cat"),
  );
  for piece in ["secret-", "password\n", "more\n"] {
    run
      .input
      .request(|reply| HostInput::Write {
        data: piece.as_bytes().to_vec(),
        reply,
      })
      .wait()
      .unwrap();
  }
  run.input.send(HostInput::End).unwrap();
  assert_eq!(run.exited.wait().unwrap().exit_code, Some(0));
  let lines: Vec<String> = contents(&store, "t")
    .iter()
    .filter_map(|v| v["content"].as_str().map(str::to_owned))
    .collect();
  assert_eq!(lines, ["got secret-password", "more"]);
  let stored: String = store
    .messages("t", 0, None)
    .wait()
    .unwrap()
    .iter()
    .map(|m| m.content.clone())
    .collect();
  assert_eq!(
    stored.matches("secret-password").count(),
    1,
    "only the child's own echo"
  );
}

#[test]
fn writes_without_stdin_are_invalid_and_after_the_run_not_running() {
  let (store, registry) = setup("t");
  let run = run(&store, &registry, "t", sh("exec sleep 30"));
  let input = run.input.clone();
  let write = || {
    input
      .request(|reply| HostInput::Write {
        data: b"x\n".to_vec(),
        reply,
      })
      .wait()
  };
  assert_eq!(write().unwrap_err().code(), "INVALID_ARGUMENT");
  registry.stop("t");
  run.exited.wait().unwrap();
  assert_eq!(write().unwrap_err().code(), "NOT_RUNNING");
}

fn in_pty(script: &str, cols: u16, rows: u16) -> Program {
  Program {
    pty: Some(super::PtySize { cols, rows }),
    ..sh(script)
  }
}

/// The run's terminal output so far, its chunks concatenated.
fn stored_screen(store: &SessionStore, id: &str) -> String {
  contents(store, id)
    .iter()
    .filter(|m| m["type"] == "terminal_output")
    .inspect(|m| assert_eq!(m["stream"], "pty"))
    .map(|m| m["content"].as_str().unwrap().to_owned())
    .collect()
}

/// What a run's onMessage has shown so far, to wait on.
#[derive(Clone, Default)]
struct Screen(Arc<(Mutex<String>, std::sync::Condvar)>);

impl Screen {
  fn sink(&self) -> crate::store::MessageSink {
    let screen = self.clone();
    Box::new(move |m| {
      let value: Value = serde_json::from_str(&m.content).unwrap();
      if let Some(chunk) = value["content"].as_str() {
        let (text, changed) = &*screen.0;
        text.lock().unwrap().push_str(chunk);
        changed.notify_all();
      }
    })
  }

  fn wait_for(&self, wanted: &str) {
    let (text, changed) = &*self.0;
    let shown = changed
      .wait_timeout_while(text.lock().unwrap(), Duration::from_secs(20), |t| {
        !t.contains(wanted)
      })
      .unwrap();
    assert!(shown.0.contains(wanted), "{:?}", *shown.0);
  }
}

fn watched(
  store: &SessionStore,
  registry: &Arc<ProcessRegistry>,
  id: &str,
  program: Program,
) -> (Run, Screen) {
  let screen = Screen::default();
  let run = spawn_terminal(
    store,
    registry,
    id,
    program,
    DEFAULT_KILL_GRACE,
    Some(screen.sink().into()),
  )
  .wait()
  .unwrap();
  (run, screen)
}

#[test]
fn a_pty_run_is_a_terminal_session_leader_with_term_and_size() {
  let (store, registry) = setup("t");
  let script = "test -t 0 && test -t 1 && echo tty; echo \"$TERM\"; stty size; \
                ps -o sid= -p $$ | tr -d ' '; echo $$";
  let run = run(&store, &registry, "t", in_pty(script, 100, 30));
  let result = run.exited.wait().unwrap();
  assert_eq!(result.exit_code, Some(0));
  let shown = stored_screen(&store, "t");
  let lines: Vec<&str> = shown.split("\r\n").collect();
  assert_eq!(
    &lines[..3],
    ["tty", "xterm-256color", "30 100"],
    "{shown:?}"
  );
  assert_eq!(lines[3], lines[4], "the program leads its own session");
}

#[test]
fn resize_sets_the_size_and_end_types_eof() {
  let (store, registry) = setup("t");
  let script = "echo ready; cat; stty size";
  let (run, screen) = watched(&store, &registry, "t", in_pty(script, 80, 24));
  screen.wait_for("ready");
  run
    .input
    .send(HostInput::Resize(super::PtySize {
      cols: 132,
      rows: 43,
    }))
    .unwrap();
  let written = run.input.request(|reply| HostInput::Write {
    data: b"typed\n".to_vec(),
    reply,
  });
  written.wait().unwrap();
  run.input.send(HostInput::End).unwrap();
  let result = run.exited.wait().unwrap();
  assert_eq!(result.exit_code, Some(0), "cat ended at EOF");
  let shown = stored_screen(&store, "t");
  assert!(shown.contains("43 132"), "{shown:?}");
  assert!(shown.contains("typed"), "{shown:?}");
}

#[test]
fn input_is_never_stored_and_a_stop_hangs_up() {
  let (store, registry) = setup("t");
  let script = "trap 'echo hangup' HUP; trap 'echo term; exit 7' TERM; stty -echo; \
                echo ready; read secret; echo got; while :; do sleep 1; done";
  let (run, screen) = watched(&store, &registry, "t", in_pty(script, 80, 24));
  screen.wait_for("ready");
  run
    .input
    .request(|reply| HostInput::Write {
      data: b"hunter2\n".to_vec(),
      reply,
    })
    .wait()
    .unwrap();
  // `got` shows the secret was read; then stop.
  screen.wait_for("got");
  assert!(registry.stop("t"));
  let result = run.exited.wait().unwrap();
  assert!(result.stopped);
  assert_eq!(result.exit_code, Some(7), "SIGHUP came first");
  let stored: String = contents(&store, "t")
    .iter()
    .map(|m| m.to_string())
    .collect();
  assert!(!stored.contains("hunter2"));
  assert!(stored_screen(&store, "t").contains("hangup"));
}

#[test]
fn a_quiet_run_stops_when_another_host_deletes_or_closes_its_session_on_postgresql() {
  let url = crate::test_support::postgres_schema_url();
  for end in ["delete", "close"] {
    let here = SessionStore::connect_blocking(&url).unwrap();
    // Another host: its own store, with its own connections.
    let there = SessionStore::connect_blocking(&url).unwrap();
    let session_id = format!("quiet-{end}");
    here.create_session(Some(&session_id)).wait().unwrap();
    let registry = Arc::new(ProcessRegistry::new());
    let run = spawn_terminal(
      &here,
      &registry,
      &session_id,
      sh("exec sleep 300"),
      DEFAULT_KILL_GRACE,
      None,
    )
    .wait()
    .unwrap();
    match end {
      "delete" => assert!(there.delete_session(&session_id).wait().unwrap()),
      _ => there.close_session(&session_id).wait().unwrap(),
    }
    // Nothing it writes would fail: the owning host has to look.
    let result = run.exited.wait().unwrap();
    assert!(result.stopped, "{end}: {result:?}");
    assert!(registry.is_empty());
  }
}

#[test]
fn a_stop_request_stops_the_run_wherever_it_is_asked_and_resolves_once_its_end_is_stored() {
  let dir = crate::test_support::TempDir::new("stop-request");
  let path = dir.path().join("shared.db");
  let owner = SessionStore::open(&path).unwrap();
  let registry = Arc::new(ProcessRegistry::new());
  owner.create_session(Some("s")).wait().unwrap();
  // Nothing runs yet: answered at once.
  owner.request_stop("s").wait().unwrap();
  let run = run(&owner, &registry, "s", sh("echo up; sleep 300"));
  // Another store on the file (another process, say) asks.
  let other = SessionStore::open(&path).unwrap();
  other.request_stop("s").wait().unwrap();
  let result = run.exited.wait().unwrap();
  assert!(result.stopped, "{result:?}");
  let ended = contents(&other, "s");
  assert_eq!(ended.last().unwrap()["type"], "terminal_finished");
  assert_eq!(
    other.get_session("s").wait().unwrap().unwrap().run_host,
    None
  );
  assert!(registry.is_empty());
  // The same store that runs it.
  let again = spawn_terminal(
    &owner,
    &registry,
    "s",
    sh("sleep 300"),
    DEFAULT_KILL_GRACE,
    None,
  )
  .wait()
  .unwrap();
  owner.request_stop("s").wait().unwrap();
  assert!(again.exited.wait().unwrap().stopped);
  assert_eq!(
    owner.request_stop("ghost").wait().unwrap_err().code(),
    "SESSION_NOT_FOUND"
  );
}

#[test]
fn a_stop_request_on_postgresql_reaches_the_host_that_runs_the_session() {
  let url = crate::test_support::postgres_schema_url();
  let owner = SessionStore::connect_blocking(&url).unwrap();
  let registry = Arc::new(ProcessRegistry::new());
  owner.create_session(Some("s")).wait().unwrap();
  let run = run(&owner, &registry, "s", sh("sleep 300"));
  let elsewhere = SessionStore::connect_blocking(&url).unwrap();
  elsewhere.request_stop("s").wait().unwrap();
  assert!(run.exited.wait().unwrap().stopped);
  let session = elsewhere.get_session("s").wait().unwrap().unwrap();
  assert_eq!((session.run_host, session.stop_requested), (None, false));
}
