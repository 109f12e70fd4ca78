//! Registrar (RFC 3261 §10.3) over a location service, sans-IO.
//!
//! Bindings are kept per address-of-record (`user@host`, host lower case)
//! with an expiry instant; lookups for routing match on the user part only.
//! Authentication happens before [`register`] is called (see the core).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::msg::{parse_delta, uri_host_port, uri_user, Msg};

/// One registered contact of an address-of-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The address-of-record, `user@host`.
    pub aor: String,
    /// The user part of the AOR.
    pub user: String,
    /// The Contact URI (where requests for the AOR go, as Request-URI).
    pub contact: String,
    /// The transport source the REGISTER came from.
    pub source: SocketAddr,
    /// Where requests for this binding are sent: see [`route_target`].
    pub target: SocketAddr,
    /// When the binding lapses.
    pub expires_at: Instant,
    /// Call-ID of the REGISTER that last refreshed it (§10.3 step 7).
    pub call_id: String,
    /// CSeq number of that REGISTER; a lower or equal one in the same
    /// Call-ID is refused.
    pub cseq: u32,
}

impl Binding {
    /// Seconds left at `now`, rounded up.
    pub fn remaining(&self, now: Instant) -> u32 {
        let d = self.expires_at.saturating_duration_since(now);
        let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        s.min(u64::from(u32::MAX)) as u32
    }
}

/// A store of bindings. The in-memory [`MemoryLocation`] is the default;
/// a shared store (e.g. Redis) for several nodes implements the same trait.
pub trait LocationService: Send {
    /// Live bindings of `aor` at `now`.
    fn bindings(&self, aor: &str, now: Instant) -> Vec<Binding>;
    /// Live bindings whose AOR user part is `user`, most recent first.
    fn lookup_user(&self, user: &str, now: Instant) -> Vec<Binding>;
    /// Adds or replaces the binding of (`aor`, `contact`).
    fn upsert(&mut self, b: Binding);
    /// Removes the binding of (`aor`, `contact`).
    fn remove(&mut self, aor: &str, contact: &str);
    /// Removes every binding of `aor`.
    fn remove_all(&mut self, aor: &str);
    /// Drops bindings expired at `now`; returns how many.
    fn purge(&mut self, now: Instant) -> usize;
    /// Number of bindings stored (live or not yet purged).
    fn len(&self) -> usize;
    /// Whether no binding is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Every live binding at `now`, for listings (`/registrations`).
    /// Default: none, for stores that cannot enumerate cheaply.
    fn all(&self, now: Instant) -> Vec<Binding> {
        let _ = now;
        Vec::new()
    }
}

/// In-memory location service, keyed by user part.
#[derive(Debug, Default)]
pub struct MemoryLocation {
    by_user: HashMap<String, Vec<Binding>>,
}

impl MemoryLocation {
    /// An empty store.
    pub fn new() -> MemoryLocation {
        MemoryLocation::default()
    }
}

fn user_of_aor(aor: &str) -> &str {
    aor.rsplit_once('@').map(|(u, _)| u).unwrap_or(aor)
}

impl LocationService for MemoryLocation {
    fn bindings(&self, aor: &str, now: Instant) -> Vec<Binding> {
        self.by_user
            .get(user_of_aor(aor))
            .map(|v| {
                v.iter()
                    .filter(|b| b.aor == aor && b.expires_at > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lookup_user(&self, user: &str, now: Instant) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .by_user
            .get(user)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|b| std::cmp::Reverse(b.expires_at));
        v
    }

    fn upsert(&mut self, b: Binding) {
        let v = self.by_user.entry(b.user.clone()).or_default();
        match v
            .iter_mut()
            .find(|x| x.aor == b.aor && x.contact == b.contact)
        {
            Some(x) => *x = b,
            None => v.push(b),
        }
    }

    fn remove(&mut self, aor: &str, contact: &str) {
        if let Some(v) = self.by_user.get_mut(user_of_aor(aor)) {
            v.retain(|b| !(b.aor == aor && b.contact == contact));
        }
    }

    fn remove_all(&mut self, aor: &str) {
        if let Some(v) = self.by_user.get_mut(user_of_aor(aor)) {
            v.retain(|b| b.aor != aor);
        }
    }

    fn purge(&mut self, now: Instant) -> usize {
        let mut n = 0;
        self.by_user.retain(|_, v| {
            let before = v.len();
            v.retain(|b| b.expires_at > now);
            n += before - v.len();
            !v.is_empty()
        });
        n
    }

    fn len(&self) -> usize {
        self.by_user.values().map(Vec::len).sum()
    }

    fn all(&self, now: Instant) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .by_user
            .values()
            .flatten()
            .filter(|b| b.expires_at > now)
            .cloned()
            .collect();
        v.sort_by(|x, y| (&x.aor, &x.contact).cmp(&(&y.aor, &y.contact)));
        v
    }
}

/// Where to send requests for a contact registered from `source`: the
/// contact URI's IP and port (5060 if none, RFC 3263 without DNS), or the
/// REGISTER's source address when the contact host is not an IP literal, or
/// is a private/unspecified address while the source is not (a UA behind
/// NAT, as with `rport`, RFC 3581).
pub fn route_target(contact: &str, source: SocketAddr) -> SocketAddr {
    let Some((host, port)) = uri_host_port(contact) else {
        return source;
    };
    let Ok(ip) = host.parse::<IpAddr>() else {
        return source;
    };
    if (is_private(ip) || ip.is_unspecified()) && !is_private(source.ip()) {
        return source;
    }
    SocketAddr::new(ip, port.unwrap_or(5060))
}

/// RFC 1918 / RFC 6598 / unique-local / link-local addresses.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// Expiry policy of the registrar, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Used when neither the contact nor the request gives one.
    pub default: u32,
    /// Shorter non-zero requests get 423.
    pub min: u32,
    /// Longer requests are cut down to this.
    pub max: u32,
}

