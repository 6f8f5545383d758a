//! weftd's configuration: a TOML file, then environment variables, then
//! command-line flags, each overriding the one before.
//!
//! Errors name the file, the key and what was expected, e.g.
//! `/etc/weft/weftd.toml: overlay.encap: expected one of vxlan, ipip, none (got "vxlann")`.
//! Unknown keys are errors (a typo must not silently fall back to a default).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's name, unique in the cluster (default: the host name).
    pub node_name: Option<String>,
    /// The local socket the CNI plugin tells weftd about pods on.
    pub cni_socket: PathBuf,
    /// weftd's admin socket (weftctl, health probes).
    pub admin_socket: PathBuf,
    /// Where the CNI plugin keeps its IPAM state (its `stateDir`): weftd
    /// reads this node's pods from it when it starts.
    pub cni_state_dir: PathBuf,
    /// The network between nodes.
    pub underlay: Underlay,
    /// The pod network.
    pub overlay: Overlay,
    /// Data-path threads.
    pub dataplane: Dataplane,
    /// The gossip control plane.
    pub gossip: Gossip,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Multicast between pods.
    pub multicast: Multicast,
    /// Peers known without gossip.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<StaticPeer>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: None,
            cni_socket: PathBuf::from("/run/weft/cni.sock"),
            admin_socket: PathBuf::from("/run/weft/admin.sock"),
            cni_state_dir: PathBuf::from("/var/lib/weft/cni"),
            underlay: Underlay::default(),
            overlay: Overlay::default(),
            dataplane: Dataplane::default(),
            gossip: Gossip::default(),
            metrics: Metrics::default(),
            multicast: Multicast::default(),
            peers: Vec::new(),
        }
    }
}

/// How this node finds and uses its underlay address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Underlay {
    /// The underlay address; when absent, found by `autodetect`.
    pub address: Option<IpAddr>,
    /// `first-found`, `can-reach=ADDR` or `interface=REGEX` (as Calico's
    /// IP autodetection methods).
    pub autodetect: Autodetect,
    /// The underlay's MTU, from which `overlay.mtu = "auto"` is computed:
    /// `"auto"` reads it from the interface holding the underlay address.
    pub mtu: AutoOr<u16>,
    /// Tunnels over both families of a dual-stack underlay: this node takes
    /// VXLAN / IP-in-IP on its address of the other family as well, and
    /// reaches each peer over the peer's preferred family (its `address`'s)
    /// when this node has it, else the other. false: over `address`'s family
    /// only (the other family's address is still published, for host
    /// traffic).
    pub dual_stack: bool,
}

impl Default for Underlay {
    fn default() -> Self {
        Underlay {
            address: None,
            autodetect: Autodetect::FirstFound,
            mtu: AutoOr::AUTO,
            dual_stack: false,
        }
    }
}

/// An underlay address autodetection method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Autodetect {
    /// The first global unicast address on an up, non-loopback interface.
    FirstFound,
    /// The source address the kernel picks to reach this address.
    CanReach(IpAddr),
    /// The first address on an interface whose name matches this regex.
    Interface(String),
}

impl fmt::Display for Autodetect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Autodetect::FirstFound => f.write_str("first-found"),
            Autodetect::CanReach(a) => write!(f, "can-reach={a}"),
            Autodetect::Interface(r) => write!(f, "interface={r}"),
        }
    }
}

const AUTODETECT_EXPECTED: &str = "first-found, can-reach=ADDRESS or interface=REGEX";

/// Compiles an `interface=REGEX` pattern with tight limits: an interface
/// name pattern needs no deep nesting, and the parser's recursion must stay
/// shallow whatever the configuration says (found by the weftd_config
/// fuzzer: 250 nested classes overflowed a 2 MiB thread stack).
pub fn interface_regex(re: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(re)
        .nest_limit(16)
        .size_limit(1 << 20)
        .build()
}

