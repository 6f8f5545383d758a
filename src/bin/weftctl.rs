//! `weftctl`: inspect a running weftd over its local admin socket.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Inspect and debug the weft daemon on this node.
///
/// weftctl talks to weftd over its local admin socket. Tables by default,
/// `--json` for scripts.
#[derive(Debug, Parser)]
#[command(name = "weftctl", version, about, long_about)]
struct Cli {
    /// weftd's admin socket.
    #[arg(
        long,
        env = "WEFT_ADMIN_SOCKET",
        default_value = "/run/weft/admin.sock"
    )]
    socket: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Node, peers, blocks and convergence.
    Status,
    /// Routes weftd programmed.
    Routes,
    /// Forwarding table: blocks, nodes, endpoints.
    Fdb,
    /// Packet, byte and drop counters.
    Stats,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "weftctl {:?}: weftd's admin API is not built yet (socket {})",
        cli.command,
        cli.socket.display()
    );
    ExitCode::FAILURE
}
