//! The bodies inside a sealed control datagram (see [`crate::auth`]): the
//! first byte says what follows.

use crate::record::{Record, Signed};
use serde::{Deserialize, Serialize};

/// What a datagram body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    /// A SWIM packet for foca (probes, acks, membership updates, and the
    /// records piggybacked as custom broadcasts).
    Swim(&'a [u8]),
    /// Anti-entropy, first step: one digest per bucket of owners.
    Summary(Vec<u64>),
    /// Anti-entropy: per-owner digests for a range of owner hashes.
    Digest(Digest),
    /// Anti-entropy: full records of owners whose digests differed, with
    /// their owners' signatures if the cluster uses node keys.
    Records(Vec<Signed>),
    /// A round-trip probe carrying the sender's clock (µs).
    Probe(u64),
    /// The answer to a probe, echoing its clock.
    ProbeAck(u64),
    /// A claim check: the sender's claim record, to be stored, and the
    /// question "who else claims this block?" (see `agent::claims`).
    ClaimCheck(Signed),
    /// The answer to a claim check.
    ClaimAnswer(ClaimAnswer),
    /// What the sender says of itself that is not replicated state (its
    /// data path), sent to a member when it comes up and with each
    /// anti-entropy probe and answer. Earlier releases count it as
    /// `wire_unknown_kind` and go on.
    Status(NodeStatus),
}

/// A [`Body::Status`]: what a node says of itself to its peers.
///
/// Later releases may append fields: a status decodes from its leading
/// fields and ignores what follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The data path that carries the node's traffic (`"kernel"` or
    /// `"userspace"`; at most [`MAX_STATUS_WORD`] bytes of `a-z`, `0-9`
    /// and `-`).
    pub path: String,
}

/// Longest word a [`NodeStatus`] field may hold.
pub const MAX_STATUS_WORD: usize = 32;

impl NodeStatus {
    fn valid(&self) -> bool {
        !self.path.is_empty()
            && self.path.len() <= MAX_STATUS_WORD
            && self
                .path
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }
}

/// The answer to a [`Body::ClaimCheck`]: the answering node stores the
/// claim, then names every other live claim overlapping the block it
/// knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimAnswer {
    /// The block checked.
    pub block: ipnet::IpNet,
    /// The checked claim's time, which names the claim.
    pub claimed_at: u64,
    /// The most nodes the answering node knew at once lately (itself
    /// included): the claimant's quorum is a majority of the largest count
    /// it hears.
    pub known: u32,
    /// The other claims overlapping the block (at most
    /// [`MAX_CONFLICTS`]), with their owners' signatures.
    pub conflicts: Vec<Signed>,
}

/// Most conflicting claims one [`ClaimAnswer`] carries (one is enough to
/// back off; a few let the claimant skip them all).
pub const MAX_CONFLICTS: usize = 4;

impl ClaimAnswer {
    /// The answer's body, with as many of `conflicts` as fit
    /// [`MAX_BODY`] (at most [`MAX_CONFLICTS`]; one always fits).
    pub fn encode_with(
        block: ipnet::IpNet,
        claimed_at: u64,
        known: u32,
        conflicts: impl IntoIterator<Item = Signed>,
    ) -> Vec<u8> {
        // Block, time, count and the vector's length: under 64 bytes.
        let mut size = 64;
        let mut fitting = Vec::new();
        for c in conflicts.into_iter().take(MAX_CONFLICTS) {
            let len = c.encode().len() + 2;
            if !fitting.is_empty() && size + len > MAX_BODY {
                break;
            }
            size += len;
            fitting.push(c);
        }
        let mut out = Vec::new();
        Body::ClaimAnswer(ClaimAnswer {
            block,
            claimed_at,
            known,
            conflicts: fitting,
        })
        .encode(&mut out);
        out
    }
}

/// Per-owner digests covering the owner-hash range `lo..=hi`: an owner in
/// that range missing from `entries` is one the sender does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Range start (owner hash).
    pub lo: u64,
    /// Range end, inclusive.
    pub hi: u64,
    /// Whether the receiver should answer with its own digests.
    pub reply: bool,
    /// `(owner hash, digest)`, sorted.
    pub entries: Vec<(u64, u64)>,
}

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Empty body.
    Empty,
    /// Unknown kind byte.
    UnknownKind,
    /// The body does not decode.
    Malformed,
}

impl WireError {
    /// A short stable name, for counters.
    pub fn reason(self) -> &'static str {
        match self {
            WireError::Empty => "wire_empty",
            WireError::UnknownKind => "wire_unknown_kind",
            WireError::Malformed => "wire_malformed",
        }
    }
}

