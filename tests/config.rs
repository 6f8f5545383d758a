//! weftd's configuration: the example file, errors that name file, key and
//! expectation, precedence of file < environment < flags, and the README's
//! reference kept in step with the code.

use std::path::Path;
use std::process::Command;
use weft::config::{AutoOr, Config, Encap};

const EXAMPLE: &str = include_str!("../docs/weftd.example.toml");

#[test]
fn the_example_file_parses_to_what_it_says() {
    let c = Config::from_toml(EXAMPLE, "weftd.example.toml").unwrap();
    assert_eq!(c.node_name.as_deref(), Some("node-1"));
    assert_eq!(c.underlay.address, Some("10.99.0.1".parse().unwrap()));
    assert_eq!(c.overlay.pools.len(), 2);
    assert_eq!(
        (c.overlay.block_size_v4, c.overlay.block_size_v6),
        (26, 122)
    );
    assert_eq!(c.overlay.encap, Encap::Vxlan);
    assert_eq!((c.overlay.vni, c.overlay.port), (1, 4789));
    assert_eq!(c.overlay.mtu, AutoOr::AUTO);
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.peers[0].blocks.len(), 2);
    // Defaults are what the example says they are (peers and addresses aside).
    let d = Config::default();
    assert_eq!(d.overlay.encap, c.overlay.encap);
    assert_eq!(d.overlay.port, c.overlay.port);
    assert_eq!(d.overlay.tun_name, c.overlay.tun_name);
    assert_eq!(d.dataplane.workers, c.dataplane.workers);
    assert_eq!(d.underlay.mtu, c.underlay.mtu);
}

#[test]
fn errors_name_file_key_and_expectation() {
    let cases: &[(&str, &str, &str)] = &[
        ("[overlay]\nencap = \"vxlann\"\n", "overlay.encap", "expected one of `vxlan`, `ipip`, `none`"),
        ("[overlay]\nencapp = \"vxlan\"\n", "overlay.encapp", "unknown field `encapp`"),
        ("[overlay]\nvni = 16777216\n", "overlay.vni", "expected 0 to 16777215"),
        ("[overlay]\nvni = -1\n", "overlay.vni", "u32"),
        ("[overlay]\nport = 0\n", "overlay.port", "expected a UDP port"),
        ("[overlay]\nsource_ports = \"60999-32768\"\n", "overlay.source_ports", "expected \"MIN-MAX\" or one port"),
        ("[overlay]\nsource_ports = \"0-10\"\n", "overlay.source_ports", "ports 1-65535"),
        ("[overlay]\nsource_port_count = 0\n", "overlay.source_port_count", "expected 1 to 1024"),
        ("[overlay]\nmtu = \"big\"\n", "overlay.mtu", "did not match any variant"),
        ("[overlay]\nmtu = 100\n", "overlay.mtu", "576-65535"),
        ("[overlay]\npools = [\"10.244.0.1/16\"]\n", "overlay.pools[0]", "did you mean 10.244.0.0/16"),
        ("[overlay]\npools = [\"10.244.0.0/27\"]\n", "overlay.pools[0]", "smaller than one block"),
        ("[overlay]\npools = []\n", "overlay.pools", "at least one pod pool"),
        ("[overlay]\nblocks = [\"10.244.0.0/24\"]\n", "overlay.blocks[0]", "no larger than the block size /26"),
        ("[gossip]\nenabled = true\n", "gossip.key_file", "keyring file"),
        (
            "[gossip]\nnode_key_file = \"/k\"\n",
            "gossip.trusted_nodes_file",
            "trusted-nodes file",
        ),
        (
            "[gossip]\ntrusted_nodes_file = \"/t\"\n",
            "gossip.node_key_file",
            "weftd genkey",
        ),
        ("[gossip]\nseeds = [\"node-1\"]\n", "gossip.seeds[0]", "ADDRESS or ADDRESS:PORT"),
        ("[gossip]\nprobe_interval_ms = 5\n", "gossip.probe_interval_ms", "100 to 60000"),
        ("[overlay]\npools = [\"ten\"]\n", "overlay.pools[0]", "invalid IP address"),
        ("[overlay]\ntun_name = \"a-very-long-interface-name\"\n", "overlay.tun_name", "1-15 characters"),
        ("[underlay]\naddress = \"10.0.0\"\n", "underlay.address", "invalid IP address"),
        ("[underlay]\nautodetect = \"can-reach=nowhere\"\n", "underlay.autodetect", "can-reach needs an IP address"),
        ("[underlay]\nautodetect = \"interface=(\"\n", "underlay.autodetect", "valid regex"),
        // Found by the fuzzer: deep nesting is refused, not recursed into.
        ("[underlay]\nautodetect = \"interface=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\"\n", "underlay.autodetect", "nest"),
        ("[underlay]\nautodetect = \"guess\"\n", "underlay.autodetect", "first-found, can-reach=ADDRESS or interface=REGEX"),
        ("[dataplane]\nworkers = 0\n", "dataplane.workers", "1-256"),
        ("[dataplane]\nbusy_poll_us = 20000\n", "dataplane.busy_poll_us", "0-10000 microseconds"),
        ("[dataplane]\nbusy_poll_us = -1\n", "dataplane.busy_poll_us", "u32"),
        ("node_name = \"\"\n", "node_name", "1-253 printable"),
        (
            "[[peers]]\nnode = \"b\"\nunderlay = \"10.99.0.2\"\nblocks = [\"10.245.0.0/26\"]\n",
            "peers[0].blocks[0]",
            "inside a pool",
        ),
        (
            "[[peers]]\nnode = \"b\"\nunderlay = \"10.99.0.2\"\nvtep_mac = \"02:00\"\nblocks = [\"10.244.1.0/26\"]\n",
            "peers[0].vtep_mac",
            "MAC address",
        ),
        (
            "[[peers]]\nnode = \"b\"\nunderlay = \"10.99.0.2\"\nblocks = [\"10.244.1.0/26\"]\n[[peers]]\nnode = \"b\"\nunderlay = \"10.99.0.3\"\nblocks = [\"10.244.2.0/26\"]\n",
            "peers[1].node",
            "unique node name",
        ),
        ("[[peers]]\nnode = \"b\"\nblocks = []\n", "peers[0]", "missing field `underlay`"),
        ("overlay = 5\n", "overlay", "invalid type"),
        ("[overlay\n", "(top level)", "expected"),
        // Found by the weftd_config fuzzer: an empty key once gave an empty key path.
        ("''=0#'='/((?", "(top level)", "unknown field"),
    ];
    for (text, key, expected) in cases {
        let e = Config::from_toml(text, "/etc/weft/weftd.toml").expect_err(text);
        let shown = e.to_string();
        assert_eq!(e.key, *key, "{text:?} gave {shown}");
        assert!(shown.starts_with("/etc/weft/weftd.toml: "), "{shown}");
        assert!(
            shown.contains(expected),
            "{text:?}: {shown:?} lacks {expected:?}"
        );
    }
}

