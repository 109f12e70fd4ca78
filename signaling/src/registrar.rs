//! Registrar (RFC 3261 §10.3) over a location service, sans-IO.
//!
//! Bindings are kept per address-of-record (`user@host`, host lower case)
//! with an expiry instant; lookups for routing match on the user part only
//! ([`LocationService::lookup_user`]).
//! Authentication happens before [`register`] is called (see the core).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Bound;
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
    /// The transport it came over: a binding made over a flow (TLS, WS,
    /// WSS; [`crate::Transport::is_flow`]) is reached only over that
    /// connection, so its target is `source`.
    pub transport: crate::transport::Transport,
    /// Where requests for this binding are sent: see [`route_target`].
    pub target: SocketAddr,
    /// When the binding lapses.
    pub expires_at: Instant,
    /// Call-ID of the REGISTER that last refreshed it (§10.3 step 7).
    pub call_id: String,
    /// CSeq number of that REGISTER; a lower or equal one in the same
    /// Call-ID is refused.
    pub cseq: u32,
    /// Top Via branch of that REGISTER: a request with the same Call-ID,
    /// CSeq and branch is its retransmission, answered again unchanged.
    pub branch: String,
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

/// Slots of the expiry wheel: one per second, so a binding up to ~68 min
/// away fires in its first turn; longer ones wait whole turns in their slot.
const WHEEL_SLOTS: usize = 4096;

/// A pending expiry in the wheel: the binding of (`aor`, `contact`)
/// lapses at second `sec` (counted from the store's epoch).
#[derive(Debug, Clone)]
struct WheelEntry {
    sec: u64,
    aor: String,
    contact: String,
}

/// In-memory location service: bindings in a B-tree by AOR (each AOR's in
/// a vector sorted by contact), so listings come out in (AOR, contact)
/// order without sorting and a user's AORs (`user@...`) are one range.
/// Expiry goes through a hashed timing wheel of one-second slots
/// (4096 of them): a binding expiring at second `s` waits in
/// slot `s % WHEEL_SLOTS`, and [`LocationService::purge`] visits only the
/// slots of the seconds that passed since the last purge (all of them at
/// most once), so its cost is in the bindings due, not in the bindings
/// held. Expiry seconds are rounded up, so a binding is never dropped
/// before its time; lookups filter on the exact instant. The wheel counts
/// seconds from an epoch ([`MemoryLocation::with_epoch`]); instants before
/// it count as second 0.
#[derive(Debug)]
pub struct MemoryLocation {
    by_aor: BTreeMap<String, Vec<Binding>>,
    count: usize,
    /// Zero of the wheel's seconds.
    epoch: Instant,
    wheel: Vec<Vec<WheelEntry>>,
    /// Every slot of a second up to this one has been purged (`None`:
    /// no purge yet).
    purged_upto: Option<u64>,
}

impl Default for MemoryLocation {
    fn default() -> Self {
        MemoryLocation::new()
    }
}

impl MemoryLocation {
    /// An empty store whose wheel starts now (real clock).
    pub fn new() -> MemoryLocation {
        MemoryLocation::with_epoch(Instant::now())
    }

    /// An empty store whose wheel counts seconds from `epoch`: the
    /// sans-IO core passes its start instant, tests their virtual clock.
    pub fn with_epoch(epoch: Instant) -> MemoryLocation {
        MemoryLocation {
            by_aor: BTreeMap::new(),
            count: 0,
            epoch,
            wheel: vec![Vec::new(); WHEEL_SLOTS],
            purged_upto: None,
        }
    }

    /// The wheel second of `t`, rounded up (or down with `ceil == false`).
    fn sec(&self, t: Instant, ceil: bool) -> u64 {
        let d = t.saturating_duration_since(self.epoch);
        d.as_secs() + u64::from(ceil && d.subsec_nanos() > 0)
    }

