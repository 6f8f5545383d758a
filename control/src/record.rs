//! The replicated records: what one node says about itself.
//!
//! Every record has exactly one writer, its `owner` (named in the key), and
//! a [`Version`] the owner increases with every write; a restarted owner
//! starts a new epoch, so its writes beat everything it wrote before. The
//! merge rule is "highest version wins, ties broken by the larger value",
//! which makes merging commutative, associative and idempotent (tested in
//! `state`). Deletions are tombstones ([`Value::Deleted`]) that expire.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The longest node name accepted (a Kubernetes node name is a DNS label
/// set; 253 is its limit, 63 is ample for the lab and most clusters).
pub const MAX_NAME: usize = 253;
/// The largest encoded record accepted.
pub const MAX_RECORD: usize = 600;

/// A record's version: the owner's start epoch, then a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// The owner's start time (ms since the Unix epoch, or virtual time).
    pub epoch: u64,
    /// Writes within the epoch.
    pub counter: u64,
}

/// What a record is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    /// The owner's node record.
    Node {
        /// The node.
        owner: String,
    },
    /// The owner claims a pod block.
    Claim {
        /// The claiming node.
        owner: String,
        /// The block.
        block: IpNet,
    },
    /// A pod endpoint on the owner.
    Endpoint {
        /// The node the pod runs on.
        owner: String,
        /// The pod address.
        ip: IpAddr,
    },
    /// The owner has pods in a multicast group: it wants one copy of the
    /// group's traffic from every other node.
    Group {
        /// The node with members.
        owner: String,
        /// The group (a multicast address the cluster carries).
        group: IpAddr,
    },
}

impl Key {
    /// The node that writes this record.
    pub fn owner(&self) -> &str {
        match self {
            Key::Node { owner }
            | Key::Claim { owner, .. }
            | Key::Endpoint { owner, .. }
            | Key::Group { owner, .. } => owner,
        }
    }
}

/// A node as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Underlay addresses (one per family at most).
    pub underlay: Vec<IpAddr>,
    /// VTEP MAC.
    pub vtep_mac: [u8; 6],
    /// Accepts VXLAN.
    pub vxlan: bool,
    /// Accepts IP-in-IP.
    pub ipip: bool,
    /// Where the node listens for gossip, and its boot number: enough for
    /// a node that learns of it from records to probe it directly.
    pub gossip: std::net::SocketAddr,
    /// The node's boot number (see [`crate::member::Member`]).
    pub boot: u64,
}

/// A record's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    /// For [`Key::Node`].
    Node(NodeInfo),
    /// For [`Key::Claim`]: when the owner claimed it (ms; 0 for a block
    /// from the owner's configuration). Earlier claims win.
    Claim {
        /// Claim time.
        claimed_at: u64,
    },
    /// For [`Key::Endpoint`]: the pod interface's MAC.
    Endpoint {
        /// MAC address.
        mac: [u8; 6],
    },
    /// The record was deleted (a tombstone; expires).
    Deleted,
    /// For [`Key::Group`]: how many of the owner's pods are members
    /// (shown by `weftctl groups`; any count means "send me a copy").
    /// Last, as every new variant must be: postcard numbers variants in
    /// order, and earlier releases read the ones before.
    Members {
        /// Member pods on the owner.
        pods: u32,
    },
}

/// One versioned record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// What it is about (and who writes it).
    pub key: Key,
    /// Its version.
    pub version: Version,
    /// Its value.
    pub value: Value,
}

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordError {
    /// Could not be decoded.
    Malformed,
    /// Encoded size above [`MAX_RECORD`].
    Oversized,
    /// The owner name is empty, too long or has characters a node name
    /// cannot have.
    BadName,
    /// The value does not fit the key (e.g. a MAC for a node key).
    Mismatch,
    /// A node record with no underlay address or more than two.
    BadNode,
    /// A claim outside the pools or not of the configured block size.
    BadBlock,
    /// A group record for an address that is not multicast.
    BadGroup,
    /// A state limit is reached (owners, records per owner).
    LimitReached,
    /// Node keys are in use and the owner is not in the trusted-nodes file.
    UnknownOwner,
    /// Node keys are in use and the record carries no signature.
    Unsigned,
    /// The signature does not verify under the owner's public key: forged
    /// (by a member writing in another's name) or altered.
    BadSignature,
    /// A claim or endpoint outside the ranges the trusted-nodes file allows
    /// its owner.
    NotAllowed,
}