fn weftd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weftd"))
}

fn effective(file: &Path, env: &[(&str, &str)], args: &[&str]) -> Config {
    let mut cmd = weftd();
    cmd.env_clear()
        .arg("--config")
        .arg(file)
        .args(args)
        .arg("check-config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Config::from_toml(
        &String::from_utf8(out.stdout).unwrap(),
        "check-config output",
    )
    .unwrap()
}

#[test]
fn file_then_environment_then_flags() {
    let dir = std::env::temp_dir().join(format!("weft-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("weftd.toml");
    std::fs::write(&file, "[overlay]\nvni = 5\nencap = \"ipip\"\n").unwrap();
    let c = effective(&file, &[], &[]);
    assert_eq!((c.overlay.vni, c.overlay.encap), (5, Encap::Ipip));
    let c = effective(&file, &[("WEFT_VNI", "6")], &[]);
    assert_eq!((c.overlay.vni, c.overlay.encap), (6, Encap::Ipip));
    let c = effective(
        &file,
        &[("WEFT_VNI", "6")],
        &["--vni", "7", "--encap", "vxlan", "--mtu", "1400"],
    );
    assert_eq!(
        (c.overlay.vni, c.overlay.encap, c.overlay.mtu),
        (7, Encap::Vxlan, AutoOr::Value(1400))
    );
    // A bad override is refused with its key named, and exit code 2.
    let out = weftd()
        .env_clear()
        .arg("--config")
        .arg(&file)
        .args(["--vni", "99999999", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlay.vni: expected 0 to 16777215"));
    // Options after the subcommand work the same (`weftd run --config F`).
    let after = weftd()
        .env_clear()
        .args(["check-config", "--vni", "7", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    let c = Config::from_toml(&String::from_utf8(after.stdout).unwrap(), "output").unwrap();
    assert_eq!((c.overlay.vni, c.overlay.encap), (7, Encap::Ipip));
    // A missing file is named.
    let out = weftd()
        .env_clear()
        .args(["--config", "/nonexistent/weftd.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/weftd.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Dotted key paths of every value in a TOML document.
fn keys(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                keys(&p, v, out);
            }
        }
        toml::Value::Array(a) if a.first().is_some_and(|x| x.is_table()) => {
            keys(&format!("{prefix}[]"), &a[0], out)
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn readme_reference_lists_every_key() {
    let c = Config::from_toml(EXAMPLE, "example").unwrap();
    let doc: toml::Value = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    let mut all = Vec::new();
    keys("", &doc, &mut all);
    assert!(all.len() >= 15, "{all:?}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for k in &all {
        assert!(
            readme.contains(&format!("| `{k}` |")),
            "README's configuration reference lacks `{k}`"
        );
    }
    // The example, which says it has every key, has every key.
    let written: toml::Value = toml::from_str(EXAMPLE).unwrap();
    let mut in_example = Vec::new();
    keys("", &written, &mut in_example);
    for k in &all {
        assert!(
            in_example.contains(k),
            "docs/weftd.example.toml lacks `{k}`"
        );
    }
    // And the README lists no key the code does not have.
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let key = line.split('`').nth(1).unwrap();
        if key.contains('.') || key == "node_name" || key == "cni_socket" || key == "admin_socket" {
            assert!(
                all.iter().any(|k| k == key),
                "README documents `{key}`, which the config does not have"
            );
        }
    }
}

#[test]
fn genkey_and_pubkey_make_the_node_key_files() {
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = weftd()
            .env_clear()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let secret = String::from_utf8(run(&["genkey"], "").stdout).unwrap();
    assert!(hex64(secret.trim()), "{secret:?}");
    let other = String::from_utf8(run(&["genkey"], "").stdout).unwrap();
    assert_ne!(secret, other, "keys are random");
    let public = String::from_utf8(run(&["pubkey"], &secret).stdout).unwrap();
    assert!(hex64(public.trim()), "{public:?}");
    assert_ne!(public.trim(), secret.trim());
    // The same secret, the same public key; the library agrees.
    assert_eq!(
        String::from_utf8(run(&["pubkey"], &secret).stdout).unwrap(),
        public
    );
    let key = control::identity::NodeKey::parse(&secret).unwrap();
    assert_eq!(key.public_hex(), public.trim());
    let bad = run(&["pubkey"], "not a key\n");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("stdin: line 1: expected exactly 64 hex digits"));
}