impl std::str::FromStr for Autodetect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "first-found" {
            return Ok(Autodetect::FirstFound);
        }
        if let Some(addr) = s.strip_prefix("can-reach=") {
            return addr
                .parse()
                .map(Autodetect::CanReach)
                .map_err(|_| format!("can-reach needs an IP address (got \"{addr}\")"));
        }
        if let Some(re) = s.strip_prefix("interface=") {
            interface_regex(re).map_err(|e| format!("interface needs a valid regex: {e}"))?;
            return Ok(Autodetect::Interface(re.to_string()));
        }
        Err(format!("expected {AUTODETECT_EXPECTED} (got \"{s}\")"))
    }
}

impl Serialize for Autodetect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Autodetect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How pod traffic crosses between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// VXLAN over UDP.
    Vxlan,
    /// IP-in-IP.
    Ipip,
    /// Plain routing (all nodes on one L2 segment).
    None,
}

impl fmt::Display for Encap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encap::Vxlan => "vxlan",
            Encap::Ipip => "ipip",
            Encap::None => "none",
        })
    }
}

impl std::str::FromStr for Encap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vxlan" => Ok(Encap::Vxlan),
            "ipip" => Ok(Encap::Ipip),
            "none" => Ok(Encap::None),
            _ => Err(format!("expected one of vxlan, ipip, none (got \"{s}\")")),
        }
    }
}

/// Default `overlay.source_port_count`: enough distinct outer ports for
/// any underlay's ECMP fan-out and a receiver's RSS queues.
pub const DEFAULT_SOURCE_PORT_COUNT: u16 = 64;
/// Largest `overlay.source_port_count` accepted (a socket each).
pub const MAX_SOURCE_PORT_COUNT: u16 = 1024;

/// An inclusive range of UDP ports, written "MIN-MAX" (or one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    /// The lowest port.
    pub min: u16,
    /// The highest port.
    pub max: u16,
}

impl PortRange {
    /// The ports, lowest first.
    pub fn ports(&self) -> std::ops::RangeInclusive<u16> {
        self.min..=self.max
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> Result<PortRange, String> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        r.to_string()
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<PortRange, String> {
        let expected =
            || format!("expected \"MIN-MAX\" or one port, ports 1-65535, MIN <= MAX (got \"{s}\")");
        let (min, max) = s.split_once('-').unwrap_or((s, s));
        let port = |t: &str| t.trim().parse::<u16>().ok().filter(|p| *p != 0);
        match (port(min), port(max)) {
            (Some(min), Some(max)) if min <= max => Ok(PortRange { min, max }),
            _ => Err(expected()),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// A size that is either computed (`"auto"`) or given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AutoOr<T> {
    /// A given value.
    Value(T),
    /// `"auto"`.
    Auto(AutoWord),
}

/// The word `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoWord {
    /// auto
    Auto,
}

impl<T> AutoOr<T> {
    /// `"auto"`.
    pub const AUTO: AutoOr<T> = AutoOr::Auto(AutoWord::Auto);

    /// The value, or None for auto.
    pub fn value(&self) -> Option<&T> {
        match self {
            AutoOr::Value(v) => Some(v),
            AutoOr::Auto(_) => None,
        }
    }
}

impl<T: std::str::FromStr> std::str::FromStr for AutoOr<T> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(AutoOr::AUTO);
        }
        s.parse()
            .map(AutoOr::Value)
            .map_err(|_| format!("expected \"auto\" or a number (got \"{s}\")"))
    }
}