impl RecordError {
    /// A short stable name, for counters.
    pub fn reason(self) -> &'static str {
        match self {
            RecordError::Malformed => "record_malformed",
            RecordError::Oversized => "record_oversized",
            RecordError::BadName => "record_bad_name",
            RecordError::Mismatch => "record_mismatch",
            RecordError::BadNode => "record_bad_node",
            RecordError::BadBlock => "record_bad_block",
            RecordError::BadGroup => "record_bad_group",
            RecordError::LimitReached => "record_limit_reached",
            RecordError::UnknownOwner => "record_unknown_owner",
            RecordError::Unsigned => "record_unsigned",
            RecordError::BadSignature => "record_bad_signature",
            RecordError::NotAllowed => "record_not_allowed",
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for RecordError {}

/// True if `name` can be a node name: 1-253 bytes of `[a-z0-9.-_]` (upper
/// case too, for hosts that use it).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

impl Record {
    /// Encodes the record (postcard).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("records always serialise")
    }

    /// Decodes and checks a record's shape (not its block against pools:
    /// that is [`crate::state::Rules`]' job).
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        match Signed::decode(bytes)? {
            Signed { record, sig: None } => Ok(record),
            Signed { sig: Some(_), .. } => Err(RecordError::Malformed),
        }
    }

    /// Checks the owner name and that the value fits the key.
    pub fn check_shape(&self) -> Result<(), RecordError> {
        if !valid_name(self.key.owner()) {
            return Err(RecordError::BadName);
        }
        if let Key::Claim { block, .. } = &self.key {
            // One key per block: `10.0.0.5/26` is not another name for
            // `10.0.0.0/26`.
            if *block != block.trunc() {
                return Err(RecordError::BadBlock);
            }
        }
        match (&self.key, &self.value) {
            (_, Value::Deleted) => Ok(()),
            (Key::Node { .. }, Value::Node(n)) => {
                let v4 = n.underlay.iter().filter(|a| a.is_ipv4()).count();
                let v6 = n.underlay.len() - v4;
                if n.underlay.is_empty() || v4 > 1 || v6 > 1 {
                    Err(RecordError::BadNode)
                } else {
                    Ok(())
                }
            }
            (Key::Claim { .. }, Value::Claim { .. }) => Ok(()),
            (Key::Endpoint { .. }, Value::Endpoint { .. }) => Ok(()),
            (Key::Group { group, .. }, Value::Members { .. }) if group.is_multicast() => Ok(()),
            (Key::Group { .. }, Value::Members { .. }) => Err(RecordError::BadGroup),
            _ => Err(RecordError::Mismatch),
        }
    }
}

/// An owner's Ed25519 signature over a record (see [`crate::identity`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerSig(pub [u8; 64]);

impl std::fmt::Debug for OwnerSig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OwnerSig({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

// serde implements arrays only up to 32 elements: a signature travels as
// a byte string (postcard: a length and the 64 bytes).
impl Serialize for OwnerSig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for OwnerSig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes64;
        impl serde::de::Visitor<'_> for Bytes64 {
            type Value = OwnerSig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<OwnerSig, E> {
                <[u8; 64]>::try_from(v)
                    .map(OwnerSig)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(Bytes64)
    }
}

/// A record as it travels and is stored: with its owner's signature when
/// the cluster uses node keys ([`crate::identity`]), which relays and
/// anti-entropy pass on unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signed {
    /// The record.
    pub record: Record,
    /// Its owner's signature, if any.
    pub sig: Option<OwnerSig>,
}

impl From<Record> for Signed {
    fn from(record: Record) -> Self {
        Signed { record, sig: None }
    }
}

