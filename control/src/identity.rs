//! Per-node signing keys: who may write which records.
//!
//! The cluster key ([`crate::auth`]) proves a datagram comes from a member,
//! not which member wrote the records inside it: with it alone, any member
//! can write in any node's name (its endpoints, its claims, its node
//! record). With node keys, every record carries its owner's Ed25519
//! signature over `"weft-record-v1" | record`, and every node checks it
//! against the owner's public key from the operator's trusted-nodes file
//! before the record can change anything. The keys are distributed by the
//! operator, like WireGuard peers, and never learned from the network:
//! trust on first use would let an insider win the race for a new node's
//! name. The file may also list, per node, the ranges its claims and
//! endpoints must lie in (WireGuard's AllowedIPs): that stops a member from
//! claiming another node's block with an earlier (backdated) claim time.
//!
//! Signatures travel with the records ([`Signed`]), so a record relayed by
//! gossip or resent by anti-entropy still proves its author.

use crate::auth::{parse_hex32, to_hex, KeyringError};
use crate::record::{valid_name, Key, OwnerSig, Record, RecordError, Signed};
use crate::signatures;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use ipnet::IpNet;
use std::collections::BTreeMap;

/// Domain separation: these signatures mean "a weft record" and nothing else.
const CONTEXT: &[u8] = b"weft-record-v1";

fn message(r: &Record) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(&r.encode());
    m
}

/// A key file's lines without comments and blanks, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, raw)| (n + 1, raw.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// This node's private signing key.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "NodeKey(public {})", self.public_hex())
    }
}

impl NodeKey {
    /// A key from 32 secret bytes (the Ed25519 seed).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        NodeKey(SigningKey::from_bytes(&secret))
    }

    /// A new random key (from the operating system's generator).
    pub fn generate() -> Self {
        use rand::TryRngCore;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut secret)
            .expect("the OS random generator works");
        Self::from_secret(secret)
    }

    /// Parses a node key file: one line of 64 hex digits; `#` comments.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut found = lines(text);
        let Some((n, line)) = found.next() else {
            return Err(KeyringError {
                line: 0,
                message: "no key found: expected one line of 64 hex digits".into(),
            });
        };
        let secret = parse_hex32(line).ok_or_else(|| KeyringError {
            line: n,
            message: "expected exactly 64 hex digits (a 32-byte Ed25519 secret key)".into(),
        })?;
        if let Some((n, _)) = found.next() {
            return Err(KeyringError {
                line: n,
                message: "expected a single key line".into(),
            });
        }
        Ok(Self::from_secret(secret))
    }

    /// The secret key as 64 hex digits (the key file's content).
    pub fn secret_hex(&self) -> String {
        to_hex(self.0.as_bytes())
    }

    /// The public key as 64 hex digits (what the trusted-nodes file lists).
    pub fn public_hex(&self) -> String {
        to_hex(self.0.verifying_key().as_bytes())
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The public key as a verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// The signing key itself (for datagram signatures, `auth::Sealer`).
    pub fn signing_key(&self) -> SigningKey {
        self.0.clone()
    }

    /// Signs `record` (which this node must own).
    pub fn sign(&self, record: Record) -> Signed {
        let sig = self.0.sign(&message(&record)).to_bytes();
        Signed {
            record,
            sig: Some(OwnerSig(sig)),
        }
    }
}

/// One node the operator trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedNode {
    /// Its public key.
    pub key: VerifyingKey,
    /// Ranges its claims and endpoints must lie in (empty: anywhere the
    /// pools allow).
    pub allowed: Vec<IpNet>,
}

/// The trusted-nodes file: every node allowed to write records, its public
/// key, and optionally the ranges it may claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedNodes {
    nodes: BTreeMap<String, TrustedNode>,
}

