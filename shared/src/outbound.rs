//! Where this server may send requests that someone else named (webhook URLs now,
//! image URLs to fetch later): public unicast addresses only, unless the operator allows
//! private ones. A host name is resolved once, every address it has must pass, and the
//! caller connects to the address that was checked, so a name that resolves to a
//! public address for the check and to 127.0.0.1 for the connection (DNS rebinding)
//! gets nowhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundRefusal {
    #[error("{host} cannot be resolved: {reason}")]
    Unresolvable { host: String, reason: String },
    #[error("{host} resolves to {addr}, a loopback, private, link-local or otherwise non-public address")]
    NotPublic { host: String, addr: IpAddr },
}

/// The address to connect to for `host:port`: its first, once every address it resolves
/// to is allowed (public, or any with `allow_private`).
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private: bool,
    timeout: Duration,
) -> Result<SocketAddr, OutboundRefusal> {
    let unresolvable = |reason: String| OutboundRefusal::Unresolvable { host: host.to_string(), reason };
    // `[::1]` as a URL writes it; the resolver wants the bare address.
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| unresolvable(format!("no answer within {timeout:?}")))?
            .map_err(|e| unresolvable(e.to_string()))?
            .collect(),
    };
    let first = *addrs.first().ok_or_else(|| unresolvable("no addresses".into()))?;
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(OutboundRefusal::NotPublic { host: host.to_string(), addr: bad.ip() });
        }
    }
    Ok(first)
}

/// The innermost cause of an error, for a message: an HTTP client's own message names
/// the URL, which may carry a token, and the caller names what it was fetching already.
pub fn innermost_reason(e: &dyn std::error::Error) -> String {
    let mut source = e.source();
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    last.unwrap_or_else(|| "connection failed".into())
}

/// Global unicast: not loopback, private, link-local (cloud metadata lives at
/// 169.254.169.254), shared, multicast, documentation or reserved, in IPv4 or IPv6,
/// including IPv4 written inside IPv6 (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let blocked = a == 0 // "this network"
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared (carrier-grade NAT)
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !blocked
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible (deprecated, ::a.b.c.d; `::` and `::1` included) and NAT64 (64:ff9b::/96).
    if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    // 6to4: the IPv4 address follows 2002::/16.
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    let global_unicast = (s[0] & 0xe000) == 0x2000; // 2000::/3
    // 2001::/23 (Teredo, benchmarking, ORCHID, other IETF) and 2001:db8::/32 (documentation).
    let blocked = s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8);
    global_unicast && !blocked
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn only_global_unicast_addresses_are_public() {
        for ok in ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8"] {
            assert!(public(ok), "{ok}");
        }
        for bad in [
            "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
            "100.64.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "240.0.0.1", "192.0.2.1", "198.18.0.1",
            "::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1", "::ffff:127.0.0.1",
            "::ffff:169.254.169.254", "::127.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001::1", "fec0::1",
        ] {
            assert!(!public(bad), "{bad}");
        }
        assert!(public("64:ff9b::808:808"), "NAT64 of a public address");
    }

    #[tokio::test]
    async fn names_and_literals_are_resolved_then_checked() {
        let t = Duration::from_secs(5);
        let refused = resolve_checked("127.0.0.1", 80, false, t).await.unwrap_err();
        assert!(matches!(refused, OutboundRefusal::NotPublic { .. }), "{refused:?}");
        assert!(matches!(resolve_checked("[::1]", 80, false, t).await, Err(OutboundRefusal::NotPublic { .. })));
        assert!(matches!(resolve_checked("localhost", 80, false, t).await, Err(OutboundRefusal::NotPublic { .. })));
        assert_eq!(resolve_checked("127.0.0.1", 8080, true, t).await.unwrap(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(resolve_checked("[::1]", 81, true, t).await.unwrap(), "[::1]:81".parse().unwrap());
        assert!(matches!(
            resolve_checked("no-such-host.invalid", 80, true, t).await,
            Err(OutboundRefusal::Unresolvable { .. })
        ));
    }
}