/// The pod network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Overlay {
    /// Pod address pools (IPv4 and/or IPv6).
    pub pools: Vec<IpNet>,
    /// This node's pod blocks, when assigned by hand (without gossip).
    pub blocks: Vec<IpNet>,
    /// Prefix length of the IPv4 blocks nodes claim from a pool.
    pub block_size_v4: u8,
    /// Prefix length of the IPv6 blocks nodes claim from a pool.
    pub block_size_v6: u8,
    /// Encapsulation between nodes.
    pub encap: Encap,
    /// Route without encapsulation to nodes in this node's underlay subnet.
    pub cross_subnet: bool,
    /// VXLAN network identifier.
    pub vni: u32,
    /// VXLAN UDP port.
    pub port: u16,
    /// The outer UDP source ports VXLAN datagrams leave from, one chosen
    /// per inner flow (RFC 7348 section 5), as "MIN-MAX".
    pub source_ports: PortRange,
    /// How many ports of `source_ports` weftd sends from (a socket each).
    pub source_port_count: u16,
    /// Overlay MTU: "auto" (underlay MTU minus the encapsulation overhead) or bytes.
    pub mtu: AutoOr<u16>,
    /// Name of the TUN device.
    pub tun_name: String,
    /// Masquerade pods' traffic that leaves the cluster (to anything outside
    /// every pool and every node's own addresses) as the node's address.
    pub nat_outgoing: bool,
    /// Pools whose pods leave the cluster with their own addresses even
    /// with `nat_outgoing` on (routable pod addresses).
    pub no_nat_pools: Vec<IpNet>,
    /// Pods reach other nodes' own addresses through the overlay (a policy
    /// rule sends them to weft's table), for underlays that drop packets
    /// from pod addresses. false: straight over the underlay with the pod's
    /// address, as Flannel and Calico do, and no policy rule (one costs
    /// every routed packet of the node a rules walk).
    pub pod_to_node_via_overlay: bool,
}

impl Overlay {
    /// The pools whose pods' traffic leaving the cluster is masqueraded.
    pub fn nat_pools(&self) -> Vec<IpNet> {
        if !self.nat_outgoing {
            return Vec::new();
        }
        self.pools
            .iter()
            .filter(|p| !self.no_nat_pools.contains(p))
            .copied()
            .collect()
    }
}

impl Default for Overlay {
    fn default() -> Self {
        Overlay {
            pools: vec!["10.244.0.0/16".parse().expect("literal")],
            blocks: Vec::new(),
            block_size_v4: 26,
            block_size_v6: 122,
            encap: Encap::Vxlan,
            cross_subnet: false,
            vni: 1,
            port: encap::vxlan::DEFAULT_PORT,
            source_ports: PortRange {
                min: encap::flow::SRC_PORT_MIN,
                max: encap::flow::SRC_PORT_MAX,
            },
            source_port_count: DEFAULT_SOURCE_PORT_COUNT,
            mtu: AutoOr::AUTO,
            tun_name: "weft0".into(),
            nat_outgoing: true,
            no_nat_pools: Vec::new(),
            pod_to_node_via_overlay: true,
        }
    }
}

/// Default `dataplane.busy_poll_us`: about one round trip between two
/// nodes through weft, so the answer to what a worker just sent usually
/// finds it still awake.
pub const DEFAULT_BUSY_POLL_US: u32 = 100;
/// Largest `dataplane.busy_poll_us` accepted.
pub const MAX_BUSY_POLL_US: u32 = 10_000;

/// Data-path threads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dataplane {
    /// Worker threads (and TUN queues, and UDP sockets): "auto" = one per core.
    pub workers: AutoOr<u16>,
    /// A file weftd rewrites every second with its counters (JSON).
    pub stats_file: Option<PathBuf>,
    /// How pods' traffic reaches weftd: through the TUN device and kernel
    /// routes, or straight from the pods' veths.
    pub attach: Attach,
    /// Veth attachment: where weftd keeps its registered ports, to take
    /// them up again after a restart.
    pub ports_file: PathBuf,
    /// Microseconds a worker keeps polling its sockets after the last
    /// packet before it sleeps (0: sleep at once). Trades a little CPU for
    /// latency: answers arriving within the window need no wake-up.
    pub busy_poll_us: u32,
    /// Veth attachment: pods also reach this host and beyond (and the
    /// host reaches them) through a TUN device that serves as the host
    /// port, with kernel routes for the pod blocks, forwarding and the
    /// outgoing NAT. false leaves the host's routing and forwarding
    /// untouched, and pods reach only pods.
    pub veth_host_paths: bool,
    /// Which data path carries the overlay: the kernel's own vxlan (or
    /// ipip) device programmed by weftd, weftd's userspace workers, or
    /// "auto" (the kernel's where its module is present and the device can
    /// be made).
    pub mode: Mode,
    /// The kernel path's device name.
    pub kernel_device: String,
    /// The kernel path's receive checks (members only on the VXLAN port,
    /// inner sources bound to their sender), in nftables. false trusts the
    /// underlay, as Flannel does, for the kernel's speed exactly.
    pub kernel_checks: bool,
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            workers: AutoOr::AUTO,
            stats_file: None,
            attach: Attach::Tun,
            ports_file: PathBuf::from("/run/weft/ports.json"),
            busy_poll_us: DEFAULT_BUSY_POLL_US,
            veth_host_paths: true,
            mode: Mode::Auto,
            kernel_device: DEFAULT_KERNEL_DEVICE.into(),
            kernel_checks: true,
        }
    }
}

