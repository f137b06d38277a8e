//! The guardian executable: see the crate's documentation.

#[cfg(any(target_os = "linux", target_os = "macos"))]
fn main() {
  eren_machines_guardian::main()
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn main() {
  eprintln!("the guardian is only needed on Linux and macOS");
  std::process::exit(125);
}
