//! `weft`: the CNI plugin. Container runtimes run it with CNI_COMMAND and
//! friends in the environment and the network configuration on stdin; it
//! answers with JSON on stdout (see `weft::cni`).

use std::io::Read;
use std::process::ExitCode;

const HELP: &str = "\
weft: the CNI plugin of the weft overlay network

Container runtimes run this binary, not people. It reads CNI_COMMAND
(ADD, DEL, CHECK, VERSION, GC, STATUS), CNI_CONTAINERID, CNI_NETNS,
CNI_IFNAME and CNI_PATH from the environment and a JSON network
configuration on stdin, and answers with JSON on stdout, as the CNI
specification 1.1.0 says (configurations of 0.4.0 and 1.0.0 are accepted).

Network configuration fields (besides cniVersion, name, type = \"weft\"):
  blocks       the node's pod blocks, e.g. [\"10.244.0.0/26\", \"fd00:244::/122\"]
  mtu          pod interface MTU (default 1450)
  stateDir     IPAM state directory (default /var/lib/weft/cni)
  weftdSocket  weftd's socket (default /run/weft/cni.sock)

Usage:
  CNI_COMMAND=VERSION weft < /dev/null
  weft --help | --version
";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("-h" | "--help") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!(
                "weft {} (CNI 0.4.0, 1.0.0, 1.1.0)",
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let needs_stdin = !matches!(
        std::env::var("CNI_COMMAND").as_deref(),
        Ok("VERSION") | Err(_)
    );
    let mut stdin = Vec::new();
    if needs_stdin {
        if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
            let err = weft::cni::spec::CniError::new(
                weft::cni::spec::code::IO_FAILURE,
                "cannot read stdin",
                e.to_string(),
            );
            println!("{}", err.to_json("1.1.0"));
            return ExitCode::FAILURE;
        }
    }
    let out = weft::cni::run(|k| std::env::var(k).ok(), &stdin);
    if let Some(v) = out.stdout {
        println!("{v}");
    }
    if out.status == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