/// `dataplane.kernel_device`'s default (the kernel path's ipip device is
/// `weft-ipip` while this default stands).
pub const DEFAULT_KERNEL_DEVICE: &str = "weft-vxlan";

/// Which data path a node uses (`dataplane.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The kernel path where it can run (the encapsulation's module is
    /// present and its device can be created), else userspace.
    Auto,
    /// The kernel's vxlan device, programmed by weftd; start fails where it
    /// cannot be created.
    Kernel,
    /// weftd's own workers (TUN or veth attachment).
    Userspace,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Kernel => "kernel",
            Mode::Userspace => "userspace",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "kernel" => Ok(Mode::Kernel),
            "userspace" => Ok(Mode::Userspace),
            _ => Err(format!(
                "expected one of auto, kernel, userspace (got \"{s}\")"
            )),
        }
    }
}

/// How pod traffic reaches weftd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// A TUN device; the kernel routes pods' traffic to it (host routes,
    /// proxy ARP and forwarding on).
    Tun,
    /// weftd owns the host ends of the pod veths (AF_PACKET): it answers
    /// ARP/ND, switches same-node traffic and delivers decapsulated frames
    /// itself; the host's routing table is not touched.
    Veth,
}

impl fmt::Display for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Attach::Tun => "tun",
            Attach::Veth => "veth",
        })
    }
}

/// The gossip control plane: membership, block claims, endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gossip {
    /// Run the control plane (otherwise only static peers are known).
    pub enabled: bool,
    /// UDP port for control traffic, on the underlay address.
    pub port: u16,
    /// Members to join through: "ADDRESS" or "ADDRESS:PORT".
    pub seeds: Vec<String>,
    /// The cluster keyring: lines `ID HEX64`, the first one seals.
    pub key_file: Option<PathBuf>,
    /// This node's Ed25519 signing key (64 hex digits, `weftd genkey`):
    /// every record it writes is signed. Set with `trusted_nodes_file`.
    pub node_key_file: Option<PathBuf>,
    /// The nodes allowed to write records: lines `NAME PUBLIC-KEY [CIDR
    /// ...]`. When set, records not signed by their owner's listed key (or
    /// claiming outside its ranges) are refused. Set with `node_key_file`.
    pub trusted_nodes_file: Option<PathBuf>,
    /// With node keys: also accept datagrams without a node signature (the
    /// records in them are still checked), for a rolling upgrade from a
    /// build that signed records only. Off: such datagrams are refused.
    pub accept_unsigned_datagrams: bool,
    /// Encrypt control traffic (it is always authenticated).
    pub encrypt: bool,
    /// SWIM probe period in milliseconds.
    pub probe_interval_ms: u64,
    /// Anti-entropy period in milliseconds.
    pub sync_interval_ms: u64,
    /// Seconds a dead node keeps its blocks before others may claim them.
    pub dead_node_grace_s: u64,
    /// Expected number of nodes (tunes retransmissions and suspicion).
    pub cluster_size: u32,
    /// Where weftd writes this node's usable blocks for the CNI plugin.
    pub blocks_file: PathBuf,
    /// Seconds a block claimed on demand stays with the node after its
    /// last pod address is released, before it is given back (the node
    /// keeps one block per pool).
    pub block_release_after_s: u64,
}

/// Prometheus metrics over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Serve `GET /metrics`.
    pub enabled: bool,
    /// Where (loopback by default).
    pub listen: std::net::SocketAddr,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: false,
            listen: "127.0.0.1:9647".parse().expect("literal"),
        }
    }
}

