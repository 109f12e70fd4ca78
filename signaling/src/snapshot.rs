//! A periodic, read-only copy of the signaling state for observers (the
//! HTTP API in `tern-observe`): registrations, calls and counters.
//!
//! The server loop owns [`SipCore`]; observers must not lock it. Instead the
//! loop calls [`SnapshotPublisher::tick`] every iteration, which at most
//! every [`SnapshotPublisher::PERIOD`] (500 ms) builds a [`SipSnapshot`] and
//! swaps it into the shared `Arc<Mutex<_>>`. The lock is held only for the
//! swap, so a slow reader never delays SIP processing by more than a move.
//!
//! The registration listing is the one part that grows with the user base
//! (about 100 ms of the signaling thread for 100,000 bindings), so it is
//! built only when an observer asks for it ([`SipSnapshot::request_registrations`])
//! and is shared behind an `Arc`, so cloning a snapshot stays cheap.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_shared::clock::unix_ms;

use crate::b2bua::{CallState, Side};
use crate::core::{CoreStats, SipCore};

/// The snapshot shared between the server loop (writer) and observers.
pub type SharedSnapshot = Arc<Mutex<SipSnapshot>>;

/// One live registration binding (RFC 3261 §10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationInfo {
    /// Address-of-record, `user@host`.
    pub aor: String,
    /// The registered Contact URI.
    pub contact: String,
    /// Transport source of the REGISTER that created or refreshed it.
    pub source: SocketAddr,
    /// Seconds left until it lapses, rounded up, at the snapshot time.
    pub expires_s: u32,
    /// The transport it registered over: `udp`, `tcp`, `tls`, `ws` or
    /// `wss`.
    pub transport: &'static str,
}

/// One call of the B2BUA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// Call-ID of the caller's dialog (the A leg; what the caller knows).
    pub call_id: String,
    /// Call-ID of the dialog towards the callee (the B leg), which tern
    /// generates.
    pub callee_call_id: String,
    /// The relay slot anchoring the call's media, while held.
    pub slot: Option<u32>,
    /// Where the call is: `calling`, `proceeding`, `answered`,
    /// `confirmed`, `cancelling`, `terminating` or `done`.
    pub state: &'static str,
    /// The two legs: index 0 faces the caller (slot leg 0), 1 the callee.
    pub legs: [LegInfo; 2],
}

/// One leg of a call: what kind of media its party speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegInfo {
    /// The media profile: `RTP/AVP` (RFC 3551) or `UDP/TLS/RTP/SAVPF`
    /// (RFC 5764 §8).
    pub profile: &'static str,
    /// Whether it is a WebRTC leg (DTLS-SRTP and ICE-lite terminated by
    /// the relay, RFC 8827 §6.5).
    pub webrtc: bool,
    /// The SIP transport its party is reached over now: `udp`, `tcp`,
    /// `tls`, `ws` or `wss`.
    pub transport: &'static str,
}

/// What the signaling plane looked like at `taken_at_ms`.
#[derive(Debug, Clone, Default)]
pub struct SipSnapshot {
    /// Unix time of the snapshot, ms; 0 if none was taken yet.
    pub taken_at_ms: u64,
    /// Live registration bindings, sorted by AOR then contact, as of
    /// `registrations_taken_ms` (listed only on request; see module docs).
    pub registrations: Arc<Vec<RegistrationInfo>>,
    /// Unix ms when `registrations` was listed; 0 if never.
    pub registrations_taken_ms: u64,
    /// Observer requests for a listing so far, counted by
    /// [`SipSnapshot::request_registrations`].
    pub registrations_requested: u64,
    /// The value of `registrations_requested` the listing answers.
    pub registrations_answered: u64,
    /// Number of live bindings (always current; cheap to count).
    pub registration_count: u64,
    /// Calls holding state (lingering finished calls included).
    pub calls: Vec<CallInfo>,
    /// Calls holding a relay slot.
    pub calls_active: u64,
    /// INVITEs that started a call since start (monotonic).
    pub calls_total: u64,
    /// The core's counters.
    pub stats: CoreStats,
    /// The transport's counters (connections per transport, refusals).
    pub transport: crate::transport::TransportStats,
    /// Each trunk's registration and gateway health (`[[trunks]]`).
    pub trunks: Vec<crate::trunk_plane::TrunkStatus>,
}

