//! The pod link's contract, shared by the CNI plugin (which wires pods) and
//! weftd (which routes to them): the gateway every pod routes through, the
//! host end's MAC and name, the pod's MAC, and the messages the plugin and
//! weftd exchange on weftd's CNI socket (one JSON line each way).
//!
//! Both sides build and read these messages through the types below, so
//! the two ends cannot drift apart and a line is parsed once.

use encap::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// MAC of every host-side veth end (the pods' gateway MAC).
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pods' IPv4 gateway, answered by proxy ARP.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pods' IPv6 gateway: the host end's EUI-64 link-local address.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// The longest interface name Linux accepts.
const MAX_IFNAME: usize = 15;

/// The host end's name: "weft" and 11 hex digits of a hash of container id
/// and interface: stable, unique in practice, 15 characters.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let h = fdb::fnv1a(format!("{container_id}/{ifname}").as_bytes());
    format!("weft{:011x}", h & 0xfff_ffff_ffff)
}

/// True if `name` has the form of [`host_ifname`]'s names.
pub fn is_host_ifname(name: &str) -> bool {
    name.len() == MAX_IFNAME
        && name.starts_with("weft")
        && name[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The pod end's MAC, derived from the host end's name: locally
/// administered, unicast, stable across restarts (weftd derives it again
/// for pods recorded before a restart).
pub fn pod_mac(host: &str) -> [u8; 6] {
    // (Another start than `host_ifname`'s, so the two are independent.)
    let h = fdb::fnv1a_from(0x6c62_272e_07bb_0142, host.as_bytes());
    let b = h.to_be_bytes();
    [0x0a, b[0], b[1], b[2], b[3], b[4]]
}

/// A line from the plugin to weftd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ToWeftd {
    /// A pod's addresses are wired (with its MAC).
    EndpointAdded(PodChange),
    /// A pod's addresses are released.
    EndpointRemoved(PodChange),
    /// The node's blocks of a family are full: claim another.
    BlockNeeded {
        /// 4 or 6.
        family: u8,
    },
}

/// The pod a [`ToWeftd`] endpoint change is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodChange {
    /// The container (for logs).
    #[serde(rename = "containerID", default)]
    pub container_id: String,
    /// The pod's interface (for logs).
    #[serde(default)]
    pub ifname: String,
    /// The addresses added or removed.
    pub ips: Vec<IpAddr>,
    /// The pod's MAC (required when added).
    #[serde(
        default,
        with = "opt_mac_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub mac: Option<MacAddr>,
    /// Veth attachment: the host end of the pod's veth (its port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
}

impl ToWeftd {
    /// Parses and checks one line: an added endpoint has a MAC, a port
    /// name is a possible interface name, a family is 4 or 6.
    pub fn parse(line: &str) -> Result<ToWeftd, String> {
        let m: ToWeftd = serde_json::from_str(line).map_err(|e| format!("bad line: {e}"))?;
        match &m {
            ToWeftd::EndpointAdded(c) | ToWeftd::EndpointRemoved(c) => {
                if matches!(m, ToWeftd::EndpointAdded(_)) && c.mac.is_none() {
                    return Err("endpoint_added without a \"mac\"".into());
                }
                if let Some(n) = &c.host_ifname {
                    if n.is_empty() || n.len() > MAX_IFNAME {
                        return Err(format!("bad \"host_ifname\": {n:?}"));
                    }
                }
            }
            ToWeftd::BlockNeeded { family } => {
                if !matches!(family, 4 | 6) {
                    return Err(format!("bad \"family\": {family} (4 or 6)"));
                }
            }
        }
        Ok(m)
    }

    /// The line to send (without its newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }
}

/// weftd's answer to a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromWeftd {
    /// Done.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FromWeftd {
    /// The answer to a line: done, or why not.
    pub fn from_result(r: Result<(), String>) -> FromWeftd {
        match r {
            Ok(()) => FromWeftd {
                ok: true,
                error: None,
            },
            Err(e) => FromWeftd {
                ok: false,
                error: Some(e),
            },
        }
    }

    /// Reads an answer line: `Ok(())`, weftd's reason, or why the line is
    /// unreadable.
    pub fn parse(line: &str) -> Result<(), String> {
        let a: FromWeftd = serde_json::from_str(line.trim())
            .map_err(|e| format!("unreadable answer {line:?}: {e}"))?;
        if a.ok {
            Ok(())
        } else {
            Err(a.error.unwrap_or_else(|| "no reason given".into()))
        }
    }

    /// The line to send (without its newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }
}

/// MACs as "02:00:00:00:00:01" in JSON.
pub mod mac_text {
    use encap::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a MAC as text.
    pub fn serialize<S: Serializer>(mac: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(mac)
    }

    /// Reads a MAC from text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("bad MAC {text:?}")))
    }
}

/// An optional MAC as text, or null.
mod opt_mac_text {
    use encap::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(m) => s.collect_str(m),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MacAddr>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("bad MAC {text:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_bad_ones_are_refused() {
        let add = ToWeftd::EndpointAdded(PodChange {
            container_id: "c".into(),
            ifname: "eth0".into(),
            ips: vec!["10.244.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            mac: Some(MacAddr([2, 0, 0, 0, 0, 5])),
            host_ifname: Some(host_ifname("c", "eth0")),
        });
        assert_eq!(ToWeftd::parse(&add.to_line()).unwrap(), add);
        // What earlier plugins sent still reads.
        let earlier = r#"{"event":"endpoint_removed","containerID":"c","ifname":"eth0","ips":["10.244.0.5"],"mac":null}"#;
        assert!(matches!(
            ToWeftd::parse(earlier).unwrap(),
            ToWeftd::EndpointRemoved(PodChange { mac: None, .. })
        ));
        let block = ToWeftd::BlockNeeded { family: 6 };
        assert_eq!(block.to_line(), r#"{"event":"block_needed","family":6}"#);
        assert_eq!(ToWeftd::parse(&block.to_line()).unwrap(), block);
        for bad in [
            "{",
            r#"{"event":"endpoint_added","ips":["10.244.0.5"]}"#,
            r#"{"event":"endpoint_added","ips":["10.244.0.5"],"mac":"zz"}"#,
            r#"{"event":"reboot","ips":[]}"#,
            r#"{"event":"endpoint_removed","ips":["ten"]}"#,
            r#"{"event":"endpoint_removed","ips":[],"host_ifname":"sixteen-chars-xx"}"#,
            r#"{"event":"block_needed","family":5}"#,
        ] {
            assert!(ToWeftd::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_round_trip() {
        let ok = FromWeftd::from_result(Ok(()));
        assert_eq!(ok.to_line(), r#"{"ok":true}"#);
        assert_eq!(FromWeftd::parse(&ok.to_line()), Ok(()));
        let no = FromWeftd::from_result(Err("pool exhausted".into()));
        assert_eq!(
            FromWeftd::parse(&no.to_line()),
            Err("pool exhausted".into())
        );
        assert_eq!(
            FromWeftd::parse(r#"{"ok":false}"#),
            Err("no reason given".into())
        );
        assert!(FromWeftd::parse("garbage").is_err());
    }

    #[test]
    fn names_and_macs_are_stable() {
        // Pods wired by earlier releases keep their names and MACs.
        assert_eq!(host_ifname("abc", "eth0").len(), 15);
        assert_eq!(host_ifname("abc", "eth0"), host_ifname("abc", "eth0"));
        assert_ne!(host_ifname("abc", "eth0"), host_ifname("abc", "eth1"));
        let mac = pod_mac(&host_ifname("abc", "eth0"));
        assert_eq!(mac[0], 0x0a);
    }
}