/// Multicast between pods: membership reports read on the pods' veths,
/// published through gossip, datagrams replicated head-end (one copy per
/// node with members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Multicast {
    /// Carry multicast between pods. Off by default: it taps every pod's
    /// veth (a few per cent of the 64-byte packet rate), and nodes of an
    /// earlier release cannot read its group records.
    pub enabled: bool,
    /// Groups one pod may join; reports past it are dropped and counted
    /// (`group_limit`).
    pub max_groups_per_pod: u32,
    /// Groups this node's pods may join together.
    pub max_groups: u32,
    /// Multicast datagrams per second one pod may send (a burst of as many
    /// is allowed); the excess is dropped and counted (`multicast_rate_limited`).
    pub pod_rate_pps: u32,
    /// Multicast datagrams per second all of this node's pods may send.
    pub node_rate_pps: u32,
    /// Seconds between the node's general queries to its pods (IGMPv3 and
    /// MLDv2, 10-127): pods answer with their groups, a membership not
    /// reported for twice this and 10 s more lapses.
    pub query_interval_s: u8,
}

impl Default for Multicast {
    fn default() -> Self {
        Multicast {
            enabled: false,
            max_groups_per_pod: 64,
            max_groups: 1024,
            pod_rate_pps: 10_000,
            node_rate_pps: 50_000,
            query_interval_s: 60,
        }
    }
}

impl Multicast {
    /// The `[multicast]` section.
    fn check(&self) -> Result<(), Invalid> {
        for (key, v) in [
            ("multicast.max_groups_per_pod", self.max_groups_per_pod),
            ("multicast.max_groups", self.max_groups),
            ("multicast.pod_rate_pps", self.pod_rate_pps),
            ("multicast.node_rate_pps", self.node_rate_pps),
        ] {
            if v == 0 {
                return invalid(
                    key,
                    "expected a number above 0 (use multicast.enabled = false to carry none)",
                );
            }
        }
        if !(10..=127).contains(&self.query_interval_s) {
            return invalid(
                "multicast.query_interval_s",
                format!("expected 10-127 seconds (got {})", self.query_interval_s),
            );
        }
        Ok(())
    }
}

/// The default gossip port.
pub const GOSSIP_PORT: u16 = 7947;

impl Default for Gossip {
    fn default() -> Self {
        Gossip {
            enabled: false,
            port: GOSSIP_PORT,
            seeds: Vec::new(),
            key_file: None,
            node_key_file: None,
            trusted_nodes_file: None,
            accept_unsigned_datagrams: false,
            encrypt: false,
            probe_interval_ms: 1000,
            sync_interval_ms: 2000,
            dead_node_grace_s: 600,
            cluster_size: 32,
            blocks_file: PathBuf::from("/run/weft/blocks.json"),
            block_release_after_s: 300,
        }
    }
}

impl Gossip {
    /// The seeds as socket addresses (validated with the configuration).
    pub fn seed_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.seeds
            .iter()
            .filter_map(|s| parse_seed(s, self.port))
            .collect()
    }
}

fn parse_seed(s: &str, port: u16) -> Option<std::net::SocketAddr> {
    s.parse()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| (ip, port).into()))
}

/// A peer configured by hand, so the data plane works before and without
/// gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticPeer {
    /// The peer's node name.
    pub node: String,
    /// Its underlay address.
    pub underlay: IpAddr,
    /// Its VTEP MAC (VXLAN), e.g. "02:00:00:00:00:02".
    #[serde(default)]
    pub vtep_mac: Option<String>,
    /// The pod blocks it owns.
    pub blocks: Vec<IpNet>,
}

/// A configuration error: where, which key, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or "command line" / "environment").
    pub source: String,
    /// The key, as a dotted path (`overlay.encap`, `peers[1].blocks[0]`).
    pub key: String,
    /// What was expected, and what was found.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Values from the environment and the command line that override the file
/// (None: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `node_name`.
    pub node_name: Option<String>,
    /// `underlay.address`.
    pub underlay_address: Option<IpAddr>,
    /// `underlay.autodetect`.
    pub autodetect: Option<Autodetect>,
    /// `overlay.encap`.
    pub encap: Option<Encap>,
    /// `overlay.vni`.
    pub vni: Option<u32>,
    /// `overlay.port`.
    pub port: Option<u16>,
    /// `overlay.mtu`.
    pub mtu: Option<AutoOr<u16>>,
    /// `dataplane.workers`.
    pub workers: Option<AutoOr<u16>>,
    /// `dataplane.mode`.
    pub mode: Option<Mode>,
}

