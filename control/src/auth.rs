//! Authenticating (and optionally encrypting) every control datagram.
//!
//! Layout of a sealed datagram:
//!
//! ```text
//! 0      2    3       4      5          13        21        29
//! +------+----+-------+------+----------+---------+---------+----------------+-----+
//! | "WF" | v1 | keyid | flags| sender   | epoch   | seq     | body           | tag |
//! +------+----+-------+------+----------+---------+---------+----------------+-----+
//!                                                            (ciphertext if   16 B
//!                                                             flags & ENCRYPTED)
//! ```
//!
//! The AEAD is XChaCha20-Poly1305 with the 29-byte header as associated
//! data; its 24-byte nonce is `sender | epoch | seq`, unique as long as no
//! two processes share a sender id *and* a start time (epoch), so one key
//! can be shared by the whole cluster. Without encryption the body is
//! authenticated as associated data too (the AEAD seals an empty plaintext).
//!
//! A datagram is accepted only if its tag verifies under a key of the ring
//! *and* it passes the sender's replay window (a later epoch resets the
//! window: a restarted node; an earlier one is a replay). The window is
//! only moved after the tag has verified, so forged datagrams cannot push a
//! real sender's window forward.
//!
//! With node keys (flag `SIGNED`), the body ends in a 64-byte Ed25519
//! signature by the sender's node key over `"weft-datagram-v1" | header |
//! body`, inside the AEAD (sealed or encrypted with the body). The cluster
//! key then only keeps outsiders out cheaply; the signature says *which*
//! member sent the datagram. An opener given the members' public keys
//! ([`Opener::set_signers`]) refuses unsigned datagrams, unknown senders
//! and bad signatures, all before the replay window moves: a member can
//! neither speak in another's name (in SWIM too) nor push another sender's
//! window ahead to silence it, and a node struck from the trusted-nodes
//! file is out of the membership at once.

use crate::signatures;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::collections::HashMap;

/// Length of the authenticated header.
pub const HEADER_LEN: usize = 29;
/// Length of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to its body.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest datagram accepted (a 1500-byte underlay MTU minus IPv6 and
/// UDP headers).
pub const MAX_DATAGRAM: usize = 1452;
const MAGIC: [u8; 2] = *b"WF";
const VERSION: u8 = 1;
const ENCRYPTED: u8 = 1;
const SIGNED: u8 = 2;
/// Length of a node-key signature at the end of a signed body.
pub const SIGNATURE_LEN: usize = 64;
/// Domain separation: a datagram signature is never a record signature.
const SIGNATURE_CONTEXT: &[u8] = b"weft-datagram-v1";
const WINDOW: u64 = 64;

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthError {
    /// Shorter than a header and a tag.
    TooShort,
    /// Longer than [`MAX_DATAGRAM`].
    Oversized,
    /// Not a weft control datagram (magic), or an unknown version or flag.
    NotWeft,
    /// Sealed with a key id the ring does not hold.
    UnknownKey,
    /// The tag does not verify: forged, corrupted or the wrong key.
    BadTag,
    /// Seen before, or older than the sender's window.
    Replayed,
    /// Too many distinct senders tracked already.
    TooManySenders,
    /// No node-key signature, where node keys are required.
    Unsigned,
    /// Signed by a sender id no trusted node has.
    UnknownSender,
    /// The node-key signature does not verify for the sender.
    BadSignature,
}

impl AuthError {
    /// A short stable name, for counters.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::TooShort => "auth_too_short",
            AuthError::Oversized => "auth_oversized",
            AuthError::NotWeft => "auth_not_weft",
            AuthError::UnknownKey => "auth_unknown_key",
            AuthError::BadTag => "auth_bad_tag",
            AuthError::Replayed => "auth_replayed",
            AuthError::TooManySenders => "auth_too_many_senders",
            AuthError::Unsigned => "auth_unsigned",
            AuthError::UnknownSender => "auth_unknown_sender",
            AuthError::BadSignature => "auth_bad_signature",
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for AuthError {}

/// Parses exactly 64 hex digits into 32 bytes.
pub fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Formats bytes as lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error in a key file (keyring, node key, trusted nodes): the line
/// and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for KeyringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for KeyringError {}

/// The cluster keys: one primary that seals, all of them accepted.
///
/// Rotation without downtime: add the new key to every node's ring (second
/// line), then make it primary everywhere (first line), then drop the old.
#[derive(Clone)]
pub struct Keyring {
    primary: u8,
    keys: Vec<(u8, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|(id, _)| *id).collect();
        write!(f, "Keyring {{ primary: {}, ids: {ids:?} }}", self.primary)
    }
}

