//! weftd's admin API: a local Unix socket, one JSON request line in, one
//! JSON response line out. `weftctl` is its client; the Kubernetes probes
//! use its `health` answer.
//!
//! Requests: `{"cmd": "status" | "routes" | "fdb" | "endpoints" | "stats" |
//! "health"}` and `{"cmd": "trace", "src": IP, "dst": IP}`. Responses are
//! `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. A request line is
//! at most 4 KiB; anything malformed gets an error answer, never a panic.

pub mod render;
pub mod request;
pub mod server;
pub mod trace;

pub use request::Request;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends `req` to weftd's admin socket at `path` and returns its answer.
pub fn call(path: &Path, req: &Request) -> Result<serde_json::Value, String> {
    let mut s = UnixStream::connect(path)
        .map_err(|e| format!("cannot reach weftd at {}: {e}", path.display()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    writeln!(s, "{}", serde_json::to_string(req).expect("serialises"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut line = String::new();
    BufReader::new(s.take(64 << 20))
        .read_line(&mut line)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("weftd's answer is not JSON: {e}"))?;
    if v["ok"] == serde_json::Value::Bool(true) {
        Ok(v)
    } else {
        Err(v["error"]
            .as_str()
            .unwrap_or("weftd refused the request")
            .to_string())
    }
}
