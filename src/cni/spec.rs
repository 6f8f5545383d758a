//! The CNI specification's wire types (1.1.0; results also in the 0.4.0 and
//! 1.0.0 shapes): environment, network configuration, results and errors.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// The CNI versions weft accepts in a network configuration.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The spec's well-known error codes.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN: u32 = 11;
    /// The plugin is not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
    /// weft-specific: CHECK found the attachment not as ADD left it.
    pub const CHECK_MISMATCH: u32 = 100;
    /// weft-specific: the kernel refused a change.
    pub const KERNEL: u32 = 101;
}

/// A CNI error: printed as the spec's error JSON on stdout, exit status 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Error code.
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer details.
    pub details: String,
}

impl CniError {
    /// An error with a code, message and details.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error JSON for the given result version.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({ "cniVersion": cni_version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

impl From<crate::kernel::KernelError> for CniError {
    fn from(e: crate::kernel::KernelError) -> Self {
        CniError::new(code::KERNEL, format!("cannot {}", e.action), e.cause)
    }
}

/// The CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container.
    Del,
    /// Verify an attachment.
    Check,
    /// Report supported versions.
    Version,
    /// Release what no valid attachment uses.
    Gc,
    /// Report readiness.
    Status,
}

/// The runtime's environment variables, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// CNI_COMMAND.
    pub command: Command,
    /// CNI_CONTAINERID (ADD, DEL, CHECK).
    pub container_id: Option<String>,
    /// CNI_NETNS (ADD, CHECK; optional for DEL).
    pub netns: Option<PathBuf>,
    /// CNI_IFNAME (ADD, DEL, CHECK).
    pub ifname: Option<String>,
    /// Addresses asked for with `IP=` in CNI_ARGS (comma-separated).
    pub requested_ips: Vec<IpAddr>,
}

fn env_error(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_ENV, msg, "")
}

/// True for a valid container id (as libcni: alphanumeric first, then
/// alphanumerics, `_`, `.`, `-`).
pub fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// True for a valid interface name (1-15 bytes, not `.`/`..`, no `/`, `:`
/// or white space).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

impl Env {
    /// Reads and checks the environment through `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("GC") => Command::Gc,
            Some("STATUS") => Command::Status,
            Some(other) => return Err(env_error(format!("unknown CNI_COMMAND {other:?}"))),
            None => return Err(env_error("CNI_COMMAND is not set")),
        };
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        let container_id = nonempty("CNI_CONTAINERID");
        let netns = nonempty("CNI_NETNS").map(PathBuf::from);
        let ifname = nonempty("CNI_IFNAME");
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        if needs_attachment {
            match &container_id {
                None => return Err(env_error("CNI_CONTAINERID is not set")),
                Some(id) if !valid_container_id(id) => {
                    return Err(env_error(format!(
                        "CNI_CONTAINERID {id:?} is not a valid container id"
                    )))
                }
                _ => {}
            }
            match &ifname {
                None => return Err(env_error("CNI_IFNAME is not set")),
                Some(n) if !valid_ifname(n) => {
                    return Err(env_error(format!(
                        "CNI_IFNAME {n:?} is not a valid interface name"
                    )))
                }
                _ => {}
            }
        }
        if matches!(command, Command::Add | Command::Check) && netns.is_none() {
            return Err(env_error("CNI_NETNS is not set"));
        }
        let requested_ips = match nonempty("CNI_ARGS") {
            Some(args) => ips_from_cni_args(&args)?,
            None => Vec::new(),
        };
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            requested_ips,
        })
    }
}

/// The addresses of `IP=` in CNI_ARGS (`K=V;K=V`, the value a
/// comma-separated list, as Calico reads it); other keys are the runtime's
/// business. An unparsable address is code 4.
fn ips_from_cni_args(args: &str) -> Result<Vec<IpAddr>, CniError> {
    let mut out = Vec::new();
    for pair in args.split(';') {
        let Some(("IP", value)) = pair.split_once('=') else {
            continue;
        };
        for ip in value.split(',').filter(|v| !v.is_empty()) {
            out.push(ip.trim().parse().map_err(|_| {
                CniError::new(
                    code::INVALID_ENV,
                    "CNI_ARGS: IP= is not an address list",
                    format!("expected IP=ADDRESS[,ADDRESS], got IP={value}"),
                )
            })?);
        }
    }
    Ok(out)
}