impl TrustedNodes {
    /// Parses lines `NAME PUBLIC-KEY-HEX64 [CIDR ...]`; `#` comments.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut nodes = BTreeMap::new();
        for (n, line) in lines(text) {
            let bad = |message: String| KeyringError { line: n, message };
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hex)) = (parts.next(), parts.next()) else {
                return Err(bad(
                    "expected `NAME PUBLIC-KEY [CIDR ...]` (a node name, 64 hex digits, \
                     optional allowed ranges)"
                        .into(),
                ));
            };
            if !valid_name(name) {
                return Err(bad(format!(
                    "node name {name:?}: expected 1-253 characters of [A-Za-z0-9.-_]"
                )));
            }
            let key = parse_hex32(hex)
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "public key of {name}: expected 64 hex digits of an Ed25519 public key"
                    ))
                })?;
            let allowed = parts
                .map(|c| {
                    c.parse::<IpNet>()
                        .map(|net| net.trunc())
                        .map_err(|_| bad(format!("allowed range {c:?}: expected a CIDR")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if nodes
                .insert(name.to_string(), TrustedNode { key, allowed })
                .is_some()
            {
                return Err(bad(format!("node {name} appears twice")));
            }
        }
        if nodes.is_empty() {
            return Err(KeyringError {
                line: 0,
                message: "no node found: expected lines `NAME PUBLIC-KEY [CIDR ...]`".into(),
            });
        }
        Ok(TrustedNodes { nodes })
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&TrustedNode> {
        self.nodes.get(name)
    }

    /// How many nodes are trusted.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Each trusted node's datagram sender id (`fnv` of its name, as the
    /// agent's sealer uses) mapped to its public key, for
    /// `auth::Opener::set_signers`. Two names with the same id (never seen;
    /// 64-bit FNV) both get none, so neither can speak for the other.
    pub fn datagram_signers(&self) -> std::collections::HashMap<u64, VerifyingKey> {
        let mut ids: std::collections::HashMap<u64, Option<VerifyingKey>> =
            std::collections::HashMap::new();
        for (name, node) in &self.nodes {
            ids.entry(crate::state::fnv(name.as_bytes()))
                .and_modify(|k| *k = None)
                .or_insert(Some(node.key));
        }
        ids.into_iter()
            .filter_map(|(id, k)| Some((id, k?)))
            .collect()
    }

    /// True if no node is trusted (never, for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Checks that `s` is signed by its owner's key and, for claims and
    /// endpoints, lies in the owner's allowed ranges.
    pub fn verify(&self, s: &Signed) -> Result<(), RecordError> {
        let (owner, sig) = self.signer_of(s)?;
        owner
            .key
            .verify(&message(&s.record), &sig)
            .map_err(|_| RecordError::BadSignature)?;
        owner.allows(s)
    }

    /// [`verify`](Self::verify) for many records at once, one result per
    /// record, in order: the signatures checked together
    /// ([`crate::signatures`]).
    pub fn verify_all(&self, records: &[&Signed]) -> Vec<Result<(), RecordError>> {
        let mut out = Vec::with_capacity(records.len());
        // (record's index, owner's key, signature, message)
        let mut signed = Vec::with_capacity(records.len());
        for (i, s) in records.iter().enumerate() {
            match self.signer_of(s) {
                Ok((owner, sig)) => {
                    out.push(owner.allows(s));
                    signed.push((i, &owner.key, sig, message(&s.record)));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        for i in signatures::failed(&signed) {
            out[i] = Err(RecordError::BadSignature);
        }
        out
    }

    /// The owner's entry and the record's signature, or why there is none.
    fn signer_of(&self, s: &Signed) -> Result<(&TrustedNode, Signature), RecordError> {
        let owner = self
            .nodes
            .get(s.record.key.owner())
            .ok_or(RecordError::UnknownOwner)?;
        let sig = s.sig.ok_or(RecordError::Unsigned)?;
        Ok((owner, Signature::from_bytes(&sig.0)))
    }
}

impl TrustedNode {
    /// Claims and endpoints must lie in the node's allowed ranges (if any).
    fn allows(&self, s: &Signed) -> Result<(), RecordError> {
        let inside = |ip: std::net::IpAddr| self.allowed.iter().any(|a| a.contains(&ip));
        let allowed = self.allowed.is_empty()
            || match &s.record.key {
                Key::Node { .. } | Key::Group { .. } => true,
                Key::Claim { block, .. } => self.allowed.iter().any(|a| a.contains(block)),
                Key::Endpoint { ip, .. } => inside(*ip),
            };
        if allowed {
            Ok(())
        } else {
            Err(RecordError::NotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Value, Version};

    fn claim(owner: &str, block: &str) -> Record {
        Record {
            key: Key::Claim {
                owner: owner.into(),
                block: block.parse().unwrap(),
            },
            version: Version {
                epoch: 1,
                counter: 1,
            },
            value: Value::Claim { claimed_at: 0 },
        }
    }

    fn endpoint(owner: &str, ip: &str) -> Record {
        Record {
            key: Key::Endpoint {
                owner: owner.into(),
                ip: ip.parse().unwrap(),
            },
            version: Version {
                epoch: 1,
                counter: 2,
            },
            value: Value::Endpoint { mac: [2; 6] },
        }
    }

    fn keys() -> (NodeKey, NodeKey, TrustedNodes) {
        let a = NodeKey::from_secret([1; 32]);
        let b = NodeKey::from_secret([2; 32]);
        let file = format!(
            "# cluster nodes\n\
             a {} 10.244.0.0/24 fd00:244::/64\n\
             b {}   # anywhere in the pools\n",
            a.public_hex(),
            b.public_hex()
        );
        (a, b, TrustedNodes::parse(&file).unwrap())
    }

    #[test]
    fn owners_signatures_verify_and_forgeries_do_not() {
        let (a, b, trusted) = keys();
        assert_eq!(trusted.len(), 2);
        assert_eq!(trusted.verify(&a.sign(claim("a", "10.244.0.0/26"))), Ok(()));
        assert_eq!(trusted.verify(&b.sign(claim("b", "10.9.0.0/26"))), Ok(()));
        // b writing in a's name (an insider forging another member).
        assert_eq!(
            trusted.verify(&b.sign(claim("a", "10.244.0.64/26"))),
            Err(RecordError::BadSignature)
        );
        // a's own record, altered after signing (the block, the version).
        let mut s = a.sign(claim("a", "10.244.0.0/26"));
        if let Key::Claim { block, .. } = &mut s.record.key {
            *block = "10.244.0.128/26".parse().unwrap();
        }
        assert_eq!(trusted.verify(&s), Err(RecordError::BadSignature));
        let mut s = a.sign(claim("a", "10.244.0.0/26"));
        s.record.version.counter += 1;
        assert_eq!(trusted.verify(&s), Err(RecordError::BadSignature));
        // Unsigned, and an owner nobody listed.
        assert_eq!(
            trusted.verify(&claim("a", "10.244.0.0/26").into()),
            Err(RecordError::Unsigned)
        );
        let c = NodeKey::from_secret([3; 32]);
        assert_eq!(
            trusted.verify(&c.sign(claim("c", "10.244.0.0/26"))),
            Err(RecordError::UnknownOwner)
        );
    }

    #[test]
    fn checking_together_gives_each_record_the_answer_it_gets_alone() {
        let (a, b, trusted) = keys();
        let c = NodeKey::from_secret([3; 32]);
        let mut altered = a.sign(endpoint("a", "10.244.0.7"));
        altered.record.version.counter += 1;
        let mixed: Vec<Signed> = vec![
            a.sign(claim("a", "10.244.0.0/26")),
            b.sign(claim("a", "10.244.0.64/26")), // forged in a's name
            a.sign(endpoint("a", "10.244.0.9")),
            claim("b", "10.9.0.0/26").into(), // unsigned
            altered,
            c.sign(claim("c", "10.244.0.0/26")), // nobody listed c
            a.sign(endpoint("a", "10.244.7.1")), // outside a's range
            b.sign(endpoint("b", "10.9.0.3")),
        ];
        let refs: Vec<&Signed> = mixed.iter().collect();
        let alone: Vec<_> = mixed.iter().map(|s| trusted.verify(s)).collect();
        assert_eq!(trusted.verify_all(&refs), alone);
        assert_eq!(
            alone.iter().filter(|r| r.is_ok()).count(),
            3,
            "the three genuine records in range"
        );
        // All genuine: the batch passes as a whole; and an empty batch.
        let good: Vec<Signed> = (1..=40)
            .map(|i| a.sign(endpoint("a", &format!("10.244.0.{i}"))))
            .collect();
        let refs: Vec<&Signed> = good.iter().collect();
        assert!(trusted.verify_all(&refs).iter().all(|r| r.is_ok()));
        assert!(trusted.verify_all(&[]).is_empty());
        // One forgery among many genuine ones is found, and only it.
        let mut one_bad = good.clone();
        one_bad[17].record.version.counter += 5;
        let refs: Vec<&Signed> = one_bad.iter().collect();
        let got = trusted.verify_all(&refs);
        assert_eq!(got[17], Err(RecordError::BadSignature));
        assert_eq!(got.iter().filter(|r| r.is_err()).count(), 1);
        // A batch large enough to be split over threads: forgeries in the
        // first and the last chunk are found, and only they.
        let mut many: Vec<Signed> = (0..4 * crate::signatures::PARALLEL_CHUNK)
            .map(|i| a.sign(endpoint("a", &format!("10.244.0.{}", i % 250))))
            .collect();
        let refs: Vec<&Signed> = many.iter().collect();
        assert!(trusted.verify_all(&refs).iter().all(|r| r.is_ok()));
        let last = many.len() - 1;
        many[3].record.version.counter += 1;
        many[last].record.version.counter += 1;
        let refs: Vec<&Signed> = many.iter().collect();
        let got = trusted.verify_all(&refs);
        let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i].is_err()).collect();
        assert_eq!(bad, [3, last]);
    }

    #[test]
    fn allowed_ranges_bound_claims_and_endpoints() {
        let (a, _, trusted) = keys();
        // Correctly signed, but outside what the operator gave a.
        assert_eq!(
            trusted.verify(&a.sign(claim("a", "10.244.1.0/26"))),
            Err(RecordError::NotAllowed)
        );
        assert_eq!(
            trusted.verify(&a.sign(claim("a", "10.244.0.0/23"))),
            Err(RecordError::NotAllowed)
        );
        assert_eq!(
            trusted.verify(&a.sign(endpoint("a", "10.244.7.1"))),
            Err(RecordError::NotAllowed)
        );
        assert_eq!(trusted.verify(&a.sign(endpoint("a", "10.244.0.9"))), Ok(()));
        assert_eq!(
            trusted.verify(&a.sign(endpoint("a", "fd00:244::9"))),
            Ok(())
        );
    }

    #[test]
    fn key_files_parse_and_errors_name_the_line() {
        let k = NodeKey::generate();
        let again = NodeKey::parse(&format!("# node key\n{}\n", k.secret_hex())).unwrap();
        assert_eq!(again.public(), k.public());
        assert_ne!(NodeKey::generate().public(), k.public());
        assert!(!format!("{k:?}").contains(&k.secret_hex()));
        assert_eq!(NodeKey::parse("# nothing\n").unwrap_err().line, 0);
        assert_eq!(NodeKey::parse("\nabc\n").unwrap_err().line, 2);
        let two = format!("{0}\n{0}\n", k.secret_hex());
        assert_eq!(NodeKey::parse(&two).unwrap_err().line, 2);

        let pk = k.public_hex();
        let err = |text: &str| TrustedNodes::parse(text).unwrap_err();
        assert_eq!(err("").line, 0);
        assert_eq!(err(&format!("a {pk}\nb\n")).line, 2);
        assert!(err("bad! 00").message.contains("node name"));
        assert!(err(&format!("a {}", &pk[..60]))
            .message
            .contains("public key of a"));
        let e = err(&format!("a {pk} 10.0.0.0/33"));
        assert!(e.message.contains("10.0.0.0/33"), "{e}");
        assert!(err(&format!("a {pk}\na {pk}")).message.contains("twice"));
    }
}