/// What a REGISTER led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterResult {
    /// 200 OK listing the AOR's bindings: (contact URI, seconds left).
    Ok(Vec<(String, u32)>),
    /// 423 Interval Too Brief, with the Min-Expires value.
    TooBrief(u32),
    /// Another failure: status code and a reason for the log.
    Fail(u16, String),
}

/// The AOR (`user@host`) of a REGISTER's To URI; `None` if it has no user
/// or is not a sip/sips URI.
pub fn aor_of(req: &Msg) -> Option<(String, String)> {
    let uri = &req.to.uri;
    let scheme = uri.split_once(':')?.0.to_ascii_lowercase();
    if scheme != "sip" && scheme != "sips" {
        return None;
    }
    let user = uri_user(uri)?.to_string();
    let (host, _) = uri_host_port(uri)?;
    Some((format!("{user}@{}", host.to_ascii_lowercase()), user))
}

/// Applies a (authenticated) REGISTER to `loc` (RFC 3261 §10.3 steps 5-8).
pub fn register(
    loc: &mut dyn LocationService,
    req: &Msg,
    src: SocketAddr,
    now: Instant,
    policy: ExpiryPolicy,
) -> RegisterResult {
    let Some((aor, user)) = aor_of(req) else {
        return RegisterResult::Fail(400, "To is not a sip URI with a user part".into());
    };
    let header_expires = req.expires();
    if req.contact_star() {
        // §10.3 step 6: "*" only alone and with Expires: 0.
        if header_expires != Some(0) || req.headers("Contact").count() != 1 {
            return RegisterResult::Fail(
                400,
                "Contact: * needs Expires: 0 and no other contact".into(),
            );
        }
        loc.remove_all(&aor);
        return RegisterResult::Ok(Vec::new());
    }
    let contacts = req.contacts();
    // First pass: check everything, so a failure changes nothing.
    let existing = loc.bindings(&aor, now);
    let mut plan = Vec::with_capacity(contacts.len());
    for c in &contacts {
        let e = c
            .param("expires")
            .and_then(parse_delta)
            .or(header_expires)
            .unwrap_or(policy.default);
        if e != 0 && e < policy.min {
            return RegisterResult::TooBrief(policy.min);
        }
        if let Some(b) = existing.iter().find(|b| b.contact == c.uri) {
            if b.call_id == req.call_id && req.cseq.num <= b.cseq {
                return RegisterResult::Fail(500, "REGISTER CSeq out of order".into());
            }
        }
        plan.push((c.uri.clone(), e.min(policy.max)));
    }
    for (contact, e) in plan {
        if e == 0 {
            loc.remove(&aor, &contact);
        } else {
            loc.upsert(Binding {
                aor: aor.clone(),
                user: user.clone(),
                target: route_target(&contact, src),
                contact,
                source: src,
                expires_at: now + Duration::from_secs(u64::from(e)),
                call_id: req.call_id.clone(),
                cseq: req.cseq.num,
            });
        }
    }
    RegisterResult::Ok(
        loc.bindings(&aor, now)
            .into_iter()
            .map(|b| {
                let r = b.remaining(now);
                (b.contact, r)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::parse;

    const POLICY: ExpiryPolicy = ExpiryPolicy {
        default: 3600,
        min: 60,
        max: 7200,
    };

    fn reg(extra: &str, cseq: u32) -> Msg {
        let s = format!(
            "REGISTER sip:tern SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK{cseq}\r\nFrom: <sip:bob@tern>;tag=1\r\nTo: <sip:bob@TERN>\r\nCall-ID: reg1\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn route_targets() {
        let src: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:15071".parse().unwrap();
        assert_eq!(
            route_target("sip:bob@127.0.0.1:15070", lo),
            "127.0.0.1:15070".parse().unwrap()
        );
        assert_eq!(
            route_target("sip:bob@198.51.100.1", src),
            "198.51.100.1:5060".parse().unwrap()
        );
        assert_eq!(
            route_target("sip:bob@[2001:db8::1]:5070", src),
            "[2001:db8::1]:5070".parse().unwrap()
        );
        // NAT: private contact, public source.
        assert_eq!(route_target("sip:bob@192.168.1.20:5060", src), src);
        assert_eq!(route_target("sip:bob@100.64.0.1:5060", src), src);
        // Both private (same LAN): the contact.
        let lan: SocketAddr = "10.0.0.5:5062".parse().unwrap();
        assert_eq!(
            route_target("sip:bob@10.0.0.6:5060", lan),
            "10.0.0.6:5060".parse().unwrap()
        );
        // No IP literal: the source.
        assert_eq!(route_target("sip:bob@example.com", src), src);
        assert_eq!(route_target("garbage", src), src);
    }

    #[test]
    fn register_refresh_expire_remove() {
        let mut loc = MemoryLocation::new();
        let t0 = Instant::now();
        let src: SocketAddr = "10.0.0.2:5070".parse().unwrap();
        let r = register(
            &mut loc,
            &reg("Contact: <sip:bob@10.0.0.2:5070>\r\n", 1),
            src,
            t0,
            POLICY,
        );
        assert_eq!(
            r,
            RegisterResult::Ok(vec![("sip:bob@10.0.0.2:5070".into(), 3600)])
        );
        // Contact param wins over Expires; max caps.
        let r = register(
            &mut loc,
            &reg("Expires: 100\r\nContact: <sip:bob@10.0.0.2:5070>;expires=99999\r\nContact: <sip:bob@10.0.0.3>\r\n", 2),
            src,
            t0,
            POLICY,
        );
        let RegisterResult::Ok(mut v) = r else {
            panic!("{r:?}")
        };
        v.sort();
        assert_eq!(
            v,
            [
                ("sip:bob@10.0.0.2:5070".to_string(), 7200),
                ("sip:bob@10.0.0.3".to_string(), 100)
            ]
        );
        assert_eq!(
            loc.lookup_user("bob", t0)[0].contact,
            "sip:bob@10.0.0.2:5070"
        );
        assert_eq!(
            loc.lookup_user("bob", t0 + Duration::from_secs(101)).len(),
            1
        );
        assert_eq!(loc.purge(t0 + Duration::from_secs(101)), 1);
        // Out-of-order CSeq in the same Call-ID.
        assert!(matches!(
            register(
                &mut loc,
                &reg("Contact: <sip:bob@10.0.0.2:5070>\r\n", 2),
                src,
                t0,
                POLICY
            ),
            RegisterResult::Fail(500, _)
        ));
        // Too brief.
        assert_eq!(
            register(
                &mut loc,
                &reg("Contact: <sip:bob@10.0.0.2:5070>;expires=5\r\n", 3),
                src,
                t0,
                POLICY
            ),
            RegisterResult::TooBrief(60)
        );
        // Query: no Contact.
        assert!(
            matches!(register(&mut loc, &reg("", 4), src, t0, POLICY), RegisterResult::Ok(v) if v.len() == 1)
        );
        // Expires: 0 removes.
        assert_eq!(
            register(
                &mut loc,
                &reg("Expires: 0\r\nContact: <sip:bob@10.0.0.2:5070>\r\n", 5),
                src,
                t0,
                POLICY
            ),
            RegisterResult::Ok(vec![])
        );
        assert!(loc.lookup_user("bob", t0).is_empty());
        // Star.
        register(
            &mut loc,
            &reg("Contact: <sip:bob@10.0.0.9>\r\n", 6),
            src,
            t0,
            POLICY,
        );
        assert!(matches!(
            register(&mut loc, &reg("Contact: *\r\n", 7), src, t0, POLICY),
            RegisterResult::Fail(400, _)
        ));
        assert_eq!(
            register(
                &mut loc,
                &reg("Expires: 0\r\nContact: *\r\n", 8),
                src,
                t0,
                POLICY
            ),
            RegisterResult::Ok(vec![])
        );
        assert!(loc.is_empty() || loc.lookup_user("bob", t0).is_empty());
    }
}