impl Signed {
    /// Encodes as a gossip broadcast: the record's own encoding, then the
    /// 64 signature bytes if signed. An unsigned record encodes exactly as
    /// [`Record::encode`], so clusters without node keys keep the format
    /// of earlier releases (rolling upgrades).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.record.encode();
        if let Some(sig) = &self.sig {
            out.extend_from_slice(&sig.0);
        }
        out
    }

    /// Decodes [`Self::encode`]'s form and checks the record's shape.
    pub fn decode(bytes: &[u8]) -> Result<Signed, RecordError> {
        if bytes.len() > MAX_RECORD {
            return Err(RecordError::Oversized);
        }
        let (record, rest): (Record, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|_| RecordError::Malformed)?;
        let sig = match rest.len() {
            0 => None,
            64 => Some(OwnerSig(rest.try_into().expect("64 bytes"))),
            _ => return Err(RecordError::Malformed),
        };
        record.check_shape()?;
        Ok(Signed { record, sig })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(owner: &str) -> Record {
        Record {
            key: Key::Node {
                owner: owner.into(),
            },
            version: Version {
                epoch: 1,
                counter: 2,
            },
            value: Value::Node(NodeInfo {
                underlay: vec!["10.99.0.1".parse().unwrap()],
                vtep_mac: [0xee, 0, 0, 0, 0, 1],
                vxlan: true,
                ipip: false,
                gossip: "10.99.0.1:7947".parse().unwrap(),
                boot: 1,
            }),
        }
    }

    #[test]
    fn encodes_small_and_round_trips() {
        let r = node("node-1");
        let b = r.encode();
        assert!(b.len() < 40, "{}", b.len());
        assert_eq!(Record::decode(&b).unwrap(), r);
        // Trailing bytes and truncation are malformed.
        let mut long = b.clone();
        long.push(0);
        assert_eq!(Record::decode(&long), Err(RecordError::Malformed));
        for cut in 0..b.len() {
            assert!(Record::decode(&b[..cut]).is_err());
        }
    }

    #[test]
    fn shape_errors() {
        let mut r = node("bad name!");
        assert_eq!(r.check_shape(), Err(RecordError::BadName));
        r = node("n");
        r.value = Value::Endpoint { mac: [0; 6] };
        assert_eq!(r.check_shape(), Err(RecordError::Mismatch));
        r = node("n");
        if let Value::Node(n) = &mut r.value {
            n.underlay.push("10.0.0.2".parse().unwrap());
        }
        assert_eq!(r.check_shape(), Err(RecordError::BadNode));
        let long = "a".repeat(MAX_NAME + 1);
        assert_eq!(node(&long).check_shape(), Err(RecordError::BadName));
    }

    #[test]
    fn group_records_round_trip_and_older_variants_keep_their_numbers() {
        let r = Record {
            key: Key::Group {
                owner: "node-1".into(),
                group: "239.1.2.3".parse().unwrap(),
            },
            version: Version {
                epoch: 1,
                counter: 1,
            },
            value: Value::Members { pods: 2 },
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        let mut unicast = r.clone();
        unicast.key = Key::Group {
            owner: "node-1".into(),
            group: "10.0.0.1".parse().unwrap(),
        };
        assert_eq!(unicast.check_shape(), Err(RecordError::BadGroup));
        let mut wrong = r.clone();
        wrong.value = Value::Claim { claimed_at: 0 };
        assert_eq!(wrong.check_shape(), Err(RecordError::Mismatch));
        // Earlier releases number the variants they know the same way.
        assert_eq!(postcard::to_allocvec(&Value::Deleted).unwrap(), [3]);
        assert_eq!(
            postcard::to_allocvec(&Value::Members { pods: 2 }).unwrap(),
            [4, 2]
        );
    }

    #[test]
    fn signed_records_round_trip_and_unsigned_keep_the_old_format() {
        let unsigned = Signed::from(node("node-1"));
        assert_eq!(unsigned.encode(), node("node-1").encode());
        assert_eq!(Signed::decode(&unsigned.encode()).unwrap(), unsigned);
        let signed = Signed {
            record: node("node-1"),
            sig: Some(OwnerSig([7; 64])),
        };
        let b = signed.encode();
        assert_eq!(b.len(), unsigned.encode().len() + 64);
        assert_eq!(Signed::decode(&b).unwrap(), signed);
        // A signature cut short, or anything but 0 or 64 trailing bytes.
        for cut in [1, 32, 63] {
            assert_eq!(
                Signed::decode(&b[..b.len() - cut]),
                Err(RecordError::Malformed)
            );
        }
        // The serde form (anti-entropy batches) round-trips too.
        let v = postcard::to_allocvec(&signed).unwrap();
        assert_eq!(postcard::from_bytes::<Signed>(&v).unwrap(), signed);
        let mut short = postcard::to_allocvec(&(node("n"), Some(&[1u8; 10][..]))).unwrap();
        assert!(postcard::from_bytes::<Signed>(&short).is_err());
        short.truncate(3);
        assert!(postcard::from_bytes::<Signed>(&short).is_err());
    }
}