impl SipSnapshot {
    /// A fresh shared, empty snapshot.
    pub fn shared() -> SharedSnapshot {
        Arc::new(Mutex::new(SipSnapshot::default()))
    }

    /// Asks the publisher to list registrations at its next period and
    /// returns the request's number: a snapshot whose
    /// `registrations_answered` is at least that number answers it.
    pub fn request_registrations(shared: &SharedSnapshot) -> u64 {
        let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
        g.registrations_requested += 1;
        g.registrations_requested
    }

    /// The live bindings of `core` at `now`, sorted by AOR then contact.
    pub fn list_registrations(core: &SipCore, now: Instant) -> Vec<RegistrationInfo> {
        core.location()
            .all(now)
            .into_iter()
            .map(|b| RegistrationInfo {
                expires_s: b.remaining(now),
                aor: b.aor,
                contact: b.contact,
                source: b.source,
                transport: b.transport.name(),
            })
            .collect()
    }

    /// Builds a snapshot of `core` at `now`, listing registrations too.
    pub fn capture(core: &SipCore, now: Instant) -> SipSnapshot {
        let mut s = SipSnapshot::capture_counts(core);
        s.trunks = core.trunk_status(now);
        s.registrations = Arc::new(SipSnapshot::list_registrations(core, now));
        s.registrations_taken_ms = s.taken_at_ms;
        s
    }

    /// Builds a snapshot of `core` without the registration listing: the
    /// calls in progress or up, by id (not those lingering after their end
    /// to absorb retransmissions, which hold no slot: at high call rates
    /// they outnumber the live ones by far).
    pub fn capture_counts(core: &SipCore) -> SipSnapshot {
        let calls: Vec<CallInfo> = core
            .b2bua()
            .live_calls()
            .map(|c| CallInfo {
                call_id: c.call_id().to_string(),
                callee_call_id: c.callee_call_id().to_string(),
                slot: c.slot,
                state: state_name(c.state),
                legs: [Side::Caller, Side::Callee].map(|s| LegInfo {
                    profile: c.leg_profile(s),
                    webrtc: c.leg_webrtc(s),
                    transport: core.transport_to(c.dialog(s).peer).name(),
                }),
            })
            .collect();
        let stats = core.stats();
        SipSnapshot {
            taken_at_ms: unix_ms(),
            registrations: Arc::default(),
            registrations_taken_ms: 0,
            registrations_requested: 0,
            registrations_answered: 0,
            registration_count: core.location().len() as u64,
            calls_active: core.active_calls() as u64,
            calls_total: stats.calls,
            calls,
            stats,
            transport: core.transport_stats(),
            trunks: Vec::new(),
        }
    }
}

fn state_name(s: CallState) -> &'static str {
    match s {
        CallState::Calling => "calling",
        CallState::Proceeding => "proceeding",
        CallState::Answered => "answered",
        CallState::Confirmed => "confirmed",
        CallState::Cancelling => "cancelling",
        CallState::Terminating => "terminating",
        CallState::Done => "done",
    }
}

/// Rate-limited writer of a [`SharedSnapshot`], driven by the server loop.
#[derive(Debug)]
pub struct SnapshotPublisher {
    shared: SharedSnapshot,
    next: Option<Instant>,
}

impl SnapshotPublisher {
    /// Minimum time between two snapshots.
    pub const PERIOD: Duration = Duration::from_millis(500);

    /// A publisher writing into `shared`; the first `tick` publishes.
    pub fn new(shared: SharedSnapshot) -> SnapshotPublisher {
        SnapshotPublisher { shared, next: None }
    }