/// The pods' MTU when neither the configuration nor weftd says: the
/// overlay MTU of VXLAN over a 1,500-byte IPv4 underlay.
pub const FALLBACK_MTU: u32 = 1450;

/// What a pod is wired with on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNetwork {
    /// The blocks addresses come from.
    pub blocks: Vec<IpNet>,
    /// The pod interface's MTU.
    pub mtu: u32,
}

/// weft's network configuration (one plugin entry of a conflist, with the
/// runtime-injected `name`, `cniVersion` and `prevResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    /// cniVersion.
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// Pod interface MTU, when given; otherwise the overlay MTU weftd
    /// publishes in `blocksFile` (see [`NetConf::node_network`]).
    pub mtu: Option<u32>,
    /// The node's pod blocks (IPv4 and/or IPv6), addresses come from them.
    pub blocks: Vec<IpNet>,
    /// Where weftd publishes the node's blocks when `blocks` is not given
    /// (blocks claimed over gossip).
    pub blocks_file: PathBuf,
    /// Where IPAM state lives.
    pub state_dir: PathBuf,
    /// weftd's local socket (endpoint notices, block requests, STATUS).
    pub weftd_socket: PathBuf,
    /// The previous result in a chain (CHECK and DEL get weft's own ADD result).
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Option<Vec<(String, String)>>,
    /// `attach`: "veth" when weftd owns the pods' veths (no host routes or
    /// proxy ARP; ADD waits for weftd to take the port), else "tun".
    pub veth_attach: bool,
    /// Addresses the runtime asks for: the `ips` capability
    /// (`runtimeConfig.ips`) or `args.cni.ips`, as CIDRs or plain
    /// addresses.
    pub requested_ips: Vec<IpAddr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: Option<Value>,
    name: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    mtu: Option<Value>,
    blocks: Option<Value>,
    blocks_file: Option<Value>,
    state_dir: Option<Value>,
    weftd_socket: Option<Value>,
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Value>,
    attach: Option<Value>,
    ipam: Option<Value>,
    dns: Option<Value>,
    args: Option<Value>,
    capabilities: Option<Value>,
    runtime_config: Option<Value>,
}

/// Checks that a well-known field, when present, is a JSON object.
fn object_field(field: &str, v: &Option<Value>) -> Result<(), CniError> {
    match v {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(bad_field(field, "an object", other)),
    }
}

/// The addresses in a list of `"10.244.0.5/26"` or `"10.244.0.5"` strings
/// (`field` names it in the error).
fn address_list(field: &str, v: Option<&Value>) -> Result<Vec<IpAddr>, CniError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(bad_field(field, "a list of addresses", other)),
    };
    items
        .iter()
        .map(|item| {
            let text = item.as_str().unwrap_or_default();
            text.parse::<IpNet>()
                .map(|n| n.addr())
                .or_else(|_| text.parse::<IpAddr>())
                .map_err(|_| bad_field(field, "addresses like \"10.244.0.5/26\"", item))
        })
        .collect()
}

fn bad_field(field: &str, expected: &str, got: &Value) -> CniError {
    CniError::new(
        code::INVALID_CONFIG,
        format!("invalid network configuration field {field:?}"),
        format!("expected {expected}, got {got}"),
    )
}

fn string_field(field: &str, v: &Option<Value>) -> Result<Option<String>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad_field(field, "a string", other)),
    }
}