impl Config {
    /// Parses TOML text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().to_string();
            let at = inner
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            ConfigError {
                source: source.to_string(),
                // serde_path_to_error writes "." for the root and "" for a
                // key that is itself empty ('' = 0): both are the top level.
                key: if key == "." || key.is_empty() {
                    "(top level)".into()
                } else {
                    key
                },
                message: format!("{}{at}", message.trim_end()),
            }
        })?;
        cfg.validate(source)?;
        Ok(cfg)
    }

    /// Reads and parses a file. A missing file is an error naming it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: path.display().to_string(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// Applies overrides (environment and flags) and validates the result.
    pub fn apply(mut self, o: &Overrides, source: &str) -> Result<Config, ConfigError> {
        if let Some(v) = &o.node_name {
            self.node_name = Some(v.clone());
        }
        if let Some(v) = o.underlay_address {
            self.underlay.address = Some(v);
        }
        if let Some(v) = &o.autodetect {
            self.underlay.autodetect = v.clone();
        }
        if let Some(v) = o.encap {
            self.overlay.encap = v;
        }
        if let Some(v) = o.vni {
            self.overlay.vni = v;
        }
        if let Some(v) = o.port {
            self.overlay.port = v;
        }
        if let Some(v) = o.mtu {
            self.overlay.mtu = v;
        }
        if let Some(v) = o.workers {
            self.dataplane.workers = v;
        }
        if let Some(v) = o.mode {
            self.dataplane.mode = v;
        }
        self.validate(source)?;
        Ok(self)
    }

    /// Checks what the types cannot: ranges, prefixes, consistency. One
    /// check per section, in file order; the first failure names its key.
    pub fn validate(&self, source: &str) -> Result<(), ConfigError> {
        check_node_name(self.node_name.as_deref())
            .and_then(|()| self.overlay.check())
            .and_then(|()| check_mtu("underlay.mtu", &self.underlay.mtu))
            .and_then(|()| self.dataplane.check(&self.overlay))
            .and_then(|()| self.gossip.check())
            .and_then(|()| self.multicast.check())
            .and_then(|()| check_peers(&self.peers, self.node_name.as_deref(), &self.overlay))
            .map_err(|(key, message)| ConfigError {
                source: source.to_string(),
                key,
                message,
            })
    }
}

/// A failed check: the key and what was expected.
type Invalid = (String, String);

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Result<(), Invalid> {
    Err((key.into(), message.into()))
}

fn check_node_name(name: Option<&str>) -> Result<(), Invalid> {
    match name {
        Some(n)
            if n.is_empty()
                || n.len() > 253
                || n.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            invalid(
                "node_name",
                format!("expected a node name of 1-253 printable characters (got {n:?})"),
            )
        }
        _ => Ok(()),
    }
}

/// An MTU setting: "auto" or at least IPv4's minimum datagram size.
fn check_mtu(key: &str, mtu: &AutoOr<u16>) -> Result<(), Invalid> {
    match mtu.value() {
        Some(mtu) if *mtu < 576 => {
            invalid(key, format!("expected \"auto\" or 576-65535 (got {mtu})"))
        }
        _ => Ok(()),
    }
}

/// A UDP port setting.
fn check_port(key: &str, port: u16) -> Result<(), Invalid> {
    if port == 0 {
        return invalid(key, "expected a UDP port 1-65535 (got 0)");
    }
    Ok(())
}

/// A pod block (`overlay.blocks`, a static peer's blocks): its network
/// address, inside a pool, no larger than `max` (the block size) if given.
fn check_block(key: String, b: &IpNet, pools: &[IpNet], max: Option<u8>) -> Result<(), Invalid> {
    if b.trunc() != *b {
        return invalid(
            key,
            format!(
                "expected a prefix without host bits (got {b}, did you mean {}?)",
                b.trunc()
            ),
        );
    }
    if !pools.iter().any(|pool| pool.contains(b)) {
        return invalid(
            key,
            format!("expected a block inside a pool in overlay.pools (got {b})"),
        );
    }
    match max {
        Some(size) if b.prefix_len() < size => invalid(
            key,
            format!("expected a block no larger than the block size /{size} (got {b})"),
        ),
        _ => Ok(()),
    }
}