    /// Publishes a snapshot of `core` if [`Self::PERIOD`] has passed since
    /// the last one. Cheap otherwise (one comparison).
    pub fn tick(&mut self, core: &SipCore, now: Instant) {
        if self.next.is_some_and(|t| now < t) {
            return;
        }
        self.next = Some(now + Self::PERIOD);
        let mut snap = SipSnapshot::capture_counts(core);
        snap.trunks = core.trunk_status(now);
        // A poisoned lock only means a reader panicked mid-read; the data is
        // replaced wholesale, so recovering it is safe.
        let wanted = {
            let g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            snap.registrations = g.registrations.clone();
            snap.registrations_taken_ms = g.registrations_taken_ms;
            snap.registrations_answered = g.registrations_answered;
            (g.registrations_requested > g.registrations_answered)
                .then_some(g.registrations_requested)
        };
        if let Some(request) = wanted {
            // Listed outside the lock, so readers never wait on it.
            snap.registrations = Arc::new(SipSnapshot::list_registrations(core, now));
            snap.registrations_taken_ms = snap.taken_at_ms;
            snap.registrations_answered = request;
        }
        let mut g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        snap.registrations_requested = g.registrations_requested;
        *g = snap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SipConfig;
    use crate::relay::ShmRelay;
    use tern_shared::table::{SlotTable, TableParams};

    const TERN: &str = "127.0.0.1:5060";

    fn core(now: Instant) -> (SipCore, Arc<SlotTable>) {
        let inst = format!("t-h3-snap-{}", std::process::id());
        let table = Arc::new(
            SlotTable::create_or_attach(
                &inst,
                TableParams {
                    port_lo: 26800,
                    port_hi: 26807,
                    workers: 1,
                    media_ip: "127.0.0.1".parse().unwrap(),
                },
            )
            .unwrap(),
        );
        let _ = table.unlink();
        let cfg = SipConfig {
            listen: TERN.parse().unwrap(),
            ..SipConfig::default()
        };
        let relay = Box::new(ShmRelay::new(table.clone()));
        (SipCore::new(&cfg, relay, TERN.parse().unwrap(), now), table)
    }

    fn register(user: &str, port: u16, expires: u32) -> String {
        format!(
            "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsnap{port}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=s1\r\n\
             To: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: snap-{user}\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <sip:{user}@127.0.0.1:{port}>;expires={expires}\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn publisher_lists_registrations_on_request_at_most_every_period() {
        let t0 = Instant::now();
        let (mut core, _table) = core(t0);
        let shared = SipSnapshot::shared();
        let mut p = SnapshotPublisher::new(shared.clone());
        p.tick(&core, t0);
        assert!(shared.lock().unwrap().registrations.is_empty());
        assert_ne!(shared.lock().unwrap().taken_at_ms, 0);

        let src = "127.0.0.1:5070".parse().unwrap();
        core.handle_datagram(register("bob", 5070, 60).as_bytes(), src, t0);
        core.handle_datagram(register("alice", 5071, 3600).as_bytes(), src, t0);
        // Within the period: nothing new is published.
        p.tick(&core, t0 + Duration::from_millis(100));
        assert!(shared.lock().unwrap().registrations.is_empty());
        assert_eq!(shared.lock().unwrap().registration_count, 0);

        // Counts are always published; the listing is not, until asked.
        let t1 = t0 + SnapshotPublisher::PERIOD;
        p.tick(&core, t1);
        let s = shared.lock().unwrap().clone();
        assert_eq!(s.registration_count, 2);
        assert!(s.registrations.is_empty(), "{s:?}");

        let asked = SipSnapshot::request_registrations(&shared);
        let t2 = t1 + SnapshotPublisher::PERIOD;
        p.tick(&core, t2);
        let s = shared.lock().unwrap().clone();
        assert!(s.registrations_answered >= asked);
        let aors: Vec<&str> = s.registrations.iter().map(|r| r.aor.as_str()).collect();
        assert_eq!(aors, ["alice@127.0.0.1", "bob@127.0.0.1"], "{s:?}");
        assert_eq!(s.registrations[1].contact, "sip:bob@127.0.0.1:5070");
        assert_eq!(s.registrations[1].expires_s, 59);
        assert_eq!((s.calls_active, s.calls_total), (0, 0));
        assert!(s.calls.is_empty());

        // Bob's binding lapses; Alice's remains. The old listing is kept
        // (not rebuilt) until asked again.
        let t3 = t0 + Duration::from_secs(61);
        p.tick(&core, t3);
        let s = shared.lock().unwrap().clone();
        assert_eq!(s.registrations.len(), 2);
        SipSnapshot::request_registrations(&shared);
        p.tick(&core, t3 + SnapshotPublisher::PERIOD);
        let s = shared.lock().unwrap().clone();
        assert_eq!(s.registrations.len(), 1, "{s:?}");
        assert_eq!(s.registrations[0].aor, "alice@127.0.0.1");
        // 61.5 s in, rounded up.
        assert_eq!(s.registrations[0].expires_s, 3600 - 61);
    }
}
