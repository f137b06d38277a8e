//! A Claude run's MCP server configurations, in a private file that lives
//! as long as the run. They often hold tokens and keys, which argv (that
//! any user can read with `ps`) must not; the file is made readable by
//! this user alone, and removed when the run's handler goes.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The file given to the CLI as `--mcp-config`; removed on drop.
#[derive(Debug)]
pub struct McpConfig {
  path: PathBuf,
}

impl McpConfig {
  /// Writes `{ "mcpServers": servers }` to a new private file in the
  /// system's temporary directory.
  pub fn write(servers: &Map<String, Value>) -> io::Result<McpConfig> {
    Self::write_in(&std::env::temp_dir(), servers)
  }

  fn write_in(dir: &Path, servers: &Map<String, Value>) -> io::Result<McpConfig> {
    let path = dir.join(format!("eren-mcp-{}.json", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    // Owned from here, so a failed write leaves no file behind.
    let config = McpConfig { path };
    file.write_all(json!({ "mcpServers": servers }).to_string().as_bytes())?;
    file.sync_all()?;
    Ok(config)
  }

  pub fn path(&self) -> &Path {
    &self.path
  }
}

impl Drop for McpConfig {
  fn drop(&mut self) {
    let _ = std::fs::remove_file(&self.path);
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn the_file_holds_the_servers_is_private_and_goes_with_the_config() {
    let dir = crate::test_support::TempDir::new("mcp-config");
    let mut servers = Map::new();
    servers.insert(
      "files".into(),
      json!({ "command": "mcp-files", "env": { "TOKEN": "secret" } }),
    );
    let config = McpConfig::write_in(dir.path(), &servers).unwrap();
    let path = config.path().to_owned();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written, json!({ "mcpServers": servers }));
    #[cfg(unix)]
    {
      use std::os::unix::fs::PermissionsExt;
      let mode = std::fs::metadata(&path).unwrap().permissions().mode();
      assert_eq!(mode & 0o777, 0o600);
    }
    drop(config);
    assert!(!path.exists());
  }
}
