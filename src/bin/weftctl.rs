//! `weftctl`: inspect a running weftd over its local admin socket.

use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use weft::admin::{self, render, Request};

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
        global = true,
        env = "WEFT_ADMIN_SOCKET",
        default_value = "/run/weft/admin.sock"
    )]
    socket: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Node, peers (state, RTT, encapsulation), blocks and convergence.
    Status,
    /// Kernel routes weftd programmed (proto 87).
    Routes,
    /// Forwarding tables: blocks and nodes.
    Fdb,
    /// Pod endpoints, local and learned.
    Endpoints,
    /// Packet, byte and drop counters, gossip counters.
    Stats,
    /// Multicast groups: member pods here, other nodes with members.
    Groups,
    /// How weftd would forward a packet from SRC to DST, and why.
    Trace {
        /// Source address.
        src: IpAddr,
        /// Destination address.
        dst: IpAddr,
    },
    /// Exit 0 if weftd answers (--live) or is ready to serve pods.
    Health {
        /// Only check that weftd answers (liveness).
        #[arg(long)]
        live: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = match &cli.command {
        Command::Status => Request::Status,
        Command::Routes => Request::Routes,
        Command::Fdb => Request::Fdb,
        Command::Endpoints => Request::Endpoints,
        Command::Stats => Request::Stats,
        Command::Groups => Request::Groups,
        Command::Trace { src, dst } => Request::Trace {
            src: *src,
            dst: *dst,
        },
        Command::Health { .. } => Request::Health,
    };
    let v = match admin::call(&cli.socket, &req) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("weftctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
    } else {
        let text = match &cli.command {
            Command::Status => render::status(&v),
            Command::Routes => render::routes(&v),
            Command::Fdb => render::fdb(&v),
            Command::Endpoints => render::endpoints(&v),
            Command::Stats => render::stats(&v),
            Command::Groups => render::groups(&v),
            Command::Trace { .. } => render::trace(&v),
            Command::Health { .. } => render::health(&v),
        };
        print!("{text}");
    }
    match cli.command {
        Command::Health { live: false } if v["ready"] != serde_json::Value::Bool(true) => {
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