impl Overlay {
    /// The `[overlay]` section.
    fn check(&self) -> Result<(), Invalid> {
        if self.pools.is_empty() {
            return invalid(
                "overlay.pools",
                "expected at least one pod pool, like \"10.244.0.0/16\"",
            );
        }
        for (i, pool) in self.pools.iter().enumerate() {
            if pool.trunc() != *pool {
                return invalid(
                    format!("overlay.pools[{i}]"),
                    format!(
                        "expected a prefix without host bits (got {pool}, did you mean {}?)",
                        pool.trunc()
                    ),
                );
            }
            let block = self.block_size_of(pool);
            if block < pool.prefix_len() {
                return invalid(
                    format!("overlay.pools[{i}]"),
                    format!("pool {pool} is smaller than one block (/{block})"),
                );
            }
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let size = self.block_size_of(b);
            check_block(format!("overlay.blocks[{i}]"), b, &self.pools, Some(size))?;
        }
        for (i, p) in self.no_nat_pools.iter().enumerate() {
            if !self.pools.contains(p) {
                return invalid(
                    format!("overlay.no_nat_pools[{i}]"),
                    format!("expected one of overlay.pools (got {p})"),
                );
            }
        }
        if !(8..=32).contains(&self.block_size_v4) {
            return invalid(
                "overlay.block_size_v4",
                format!("expected 8 to 32 (got {})", self.block_size_v4),
            );
        }
        if !(64..=128).contains(&self.block_size_v6) {
            return invalid(
                "overlay.block_size_v6",
                format!("expected 64 to 128 (got {})", self.block_size_v6),
            );
        }
        if encap::vxlan::Vni::new(self.vni).is_none() {
            return invalid(
                "overlay.vni",
                format!("expected 0 to 16777215 (got {})", self.vni),
            );
        }
        check_port("overlay.port", self.port)?;
        if !(1..=MAX_SOURCE_PORT_COUNT).contains(&self.source_port_count) {
            return invalid(
                "overlay.source_port_count",
                format!(
                    "expected 1 to {MAX_SOURCE_PORT_COUNT} (got {})",
                    self.source_port_count
                ),
            );
        }
        check_mtu("overlay.mtu", &self.mtu)?;
        if !valid_link_name(&self.tun_name) {
            return invalid(
                "overlay.tun_name",
                format!(
                    "expected an interface name of 1-15 characters without '/', ':' or spaces (got {:?})",
                    self.tun_name
                ),
            );
        }
        Ok(())
    }

    /// The block size of the family of `net`.
    fn block_size_of(&self, net: &IpNet) -> u8 {
        if net.addr().is_ipv4() {
            self.block_size_v4
        } else {
            self.block_size_v6
        }
    }
}

/// Whether the kernel accepts `name` for a network interface.
fn valid_link_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.contains(['/', ' ', ':'])
}

impl Dataplane {
    /// The `[dataplane]` section (and what veth attachment rules out in
    /// `[overlay]`).
    fn check(&self, overlay: &Overlay) -> Result<(), Invalid> {
        if let Some(w) = self.workers.value() {
            if *w == 0 || *w > 256 {
                return invalid(
                    "dataplane.workers",
                    format!("expected \"auto\" or 1-256 (got {w})"),
                );
            }
        }
        if self.busy_poll_us > MAX_BUSY_POLL_US {
            return invalid(
                "dataplane.busy_poll_us",
                format!(
                    "expected 0-{MAX_BUSY_POLL_US} microseconds (got {})",
                    self.busy_poll_us
                ),
            );
        }
        if self.mode == Mode::Kernel {
            if self.attach == Attach::Veth {
                return invalid(
                    "dataplane.mode",
                    "expected \"userspace\" or \"auto\" with dataplane.attach = \"veth\" (the kernel path routes pods through the host)",
                );
            }
            if overlay.encap == Encap::None {
                return invalid(
                    "dataplane.mode",
                    "expected \"userspace\" or \"auto\" with overlay.encap = \"none\" (nothing to encapsulate)",
                );
            }
        }
        if !valid_link_name(&self.kernel_device) {
            return invalid(
                "dataplane.kernel_device",
                format!(
                    "expected an interface name of 1-15 characters without '/', ':' or spaces (got {:?})",
                    self.kernel_device
                ),
            );
        }
        if self.attach == Attach::Veth {
            if overlay.encap == Encap::None {
                return invalid(
                    "overlay.encap",
                    "expected \"vxlan\" or \"ipip\" with dataplane.attach = \"veth\" (plain routing needs the kernel's routes)",
                );
            }
            if overlay.cross_subnet {
                return invalid(
                    "overlay.cross_subnet",
                    "expected false with dataplane.attach = \"veth\" (direct routes need the kernel's routes)",
                );
            }
        }
        Ok(())
    }
}

