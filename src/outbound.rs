//! Where outbound calls may go: one policy for every request ingot sends (`http` blocks,
//! webhook deliveries, EventBridge), checked on the URL as written and again on every address
//! a name resolves to, at every redirect hop, so neither DNS nor a redirect can lead a call
//! somewhere a literal address could not.
//!
//! - Never, in any environment: link-local addresses (169.254.0.0/16, fe80::/10), which hold
//!   cloud metadata services, and AWS's IPv6 metadata address `fd00:ec2::254`, in every
//!   spelling (IPv4-mapped IPv6 included; the URL parser already folds decimal, hex and octal
//!   IPv4 forms into one address).
//! - In production, also loopback, private (RFC 1918, fc00::/7), CGNAT (100.64.0.0/10) and
//!   unspecified addresses, unless `INGOT_OUTBOUND_ALLOW` lists them. Development reaches
//!   loopback and private networks by default: that is the local-sandbox use.

use crate::store::Env;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// A network in CIDR form, from `INGOT_OUTBOUND_ALLOW`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = text.trim().split_once('/').unwrap_or((text.trim(), ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or a network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a prefix length that is not 0..={max}"))?
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Parses `INGOT_OUTBOUND_ALLOW`: comma-separated networks.
pub fn parse_allow(text: &str) -> Result<Vec<Cidr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Cidr::parse)
        .collect()
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Link-local and cloud metadata addresses: refused everywhere, always.
fn is_metadata_or_link_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            let metadata = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
            v6 == metadata || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Addresses of this machine or its private networks: refused in production unless allowed.
fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let cgnat = (u32::from(v4) & 0xffc0_0000) == u32::from(Ipv4Addr::new(100, 64, 0, 0));
            v4.is_loopback() || v4.is_private() || v4.is_unspecified() || v4.is_broadcast() || cgnat
        }
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The rules for one environment.
#[derive(Clone, Debug)]
pub struct Policy {
    pub env: Env,
    pub allow: Arc<Vec<Cidr>>,
}

impl Policy {
    /// Why `ip` may not be reached, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if is_metadata_or_link_local(ip) {
            return Some("a link-local or cloud metadata address");
        }
        let allowed = self.allow.iter().any(|c| c.contains(ip));
        if self.env == Env::Production && is_internal(ip) && !allowed {
            return Some("a loopback, private or unspecified address (allow it with INGOT_OUTBOUND_ALLOW)");
        }
        None
    }

    /// Checks a URL as written: http(s), a host, and no refused address literal. Names are
    /// checked when they resolve (see [`Policy::resolver`]).
    pub fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        let parsed = url::Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("the URL must be http or https".into());
        }
        let ip = match parsed.host() {
            None => return Err("the URL must have a host".into()),
            Some(url::Host::Domain("")) => return Err("the URL must have a host".into()),
            Some(url::Host::Domain(_)) => None,
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        };
        if let Some(why) = ip.and_then(|ip| self.refusal(ip)) {
            return Err(format!("the URL points at {why}, which is refused"));
        }
        Ok(parsed)
    }

    /// A resolver for ureq that drops refused addresses after DNS; a name that resolves only
    /// to refused addresses is an error. Every connection, redirects included, goes through it.
    pub fn resolver(&self) -> PolicyResolver {
        PolicyResolver(self.clone())
    }
}

/// See [`Policy::resolver`].
pub struct PolicyResolver(Policy);

impl ureq::Resolver for PolicyResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let all: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        let mut why = None;
        let allowed: Vec<SocketAddr> = all
            .iter()
            .copied()
            .filter(|a| match self.0.refusal(a.ip()) {
                Some(w) => {
                    why = Some(w);
                    false
                }
                None => true,
            })
            .collect();
        match why {
            Some(why) if allowed.is_empty() => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{netloc} resolves only to {why}, which is refused"),
            )),
            _ => Ok(allowed),
        }
    }
}

/// Header values that carry a customer's text (`X-Alloy-BlockName`): visible ASCII passes as
/// it is; `%` and every other byte are percent-encoded (UTF-8), so no text can make a header
/// invalid and the original is recoverable with any URL decoder.
pub fn header_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b' '..=b'~' if b != b'%' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Whether `value` can go into a header as it is: visible ASCII and spaces, with no leading or
/// trailing whitespace.
pub fn is_header_value(value: &str) -> bool {
    !value.is_empty()
        && value.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

/// Whether `name` is a header name (an RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Header names never taken from a credential or a block: those that change how a request is
/// framed or routed ([`is_framing_header`]), and ingot's own `X-Alloy-Signature` (ureq would
/// send a block's copy beside ingot's, as it keeps every `X-` header set, and a receiver
/// reading the first one would check the block's).
pub fn is_reserved_header(name: &str) -> bool {
    is_framing_header(name) || name.eq_ignore_ascii_case(crate::request_signing::HEADER)
}

/// Header names that change how a request is framed or routed.
pub fn is_framing_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "host" | "content-length" | "transfer-encoding" | "connection" | "upgrade" | "te" | "trailer" | "keep-alive"
    ) || n.starts_with("proxy-")
}

