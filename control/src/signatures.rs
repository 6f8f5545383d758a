//! Many Ed25519 signatures checked at once: the one implementation behind
//! record signatures ([`crate::identity`]) and datagram signatures
//! ([`crate::auth`]).
//!
//! A node joining a large cluster is sent every record, a hundred or so per
//! owner, in thousands of datagrams from a few senders. Checked one by one
//! that is 31 µs a signature on this project's 2-core VM; ed25519-zebra's
//! batch verification, which adds up the terms of each key's signatures,
//! takes 6 µs when each key signs about a hundred of the batch
//! (ed25519-dalek's `verify_batch`, which does not, 9.5 µs), 5.3 µs with
//! curve25519-dalek's AVX-512 backend (`.cargo/config.toml`). A large batch
//! is sorted by key and cut into one chunk per core. A chunk that fails is
//! checked one by one to find the bad signatures, so a forgery costs its
//! chunk no more than checking one by one would have.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use std::borrow::Borrow;

/// One signature to check.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The signer's public key.
    pub key: &'a VerifyingKey,
    /// The signature.
    pub sig: Signature,
    /// What was signed.
    pub message: &'a [u8],
}

impl Check<'_> {
    /// This signature alone (ed25519-dalek's verification).
    pub fn verify(&self) -> bool {
        self.key.verify(self.message, &self.sig).is_ok()
    }
}

/// The fewest signatures worth a thread of their own (a thread costs about
/// 20 µs, a signature in a batch about 5: a burst of 64 datagrams' signatures
/// is split, a datagram's dozen records are not).
pub(crate) const PARALLEL_CHUNK: usize = 32;

/// Threads to verify `n` signatures with: one per core (at most 4), only
/// when each gets at least [`PARALLEL_CHUNK`].
fn threads(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get().min(4));
    (n / PARALLEL_CHUNK).clamp(1, cores)
}

/// The tags of `signed` — `(tag, key, signature, message)` — whose
/// signatures do not verify, checked together by [`verify_each`].
pub fn failed<K: Borrow<VerifyingKey>>(signed: &[(usize, K, Signature, Vec<u8>)]) -> Vec<usize> {
    let checks: Vec<Check> = signed
        .iter()
        .map(|(_, key, sig, message)| Check {
            key: key.borrow(),
            sig: *sig,
            message,
        })
        .collect();
    signed
        .iter()
        .zip(verify_each(&checks))
        .filter(|(_, ok)| !ok)
        .map(|((tag, ..), _)| *tag)
        .collect()
}

/// Whether each of `checks` verifies, in order.
pub fn verify_each(checks: &[Check<'_>]) -> Vec<bool> {
    if checks.len() < 2 {
        return checks.iter().map(Check::verify).collect();
    }
    // Each key's signatures side by side, so a chunk holds whole keys
    // (their terms add up).
    let mut order: Vec<usize> = (0..checks.len()).collect();
    order.sort_unstable_by_key(|&i| (checks[i].key.as_bytes(), i));
    let chunk = order.len().div_ceil(threads(order.len()));
    let parts: Vec<&[usize]> = order.chunks(chunk).collect();
    let passed: Vec<bool> = std::thread::scope(|scope| {
        let others: Vec<_> = parts[1..]
            .iter()
            .map(|&part| scope.spawn(move || verify_together(checks, part)))
            .collect();
        let mut passed = vec![verify_together(checks, parts[0])];
        // A chunk's thread does not panic (verification returns errors);
        // if it did, its chunk counts as failed and is checked one by one.
        passed.extend(others.into_iter().map(|h| h.join().unwrap_or(false)));
        passed
    });
    let mut out = vec![true; checks.len()];
    for (part, ok) in parts.iter().zip(passed) {
        if !ok {
            for &i in *part {
                out[i] = checks[i].verify();
            }
        }
    }
    out
}

/// True if every check of `part` verifies, by one batch verification.
fn verify_together(checks: &[Check<'_>], part: &[usize]) -> bool {
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for &i in part {
        let c = &checks[i];
        let key = ed25519_zebra::VerificationKeyBytes::from(c.key.to_bytes());
        let sig = ed25519_zebra::Signature::from_bytes(&c.sig.to_bytes());
        batch.queue((key, sig, c.message));
    }
    // The batch's random coefficients come from the OS's generator, which
    // does not fail on Linux once booted.
    let rng = getrandom::rand_core::UnwrapErr(getrandom::SysRng);
    batch.verify(rng).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn keys(n: u8) -> Vec<SigningKey> {
        (1..=n).map(|i| SigningKey::from_bytes(&[i; 32])).collect()
    }

    #[test]
    fn finds_exactly_the_bad_signatures_among_many_keys() {
        let signers = keys(7);
        let public: Vec<VerifyingKey> = signers.iter().map(|k| k.verifying_key()).collect();
        let messages: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| format!("message {i}").into_bytes())
            .collect();
        let mut checks: Vec<Check> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| Check {
                key: &public[i % 7],
                sig: signers[i % 7].sign(m),
                message: m,
            })
            .collect();
        assert!(verify_each(&checks).iter().all(|&ok| ok));
        // A signature by the wrong key, one over another message, one
        // with its bytes flipped: in different chunks.
        checks[3].sig = signers[4].sign(&messages[3]);
        checks[1000].sig = checks[1001].sig;
        let mut flipped = checks[1999].sig.to_bytes();
        flipped[5] ^= 1;
        checks[1999].sig = Signature::from_bytes(&flipped);
        let ok = verify_each(&checks);
        let bad: Vec<usize> = (0..ok.len()).filter(|&i| !ok[i]).collect();
        assert_eq!(bad, vec![3, 1000, 1999]);
    }

    #[test]
    fn one_and_none() {
        let k = SigningKey::from_bytes(&[9; 32]);
        let public = k.verifying_key();
        assert!(verify_each(&[]).is_empty());
        let good = Check {
            key: &public,
            sig: k.sign(b"a"),
            message: b"a",
        };
        assert_eq!(verify_each(&[good]), vec![true]);
        let bad = Check {
            message: b"b",
            ..good
        };
        assert_eq!(verify_each(&[bad]), vec![false]);
        assert_eq!(verify_each(&[good, bad]), vec![true, false]);
    }
}