impl Keyring {
    /// A ring of `(id, 32-byte key)`; the first is the primary.
    pub fn new(keys: &[(u8, [u8; 32])]) -> Result<Self, KeyringError> {
        let Some(first) = keys.first() else {
            return Err(KeyringError {
                line: 0,
                message: "no key: expected at least one line `ID HEX64`".into(),
            });
        };
        let mut ring = Keyring {
            primary: first.0,
            keys: Vec::with_capacity(keys.len()),
        };
        for (id, key) in keys {
            if ring.keys.iter().any(|(k, _)| k == id) {
                return Err(KeyringError {
                    line: 0,
                    message: format!("key id {id} appears twice"),
                });
            }
            ring.keys.push((*id, XChaCha20Poly1305::new(key.into())));
        }
        Ok(ring)
    }

    /// Parses a keyring file: one key per line, `ID HEX64` (id 0-255, 64
    /// hex digits); `#` starts a comment; the first key is the primary.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |message: String| KeyringError {
                line: n + 1,
                message,
            };
            let mut parts = line.split_whitespace();
            let (Some(id), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(
                    "expected `ID HEX64` (a key id and 64 hex digits)".into()
                ));
            };
            let id: u8 = id
                .parse()
                .map_err(|_| bad(format!("key id {id:?}: expected 0-255")))?;
            let key = parse_hex32(hex)
                .ok_or_else(|| bad("key: expected exactly 64 hex digits (32 bytes)".into()))?;
            keys.push((id, key));
        }
        Keyring::new(&keys).map_err(|mut e| {
            if e.line == 0 && keys.is_empty() {
                e.message = "no key found: expected lines `ID HEX64`".into();
            }
            e
        })
    }

    fn key(&self, id: u8) -> Option<&XChaCha20Poly1305> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, c)| c)
    }
}

/// Seals outgoing datagrams for one sender (one process start).
#[derive(Debug, Clone)]
pub struct Sealer {
    ring: Keyring,
    sender: u64,
    epoch: u64,
    seq: u64,
    encrypt: bool,
    signer: Option<SigningKey>,
}

/// What a datagram signature covers.
fn signed_message(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + header.len() + body.len());
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(header);
    m.extend_from_slice(body);
    m
}

fn nonce(header: &[u8]) -> XNonce {
    let mut n = [0u8; 24];
    n.copy_from_slice(&header[5..29]);
    n.into()
}

impl Sealer {
    /// A sealer for `sender` (a stable id of the node) started at `epoch`
    /// (e.g. wall-clock milliseconds at start: later starts must be larger).
    pub fn new(ring: Keyring, sender: u64, epoch: u64, encrypt: bool) -> Self {
        Sealer {
            ring,
            sender,
            epoch,
            seq: 0,
            encrypt,
            signer: None,
        }
    }

    /// Signs every datagram with this node's key as well (flag `SIGNED`).
    pub fn with_signer(mut self, key: SigningKey) -> Self {
        self.signer = Some(key);
        self
    }

