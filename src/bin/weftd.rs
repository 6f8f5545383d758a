//! `weftd`: the weft node daemon. It will read pod traffic from a TUN device
//! (or the pods' veths), encapsulate it (VXLAN or IP-in-IP) towards the right
//! node, and deliver what arrives; see docs/ARCHITECTURE.md.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// weft's node daemon: a userspace overlay router for pod networks.
///
/// weftd reads pod traffic from its TUN device, encapsulates it as VXLAN
/// (UDP 4789) or IP-in-IP towards the node that owns the destination pod
/// block, and decapsulates and delivers what other nodes send. Nodes find each
/// other over an authenticated gossip channel.
#[derive(Debug, Parser)]
#[command(name = "weftd", version, about, long_about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(
        short,
        long,
        env = "WEFT_CONFIG",
        default_value = "/etc/weft/weftd.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Print the wire overheads and the overlay MTU for an underlay MTU.
    Mtu {
        /// Underlay MTU in bytes.
        #[arg(default_value_t = 1500)]
        underlay_mtu: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Mtu { underlay_mtu } => {
            use encap::{mtu, Encapsulation, Family};
            for (name, e, f) in [
                ("vxlan over IPv4", Encapsulation::Vxlan, Family::V4),
                ("vxlan over IPv6", Encapsulation::Vxlan, Family::V6),
                ("ipip over IPv4", Encapsulation::IpIp, Family::V4),
                ("ipip over IPv6", Encapsulation::IpIp, Family::V6),
            ] {
                println!(
                    "{name:16} overhead {:3}  overlay MTU {}",
                    mtu::overhead(e, f),
                    mtu::overlay_mtu(underlay_mtu, e, f)
                );
            }
            ExitCode::SUCCESS
        }
        Command::Run => {
            eprintln!(
                "weftd: the data plane is not built yet (config {} not read); \
                 this release ships the wire formats only",
                cli.config.display()
            );
            ExitCode::FAILURE
        }
    }
}