impl NetConf {
    /// The blocks to allocate from and the pods' MTU. Blocks: `blocks` if
    /// given, else the ones weftd published in `blocksFile`; none yet
    /// (weftd still claiming) is "try again later" (code 11), as the spec
    /// has it. MTU: `mtu` if given, else the overlay MTU weftd published
    /// in the same file (it follows the underlay's), else
    /// [`FALLBACK_MTU`] (blocks given here and no weftd file).
    pub fn node_network(&self) -> Result<NodeNetwork, CniError> {
        let path = self.blocks_file.display().to_string();
        let text = match std::fs::read_to_string(&self.blocks_file) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) if self.blocks.is_empty() => {
                return Err(CniError::new(
                    code::IO_FAILURE,
                    "cannot read the node's pod blocks",
                    format!("{path}: {e}"),
                ))
            }
            Err(_) => None,
        };
        let bad = |why: String| {
            CniError::new(
                code::INVALID_CONFIG,
                "the node's pod blocks file is invalid",
                format!("{path}: {why}"),
            )
        };
        let published: Option<Value> = match &text {
            Some(t) => match serde_json::from_str(t) {
                Ok(v) => Some(v),
                Err(e) if self.blocks.is_empty() => return Err(bad(e.to_string())),
                Err(_) => None,
            },
            None => None,
        };
        let published_mtu = match published.as_ref().and_then(|v| v.get("mtu")) {
            None | Some(Value::Null) => None,
            Some(m) => match m.as_u64() {
                Some(m) if (576..=65535).contains(&m) => Some(m as u32),
                _ => return Err(bad(format!("\"mtu\": expected 576-65535, got {m}"))),
            },
        };
        let mtu = self.mtu.or(published_mtu).unwrap_or(FALLBACK_MTU);
        if !self.blocks.is_empty() {
            return Ok(NodeNetwork {
                blocks: self.blocks.clone(),
                mtu,
            });
        }
        let Some(v) = published else {
            return Err(CniError::new(
                code::TRY_AGAIN,
                "weftd has not published this node's pod blocks yet",
                format!("{path} does not exist; set \"blocks\" or start weftd with gossip"),
            ));
        };
        let items = v
            .get("blocks")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("expected {\"blocks\": [\"CIDR\", ...]}".into()))?;
        let mut out = Vec::new();
        for item in items {
            let net: IpNet = item
                .as_str()
                .and_then(|s| s.parse().ok())
                .filter(|n: &IpNet| n.trunc() == *n)
                .ok_or_else(|| bad(format!("expected CIDR prefixes, got {item}")))?;
            out.push(net);
        }
        if out.is_empty() {
            return Err(CniError::new(
                code::TRY_AGAIN,
                "weftd has not claimed a pod block for this node yet",
                path,
            ));
        }
        Ok(NodeNetwork { blocks: out, mtu })
    }

    /// Parses stdin. Bad JSON is code 6; a version weft does not speak,
    /// code 1; a field of the wrong shape, code 7.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let raw: RawConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE,
                "cannot decode the network configuration",
                e.to_string(),
            )
        })?;
        let cni_version = string_field("cniVersion", &raw.cni_version)?
            .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "cniVersion is missing", ""))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("CNI version {cni_version} is not supported"),
                format!("weft supports {}", SUPPORTED_VERSIONS.join(", ")),
            ));
        }
        let name = string_field("name", &raw.name)?.unwrap_or_default();
        if let Some(kind) = string_field("type", &raw.kind)? {
            if kind != "weft" {
                return Err(bad_field("type", "\"weft\"", &Value::String(kind)));
            }
        }
        let mtu = match &raw.mtu {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(m) if (576..=65535).contains(&m) => Some(m as u32),
                _ => return Err(bad_field("mtu", "a number from 576 to 65535", v)),
            },
        };
        let blocks = match &raw.blocks {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    let net: IpNet =
                        item.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                            bad_field(
                                "blocks",
                                "a list of CIDR prefixes like \"10.244.0.0/26\"",
                                item,
                            )
                        })?;
                    if net.trunc() != net {
                        return Err(bad_field("blocks", "prefixes without host bits", item));
                    }
                    out.push(net);
                }
                out
            }
            Some(other) => return Err(bad_field("blocks", "a list of CIDR prefixes", other)),
        };
        let blocks_file = string_field("blocksFile", &raw.blocks_file)?
            .unwrap_or_else(|| "/run/weft/blocks.json".into())
            .into();
        let state_dir = string_field("stateDir", &raw.state_dir)?
            .unwrap_or_else(|| "/var/lib/weft/cni".into())
            .into();
        let weftd_socket = string_field("weftdSocket", &raw.weftd_socket)?
            .unwrap_or_else(|| "/run/weft/cni.sock".into())
            .into();
        let valid_attachments = match &raw.valid_attachments {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    let id = item.get("containerID").and_then(Value::as_str);
                    let ifname = item.get("ifname").and_then(Value::as_str);
                    match (id, ifname) {
                        (Some(id), Some(ifname)) => out.push((id.to_string(), ifname.to_string())),
                        _ => {
                            return Err(bad_field(
                                "cni.dev/valid-attachments",
                                "objects with containerID and ifname",
                                item,
                            ))
                        }
                    }
                }
                Some(out)
            }
            Some(other) => return Err(bad_field("cni.dev/valid-attachments", "a list", other)),
        };
        let veth_attach = match string_field("attach", &raw.attach)?.as_deref() {
            None | Some("tun") => false,
            Some("veth") => true,
            Some(other) => {
                return Err(bad_field(
                    "attach",
                    "\"tun\" or \"veth\"",
                    &Value::String(other.into()),
                ))
            }
        };
        for (field, v) in [
            ("ipam", &raw.ipam),
            ("dns", &raw.dns),
            ("args", &raw.args),
            ("capabilities", &raw.capabilities),
            ("runtimeConfig", &raw.runtime_config),
            ("prevResult", &raw.prev_result),
        ] {
            object_field(field, v)?;
        }
        let mut requested_ips = address_list(
            "runtimeConfig.ips",
            raw.runtime_config.as_ref().and_then(|r| r.get("ips")),
        )?;
        if requested_ips.is_empty() {
            requested_ips = address_list(
                "args.cni.ips",
                raw.args
                    .as_ref()
                    .and_then(|a| a.get("cni"))
                    .and_then(|c| c.get("ips")),
            )?;
        }
        Ok(NetConf {
            cni_version,
            veth_attach,
            requested_ips,
            name,
            mtu,
            blocks,
            blocks_file,
            state_dir,
            weftd_socket,
            prev_result: raw.prev_result,
            valid_attachments,
        })
    }
}

