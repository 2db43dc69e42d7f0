//! Where the load goes and where it comes from: the target URL (which must
//! be on 127.0.0.0/8: this tool never sends traffic off the machine) and the
//! source addresses sockets bind to so that ephemeral ports do not run out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::{Context, ensure};
use tokio::net::{TcpSocket, TcpStream};

/// Most source addresses one run may use; more buys nothing.
const MAX_SOURCES: usize = 256;

/// The server under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value (`ip:port`).
    pub host: String,
}

impl Target {
    /// Parses `http://127.0.0.1:8080` (a path is ignored, `localhost` is
    /// 127.0.0.1) and refuses anything outside 127.0.0.0/8.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("http://").context("the URL must start with http:// (no TLS on loopback)")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = authority.rsplit_once(':').map_or((authority, "80"), |(h, p)| (h, p));
        let port: u16 = port.parse().with_context(|| format!("bad port in {url}"))?;
        let ip: Ipv4Addr = if host == "localhost" {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse()
                .with_context(|| format!("the URL host must be an IPv4 address on 127.0.0.0/8, not {host:?}"))?
        };
        ensure!(ip.is_loopback(), "refusing {ip}: load may only go to 127.0.0.0/8");
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
        Ok(Self { host: addr.to_string(), addr })
    }

    /// Base of WebSocket URLs for this target.
    pub fn ws_base(&self) -> String {
        format!("ws://{}", self.host)
    }
}

/// Parses `127.0.0.2-127.0.0.9,127.0.0.20` into addresses, all on
/// 127.0.0.0/8 (Linux answers for the whole block on `lo`).
pub fn parse_sources(spec: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let first: Ipv4Addr = first.trim().parse().with_context(|| format!("bad source address {first:?}"))?;
        let last: Ipv4Addr = last.trim().parse().with_context(|| format!("bad source address {last:?}"))?;
        ensure!(first.is_loopback() && last.is_loopback(), "source addresses must be on 127.0.0.0/8: {part}");
        let (a, b) = (u32::from(first), u32::from(last));
        ensure!(a <= b, "empty source range {part}");
        ensure!((b - a) as usize + out.len() < MAX_SOURCES, "more than {MAX_SOURCES} source addresses");
        out.extend((a..=b).map(Ipv4Addr::from));
    }
    ensure!(!out.is_empty(), "no source addresses in {spec:?}");
    Ok(out)
}

/// Connects from `source` (any free port on it) to `target`. Binding first
/// spreads sockets over several local addresses, each with its own range of
/// ephemeral ports.
pub async fn connect_from(source: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(target).await?;
    // Requests are single small writes; do not let Nagle hold them back.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A short, fixed cause for an I/O error of a connection (mostly from
/// `connect_from`), so the crowds' error tallies stay bounded.
pub fn io_category(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        AddrNotAvailable | AddrInUse => "connect: no free local port (add --source-ips)",
        ConnectionRefused => "connect: refused",
        ConnectionReset => "connect: reset",
        TimedOut => "connect: timed out",
        _ if e.raw_os_error() == Some(24) => "connect: too many open files",
        _ => "connect: other i/o error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_must_be_loopback() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.addr.port(), t.host.as_str()), (8080, "127.0.0.1:8080"));
        assert_eq!(Target::parse("http://localhost:9000/").unwrap().host, "127.0.0.1:9000");
        assert_eq!(Target::parse("http://127.1.2.3/x").unwrap().addr.port(), 80);
        assert_eq!(t.ws_base(), "ws://127.0.0.1:8080");
        for bad in
            ["http://10.0.0.1:80", "http://example.com", "https://127.0.0.1", "127.0.0.1:80", "http://127.0.0.1:x"]
        {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_ranges() {
        let s = parse_sources("127.0.0.2-127.0.0.4, 127.0.0.9").unwrap();
        assert_eq!(s, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"].map(|a| a.parse::<Ipv4Addr>().unwrap()));
        assert!(parse_sources("192.168.0.1").is_err());
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_sources("127.0.0.0-127.0.255.255").is_err(), "bounded");
        assert!(parse_sources(" , ").is_err());
    }
}