impl Gossip {
    /// The `[gossip]` section.
    fn check(&self) -> Result<(), Invalid> {
        check_port("gossip.port", self.port)?;
        if self.enabled && self.key_file.is_none() {
            return invalid(
                "gossip.key_file",
                "expected a keyring file (lines `ID HEX64`) when gossip.enabled = true",
            );
        }
        match (&self.node_key_file, &self.trusted_nodes_file) {
            (Some(_), None) => {
                return invalid(
                    "gossip.trusted_nodes_file",
                    "expected a trusted-nodes file (lines `NAME PUBLIC-KEY [CIDR ...]`) when gossip.node_key_file is set",
                )
            }
            (None, Some(_)) => {
                return invalid(
                    "gossip.node_key_file",
                    "expected this node's key file (from `weftd genkey`) when gossip.trusted_nodes_file is set",
                )
            }
            _ => {}
        }
        for (i, seed) in self.seeds.iter().enumerate() {
            if parse_seed(seed, self.port).is_none() {
                return invalid(
                    format!("gossip.seeds[{i}]"),
                    format!("expected ADDRESS or ADDRESS:PORT, like \"10.99.0.1\" (got {seed:?})"),
                );
            }
        }
        for (key, value, range) in [
            (
                "gossip.probe_interval_ms",
                self.probe_interval_ms,
                100..=60_000,
            ),
            (
                "gossip.sync_interval_ms",
                self.sync_interval_ms,
                100..=600_000,
            ),
            (
                "gossip.block_release_after_s",
                self.block_release_after_s,
                1..=604_800,
            ),
        ] {
            if !range.contains(&value) {
                return invalid(
                    key,
                    format!(
                        "expected {} to {} (got {value})",
                        range.start(),
                        range.end()
                    ),
                );
            }
        }
        if self.cluster_size == 0 {
            return invalid("gossip.cluster_size", "expected at least 1 (got 0)");
        }
        Ok(())
    }
}

/// The `[[peers]]` tables: unique names (not this node's), MACs, blocks.
fn check_peers(peers: &[StaticPeer], me: Option<&str>, overlay: &Overlay) -> Result<(), Invalid> {
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in peers.iter().enumerate() {
        if !names.insert(p.node.as_str()) || Some(p.node.as_str()) == me {
            return invalid(
                format!("peers[{i}].node"),
                format!("expected a unique node name (\"{}\" appears twice)", p.node),
            );
        }
        if let Some(mac) = &p.vtep_mac {
            if mac.parse::<encap::MacAddr>().is_err() {
                return invalid(
                    format!("peers[{i}].vtep_mac"),
                    format!("expected a MAC address like 02:00:00:00:00:02 (got {mac:?})"),
                );
            }
        }
        if p.blocks.is_empty() {
            return invalid(
                format!("peers[{i}].blocks"),
                "expected at least one pod block",
            );
        }
        for (j, b) in p.blocks.iter().enumerate() {
            check_block(format!("peers[{i}].blocks[{j}]"), b, &overlay.pools, None)?;
        }
    }
    Ok(())
}

/// Where a configuration file is looked for by default.
pub fn default_path() -> PathBuf {
    PathBuf::from("/etc/weft/weftd.toml")
}