const SWIM: u8 = 0;
const DIGEST: u8 = 1;
const RECORDS: u8 = 2;
const SUMMARY: u8 = 3;
const PROBE: u8 = 4;
const PROBE_ACK: u8 = 5;
/// Records with signatures. Unsigned batches keep the [`RECORDS`] kind and
/// format, so clusters without node keys talk to earlier releases.
const SIGNED_RECORDS: u8 = 6;
const CLAIM_CHECK: u8 = 7;
const CLAIM_ANSWER: u8 = 8;
const STATUS: u8 = 9;
/// Which of [`crate::Counters::bytes_by_kind`]'s four counts a body of
/// kind byte `kind` adds to: SWIM, digests, records (signed or not), and
/// the rest (summaries, probes, claim checks and answers, statuses).
pub fn byte_count_index(kind: u8) -> usize {
    match kind {
        SWIM => 0,
        DIGEST => 1,
        RECORDS | SIGNED_RECORDS => 2,
        _ => 3,
    }
}

/// The largest body we produce (fits a sealed and signed datagram in 1400
/// bytes).
pub const MAX_BODY: usize = 1400 - crate::auth::OVERHEAD - crate::auth::SIGNATURE_LEN;
/// Most digest entries per datagram.
pub const DIGESTS_PER_DATAGRAM: usize = 60;

fn whole<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, WireError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        _ => Err(WireError::Malformed),
    }
}

impl<'a> Body<'a> {
    /// Decodes a body.
    pub fn decode(bytes: &'a [u8]) -> Result<Body<'a>, WireError> {
        let (&kind, rest) = bytes.split_first().ok_or(WireError::Empty)?;
        match kind {
            SWIM => Ok(Body::Swim(rest)),
            DIGEST => {
                let d: Digest = whole(rest)?;
                if d.lo > d.hi || d.entries.len() > 4 * DIGESTS_PER_DATAGRAM {
                    return Err(WireError::Malformed);
                }
                Ok(Body::Digest(d))
            }
            RECORDS => {
                let unsigned: Vec<Record> = whole(rest)?;
                Ok(Body::Records(
                    unsigned.into_iter().map(Signed::from).collect(),
                ))
            }
            SIGNED_RECORDS => Ok(Body::Records(whole(rest)?)),
            SUMMARY => {
                let b: Vec<u64> = whole(rest)?;
                if b.len() != crate::state::BUCKETS {
                    return Err(WireError::Malformed);
                }
                Ok(Body::Summary(b))
            }
            PROBE => Ok(Body::Probe(whole(rest)?)),
            PROBE_ACK => Ok(Body::ProbeAck(whole(rest)?)),
            CLAIM_CHECK => Ok(Body::ClaimCheck(whole(rest)?)),
            CLAIM_ANSWER => {
                let a: ClaimAnswer = whole(rest)?;
                if a.conflicts.len() > MAX_CONFLICTS {
                    return Err(WireError::Malformed);
                }
                Ok(Body::ClaimAnswer(a))
            }
            STATUS => match postcard::take_from_bytes::<NodeStatus>(rest) {
                // Fields a later release appended are ignored.
                Ok((status, _)) if status.valid() => Ok(Body::Status(status)),
                _ => Err(WireError::Malformed),
            },
            _ => Err(WireError::UnknownKind),
        }
    }

    /// Encodes a body into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Body::Swim(b) => {
                out.push(SWIM);
                out.extend_from_slice(b);
            }
            Body::Digest(d) => {
                out.push(DIGEST);
                out.extend_from_slice(&postcard::to_allocvec(d).expect("serialises"));
            }
            Body::Summary(b) => {
                out.push(SUMMARY);
                out.extend_from_slice(&postcard::to_allocvec(b).expect("serialises"));
            }
            Body::Records(r) if r.iter().all(|s| s.sig.is_none()) => {
                out.push(RECORDS);
                let unsigned: Vec<&Record> = r.iter().map(|s| &s.record).collect();
                out.extend_from_slice(&postcard::to_allocvec(&unsigned).expect("serialises"));
            }
            Body::Records(r) => {
                out.push(SIGNED_RECORDS);
                out.extend_from_slice(&postcard::to_allocvec(r).expect("serialises"));
            }
            Body::Probe(t) => {
                out.push(PROBE);
                out.extend_from_slice(&postcard::to_allocvec(t).expect("serialises"));
            }
            Body::ProbeAck(t) => {
                out.push(PROBE_ACK);
                out.extend_from_slice(&postcard::to_allocvec(t).expect("serialises"));
            }
            Body::ClaimCheck(r) => {
                out.push(CLAIM_CHECK);
                out.extend_from_slice(&postcard::to_allocvec(r).expect("serialises"));
            }
            Body::ClaimAnswer(a) => {
                out.push(CLAIM_ANSWER);
                out.extend_from_slice(&postcard::to_allocvec(a).expect("serialises"));
            }
            Body::Status(st) => {
                out.push(STATUS);
                out.extend_from_slice(&postcard::to_allocvec(st).expect("serialises"));
            }
        }
    }
}