    fn unschedule(&mut self, sec: u64, aor: &str, contact: &str) {
        let slot = &mut self.wheel[(sec % WHEEL_SLOTS as u64) as usize];
        if let Some(i) = slot
            .iter()
            .position(|e| e.sec == sec && e.aor == aor && e.contact == contact)
        {
            slot.swap_remove(i);
        }
    }

    fn schedule(&mut self, b: &Binding) {
        let sec = self.sec(b.expires_at, true);
        self.wheel[(sec % WHEEL_SLOTS as u64) as usize].push(WheelEntry {
            sec,
            aor: b.aor.clone(),
            contact: b.contact.clone(),
        });
    }

    /// Pending expiries in the wheel (one per stored binding).
    pub fn scheduled(&self) -> usize {
        self.wheel.iter().map(Vec::len).sum()
    }
}

/// Index of `contact` in an AOR's vector sorted by contact.
fn find(v: &[Binding], contact: &str) -> Result<usize, usize> {
    v.binary_search_by(|b| b.contact.as_str().cmp(contact))
}

impl LocationService for MemoryLocation {
    fn bindings(&self, aor: &str, now: Instant) -> Vec<Binding> {
        self.by_aor
            .get(aor)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    fn lookup_user(&self, user: &str, now: Instant) -> Vec<Binding> {
        let prefix = format!("{user}@");
        let mut v: Vec<Binding> = self
            .by_aor
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(aor, _)| aor.starts_with(&prefix))
            .flat_map(|(_, v)| v.iter())
            .filter(|b| b.expires_at > now)
            .cloned()
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.expires_at));
        v
    }

    fn upsert(&mut self, b: Binding) {
        let new_sec = self.sec(b.expires_at, true);
        let v = self.by_aor.entry(b.aor.clone()).or_default();
        let old = match find(v, &b.contact) {
            Ok(i) => Some(std::mem::replace(&mut v[i], b.clone())),
            Err(i) => {
                v.insert(i, b.clone());
                None
            }
        };
        match old {
            Some(o) => {
                let old_sec = self.sec(o.expires_at, true);
                if old_sec != new_sec {
                    self.unschedule(old_sec, &o.aor, &o.contact);
                    self.schedule(&b);
                }
            }
            None => {
                self.count += 1;
                self.schedule(&b);
            }
        }
    }

    fn remove(&mut self, aor: &str, contact: &str) {
        let Some(v) = self.by_aor.get_mut(aor) else {
            return;
        };
        let Ok(i) = find(v, contact) else {
            return;
        };
        let gone = v.remove(i);
        if v.is_empty() {
            self.by_aor.remove(aor);
        }
        let sec = self.sec(gone.expires_at, true);
        self.unschedule(sec, aor, contact);
        self.count -= 1;
    }

    fn remove_all(&mut self, aor: &str) {
        for b in self.by_aor.remove(aor).unwrap_or_default() {
            let sec = self.sec(b.expires_at, true);
            self.unschedule(sec, aor, &b.contact);
            self.count -= 1;
        }
    }

    fn purge(&mut self, now: Instant) -> usize {
        let now_sec = self.sec(now, false);
        let next = self.purged_upto.map_or(0, |p| p + 1);
        if now_sec < next {
            return 0;
        }
        // Each slot at most once, however long since the last purge.
        let first = next.max(now_sec.saturating_sub(WHEEL_SLOTS as u64 - 1));
        let mut n = 0;
        for s in first..=now_sec {
            let idx = (s % WHEEL_SLOTS as u64) as usize;
            let slot = std::mem::take(&mut self.wheel[idx]);
            let (due, keep): (Vec<WheelEntry>, Vec<WheelEntry>) =
                slot.into_iter().partition(|e| e.sec <= now_sec);
            self.wheel[idx] = keep;
            for e in due {
                let Some(v) = self.by_aor.get_mut(&e.aor) else {
                    continue;
                };
                let Ok(i) = find(v, &e.contact) else {
                    continue;
                };
                if v[i].expires_at > now {
                    // Only for instants before the epoch (second 0): wait
                    // for the slot's next visit.
                    self.wheel[idx].push(e);
                    continue;
                }
                v.remove(i);
                n += 1;
                self.count -= 1;
                if v.is_empty() {
                    self.by_aor.remove(&e.aor);
                }
            }
        }
        self.purged_upto = Some(now_sec);
        n
    }

    fn len(&self) -> usize {
        self.count
    }

    fn all(&self, now: Instant) -> Vec<Binding> {
        // Already in (AOR, contact) order.
        self.by_aor
            .values()
            .flatten()
            .filter(|b| b.expires_at > now)
            .cloned()
            .collect()
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

/// Most contacts one AOR may hold; a REGISTER that would exceed it gets
/// 503 (as Kamailio's `max_contacts`), which bounds memory per user.
pub const MAX_CONTACTS_PER_AOR: usize = 32;

/// Applies an (authenticated) REGISTER to `loc` (RFC 3261 §10.3 steps
/// 5-8) at `now`, for a request received from `src`.
///
/// - Each Contact's lifetime is its `expires` parameter, else the Expires
///   header, else `policy.default`, cut to `policy.max`; a non-zero one
///   below `policy.min` fails the whole request with
///   [`RegisterResult::TooBrief`] (423). Zero removes the binding.
/// - `Contact: *` removes every binding of the AOR; it must be alone and
///   come with `Expires: 0`, else 400.
/// - A binding last written from the same Call-ID with a CSeq not lower
///   than this request's makes the request out of order: 500, nothing
///   changed (step 7). The same holds per binding for `Contact: *`. The
///   exception is a retransmission of the request that wrote the binding
///   (same Call-ID, CSeq and Via branch): it gets the current listing and
///   changes nothing, as a server transaction would answer it (§17.2.2).
/// - No Contact: a query; the 200 lists the bindings.
///
/// Every check runs before any change, so a failure changes nothing.
/// Returns the AOR's bindings after the update with their seconds left,
/// for the 200's Contact headers; failures: 400 (no user in To, a Contact
/// that does not parse, a bad `*`), 500 (out of order), 503 (more than
/// [`MAX_CONTACTS_PER_AOR`]).
pub fn register(
    loc: &mut dyn LocationService,
    req: &Msg,
    src: SocketAddr,
    now: Instant,
    policy: ExpiryPolicy,
) -> RegisterResult {
    register_over(loc, req, crate::transport::Source::udp(src), now, policy)
}

/// [`register`] for a REGISTER that came over `source.transport`: over a
/// flow (TLS, WS, WSS) each binding's target is the connection's remote
/// address whatever the Contact says (RFC 7118 §5, RFC 5626 §6: the UA
/// cannot be reached otherwise; a browser's Contact host is `.invalid`).
pub fn register_over(
    loc: &mut dyn LocationService,
    req: &Msg,
    source: crate::transport::Source,
    now: Instant,
    policy: ExpiryPolicy,
) -> RegisterResult {
    let src = source.addr;
    let Some((aor, user)) = aor_of(req) else {
        return RegisterResult::Fail(400, "To is not a sip URI with a user part".into());
    };
    let header_expires = req.expires();
    let existing = loc.bindings(&aor, now);
    let branch = req.top_via().branch().unwrap_or("");
    let retransmission =
        |b: &Binding| b.call_id == req.call_id && b.cseq == req.cseq.num && b.branch == branch;
    let out_of_order = |b: &Binding| b.call_id == req.call_id && req.cseq.num <= b.cseq;
    let listing = |loc: &dyn LocationService| {
        RegisterResult::Ok(
            loc.bindings(&aor, now)
                .into_iter()
                .map(|b| {
                    let r = b.remaining(now);
                    (b.contact, r)
                })
                .collect(),
        )
    };
    if !branch.is_empty() && existing.iter().any(retransmission) {
        return listing(loc);
    }
    if req.contact_star() {
        // §10.3 step 6: "*" only alone and with Expires: 0.
        if header_expires != Some(0) || req.headers("Contact").count() != 1 {
            return RegisterResult::Fail(
                400,
                "Contact: * needs Expires: 0 and no other contact".into(),
            );
        }
        if existing.iter().any(out_of_order) {
            return RegisterResult::Fail(500, "REGISTER CSeq out of order".into());
        }
        loc.remove_all(&aor);
        return RegisterResult::Ok(Vec::new());
    }
    let contacts = req.contacts();
    if contacts.len() != req.headers("Contact").count() {
        // The parser answers these 400 already; kept for other callers.
        return RegisterResult::Fail(400, "a Contact does not parse".into());
    }
    let mut plan: Vec<(String, u32)> = Vec::with_capacity(contacts.len());
    for c in &contacts {
        let e = c
            .param("expires")
            .and_then(parse_delta)
            .or(header_expires)
            .unwrap_or(policy.default);
        if e != 0 && e < policy.min {
            return RegisterResult::TooBrief(policy.min);
        }
        if existing
            .iter()
            .any(|b| b.contact == c.uri && out_of_order(b))
        {
            return RegisterResult::Fail(500, "REGISTER CSeq out of order".into());
        }
        match plan.iter_mut().find(|(u, _)| *u == c.uri) {
            Some(p) => p.1 = e.min(policy.max),
            None => plan.push((c.uri.clone(), e.min(policy.max))),
        }
    }
    let after = existing
        .iter()
        .filter(|b| !plan.iter().any(|(u, _)| *u == b.contact))
        .count()
        + plan.iter().filter(|(_, e)| *e != 0).count();
    if after > MAX_CONTACTS_PER_AOR && after > existing.len() {
        return RegisterResult::Fail(503, "too many contacts for this AOR".into());
    }
    for (contact, e) in plan {
        if e == 0 {
            loc.remove(&aor, &contact);
        } else {
            loc.upsert(Binding {
                aor: aor.clone(),
                user: user.clone(),
                target: if source.transport.is_flow() {
                    src
                } else {
                    route_target(&contact, src)
                },
                contact,
                source: src,
                transport: source.transport,
                expires_at: now + Duration::from_secs(u64::from(e)),
                call_id: req.call_id.clone(),
                cseq: req.cseq.num,
                branch: branch.to_string(),
            });
        }
    }
    listing(loc)
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
        let t0 = Instant::now();
        let mut loc = MemoryLocation::with_epoch(t0);
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
                &reg_new_branch("Contact: <sip:bob@10.0.0.2:5070>\r\n", "reg1", 2),
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

    fn reg_cid(extra: &str, call_id: &str, cseq: u32) -> Msg {
        let s = format!(
            "REGISTER sip:tern SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK{call_id}{cseq}\r\nFrom: <sip:bob@tern>;tag=1\r\nTo: <sip:bob@tern>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        parse(s.as_bytes()).unwrap()
    }

    /// [`reg_cid`] with another Via branch: a new request, not a
    /// retransmission.
    fn reg_new_branch(extra: &str, call_id: &str, cseq: u32) -> Msg {
        let s = format!(
            "REGISTER sip:tern SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKnew{call_id}{cseq}\r\nFrom: <sip:bob@tern>;tag=1\r\nTo: <sip:bob@tern>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        parse(s.as_bytes()).unwrap()
    }

    fn ok(r: RegisterResult) -> Vec<(String, u32)> {
        match r {
            RegisterResult::Ok(mut v) => {
                v.sort();
                v
            }
            other => panic!("expected 200, got {other:?}"),
        }
    }

    #[test]
    fn several_contacts_with_own_expires() {
        let mut loc = MemoryLocation::new();
        let src: SocketAddr = "10.0.0.2:5070".parse().unwrap();
        let t0 = Instant::now();
        // Two contacts in one header (comma-joined) and a third on its own:
        // per-contact expires beats the header, the header beats the default.
        let v = ok(register(
            &mut loc,
            &reg_cid(
                "Expires: 300\r\nContact: <sip:bob@10.0.0.2:5070>;expires=120, <sip:bob@10.0.0.3>\r\nContact: <sip:bob@10.0.0.4>;expires=999999\r\n",
                "c1",
                1,
            ),
            src,
            t0,
            POLICY,
        ));
        assert_eq!(
            v,
            [
                ("sip:bob@10.0.0.2:5070".to_string(), 120),
                ("sip:bob@10.0.0.3".to_string(), 300),
                ("sip:bob@10.0.0.4".to_string(), 7200),
            ]
        );
        // Another phone (another Call-ID) adds its contact; all four listed
        // with their remaining time.
        let t1 = t0 + Duration::from_secs(20);
        let v = ok(register(
            &mut loc,
            &reg_cid("Contact: <sip:bob@10.0.0.5>\r\n", "c2", 1),
            src,
            t1,
            POLICY,
        ));
        assert_eq!(v.len(), 4);
        assert!(v.contains(&("sip:bob@10.0.0.2:5070".to_string(), 100)));
        assert!(v.contains(&("sip:bob@10.0.0.5".to_string(), 3600)));
        // A removal by expires=0 on one contact leaves the others.
        let v = ok(register(
            &mut loc,
            &reg_cid("Contact: <sip:bob@10.0.0.3>;expires=0\r\n", "c2", 2),
            src,
            t1,
            POLICY,
        ));
        assert_eq!(v.len(), 3);
        assert_eq!(loc.len(), 3);
        // One too-brief contact fails the whole request, changing nothing.
        assert_eq!(
            register(
                &mut loc,
                &reg_cid(
                    "Contact: <sip:bob@10.0.0.6>\r\nContact: <sip:bob@10.0.0.7>;expires=30\r\n",
                    "c2",
                    3
                ),
                src,
                t1,
                POLICY
            ),
            RegisterResult::TooBrief(60)
        );
        assert_eq!(loc.len(), 3);
    }

    #[test]
    fn cseq_ordering_is_per_call_id() {
        let mut loc = MemoryLocation::new();
        let src: SocketAddr = "10.0.0.2:5070".parse().unwrap();
        let t0 = Instant::now();
        let c = "Contact: <sip:bob@10.0.0.2>\r\n";
        ok(register(&mut loc, &reg_cid(c, "a", 5), src, t0, POLICY));
        // Equal and lower CSeq in the same Call-ID: out of order.
        for n in [5, 4] {
            assert!(matches!(
                register(&mut loc, &reg_new_branch(c, "a", n), src, t0, POLICY),
                RegisterResult::Fail(500, _)
            ));
        }
        // A retransmission of CSeq 5 (same branch) is answered again, and
        // changes nothing even an hour later.
        let later = t0 + Duration::from_secs(3000);
        assert_eq!(
            ok(register(&mut loc, &reg_cid(c, "a", 5), src, later, POLICY)),
            [("sip:bob@10.0.0.2".to_string(), 600)]
        );
        // Another Call-ID may use any CSeq.
        ok(register(&mut loc, &reg_cid(c, "b", 1), src, t0, POLICY));
        // ... and now owns the binding: Call-ID "a" CSeq 6 is accepted too.
        ok(register(&mut loc, &reg_cid(c, "a", 6), src, t0, POLICY));
        // Contact: * is also refused when out of order.
        assert!(matches!(
            register(
                &mut loc,
                &reg_new_branch("Expires: 0\r\nContact: *\r\n", "a", 6),
                src,
                t0,
                POLICY
            ),
            RegisterResult::Fail(500, _)
        ));
        assert_eq!(loc.len(), 1);
        assert_eq!(
            ok(register(
                &mut loc,
                &reg_cid("Expires: 0\r\nContact: *\r\n", "a", 7),
                src,
                t0,
                POLICY
            )),
            []
        );
        assert_eq!(loc.len(), 0);
        assert_eq!(loc.scheduled(), 0);
    }

    #[test]
    fn star_rules() {
        let mut loc = MemoryLocation::new();
        let src: SocketAddr = "10.0.0.2:5070".parse().unwrap();
        let t0 = Instant::now();
        ok(register(
            &mut loc,
            &reg_cid(
                "Contact: <sip:bob@10.0.0.2>, <sip:bob@10.0.0.3>\r\n",
                "s",
                1,
            ),
            src,
            t0,
            POLICY,
        ));
        for bad in [
            "Contact: *\r\n",
            "Expires: 10\r\nContact: *\r\n",
            "Expires: 0\r\nContact: *\r\nContact: <sip:bob@10.0.0.4>\r\n",
            "Expires: 0\r\nContact: *, <sip:bob@10.0.0.4>\r\n",
        ] {
            assert!(
                matches!(
                    register(&mut loc, &reg_cid(bad, "s", 2), src, t0, POLICY),
                    RegisterResult::Fail(400, _)
                ),
                "{bad}"
            );
        }
        assert_eq!(loc.len(), 2);
        assert_eq!(
            ok(register(
                &mut loc,
                &reg_cid("Expires: 0\r\nContact: *\r\n", "other", 1),
                src,
                t0,
                POLICY
            )),
            []
        );
        assert!(loc.is_empty());
    }

    #[test]
    fn contacts_per_aor_are_bounded() {
        let mut loc = MemoryLocation::new();
        let src: SocketAddr = "10.0.0.2:5070".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_CONTACTS_PER_AOR {
            ok(register(
                &mut loc,
                &reg_cid(
                    &format!("Contact: <sip:bob@10.0.1.{i}>\r\n"),
                    "m",
                    i as u32 + 1,
                ),
                src,
                t0,
                POLICY,
            ));
        }
        let n = MAX_CONTACTS_PER_AOR as u32 + 1;
        assert!(matches!(
            register(
                &mut loc,
                &reg_cid("Contact: <sip:bob@10.0.2.1>\r\n", "m", n),
                src,
                t0,
                POLICY
            ),
            RegisterResult::Fail(503, _)
        ));
        // Refreshing an existing one still works.
        ok(register(
            &mut loc,
            &reg_cid("Contact: <sip:bob@10.0.1.0>\r\n", "m", n + 1),
            src,
            t0,
            POLICY,
        ));
        assert_eq!(loc.len(), MAX_CONTACTS_PER_AOR);
    }

    fn binding(i: usize, expires_at: Instant) -> Binding {
        let src: SocketAddr = "10.0.0.2:5070".parse().unwrap();
        Binding {
            aor: format!("u{i}@tern"),
            user: format!("u{i}"),
            contact: format!("sip:u{i}@10.0.0.2:5070"),
            source: src,
            transport: crate::transport::Transport::Udp,
            target: src,
            expires_at,
            call_id: format!("c{i}"),
            cseq: 1,
            branch: String::new(),
        }
    }

    #[test]
    fn wheel_expires_on_time_and_refresh_moves_the_timer() {
        let t0 = Instant::now();
        let mut loc = MemoryLocation::with_epoch(t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        loc.upsert(binding(1, at(10)));
        loc.upsert(binding(2, at(10) + Duration::from_millis(500)));
        // 5000 s: beyond one turn of the wheel.
        loc.upsert(binding(3, at(5000)));
        assert_eq!((loc.len(), loc.scheduled()), (3, 3));
        assert_eq!(loc.purge(at(9)), 0);
        assert_eq!(loc.purge(at(10)), 1);
        // Rounded up: the 10.5 s binding is not dropped at 10 s.
        assert_eq!(loc.lookup_user("u2", at(10)).len(), 1);
        // Refreshed before its time: the old timer goes.
        loc.upsert(binding(2, at(100)));
        assert_eq!(loc.scheduled(), 2);
        assert_eq!(loc.purge(at(99)), 0);
        assert_eq!(loc.purge(at(100)), 1);
        // One lap of the wheel later (slot of 5000 visited at 904 s): kept.
        assert_eq!(loc.purge(at(904)), 0);
        assert_eq!(loc.len(), 1);
        assert_eq!(loc.purge(at(4999)), 0);
        assert_eq!(loc.purge(at(5000)), 1);
        assert!(loc.is_empty());
        assert_eq!(loc.scheduled(), 0);
        // Removal takes the timer too.
        loc.upsert(binding(4, at(6000)));
        loc.remove("u4@tern", "sip:u4@10.0.0.2:5070");
        assert_eq!((loc.len(), loc.scheduled()), (0, 0));
    }

    /// 100,000 registrations held and expired on a virtual clock.
    #[test]
    fn holds_and_expires_100k_bindings() {
        const N: usize = 100_000;
        let t0 = Instant::now();
        let mut loc = MemoryLocation::with_epoch(t0);
        // Lifetimes spread over 1..=3600 s.
        let life = |i: usize| 1 + (i as u64 * 7919) % 3600;
        for i in 0..N {
            loc.upsert(binding(i, t0 + Duration::from_secs(life(i))));
        }
        assert_eq!(loc.len(), N);
        assert_eq!(loc.scheduled(), N);
        assert_eq!(
            loc.lookup_user("u4242", t0)[0].contact,
            "sip:u4242@10.0.0.2:5070"
        );
        // Half of them refresh to 7200 s.
        for i in (0..N).step_by(2) {
            loc.upsert(binding(i, t0 + Duration::from_secs(7200)));
        }
        assert_eq!((loc.len(), loc.scheduled()), (N, N));
        let mut due = vec![0usize; 3601];
        for i in (1..N).step_by(2) {
            due[life(i) as usize] += 1;
        }
        // Step the clock second by second through the first hour.
        let mut purged = 0;
        for (s, &expected) in due.iter().enumerate().skip(1) {
            let n = loc.purge(t0 + Duration::from_secs(s as u64));
            assert_eq!(n, expected, "second {s}");
            purged += n;
        }
        assert_eq!(purged, N / 2);
        assert_eq!(loc.len(), N / 2);
        // A jump past everything purges the rest in one go.
        assert_eq!(loc.purge(t0 + Duration::from_secs(100_000)), N / 2);
        assert!(loc.is_empty());
        assert_eq!(loc.scheduled(), 0);
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test -p tern-signaling --release --lib registrar::timing -- --ignored --nocapture`
    #[test]
    #[ignore = "timing, run by hand"]
    fn listing_100k_bindings() {
        let t0 = Instant::now();
        let mut loc = MemoryLocation::with_epoch(t0);
        let src: SocketAddr = "10.0.0.2:5070".parse().unwrap();
        for i in 0..100_000 {
            loc.upsert(Binding {
                aor: format!("u{i}@tern"),
                user: format!("u{i}"),
                contact: format!("sip:u{i}@10.0.0.2:5070"),
                source: src,
                transport: crate::transport::Transport::Udp,
                target: src,
                expires_at: t0 + Duration::from_secs(3600),
                call_id: format!("c{i}@10.0.0.2"),
                cseq: 1,
                branch: format!("z9hG4bK-{i}"),
            });
        }
        for _ in 0..3 {
            let t = Instant::now();
            let v = loc.all(t0);
            println!("all() of {} bindings: {:?}", v.len(), t.elapsed());
        }
    }
}
