//! Admin API requests.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The longest request line accepted.
pub const MAX_REQUEST: usize = 4096;

/// One admin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Unknown fields are ignored: a newer weftctl may send more than this
// weftd knows, and still get an answer.
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Node, peers (state, RTT, encapsulation), blocks, convergence.
    Status,
    /// The kernel routes weftd programmed (proto 87).
    Routes,
    /// The forwarding tables: blocks and nodes.
    Fdb,
    /// Pod endpoints, local and learned.
    Endpoints,
    /// Data-path and gossip counters, drops by reason.
    Stats,
    /// Multicast groups: this node's member pods and the other nodes with
    /// members.
    Groups,
    /// Whether weftd is healthy and ready.
    Health,
    /// How weftd would forward a packet from `src` to `dst`, and why.
    Trace {
        /// Source address.
        src: IpAddr,
        /// Destination address.
        dst: IpAddr,
    },
}

impl Request {
    /// Parses one request line (at most [`MAX_REQUEST`] bytes).
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        if line.len() > MAX_REQUEST {
            return Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
        serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_garbage_is_refused() {
        assert_eq!(
            Request::parse(br#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
        assert_eq!(
            Request::parse(br#"{"cmd":"trace","src":"10.244.0.1","dst":"10.244.1.1"}"#).unwrap(),
            Request::Trace {
                src: "10.244.0.1".parse().unwrap(),
                dst: "10.244.1.1".parse().unwrap()
            }
        );
        for bad in [
            &br#"{"cmd":"reboot"}"#[..],
            br#"{"cmd":"trace","src":"x","dst":"10.0.0.1"}"#,
            br#"{"cmd":"trace","src":"10.0.0.1"}"#,
            b"",
            b"{",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Request::parse(&vec![b' '; MAX_REQUEST + 1]).is_err());
    }
}