    /// Seals `body` into `out` (cleared first).
    pub fn seal(&mut self, body: &[u8], out: &mut Vec<u8>) {
        self.seq += 1;
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.ring.primary);
        let signed = if self.signer.is_some() { SIGNED } else { 0 };
        out.push(if self.encrypt { ENCRYPTED } else { 0 } | signed);
        out.extend_from_slice(&self.sender.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(body);
        if let Some(key) = &self.signer {
            let sig = key.sign(&signed_message(&out[..HEADER_LEN], body));
            out.extend_from_slice(&sig.to_bytes());
        }
        let cipher = self
            .ring
            .key(self.ring.primary)
            .expect("primary is in the ring");
        let (header, rest) = out.split_at_mut(HEADER_LEN);
        let tag = if self.encrypt {
            cipher.encrypt_in_place_detached(&nonce(header), header, rest)
        } else {
            // Authentication only: header and body are associated data.
            let mut aad = Vec::with_capacity(HEADER_LEN + rest.len());
            aad.extend_from_slice(header);
            aad.extend_from_slice(rest);
            cipher.encrypt_in_place_detached(&nonce(header), &aad, &mut [])
        }
        .expect("XChaCha20-Poly1305 seals any length we produce");
        out.extend_from_slice(&tag);
    }
}

/// Who sent an accepted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The sender id.
    pub sender: u64,
    /// The sender's start epoch.
    pub epoch: u64,
    /// The sender id is proven by the sender's node-key signature.
    pub proven: bool,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    epoch: u64,
    top: u64,
    seen: u64,
}

/// A datagram past its checks but the node-key signature's and the replay
/// window's move.
struct Unsealed {
    origin: Origin,
    seq: u64,
    body: std::ops::Range<usize>,
    /// The sender's key and signature, to check (with node keys).
    signature: Option<(VerifyingKey, Signature)>,
}

/// Verifies incoming datagrams and keeps a replay window per sender.
#[derive(Debug)]
pub struct Opener {
    ring: Keyring,
    windows: HashMap<u64, Window>,
    max_senders: usize,
    /// With node keys: each trusted sender id's public key.
    signers: Option<HashMap<u64, VerifyingKey>>,
    /// With node keys, still let unsigned datagrams in (rolling upgrade).
    accept_unsigned: bool,
}

impl Opener {
    /// An opener accepting any key of `ring`, tracking at most
    /// `max_senders` senders.
    pub fn new(ring: Keyring, max_senders: usize) -> Self {
        Opener {
            ring,
            windows: HashMap::new(),
            max_senders,
            signers: None,
            accept_unsigned: false,
        }
    }

    /// With signers set, also accept datagrams without a signature (their
    /// origin is then not [`Origin::proven`]); signed ones are verified.
    pub fn accept_unsigned(&mut self, accept: bool) {
        self.accept_unsigned = accept;
    }

    /// Requires every datagram to be signed by its sender's node key, from
    /// now on (`Some`: sender id → public key), or stops requiring it.
    pub fn set_signers(&mut self, signers: Option<HashMap<u64, VerifyingKey>>) {
        self.signers = signers;
    }

    /// Verifies `datagram` in place; on success returns the origin and the
    /// body's range (decrypted in place if it was encrypted).
    pub fn open(
        &mut self,
        datagram: &mut [u8],
    ) -> Result<(Origin, std::ops::Range<usize>), AuthError> {
        let mut one = [datagram];
        self.open_all(&mut one)
            .pop()
            .expect("one result per datagram")
    }

    /// [`open`](Self::open) for a burst of datagrams, one result per
    /// datagram, in order; their node-key signatures are checked together
    /// ([`crate::signatures`]: a join's anti-entropy comes as
    /// thousands of datagrams from a few senders).
    pub fn open_all(
        &mut self,
        datagrams: &mut [&mut [u8]],
    ) -> Vec<Result<(Origin, std::ops::Range<usize>), AuthError>> {
        let mut checked: Vec<_> = datagrams.iter_mut().map(|d| self.unseal(d)).collect();
        // The signatures, checked together: (datagram, key, signature,
        // what it covers).
        let mut pending = Vec::new();
        for (i, c) in checked.iter().enumerate() {
            if let Ok(Unsealed {
                signature: Some((key, sig)),
                body,
                ..
            }) = c
            {
                let d = &datagrams[i];
                let message = signed_message(&d[..HEADER_LEN], &d[body.clone()]);
                pending.push((i, *key, *sig, message));
            }
        }
        for i in signatures::failed(&pending) {
            checked[i] = Err(AuthError::BadSignature);
        }
        // In order, so a datagram repeated in the burst is a replay.
        checked
            .into_iter()
            .map(|c| {
                let c = c?;
                self.check_window(c.origin, c.seq, true)?;
                Ok((c.origin, c.body))
            })
            .collect()
    }

