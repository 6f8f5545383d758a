//! Traffic between pods for the namespace tests: ping, and a checksummed
//! TCP transfer.

use super::enter;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `f` on a thread inside namespace `ns`.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let mut e = enter(ns);
    std::thread::spawn(move || {
        e().unwrap();
        f()
    })
}

/// Three pings from namespace `ns` to `to`; true if any came back.
pub fn ping(ns: &str, to: IpAddr) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &to.to_string(),
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A deterministic byte stream and its FNV-1a hash.
fn stream_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    fdb::fnv1a_from(h, bytes)
}

/// Writes `bytes` of the test stream to `s`, paced at about `rate` bytes a
/// second if given; returns its FNV-1a hash.
fn write_stream(s: &mut TcpStream, bytes: u64, rate: Option<u64>) -> u64 {
    let started = Instant::now();
    let (mut h, mut sent, mut buf) = (fdb::FNV_BASIS, 0u64, vec![0u8; 1 << 16]);
    while sent < bytes {
        let k = buf.len().min((bytes - sent) as usize);
        for (j, b) in buf[..k].iter_mut().enumerate() {
            *b = stream_byte(sent + j as u64);
        }
        s.write_all(&buf[..k]).unwrap();
        h = fnv(h, &buf[..k]);
        sent += k as u64;
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    h
}

/// Reads `s` to its end: the bytes, their FNV-1a hash, and the longest
/// pause between two reads.
fn read_stream(s: &mut TcpStream) -> (u64, u64, Duration) {
    let (mut h, mut n, mut buf) = (fdb::FNV_BASIS, 0u64, vec![0u8; 1 << 16]);
    let (mut last, mut longest) = (Instant::now(), Duration::ZERO);
    loop {
        let k = s.read(&mut buf).unwrap();
        longest = longest.max(last.elapsed());
        last = Instant::now();
        if k == 0 {
            break;
        }
        h = fnv(h, &buf[..k]);
        n += k as u64;
    }
    (n, h, longest)
}

/// Sends `bytes` of a deterministic stream from namespace `from_ns` to a
/// listener at `to` in `to_ns` over TCP and checks, on the far side, that
/// every byte arrived in order (FNV-1a over the stream). Returns the
/// seconds it took.
pub fn tcp_transfer(from_ns: &str, to_ns: &str, to: SocketAddr, bytes: u64) -> f64 {
    tcp_transfer_with_mss(from_ns, to_ns, to, bytes, None)
}

/// [`tcp_transfer`] with the sender's MSS set (TCP_MAXSEG before connect,
/// so it is also what the sender advertises): a small MSS makes the
/// sender's super-packets carry hundreds of segments.
pub fn tcp_transfer_with_mss(
    from_ns: &str,
    to_ns: &str,
    to: SocketAddr,
    bytes: u64,
    mss: Option<u32>,
) -> f64 {
    let server = in_ns(to_ns, move || {
        let l = TcpListener::bind(to).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let (n, h, _) = read_stream(&mut s);
        (n, h)
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let client = in_ns(from_ns, move || {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(to),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        if let Some(mss) = mss {
            sock.set_mss(mss).unwrap();
        }
        sock.connect(&to.into()).unwrap();
        let mut s: TcpStream = sock.into();
        write_stream(&mut s, bytes, None)
    });
    let sent_hash = client.join().unwrap();
    assert_eq!(
        server.join().unwrap(),
        (bytes, sent_hash),
        "the stream arrived intact"
    );
    started.elapsed().as_secs_f64()
}

/// A TCP stream of `bytes` from `from_ns` to `to` (in `to_ns`), paced at
/// about `rate` bytes a second, while `during` runs on this thread (a
/// fault injected under the running stream). Asserts the stream arrived
/// whole and intact (FNV-1a of every byte, both ends); returns the longest
/// pause the receiver saw between two reads.
pub fn tcp_stream_while(
    from_ns: &str,
    to_ns: &str,
    to: SocketAddr,
    bytes: u64,
    rate: u64,
    during: impl FnOnce(),
) -> Duration {
    let server = in_ns(to_ns, move || {
        let l = TcpListener::bind(to).unwrap();
        let (mut s, _) = l.accept().unwrap();
        // A stream that stalls for good fails the test instead of hanging it.
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        read_stream(&mut s)
    });
    std::thread::sleep(Duration::from_millis(200));
    let client = in_ns(from_ns, move || {
        let mut s = TcpStream::connect(to).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        write_stream(&mut s, bytes, Some(rate))
    });
    during();
    let sent_hash = client.join().unwrap();
    let (n, h, longest) = server.join().unwrap();
    assert_eq!((n, h), (bytes, sent_hash), "the stream arrived intact");
    longest
}

/// An application's UDP segmentation offload through the overlay: from
/// namespace `ns`, `sends` super-packets of 3 × 1000-byte datagrams
/// (`UDP_SEGMENT` 1000) from `from` to `to`. Returns how many 1000-byte
/// datagrams arrived intact at `to` (in `to_ns`) and how many were wrong.
pub fn udp_gso_transfer(
    ns: &str,
    from: IpAddr,
    to_ns: &str,
    to: SocketAddr,
    sends: u8,
) -> (u32, u32) {
    use std::net::UdpSocket;
    let sink = in_ns(to_ns, move || {
        let s = UdpSocket::bind(to).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let (mut good, mut bad, mut buf) = (0u32, 0u32, [0u8; 4096]);
        while let Ok(k) = s.recv(&mut buf) {
            // Datagram j of send i is 1000 bytes of (i * 3 + j).
            if k == 1000 && buf[..k].iter().all(|b| *b == buf[0]) {
                good += 1;
            } else {
                bad += 1;
            }
        }
        (good, bad)
    });
    std::thread::sleep(Duration::from_millis(100));
    in_ns(ns, move || {
        let s = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::UdpGsoSegment, &1000)
            .expect("UDP_SEGMENT");
        for i in 0..sends {
            let mut d = vec![0u8; 3000];
            for (j, part) in d.chunks_mut(1000).enumerate() {
                part.fill(i.wrapping_mul(3).wrapping_add(j as u8));
            }
            s.send_to(&d, to).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .join()
    .unwrap();
    sink.join().unwrap()
}

/// Two pings from namespace `ns` to `to` of 1,500 bytes with DF set (the
/// pods' MTU, above the overlay's): ping's output, which names the MTU the
/// ICMP "fragmentation needed" answer carried.
pub fn oversized_df_ping(ns: &str, to: IpAddr) -> String {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-i", "0.3", "-M", "do",
        ])
        .args(["-s", "1472", &to.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}