/// One interface in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// The netns path for a container interface; absent for a host one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// MTU (1.1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// The result of ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddResult {
    /// Host end, then container end.
    pub interfaces: Vec<Interface>,
    /// Addresses given to the container interface (index 1).
    pub ips: Vec<IpNet>,
    /// Gateways per family (169.254.1.1 and the host end's link-local).
    pub gateways: Vec<IpAddr>,
}

impl AddResult {
    /// The result JSON in the shape `cni_version` asks for.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let old = cni_version == "0.4.0";
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = serde_json::to_value(i).expect("plain data");
                if cni_version != "1.1.0" {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("mtu");
                    }
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|net| {
                let gw = self
                    .gateways
                    .iter()
                    .find(|g| g.is_ipv4() == net.addr().is_ipv4());
                let mut v = json!({ "address": net.to_string(), "interface": 1 });
                if let Some(g) = gw {
                    v["gateway"] = Value::String(g.to_string());
                }
                if old {
                    v["version"] =
                        Value::String(if net.addr().is_ipv4() { "4" } else { "6" }.into());
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .ips
            .iter()
            .filter_map(|net| {
                let gw = self
                    .gateways
                    .iter()
                    .find(|g| g.is_ipv4() == net.addr().is_ipv4())?;
                let dst = if net.addr().is_ipv4() {
                    "0.0.0.0/0"
                } else {
                    "::/0"
                };
                Some(json!({ "dst": dst, "gw": gw.to_string() }))
            })
            .collect();
        json!({ "cniVersion": cni_version, "interfaces": interfaces, "ips": ips, "routes": routes, "dns": {} })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_vars(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn environment_checks() {
        assert_eq!(env(&[]).unwrap_err().code, code::INVALID_ENV);
        assert_eq!(
            env(&[("CNI_COMMAND", "FROB")]).unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
        let add = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        assert!(env(&add).is_ok());
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let v: Vec<_> = add.iter().copied().filter(|(k, _)| *k != missing).collect();
            let e = env(&v).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV);
            assert!(e.msg.contains(missing), "{e}");
        }
        let del: Vec<_> = add
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .map(|(k, v)| {
                if k == "CNI_COMMAND" {
                    (k, "DEL")
                } else {
                    (k, v)
                }
            })
            .collect();
        assert!(env(&del).is_ok(), "DEL without a netns is allowed");
        let bad_id: Vec<_> = add
            .iter()
            .copied()
            .map(|(k, v)| {
                if k == "CNI_CONTAINERID" {
                    (k, "-x/y")
                } else {
                    (k, v)
                }
            })
            .collect();
        assert_eq!(env(&bad_id).unwrap_err().code, code::INVALID_ENV);
        let bad_if: Vec<_> = add
            .iter()
            .copied()
            .map(|(k, v)| {
                if k == "CNI_IFNAME" {
                    (k, "a-name-that-is-too-long")
                } else {
                    (k, v)
                }
            })
            .collect();
        assert_eq!(env(&bad_if).unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn config_codes() {
        assert_eq!(NetConf::parse(b"{nope").unwrap_err().code, code::DECODE);
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"0.3.1","name":"n","type":"weft"}"#)
                .unwrap_err()
                .code,
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            NetConf::parse(br#"{"name":"n","type":"weft"}"#)
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.1.0","type":"bridge"}"#)
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.1.0","mtu":"big"}"#)
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.1.0","blocks":["10.0.0.1/24"]}"#)
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        let ok = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"weft","type":"weft","mtu":1400,"blocks":["10.244.0.0/26","fd00:244::/122"],"capabilities":{"portMappings":true}}"#).unwrap();
        assert_eq!((ok.mtu, ok.blocks.len()), (Some(1400), 2));
        // Well-known fields of the wrong type: code 7, naming the field.
        for (field, value) in [
            ("ipam", r#""x""#),
            ("prevResult", "5"),
            ("dns", "[]"),
            ("args", "true"),
            ("capabilities", r#""all""#),
            ("runtimeConfig", "1"),
        ] {
            let conf = format!(r#"{{"cniVersion":"1.1.0","{field}":{value}}}"#);
            let e = NetConf::parse(conf.as_bytes()).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{conf}");
            assert!(e.msg.contains(field), "{conf}: {e:?}");
        }
        // Requested addresses: the `ips` capability, else args.cni.ips.
        let asked = NetConf::parse(br#"{"cniVersion":"1.0.0","runtimeConfig":{"ips":["10.244.0.7/26","fd00::7"]},"args":{"cni":{"ips":["10.244.0.9"]}}}"#).unwrap();
        let ips: Vec<IpAddr> = vec!["10.244.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
        assert_eq!(asked.requested_ips, ips);
        let args =
            NetConf::parse(br#"{"cniVersion":"1.0.0","args":{"cni":{"ips":["10.244.0.9"]}}}"#)
                .unwrap();
        assert_eq!(
            args.requested_ips,
            vec!["10.244.0.9".parse::<IpAddr>().unwrap()]
        );
        for bad in [r#"{"ips":"10.0.0.1"}"#, r#"{"ips":["ten"]}"#] {
            let conf = format!(r#"{{"cniVersion":"1.1.0","runtimeConfig":{bad}}}"#);
            assert_eq!(
                NetConf::parse(conf.as_bytes()).unwrap_err().code,
                code::INVALID_CONFIG,
                "{conf}"
            );
        }
    }

    #[test]
    fn ip_in_cni_args() {
        let env = |args: &str| {
            Env::from_vars(|k| match k {
                "CNI_COMMAND" => Some("ADD".into()),
                "CNI_CONTAINERID" => Some("c1".into()),
                "CNI_IFNAME" => Some("eth0".into()),
                "CNI_NETNS" => Some("/run/netns/x".into()),
                "CNI_ARGS" => Some(args.into()),
                _ => None,
            })
        };
        let e = env("IgnoreUnknown=1;IP=10.244.0.5,fd00::5;K8S_POD_NAME=p").unwrap();
        assert_eq!(
            e.requested_ips,
            vec![
                "10.244.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        assert!(env("K8S_POD_NAME=p").unwrap().requested_ips.is_empty());
        assert_eq!(env("IP=ten").unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn result_shapes_per_version() {
        let r = AddResult {
            interfaces: vec![
                Interface {
                    name: "weft0123".into(),
                    mac: "ee:ee:ee:ee:ee:ee".into(),
                    sandbox: None,
                    mtu: Some(1450),
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    sandbox: Some("/var/run/netns/x".into()),
                    mtu: Some(1450),
                },
            ],
            ips: vec!["10.244.0.2/32".parse().unwrap()],
            gateways: vec!["169.254.1.1".parse().unwrap()],
        };
        let v = r.to_json("0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        assert!(v["interfaces"][0].get("mtu").is_none());
        let v = r.to_json("1.1.0");
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["ips"][0]["interface"], 1);
        assert_eq!(v["interfaces"][1]["mtu"], 1450);
        assert_eq!(v["routes"][0]["dst"], "0.0.0.0/0");
    }
}