/// The HTTP clients for outbound calls, one set per environment, each bound to its
/// environment's [`Policy`].
pub struct Outbound {
    policies: [Policy; 2],
    blocks: [ureq::Agent; 2],
    webhooks: [ureq::Agent; 2],
    aws: [ureq::Agent; 2],
}

/// How long a webhook receiver or EventBridge gets to answer.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Outbound {
    pub fn new(allow: Vec<Cidr>) -> Outbound {
        let allow = Arc::new(allow);
        let policy = |env| Policy {
            env,
            allow: allow.clone(),
        };
        let policies = [policy(Env::Development), policy(Env::Production)];
        let version = env!("CARGO_PKG_VERSION");
        let build = |p: &Policy, redirects: u32, ua: String, timeout: Option<std::time::Duration>| {
            let mut b = ureq::AgentBuilder::new()
                .timeout_connect(std::time::Duration::from_secs(5))
                .redirects(redirects)
                .resolver(p.resolver())
                .user_agent(&ua);
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            b.build()
        };
        let each = |redirects, ua: &str, timeout| {
            [
                build(&policies[0], redirects, format!("{ua}/{version}"), timeout),
                build(&policies[1], redirects, format!("{ua}/{version}"), timeout),
            ]
        };
        Outbound {
            // Blocks follow redirects; the resolver checks every hop.
            blocks: each(5, "ingot", None),
            webhooks: each(0, "ingot-webhooks", Some(SEND_TIMEOUT)),
            aws: each(0, "ingot", Some(SEND_TIMEOUT)),
            policies,
        }
    }

    fn index(env: Env) -> usize {
        match env {
            Env::Development => 0,
            Env::Production => 1,
        }
    }

    pub fn policy(&self, env: Env) -> &Policy {
        &self.policies[Self::index(env)]
    }

    /// The client for `http` blocks (per-request timeouts are the block's).
    pub fn blocks(&self, env: Env) -> &ureq::Agent {
        &self.blocks[Self::index(env)]
    }

    /// The client for webhook deliveries: no redirects.
    pub fn webhooks(&self, env: Env) -> &ureq::Agent {
        &self.webhooks[Self::index(env)]
    }

    /// The client for EventBridge: no redirects.
    pub fn aws(&self, env: Env) -> &ureq::Agent {
        &self.aws[Self::index(env)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(env: Env, allow: &str) -> Policy {
        Policy {
            env,
            allow: Arc::new(parse_allow(allow).unwrap()),
        }
    }

    #[test]
    fn metadata_is_refused_in_every_spelling_and_environment() {
        for env in [Env::Development, Env::Production] {
            let p = policy(env, "169.254.0.0/16");
            for url in [
                "http://169.254.169.254/latest/meta-data",
                "http://2852039166/",
                "http://0xA9FEA9FE/",
                "http://0251.0376.0251.0376/",
                "http://169.254.43518/",
                "http://[::ffff:169.254.169.254]/",
                "http://[::ffff:a9fe:a9fe]/",
                "http://[fd00:ec2::254]/",
                "http://[fe80::1]/",
            ] {
                assert!(p.check_url(url).is_err(), "{url} in {env:?}");
            }
        }
    }

    #[test]
    fn production_refuses_internal_addresses_unless_allowed() {
        let dev = policy(Env::Development, "");
        let prod = policy(Env::Production, "");
        let allowed = policy(Env::Production, "127.0.0.1, 10.1.0.0/16");
        for url in [
            "http://127.0.0.1:9/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://0.0.0.0/",
        ] {
            assert!(dev.check_url(url).is_ok(), "{url}");
            assert!(prod.check_url(url).is_err(), "{url}");
        }
        assert!(allowed.check_url("http://127.0.0.1:9/").is_ok());
        assert!(allowed.check_url("http://10.1.200.3/").is_ok());
        assert!(allowed.check_url("http://10.2.0.1/").is_err());
        assert!(prod.check_url("https://hooks.example.com/x").is_ok());
        assert!(prod.check_url("ftp://example.com/").is_err());
        assert!(prod.check_url("http://").is_err());
    }

    #[test]
    fn the_resolver_refuses_names_that_resolve_to_refused_addresses() {
        use ureq::Resolver;
        let dev = policy(Env::Development, "");
        assert!(dev.resolver().resolve("169.254.169.254:80").is_err());
        assert_eq!(dev.resolver().resolve("127.0.0.1:80").unwrap().len(), 1);
        assert!(policy(Env::Production, "").resolver().resolve("localhost:80").is_err());
    }

    #[test]
    fn customer_text_becomes_a_valid_header_value() {
        assert_eq!(header_text("Créer le contact"), "Cr%C3%A9er le contact");
        assert_eq!(header_text("50% off\r\nX: y"), "50%25 off%0D%0AX: y");
        assert!(is_header_value(&header_text("Créer\n")));
        assert!(!is_header_value("secret\n"));
        assert!(!is_header_value("clé"));
        assert!(is_framing_header("Proxy-Authorization") && is_framing_header("HOST"));
        assert!(!is_framing_header("X-Api-Key"));
        assert!(is_reserved_header("x-alloy-signature") && is_reserved_header("Host"));
        assert!(!is_reserved_header("X-Alloy-UserId"));
        assert!(is_header_name("X-Api-Key") && !is_header_name("X Api") && !is_header_name(""));
    }
}
