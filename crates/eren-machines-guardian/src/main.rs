//! The guardian executable: see the crate's documentation.

#[cfg(target_os = "linux")]
fn main() {
  eren_machines_guardian::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
  eprintln!("the guardian is only needed on Linux");
  std::process::exit(125);
}
