//! The checks the fuzz targets over outside input run (fuzz/), kept here so
//! the corpus replay test (tests/corpus.rs) runs the very same checks on
//! stable Rust. Not part of the API.

#![allow(missing_docs)]

use crate::cni::spec::{Env, NetConf, SUPPORTED_VERSIONS};
use crate::config::Config;

/// CNI stdin, then the environment built from the same bytes.
pub fn cni_config(data: &[u8]) {
    match NetConf::parse(data) {
        Ok(c) => {
            assert!(SUPPORTED_VERSIONS.contains(&c.cni_version.as_str()));
            assert!(c.mtu.is_none_or(|m| (576..=65535).contains(&m)));
            assert!(c.blocks.iter().all(|b| b.trunc() == *b));
        }
        Err(e) => {
            assert!(
                matches!(e.code, 1 | 2 | 6 | 7),
                "unexpected code {}",
                e.code
            );
            let _ = e.to_json("1.1.0");
        }
    }
    // The same bytes as environment values, split at NUL.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let vals: Vec<Option<String>> = (0..4).map(|_| parts.next().map(str::to_string)).collect();
    let _ = Env::from_vars(|k| match k {
        "CNI_COMMAND" => vals[0].clone(),
        "CNI_CONTAINERID" => vals[1].clone(),
        "CNI_NETNS" => vals[2].clone(),
        "CNI_IFNAME" => vals[3].clone(),
        _ => None,
    });
}

/// weftd's TOML configuration.
pub fn weftd_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, "fuzz.toml") {
        Ok(c) => assert!(c.validate("fuzz.toml").is_ok()),
        Err(e) => {
            assert!(!e.key.is_empty());
            assert!(e.to_string().starts_with("fuzz.toml: "));
        }
    }
}

/// An admin API request line: a request or an error, never a panic; a
/// parsed request serialises back to one that parses the same.
pub fn admin_request(data: &[u8]) {
    if let Ok(req) = crate::admin::Request::parse(data) {
        let again = serde_json::to_vec(&req).expect("serialises");
        assert_eq!(
            crate::admin::Request::parse(&again).expect("round trip"),
            req
        );
    }
}

/// The other inputs weftd reads from outside, picked by the first byte:
/// 0 = a line on the CNI plugin's socket; 1 = the cluster keyring file;
/// 2 = a node key file; 3 = the trusted-nodes file (operator-written, a
/// ConfigMap on Kubernetes). An error or a value within its rules, never a
/// panic.
pub fn local_input(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Ok(crate::daemon::endpoints::Line::Change(m)) =
                crate::daemon::endpoints::parse_line(text)
            {
                assert!(m.host_ifname.is_none_or(|n| (1..=15).contains(&n.len())));
            }
        }
        1 => {
            let _ = control::Keyring::parse(text);
        }
        2 => {
            if let Ok(k) = control::identity::NodeKey::parse(text) {
                // The public key it prints is one a trusted-nodes file takes.
                let line = format!("n {}", k.public_hex());
                assert!(control::identity::TrustedNodes::parse(&line).is_ok());
            }
        }
        _ => match control::identity::TrustedNodes::parse(text) {
            Ok(t) => assert!(!t.is_empty()),
            Err(e) => assert!(!e.message.is_empty()),
        },
    }
}
