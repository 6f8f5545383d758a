//! `weft`: the CNI plugin. Container runtimes run it with CNI_COMMAND and
//! friends in the environment and the network configuration on stdin.

use std::process::ExitCode;

const SUPPORTED: &str = r#"["0.4.0","1.0.0","1.1.0"]"#;

const HELP: &str = "\
weft: the CNI plugin of the weft overlay network

Container runtimes run this binary, not people. It reads the CNI_COMMAND,
CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and CNI_PATH environment variables and
a JSON network configuration on stdin, and answers with JSON on stdout, as
the CNI specification (1.1.0) says. Supported: CNI_COMMAND=VERSION.
ADD, DEL, CHECK, GC and STATUS are not built yet and answer with an error.

Usage:
  CNI_COMMAND=VERSION weft < /dev/null
  weft --help | --version
";

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("-h" | "--help") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!(
                "weft {} (CNI versions {SUPPORTED})",
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    match std::env::var("CNI_COMMAND").as_deref() {
        Ok("VERSION") => {
            println!(r#"{{"cniVersion":"1.1.0","supportedVersions":{SUPPORTED}}}"#);
            ExitCode::SUCCESS
        }
        Ok(cmd @ ("ADD" | "DEL" | "CHECK" | "GC" | "STATUS")) => {
            println!(
                r#"{{"cniVersion":"1.1.0","code":999,"msg":"weft: {cmd} is not implemented yet"}}"#
            );
            ExitCode::FAILURE
        }
        _ => {
            println!(
                r#"{{"cniVersion":"1.1.0","code":4,"msg":"CNI_COMMAND is missing or unknown","details":"expected one of ADD, DEL, CHECK, VERSION, GC, STATUS; run weft --help"}}"#
            );
            ExitCode::FAILURE
        }
    }
}
