//! `weftd`: the weft node daemon. It reads pod traffic from a TUN device
//! (or the pods' veths), encapsulates it (VXLAN or IP-in-IP) towards the right
//! node, and delivers what arrives; see docs/ARCHITECTURE.md.

use clap::{Args, Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use weft::config::{AutoOr, Autodetect, Config, Encap, Mode, Overrides};

/// weft's node daemon: a userspace overlay router for pod networks.
///
/// weftd reads pod traffic from its TUN device, encapsulates it as VXLAN
/// (UDP 4789) or IP-in-IP towards the node that owns the destination pod
/// block, and decapsulates and delivers what other nodes send. Nodes find each
/// other over an authenticated gossip channel.
///
/// Settings come from the configuration file, then WEFT_* environment
/// variables, then flags, each overriding the one before.
#[derive(Debug, Parser)]
#[command(name = "weftd", version, about, long_about)]
struct Cli {
    /// Configuration file (TOML). Absent default file = built-in defaults.
    #[arg(short, long, global = true, env = "WEFT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: OverrideArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Args)]
struct OverrideArgs {
    /// This node's name [config: node_name].
    #[arg(long, global = true, env = "WEFT_NODE_NAME")]
    node_name: Option<String>,
    /// Underlay address [config: underlay.address].
    #[arg(long, global = true, env = "WEFT_UNDERLAY_ADDRESS")]
    underlay_address: Option<IpAddr>,
    /// first-found | can-reach=ADDR | interface=REGEX [config: underlay.autodetect].
    #[arg(long, global = true, env = "WEFT_AUTODETECT")]
    autodetect: Option<Autodetect>,
    /// vxlan | ipip | none [config: overlay.encap].
    #[arg(long, global = true, env = "WEFT_ENCAP")]
    encap: Option<Encap>,
    /// VXLAN network identifier [config: overlay.vni].
    #[arg(long, global = true, env = "WEFT_VNI")]
    vni: Option<u32>,
    /// VXLAN UDP port [config: overlay.port].
    #[arg(long, global = true, env = "WEFT_PORT")]
    port: Option<u16>,
    /// Overlay MTU, "auto" or bytes [config: overlay.mtu].
    #[arg(long, global = true, env = "WEFT_MTU")]
    mtu: Option<AutoOr<u16>>,
    /// Data-path workers, "auto" or a count [config: dataplane.workers].
    #[arg(long, global = true, env = "WEFT_WORKERS")]
    workers: Option<AutoOr<u16>>,
    /// auto | kernel | userspace [config: dataplane.mode].
    #[arg(long, global = true, env = "WEFT_DATAPLANE_MODE")]
    mode: Option<Mode>,
}

impl OverrideArgs {
    fn to_overrides(&self) -> Overrides {
        Overrides {
            node_name: self.node_name.clone(),
            underlay_address: self.underlay_address,
            autodetect: self.autodetect.clone(),
            encap: self.encap,
            vni: self.vni,
            port: self.port,
            mtu: self.mtu,
            workers: self.workers,
            mode: self.mode,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Remove everything weft added to this node's kernel (routes, TUN).
    Uninstall,
    /// Check the configuration and print the effective settings as TOML.
    CheckConfig,
    /// Print a new node signing key (for gossip.node_key_file).
    Genkey,
    /// Read a node key on stdin, print its public key (for the
    /// trusted-nodes file).
    Pubkey,
    /// Print the wire overheads and the overlay MTU for an underlay MTU.
    Mtu {
        /// Underlay MTU in bytes.
        #[arg(default_value_t = 1500)]
        underlay_mtu: usize,
    },
}

fn load(cli: &Cli) -> Result<Config, String> {
    let (base, source) = match &cli.config {
        Some(path) => (
            Config::load(path).map_err(|e| e.to_string())?,
            path.display().to_string(),
        ),
        None => {
            let path = weft::config::default_path();
            if path.exists() {
                (
                    Config::load(&path).map_err(|e| e.to_string())?,
                    path.display().to_string(),
                )
            } else {
                (Config::default(), "built-in defaults".to_string())
            }
        }
    };
    base.apply(
        &cli.overrides.to_overrides(),
        &format!("{source} + environment and flags"),
    )
    .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs to stderr, filtered RUST_LOG-style through WEFT_LOG (default info).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs in files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::Genkey => {
            println!("{}", control::identity::NodeKey::generate().secret_hex());
            ExitCode::SUCCESS
        }
        Command::Pubkey => {
            let mut text = String::new();
            let parsed = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    control::identity::NodeKey::parse(&text).map_err(|e| format!("stdin: {e}"))
                });
            match parsed {
                Ok(key) => {
                    println!("{}", key.public_hex());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("weftd pubkey: {e}");
                    ExitCode::from(2)
                }
            }
        }
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
                    mtu::overlay_mtu(*underlay_mtu, e, f)
                );
            }
            ExitCode::SUCCESS
        }
        Command::CheckConfig => match load(&cli) {
            Ok(cfg) => {
                let text = toml::to_string(&cfg).unwrap_or_default();
                print!("{text}");
                if !text.ends_with('\n') {
                    println!();
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("weftd: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run => {
            let cfg = match load(&cli) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("weftd: {e}");
                    return ExitCode::from(2);
                }
            };
            run(&cfg)
        }
        Command::Uninstall => {
            match load(&cli).and_then(|cfg| weft::daemon::node::uninstall(&cfg)) {
                Ok(msg) => {
                    eprintln!("weftd: {msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("weftd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs until SIGTERM or SIGINT. The TUN device and routes stay when weftd
/// exits, so a restart interrupts forwarding only while no process runs.
fn run(cfg: &Config) -> ExitCode {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    // Block before any thread starts, so only sigwait below sees them.
    if let Err(e) = signals.thread_block() {
        tracing::error!("cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let node = match weft::daemon::node::start(cfg) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let node = std::sync::Arc::new(node);
    if let Err(e) = weft::admin::server::serve(&cfg.admin_socket, std::sync::Arc::clone(&node)) {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    if cfg.metrics.enabled {
        if let Err(e) =
            weft::daemon::metrics::serve(cfg.metrics.listen, std::sync::Arc::clone(&node))
        {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(
        node = %node.name,
        workers = node.counters.len(),
        blocks = node.fdb.snapshot().counts().blocks,
        "forwarding"
    );
    let sig = signals.wait();
    if let Some(path) = &cfg.dataplane.stats_file {
        weft::daemon::node::write_stats(
            path,
            (&node.counters, &node.other_counters()),
            node.gossip.as_ref(),
            node.kernel_path
                .as_ref()
                .map(weft::daemon::kernel_path::stats),
        );
    }
    tracing::info!(signal = ?sig, "exiting; the TUN device and routes stay until `weftd uninstall`");
    ExitCode::SUCCESS
}