/// Splits `records` into bodies of at most [`MAX_BODY`] bytes.
pub fn pack_records(records: impl IntoIterator<Item = Signed>) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut batch: Vec<Signed> = Vec::new();
    let mut size = 4;
    for r in records {
        // The serde form adds at most the option tag and the byte-string
        // length to the broadcast form.
        let len = r.encode().len() + 2;
        if !batch.is_empty() && size + len > MAX_BODY {
            let mut out = Vec::new();
            Body::Records(std::mem::take(&mut batch)).encode(&mut out);
            bodies.push(out);
            size = 4;
        }
        size += len;
        batch.push(r);
    }
    if !batch.is_empty() {
        let mut out = Vec::new();
        Body::Records(batch).encode(&mut out);
        bodies.push(out);
    }
    bodies
}

/// Splits sorted digests into datagram bodies whose ranges together cover
/// `lo..=hi`.
pub fn pack_digests(entries: &[(u64, u64)], lo: u64, hi: u64, reply: bool) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let chunks: Vec<&[(u64, u64)]> = if entries.is_empty() {
        vec![&[]]
    } else {
        entries.chunks(DIGESTS_PER_DATAGRAM).collect()
    };
    let mut start = lo;
    for (i, chunk) in chunks.iter().enumerate() {
        let end = if i + 1 == chunks.len() {
            hi
        } else {
            chunk.last().expect("non-empty chunk").0
        };
        let mut out = Vec::new();
        Body::Digest(Digest {
            lo: start,
            hi: end,
            reply,
            entries: chunk.to_vec(),
        })
        .encode(&mut out);
        bodies.push(out);
        start = end.saturating_add(1);
    }
    bodies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Key, Value, Version};

    #[test]
    fn a_status_round_trips_and_ignores_later_fields() {
        let st = NodeStatus {
            path: "kernel".into(),
        };
        let mut out = Vec::new();
        Body::Status(st.clone()).encode(&mut out);
        assert_eq!(Body::decode(&out), Ok(Body::Status(st.clone())));
        // A later release's status with a field appended.
        out.extend_from_slice(&[3, 1, 2, 3]);
        assert_eq!(Body::decode(&out), Ok(Body::Status(st)));
        // Empty, too long or odd words are malformed.
        for bad in ["", "Kernel", "a b", &"x".repeat(MAX_STATUS_WORD + 1)] {
            Body::Status(NodeStatus { path: bad.into() }).encode(&mut out);
            assert_eq!(Body::decode(&out), Err(WireError::Malformed), "{bad:?}");
        }
        assert_eq!(Body::decode(&[STATUS]), Err(WireError::Malformed));
    }

    #[test]
    fn bodies_round_trip_and_garbage_is_refused() {
        let mut out = Vec::new();
        Body::Swim(b"abc").encode(&mut out);
        assert_eq!(Body::decode(&out).unwrap(), Body::Swim(b"abc"));
        let d = Digest {
            lo: 1,
            hi: 9,
            reply: true,
            entries: vec![(2, 3)],
        };
        Body::Digest(d.clone()).encode(&mut out);
        assert_eq!(Body::decode(&out).unwrap(), Body::Digest(d));
        Body::Probe(1234).encode(&mut out);
        assert_eq!(Body::decode(&out).unwrap(), Body::Probe(1234));
        assert_eq!(Body::decode(&[]), Err(WireError::Empty));
        assert_eq!(Body::decode(&[10, 1]), Err(WireError::UnknownKind));
        assert_eq!(Body::decode(&[1, 200]), Err(WireError::Malformed));
        assert_eq!(Body::decode(&[2, 5, 0]), Err(WireError::Malformed));
        assert_eq!(Body::decode(&[6, 1, 0]), Err(WireError::Malformed));
    }

    #[test]
    fn claim_checks_and_answers_round_trip_and_fit_a_datagram() {
        let key = crate::identity::NodeKey::from_secret([5; 32]);
        let claim = |owner: String| {
            key.sign(Record {
                key: Key::Claim {
                    owner,
                    block: "fd00:244:ffff:ffff:ffff:ffff:ffff:ff00/120"
                        .parse()
                        .unwrap(),
                },
                version: Version {
                    epoch: u64::MAX,
                    counter: u64::MAX,
                },
                value: Value::Claim {
                    claimed_at: u64::MAX,
                },
            })
        };
        let name = |c: char, len: usize| std::iter::repeat_n(c, len).collect::<String>();
        let mut out = Vec::new();
        let check = claim(name('a', crate::record::MAX_NAME));
        Body::ClaimCheck(check.clone()).encode(&mut out);
        assert!(out.len() <= MAX_BODY, "{}", out.len());
        assert_eq!(Body::decode(&out).unwrap(), Body::ClaimCheck(check));
        let block = "10.0.0.0/26".parse().unwrap();
        // Short names: all four conflicts travel; the longest names a node
        // may have: as many as fit.
        for (len, carried) in [(20, 4), (crate::record::MAX_NAME, 3)] {
            let conflicts = ['b', 'c', 'd', 'e', 'f'].map(|c| claim(name(c, len)));
            let out = ClaimAnswer::encode_with(block, 7, u32::MAX, conflicts.clone());
            assert!(out.len() <= MAX_BODY, "{}", out.len());
            let answer = ClaimAnswer {
                block,
                claimed_at: 7,
                known: u32::MAX,
                conflicts: conflicts[..carried].to_vec(),
            };
            assert_eq!(Body::decode(&out).unwrap(), Body::ClaimAnswer(answer));
        }
        // More conflicts than an answer carries: refused.
        let five = ClaimAnswer {
            block,
            claimed_at: 7,
            known: 3,
            conflicts: vec![claim("b".into()); 5],
        };
        Body::ClaimAnswer(five).encode(&mut out);
        assert_eq!(Body::decode(&out), Err(WireError::Malformed));
    }

    #[test]
    fn unsigned_records_keep_the_earlier_format() {
        let r = Record {
            key: Key::Node { owner: "n1".into() },
            version: Version {
                epoch: 1,
                counter: 1,
            },
            value: Value::Deleted,
        };
        let mut out = Vec::new();
        Body::Records(vec![r.clone().into()]).encode(&mut out);
        let mut earlier = vec![RECORDS];
        earlier.extend(postcard::to_allocvec(&vec![r.clone()]).unwrap());
        assert_eq!(out, earlier);
        assert_eq!(Body::decode(&out).unwrap(), Body::Records(vec![r.into()]));
    }

    #[test]
    fn packing_respects_the_size_limit_and_covers_ranges() {
        let records = (0..200u64).map(|i| Record {
            key: Key::Endpoint {
                owner: format!("node-{i}"),
                ip: format!("10.244.0.{}", i % 250).parse().unwrap(),
            },
            version: Version {
                epoch: i,
                counter: i,
            },
            value: Value::Endpoint { mac: [1; 6] },
        });
        let bodies = pack_records(records.clone().map(Signed::from));
        assert!(bodies.len() > 1);
        let mut n = 0;
        for b in &bodies {
            assert!(b.len() <= MAX_BODY, "{}", b.len());
            match Body::decode(b).unwrap() {
                Body::Records(r) => n += r.len(),
                _ => panic!("not records"),
            }
        }
        assert_eq!(n, 200);
        // Signed, every record takes 66 bytes more, and still fits.
        let key = crate::identity::NodeKey::from_secret([5; 32]);
        let signed: Vec<Signed> = records.map(|r| key.sign(r)).collect();
        let bodies = pack_records(signed.clone());
        let mut back = Vec::new();
        for b in &bodies {
            assert!(b.len() <= MAX_BODY, "{}", b.len());
            assert_eq!(b[0], SIGNED_RECORDS);
            match Body::decode(b).unwrap() {
                Body::Records(r) => back.extend(r),
                _ => panic!("not records"),
            }
        }
        assert_eq!(back, signed);
        let entries: Vec<(u64, u64)> = (0..150u64).map(|i| (i * 1000, i)).collect();
        let bodies = pack_digests(&entries, 0, u64::MAX, true);
        assert_eq!(bodies.len(), 3);
        let mut next = 0u64;
        for b in &bodies {
            let Body::Digest(d) = Body::decode(b).unwrap() else {
                panic!()
            };
            assert_eq!(d.lo, next);
            next = d.hi.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last range ends at u64::MAX");
    }
}