    /// Everything but the node-key signature (returned to be checked) and
    /// the replay window's move.
    fn unseal(&mut self, datagram: &mut [u8]) -> Result<Unsealed, AuthError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(AuthError::Oversized);
        }
        if datagram.len() < OVERHEAD {
            return Err(AuthError::TooShort);
        }
        if datagram[..2] != MAGIC
            || datagram[2] != VERSION
            || datagram[4] & !(ENCRYPTED | SIGNED) != 0
        {
            return Err(AuthError::NotWeft);
        }
        let key_id = datagram[3];
        let encrypted = datagram[4] & ENCRYPTED != 0;
        let signed = datagram[4] & SIGNED != 0;
        if signed && datagram.len() < OVERHEAD + SIGNATURE_LEN {
            return Err(AuthError::TooShort);
        }
        if self.signers.is_some() && !signed && !self.accept_unsigned {
            return Err(AuthError::Unsigned);
        }
        let word = |at: usize| u64::from_be_bytes(datagram[at..at + 8].try_into().expect("8"));
        let origin = Origin {
            sender: word(5),
            epoch: word(13),
            proven: signed && self.signers.is_some(),
        };
        let seq = word(21);
        // Cheap check first: a replay is refused before any cryptography.
        self.check_window(origin, seq, false)?;
        let cipher = self.ring.key(key_id).ok_or(AuthError::UnknownKey)?;
        let body_end = datagram.len() - TAG_LEN;
        let (msg, tag) = datagram.split_at_mut(body_end);
        let tag: [u8; TAG_LEN] = (*tag).try_into().expect("16");
        let (header, body) = msg.split_at_mut(HEADER_LEN);
        let ok = if encrypted {
            cipher.decrypt_in_place_detached(&nonce(header), header, body, (&tag).into())
        } else {
            let mut aad = Vec::with_capacity(HEADER_LEN + body.len());
            aad.extend_from_slice(header);
            aad.extend_from_slice(body);
            cipher.decrypt_in_place_detached(&nonce(header), &aad, &mut [], (&tag).into())
        };
        ok.map_err(|_| AuthError::BadTag)?;
        let mut body_end = body_end;
        let mut signature = None;
        if signed {
            body_end -= SIGNATURE_LEN;
            if let Some(signers) = &self.signers {
                // Only members (the AEAD passed) get this far: an outsider
                // cannot make us spend a signature verification.
                let key = signers
                    .get(&origin.sender)
                    .ok_or(AuthError::UnknownSender)?;
                let sig: [u8; SIGNATURE_LEN] = datagram[body_end..body_end + SIGNATURE_LEN]
                    .try_into()
                    .expect("64");
                signature = Some((*key, Signature::from_bytes(&sig)));
            }
        }
        Ok(Unsealed {
            origin,
            seq,
            body: HEADER_LEN..body_end,
            signature,
        })
    }

    fn check_window(&mut self, o: Origin, seq: u64, commit: bool) -> Result<(), AuthError> {
        let full = self.windows.len() >= self.max_senders;
        let w = match self.windows.get_mut(&o.sender) {
            Some(w) => w,
            None if full => return Err(AuthError::TooManySenders),
            None => {
                if commit {
                    self.windows.insert(
                        o.sender,
                        Window {
                            epoch: o.epoch,
                            top: seq,
                            seen: 1,
                        },
                    );
                }
                return Ok(());
            }
        };
        if o.epoch < w.epoch {
            return Err(AuthError::Replayed);
        }
        if o.epoch > w.epoch {
            if commit {
                *w = Window {
                    epoch: o.epoch,
                    top: seq,
                    seen: 1,
                };
            }
            return Ok(());
        }
        if seq > w.top {
            if commit {
                let shift = seq - w.top;
                w.seen = if shift >= WINDOW { 0 } else { w.seen << shift } | 1;
                w.top = seq;
            }
            return Ok(());
        }
        let back = w.top - seq;
        if back >= WINDOW || w.seen & (1 << back) != 0 {
            return Err(AuthError::Replayed);
        }
        if commit {
            w.seen |= 1 << back;
        }
        Ok(())
    }

    /// How many senders are tracked.
    pub fn senders(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(id: u8, byte: u8) -> Keyring {
        Keyring::new(&[(id, [byte; 32])]).unwrap()
    }

    fn roundtrip(encrypt: bool) {
        let mut s = Sealer::new(ring(1, 7), 42, 1000, encrypt);
        let mut o = Opener::new(ring(1, 7), 16);
        let mut out = Vec::new();
        s.seal(b"hello gossip", &mut out);
        assert_eq!(out.len(), 12 + OVERHEAD);
        assert_eq!(out[29..41] == *b"hello gossip", !encrypt);
        let mut copy = out.clone();
        let (origin, body) = o.open(&mut copy).unwrap();
        assert_eq!((origin.sender, origin.epoch), (42, 1000));
        assert_eq!(&copy[body], b"hello gossip");
        // The same datagram again is a replay.
        let mut again = out.clone();
        assert_eq!(o.open(&mut again), Err(AuthError::Replayed));
    }

    #[test]
    fn seals_and_opens_both_modes() {
        roundtrip(false);
        roundtrip(true);
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let mut s = Sealer::new(ring(1, 7), 42, 1000, false);
        let mut out = Vec::new();
        s.seal(b"body", &mut out);
        for i in 0..out.len() {
            let mut o = Opener::new(ring(1, 7), 16);
            let mut bad = out.clone();
            bad[i] ^= 0x10;
            assert!(o.open(&mut bad).is_err(), "bit flip at {i} accepted");
        }
    }

    #[test]
    fn wrong_key_and_unknown_id_are_refused() {
        let mut s = Sealer::new(ring(1, 7), 42, 1000, false);
        let mut out = Vec::new();
        s.seal(b"body", &mut out);
        let mut o = Opener::new(ring(1, 8), 16);
        assert_eq!(o.open(&mut out.clone()), Err(AuthError::BadTag));
        let mut o = Opener::new(ring(2, 7), 16);
        assert_eq!(o.open(&mut out.clone()), Err(AuthError::UnknownKey));
        // A forged datagram did not create a window for the sender.
        assert_eq!(o.senders(), 0);
    }

    fn signing_key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn node_key_signatures_say_which_member_sent() {
        let (a, b) = (signing_key(1), signing_key(2));
        let signers: HashMap<u64, VerifyingKey> =
            [(10, a.verifying_key()), (20, b.verifying_key())].into();
        for encrypt in [false, true] {
            let mut o = Opener::new(ring(1, 7), 16);
            o.set_signers(Some(signers.clone()));
            let mut out = Vec::new();
            // Signed by its sender: accepted, the signature is not in the body.
            let mut s = Sealer::new(ring(1, 7), 10, 5, encrypt).with_signer(a.clone());
            s.seal(b"ping", &mut out);
            assert_eq!(out.len(), 4 + OVERHEAD + SIGNATURE_LEN);
            let (origin, body) = o.open(&mut out.clone()).unwrap();
            assert_eq!((origin.sender, body.len()), (10, 4));
            if !encrypt {
                assert_eq!(&out[body], b"ping");
            }
            // Cluster key only, where node keys are required.
            Sealer::new(ring(1, 7), 10, 5, encrypt).seal(b"x", &mut out);
            assert_eq!(o.open(&mut out), Err(AuthError::Unsigned));
            // A member (b, sender 20) speaking as sender 10, with a later
            // epoch that would reset 10's window if it were believed.
            let mut forger = Sealer::new(ring(1, 7), 10, 1_000, encrypt).with_signer(b.clone());
            forger.seal(b"x", &mut out);
            assert_eq!(o.open(&mut out), Err(AuthError::BadSignature));
            // Sender 10's window did not move: its next datagram passes.
            s.seal(b"pong", &mut out);
            assert!(o.open(&mut out).is_ok());
            // A sender id no trusted node has.
            Sealer::new(ring(1, 7), 30, 5, encrypt)
                .with_signer(b.clone())
                .seal(b"x", &mut out);
            assert_eq!(o.open(&mut out), Err(AuthError::UnknownSender));
            // Every flipped bit of a signed datagram is refused.
            s.seal(b"body", &mut out);
            for i in 0..out.len() {
                let mut o = Opener::new(ring(1, 7), 16);
                o.set_signers(Some(signers.clone()));
                let mut bad = out.clone();
                bad[i] ^= 0x04;
                assert!(o.open(&mut bad).is_err(), "bit flip at {i} accepted");
            }
            // Without signers (no node keys here), a signed datagram is
            // accepted and its signature stripped.
            let mut plain = Opener::new(ring(1, 7), 16);
            let (_, body) = plain.open(&mut out.clone()).unwrap();
            assert_eq!(body.len(), 4);
            // Struck from the file: the sender is unknown from then on.
            o.set_signers(Some([(20, b.verifying_key())].into()));
            s.seal(b"x", &mut out);
            assert_eq!(o.open(&mut out), Err(AuthError::UnknownSender));
        }
    }

    #[test]
    fn a_burst_is_opened_like_its_datagrams_one_by_one() {
        let (a, b) = (signing_key(1), signing_key(2));
        let signers: HashMap<u64, VerifyingKey> =
            [(10, a.verifying_key()), (20, b.verifying_key())].into();
        let mut s10 = Sealer::new(ring(1, 7), 10, 5, true).with_signer(a.clone());
        let mut s20 = Sealer::new(ring(1, 7), 20, 5, false).with_signer(b.clone());
        let mut forger = Sealer::new(ring(1, 7), 10, 1_000, true).with_signer(b.clone());
        let seal = |s: &mut Sealer, body: &[u8]| {
            let mut out = Vec::new();
            s.seal(body, &mut out);
            out
        };
        // 100 datagrams from two senders (enough to be split over threads),
        // with a forgery, a replay of an earlier datagram of the burst, and
        // a datagram with a broken tag among them.
        let mut burst: Vec<Vec<u8>> = (0..100u8)
            .map(|i| match i % 2 {
                0 => seal(&mut s10, &[i]),
                _ => seal(&mut s20, &[i]),
            })
            .collect();
        burst[40] = seal(&mut forger, b"x");
        burst[70] = burst[2].clone();
        let last = burst[99].len() - 1;
        burst[99][last] ^= 1;
        let mut o = Opener::new(ring(1, 7), 16);
        o.set_signers(Some(signers));
        let mut views: Vec<&mut [u8]> = burst.iter_mut().map(Vec::as_mut_slice).collect();
        let got = o.open_all(&mut views);
        for (i, r) in got.iter().enumerate() {
            match i {
                40 => assert_eq!(r, &Err(AuthError::BadSignature)),
                70 => assert_eq!(r, &Err(AuthError::Replayed)),
                99 => assert_eq!(r, &Err(AuthError::BadTag)),
                _ => {
                    let (origin, body) = r.as_ref().expect("a genuine datagram");
                    assert_eq!(origin.sender, if i % 2 == 0 { 10 } else { 20 });
                    assert_eq!(&views[i][body.clone()], &[i as u8], "datagram {i}");
                }
            }
        }
        // The forgery's later epoch did not reset sender 10's window.
        assert_eq!(
            o.open(&mut seal(&mut s10, b"next")).map(|(o, _)| o.epoch),
            Ok(5)
        );
    }

    #[test]
    fn a_rolling_upgrade_may_accept_unsigned_datagrams_but_never_bad_signatures() {
        let (a, b) = (signing_key(1), signing_key(2));
        let mut o = Opener::new(ring(1, 7), 16);
        o.set_signers(Some([(10, a.verifying_key())].into()));
        o.accept_unsigned(true);
        let mut out = Vec::new();
        // From a node that does not sign yet: in, its sender not proven.
        Sealer::new(ring(1, 7), 10, 5, false).seal(b"old", &mut out);
        let (origin, _) = o.open(&mut out).unwrap();
        assert!(!origin.proven);
        // Signed: verified, proven.
        Sealer::new(ring(1, 7), 10, 6, false)
            .with_signer(a.clone())
            .seal(b"new", &mut out);
        assert!(o.open(&mut out).unwrap().0.proven);
        // A signature that does not verify is refused all the same.
        Sealer::new(ring(1, 7), 10, 7, false)
            .with_signer(b)
            .seal(b"forged", &mut out);
        assert_eq!(o.open(&mut out), Err(AuthError::BadSignature));
        // Strict again: unsigned refused.
        o.accept_unsigned(false);
        Sealer::new(ring(1, 7), 10, 8, false).seal(b"old", &mut out);
        assert_eq!(o.open(&mut out), Err(AuthError::Unsigned));
    }

    #[test]
    fn rotation_accepts_old_and_new_keys() {
        let old = [3u8; 32];
        let new = [4u8; 32];
        let mut a = Sealer::new(Keyring::new(&[(1, old)]).unwrap(), 1, 1, false);
        let mut b = Sealer::new(Keyring::new(&[(2, new), (1, old)]).unwrap(), 2, 1, false);
        let mut o = Opener::new(Keyring::new(&[(1, old), (2, new)]).unwrap(), 16);
        let mut out = Vec::new();
        a.seal(b"x", &mut out);
        assert!(o.open(&mut out).is_ok());
        b.seal(b"y", &mut out);
        assert!(o.open(&mut out).is_ok());
    }

    #[test]
    fn replay_window_accepts_reordering_but_not_duplicates_or_old_epochs() {
        let mut s = Sealer::new(ring(1, 7), 9, 50, false);
        let mut o = Opener::new(ring(1, 7), 16);
        let mut sealed = Vec::new();
        for _ in 0..100 {
            let mut out = Vec::new();
            s.seal(b"m", &mut out);
            sealed.push(out);
        }
        // Out of order within the window: fine.
        for i in [10usize, 5, 7, 99, 60] {
            assert!(o.open(&mut sealed[i].clone()).is_ok(), "{i}");
        }
        assert_eq!(o.open(&mut sealed[7].clone()), Err(AuthError::Replayed));
        // More than 64 behind the top: refused.
        assert_eq!(o.open(&mut sealed[20].clone()), Err(AuthError::Replayed));
        // A restart (later epoch) resets; then the old epoch is a replay.
        let mut s2 = Sealer::new(ring(1, 7), 9, 51, false);
        let mut out = Vec::new();
        s2.seal(b"n", &mut out);
        assert!(o.open(&mut out).is_ok());
        assert_eq!(o.open(&mut sealed[98].clone()), Err(AuthError::Replayed));
    }

    #[test]
    fn keyring_file_errors_name_the_line() {
        let k = format!(
            "# cluster key\n1 {}\n2 {}\n",
            "ab".repeat(32),
            "cd".repeat(32)
        );
        assert_eq!(Keyring::parse(&k).unwrap().primary, 1);
        let e = Keyring::parse("1 abcd\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("64 hex"));
        let e = Keyring::parse(&format!("\n300 {}\n", "ab".repeat(32))).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(Keyring::parse("# nothing\n").is_err());
        let dup = format!("1 {}\n1 {}\n", "ab".repeat(32), "cd".repeat(32));
        assert!(Keyring::parse(&dup).unwrap_err().message.contains("twice"));
    }

    #[test]
    fn short_long_and_foreign_datagrams_are_refused() {
        let mut o = Opener::new(ring(1, 7), 16);
        assert_eq!(o.open(&mut [0u8; 10]), Err(AuthError::TooShort));
        assert_eq!(o.open(&mut [0u8; 2000]), Err(AuthError::Oversized));
        assert_eq!(o.open(&mut [0u8; 100]), Err(AuthError::NotWeft));
    }
}
