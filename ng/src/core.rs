//! The sans-IO core of the ng control protocol: bytes in, bytes out, on a
//! clock the caller passes in. No socket is touched here; the server in
//! [`super`] feeds it datagrams and TCP frames.
//!
//! # Calls, legs and slots
//!
//! An ng call (one `call-id`) holds one slot of the [`SlotTable`] per
//! relayed media section (`m=` line with a non-zero port). Leg 0 of every
//! slot faces the party whose `from-tag` created the call (the offerer),
//! leg 1 the other (`to-tag`). An `offer` programs the offerer's leg with
//! the address and port of its SDP and returns SDP carrying the *other*
//! leg's ports (it goes to the answerer); an `answer` programs the
//! answerer's leg and returns SDP with the offerer's leg's ports. A
//! re-offer (same call-id) updates the same slots; a re-offer whose
//! `from-tag` is the callee's tag (a re-INVITE from the callee) works the
//! other way round.
//!
//! # Retransmissions
//!
//! Every reply is kept for [`CoreConfig::cache_ttl_ms`] keyed by (source
//! address and port, cookie); a message with a cookie already answered gets the same bytes
//! back and is not executed again. The cache is bounded in entries and
//! bytes (oldest evicted first).
//!
//! # Timeouts
//!
//! A call whose media has been silent for [`CoreConfig::timeout_ms`]
//! (counted from its last accepted packet on any leg, or from its last
//! offer/answer if that is later, so a fresh call is timed from its setup)
//! is deleted by [`NgCore::poll_timeouts`] and counted in
//! [`NgStats::calls_timed_out`].
//!
//! # Orphaned slots
//!
//! Calls live in this process's memory, but slots live in the table, so a
//! control plane that was killed leaves its slots active. A new core adopts
//! every reserved or active slot that ng reserved ([`Owner::Ng`]) as an
//! orphan: no call claims it, so it is released once its media has been
//! silent for the timeout (counted from adoption at the earliest), or at
//! once by a `delete` naming its Call-ID (the slot's label). Each is
//! counted in [`NgStats::orphans_reclaimed`] and in the table
//! ([`SlotTable::reclaimed`], `/metrics`). Slots of the SIP plane are left
//! alone.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bt_bencode::Value;
use tern_shared::table::{
    JitterSettings, Learning, LegQuality, Owner, SlotConfig, SlotState, SlotTable, TableError,
};
use tracing::{debug, info, warn};

use super::acl::Acl;
use super::bencode::{
    bstr, decode_dict, encode_into, int, scan, str_list, uint, Dict, FieldError, Msg, Scan,
};
use super::sdp::{MediaInfo, MediaOut, Rewrite, RtcpAttr, Sdp};

/// Longest cookie accepted, bytes.
pub const MAX_COOKIE: usize = 128;
/// Longest message accepted (cookie, space and bencode), bytes.
pub const MAX_MESSAGE: usize = 65_535;

/// Tunables of [`NgCore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Media timeout, ms: a call silent this long is deleted. 0 disables.
    pub timeout_ms: u64,
    /// How long a reply is kept for retransmissions, ms.
    pub cache_ttl_ms: u64,
    /// Most replies kept.
    pub cache_max_entries: usize,
    /// Most reply bytes kept.
    pub cache_max_bytes: usize,
    /// Default `delete-delay`, seconds, when a `delete` names none.
    pub delete_delay_s: u64,
    /// Sources served.
    pub acl: Acl,
    /// Most calls held at once (offers past it get an error).
    pub max_calls: usize,
    /// Jitter-buffer settings of a new call whose offer says neither
    /// `jitter-buffer` nor `no-jitter-buffer` (`tern relay --jitter-buffer`).
    pub jitter: JitterSettings,
}

/// Target playout delay of a jitter buffer switched on without
/// `jitter-buffer-target`, ms.
pub const DEFAULT_JITTER_TARGET_MS: u16 = 60;
/// Maximum playout delay of a jitter buffer switched on without
/// `jitter-buffer-max`, ms.
pub const DEFAULT_JITTER_MAX_MS: u16 = 200;

impl Default for CoreConfig {
    /// 60 s media timeout, replies cached 30 s (at most 4,096 of them and
    /// 8 MiB), no delete delay, loopback only, 100,000 calls.
    fn default() -> Self {
        CoreConfig {
            timeout_ms: 60_000,
            cache_ttl_ms: 30_000,
            cache_max_entries: 4096,
            cache_max_bytes: 8 << 20,
            delete_delay_s: 0,
            acl: Acl::default(),
            max_calls: 100_000,
            jitter: JitterSettings {
                enabled: false,
                target_ms: DEFAULT_JITTER_TARGET_MS,
                max_ms: DEFAULT_JITTER_MAX_MS,
                adaptive: false,
            },
        }
    }
}

/// Counters of the control plane (all since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NgStats {
    /// Messages handed to [`NgCore::handle`].
    pub received: u64,
    /// Replies produced (including cached ones).
    pub replies: u64,
    /// Replies served from the retransmission cache.
    pub retransmissions: u64,
    /// Replies with `result: error`.
    pub errors: u64,
    /// Messages dropped because their source is not allowed (no reply).
    pub dropped_unauthorized: u64,
    /// Messages dropped because they carry no cookie (no reply possible).
    pub dropped_no_cookie: u64,
    /// `offer` commands executed.
    pub offers: u64,
    /// `answer` commands executed.
    pub answers: u64,
    /// `delete` commands executed.
    pub deletes: u64,
    /// Calls created.
    pub calls_created: u64,
    /// Calls ended by `delete`.
    pub calls_deleted: u64,
    /// Calls ended by the media timeout.
    pub calls_timed_out: u64,
    /// Offers refused for want of a free slot.
    pub calls_rejected: u64,
    /// Calls held now.
    pub calls_current: u64,
    /// Slots found active at start with no call to claim them (a killed
    /// control plane's), adopted as orphans.
    pub orphans_adopted: u64,
    /// Orphaned slots released (media timeout or `delete`).
    pub orphans_reclaimed: u64,
}

/// rtcp-mux flags of an offer (rtpengine's `rtcp-mux` list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MuxFlags {
    offer: bool,
    accept: bool,
    demux: bool,
    require: bool,
    reject: bool,
}

/// The flags of one offer/answer/delete message.
#[derive(Debug, Clone, Default)]
struct Flags {
    trust_address: bool,
    strict_source: bool,
    media_handover: bool,
    ssrc_rewrite: bool,
    replace_origin: bool,
    replace_session_conn: bool,
    mux: MuxFlags,
    transport: Option<String>,
    rtcp_attr: RtcpAttr,
    received_from: Option<IpAddr>,
    fatal: bool,
    /// `jitter-buffer` (on) or `no-jitter-buffer` (off); `None`: neither.
    jitter: Option<bool>,
    /// `jitter-buffer-adaptive`: size the delay from measured jitter.
    jitter_adaptive: bool,
    /// `jitter-buffer-target` and `jitter-buffer-max`, ms.
    jitter_target_ms: Option<u16>,
    jitter_max_ms: Option<u16>,
}

/// One relayed media section of a call.
#[derive(Debug, Clone, Default)]
struct MediaState {
    slot: Option<u32>,
    cfg: SlotConfig,
    kind: String,
    proto: String,
    /// Address and port each leg's SDP advertised.
    advertised: [Option<SocketAddr>; 2],
    /// The last offer's SDP had `a=rtcp-mux`.
    mux_offered_by: bool,
    /// We offered `a=rtcp-mux` to the answerer.
    mux_offered_to: bool,
    mux_flags: MuxFlags,
}

#[derive(Debug, Clone)]
struct Call {
    /// Tag of leg 0 (the first offerer) and of leg 1, when known.
    tags: [Option<String>; 2],
    media: Vec<MediaState>,
    created_ms: u64,
    last_signal_ms: u64,
    delete_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Offer,
    Answer,
}

/// Replies kept for retransmitted cookies.
#[derive(Debug, Default)]
struct ReplyCache {
    map: HashMap<(SocketAddr, Vec<u8>), (Vec<u8>, u64)>,
    order: VecDeque<((SocketAddr, Vec<u8>), u64)>,
    bytes: usize,
}

impl ReplyCache {
    fn get(&self, key: &(SocketAddr, Vec<u8>)) -> Option<&Vec<u8>> {
        self.map.get(key).map(|(r, _)| r)
    }

    fn pop_front(&mut self) {
        if let Some((k, at)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|(_, t)| *t == at) {
                if let Some((r, _)) = self.map.remove(&k) {
                    self.bytes = self.bytes.saturating_sub(r.len() + k.1.len());
                }
            }
        }
    }

    fn expire(&mut self, now: u64, ttl: u64) {
        while let Some((_, at)) = self.order.front() {
            if at.saturating_add(ttl) > now {
                break;
            }
            self.pop_front();
        }
    }

    fn insert(&mut self, key: (SocketAddr, Vec<u8>), reply: Vec<u8>, now: u64, cfg: &CoreConfig) {
        self.bytes += reply.len() + key.1.len();
        if let Some((old, _)) = self.map.insert(key.clone(), (reply, now)) {
            self.bytes = self.bytes.saturating_sub(old.len() + key.1.len());
        }
        self.order.push_back((key, now));
        while !self.order.is_empty()
            && (self.map.len() > cfg.cache_max_entries || self.bytes > cfg.cache_max_bytes)
        {
            self.pop_front();
        }
    }
}

/// The ng protocol engine over one [`SlotTable`].
///
/// `now_ms` arguments are Unix time in milliseconds (the clock of
/// [`tern_shared::table::LegStats::last_rx_ms`]); tests pass any clock.
#[derive(Debug)]
pub struct NgCore {
    table: Arc<SlotTable>,
    cfg: CoreConfig,
    calls: HashMap<String, Call>,
    cache: ReplyCache,
    stats: NgStats,
    started_ms: u64,
    total_call_ms: u64,
    ended_calls: u64,
    rate: RateSample,
    /// Slots ng reserved before this core started: slot id →
    /// (generation at adoption, adoption time ms).
    orphans: HashMap<u32, (u64, u64)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RateSample {
    at_ms: u64,
    forwarded: u64,
    dropped: u64,
    packet_rate: u64,
    error_rate: u64,
}

type Reply = Result<Dict, String>;

fn field<T>(r: Result<T, FieldError>, missing: &str, key: &str) -> Result<T, String> {
    r.map_err(|e| match e {
        FieldError::Missing => missing.to_string(),
        FieldError::WrongType => format!("Invalid type of key '{key}'"),
    })
}

/// rtpengine compares flags with spaces turned into hyphens.
fn hyphenate(s: &str) -> String {
    s.trim().replace(' ', "-")
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn endpoint(a: Option<SocketAddr>) -> Value {
    let mut d = Dict::new();
    if let Some(a) = a {
        d.set("family", bstr(family(a.ip())))
            .set("address", bstr(a.ip().to_string()))
            .set("port", uint(u64::from(a.port())));
    }
    d.into_value()
}

impl Flags {
    fn parse(m: &Msg<'_>, warnings: &mut Vec<String>) -> Result<Flags, String> {
        let mut f = Flags::default();
        let list = |key: &str| field(m.str_list(key), "", key);
        for raw in list("flags")? {
            match hyphenate(raw).as_str() {
                "trust-address" => f.trust_address = true,
                "SIP-source-address" => f.trust_address = false,
                "strict-source" => f.strict_source = true,
                "media-handover" => f.media_handover = true,
                "SSRC-rewrite" => f.ssrc_rewrite = true,
                "replace-origin" => f.replace_origin = true,
                "replace-session-connection" => f.replace_session_conn = true,
                "no-rtcp-attribute" => f.rtcp_attr = RtcpAttr::Remove,
                "full-rtcp-attribute" => f.rtcp_attr = RtcpAttr::Full,
                "rtcp-mux-offer" => f.mux.offer = true,
                "rtcp-mux-accept" => f.mux.accept = true,
                "rtcp-mux-demux" => f.mux.demux = true,
                "rtcp-mux-require" => f.mux.require = true,
                "rtcp-mux-reject" => f.mux.reject = true,
                "fatal" => f.fatal = true,
                "jitter-buffer" => f.jitter = Some(true),
                "no-jitter-buffer" => f.jitter = Some(false),
                "jitter-buffer-adaptive" => f.jitter_adaptive = true,
                // Defaults of this relay, or meaningless for it.
                "symmetric"
                | "port-latching"
                | "reset"
                | "loop-protect"
                | "no-redis-update"
                | "all"
                | "replace-sdp-version" => {}
                other => warnings.push(format!("Unknown flag '{other}' ignored")),
            }
        }
        for raw in list("replace")? {
            match hyphenate(raw).as_str() {
                "origin" => f.replace_origin = true,
                "session-connection" => f.replace_session_conn = true,
                "sdp-version" => {}
                other => warnings.push(format!("Unknown 'replace' flag '{other}' ignored")),
            }
        }
        for raw in list("rtcp-mux")? {
            match hyphenate(raw).as_str() {
                "offer" => f.mux.offer = true,
                "accept" => f.mux.accept = true,
                "demux" => f.mux.demux = true,
                "require" => f.mux.require = true,
                "reject" => f.mux.reject = true,
                other => warnings.push(format!("Unknown 'rtcp-mux' flag '{other}' ignored")),
            }
        }
        // Interface directions: this relay has one interface, so any pair
        // is accepted; only the type is checked.
        let _ = list("direction")?;
        match field(m.opt_str("ICE"), "", "ICE")? {
            None | Some("remove") => {}
            Some(other) => warnings.push(format!(
                "ICE '{other}' not supported: ICE attributes are removed"
            )),
        }
        match field(m.opt_str("transport-protocol"), "", "transport-protocol")? {
            None => {}
            Some(p @ ("RTP/AVP" | "RTP/AVPF")) => f.transport = Some(p.to_string()),
            Some(other) => warnings.push(format!(
                "transport protocol '{other}' not supported: protocol left as offered"
            )),
        }
        for (key, out) in [
            ("jitter-buffer-target", &mut f.jitter_target_ms),
            ("jitter-buffer-max", &mut f.jitter_max_ms),
        ] {
            match field(m.opt_int(key), "", key)? {
                None => {}
                Some(v @ 1..=5000) => *out = Some(v as u16),
                Some(v) => warnings.push(format!("{key} {v} ms out of range 1..=5000, ignored")),
            }
        }
        let rf = list("received-from")?;
        if let Some(a) = rf.get(1) {
            match a.trim().parse::<IpAddr>() {
                Ok(ip) => f.received_from = Some(ip),
                Err(_) => warnings.push(format!("received-from address '{a}' ignored")),
            }
        }
        Ok(f)
    }

    /// The jitter-buffer settings this message asks for, if it says
    /// anything: the flags, else the delay keys alone (which switch it on).
    fn jitter(&self, default: JitterSettings) -> Option<JitterSettings> {
        let keys = self.jitter_target_ms.is_some() || self.jitter_max_ms.is_some();
        let on = self
            .jitter
            .or((keys || self.jitter_adaptive).then_some(true))?;
        let max_ms = self.jitter_max_ms.unwrap_or(default.max_ms);
        Some(JitterSettings {
            enabled: on,
            target_ms: self
                .jitter_target_ms
                .unwrap_or(default.target_ms)
                .min(max_ms),
            max_ms,
            adaptive: self.jitter_adaptive || default.adaptive,
        })
    }

    fn learning(&self) -> Learning {
        if self.strict_source {
            Learning::Strict
        } else if self.media_handover {
            Learning::LearnAlways
        } else {
            Learning::LearnOnce
        }
    }
}

impl NgCore {
    /// A core programming `table`, started at `now_ms`. Adopts the slots a
    /// previous ng control plane left reserved or active as orphans (see
    /// the module documentation).
    pub fn new(table: Arc<SlotTable>, cfg: CoreConfig, now_ms: u64) -> NgCore {
        let orphans: HashMap<u32, (u64, u64)> = (0..table.capacity())
            .filter(|&id| {
                matches!(table.state(id), SlotState::Active | SlotState::Reserved)
                    && table.owner(id) == Owner::Ng
            })
            .map(|id| (id, (table.generation(id), now_ms)))
            .collect();
        if !orphans.is_empty() {
            warn!(
                slots = orphans.len(),
                "ng: slots of calls from before this start; released when their media \
                 stops for the timeout"
            );
        }
        NgCore {
            stats: NgStats {
                orphans_adopted: orphans.len() as u64,
                ..NgStats::default()
            },
            orphans,
            table,
            cfg,
            calls: HashMap::new(),
            cache: ReplyCache::default(),
            started_ms: now_ms,
            total_call_ms: 0,
            ended_calls: 0,
            rate: RateSample {
                at_ms: now_ms,
                ..Default::default()
            },
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> NgStats {
        NgStats {
            calls_current: self.calls.len() as u64,
            ..self.stats
        }
    }

    /// The access list in force.
    pub fn acl(&self) -> &Acl {
        &self.cfg.acl
    }

    /// Counts a message (or TCP connection) refused for its source.
    pub fn count_unauthorized(&mut self) {
        self.stats.dropped_unauthorized += 1;
    }

    /// Call-ids held now (unordered).
    pub fn call_ids(&self) -> impl Iterator<Item = &str> {
        self.calls.keys().map(String::as_str)
    }

    /// The slots call `call_id` holds, in media order.
    pub fn slots_of(&self, call_id: &str) -> Vec<u32> {
        self.calls
            .get(call_id)
            .map(|c| c.media.iter().filter_map(|m| m.slot).collect())
            .unwrap_or_default()
    }

    /// Handles one ng message `msg` (`<cookie> <bencode dictionary>`) from
    /// `src` at `now_ms`, returning the reply (`<cookie> <bencode>`), or
    /// `None` when the message is dropped: its source is not allowed, or it
    /// carries no cookie to answer with. Never panics on any input.
    pub fn handle(&mut self, msg: &[u8], src: SocketAddr, now_ms: u64) -> Option<Vec<u8>> {
        self.stats.received += 1;
        if !self.cfg.acl.permits(src.ip()) {
            self.stats.dropped_unauthorized += 1;
            debug!(%src, "ng: message from a source not allowed dropped");
            return None;
        }
        let msg = msg.strip_prefix(b"\r\n").unwrap_or(msg);
        let sp = msg.iter().position(|&b| b == b' ');
        let (cookie, body) = match sp {
            Some(i) if i > 0 && i <= MAX_COOKIE => (&msg[..i], &msg[i + 1..]),
            _ => {
                self.stats.dropped_no_cookie += 1;
                debug!(%src, "ng: message without a cookie dropped");
                return None;
            }
        };
        self.cache.expire(now_ms, self.cfg.cache_ttl_ms);
        let key = (src, cookie.to_vec());
        if let Some(r) = self.cache.get(&key) {
            self.stats.retransmissions += 1;
            self.stats.replies += 1;
            return Some(r.clone());
        }
        let value = match self.execute(body, now_ms) {
            Ok(d) => d.into_value(),
            Err(reason) => {
                self.stats.errors += 1;
                debug!(%src, "ng: error: {reason}");
                Dict::new()
                    .with("result", bstr("error"))
                    .with("error-reason", bstr(reason))
                    .into_value()
            }
        };
        let mut reply = Vec::with_capacity(cookie.len() + 1024);
        reply.extend_from_slice(cookie);
        reply.push(b' ');
        encode_into(&value, &mut reply);
        self.cache.insert(key, reply.clone(), now_ms, &self.cfg);
        self.stats.replies += 1;
        Some(reply)
    }

    fn execute(&mut self, body: &[u8], now_ms: u64) -> Reply {
        let n = match scan(body, MAX_MESSAGE) {
            Scan::Complete(n) => n,
            Scan::Incomplete => return Err("Truncated bencode message".into()),
            Scan::Invalid(r) => return Err(r.into()),
        };
        if !body[n..].iter().all(u8::is_ascii_whitespace) {
            return Err("Trailing data after bencode dictionary".into());
        }
        let dict = decode_dict(&body[..n])?;
        let m = Msg(&dict);
        let cmd = field(m.str("command"), "No command in message", "command")?;
        let mut warnings = Vec::new();
        let mut out = match cmd {
            "ping" => Ok(Dict::new().with("result", bstr("pong"))),
            "offer" => self.offer_answer(&m, now_ms, Op::Offer, &mut warnings),
            "answer" => self.offer_answer(&m, now_ms, Op::Answer, &mut warnings),
            "delete" => self.delete(&m, now_ms, &mut warnings),
            "query" => self.query(&m),
            "list" => self.list(&m),
            "statistics" => Ok(self.statistics(now_ms)),
            _ => Err("Unrecognized command".into()),
        }?;
        if !warnings.is_empty() {
            debug!(cmd, "ng: warnings: {}", warnings.join("; "));
            out.set("warning", bstr(warnings.join("; ")));
        }
        if !out.has("result") {
            out.set("result", bstr("ok"));
        }
        Ok(out)
    }

    fn offer_answer(
        &mut self,
        m: &Msg<'_>,
        now_ms: u64,
        op: Op,
        warnings: &mut Vec<String>,
    ) -> Reply {
        let sdp_text = field(m.str("sdp"), "No SDP body in message", "sdp")?;
        let call_id = field(m.str("call-id"), "No call-id in message", "call-id")?;
        if call_id.is_empty() {
            return Err("No call-id in message".into());
        }
        let from_tag = field(m.str("from-tag"), "No from-tag in message", "from-tag")?;
        let to_tag = field(m.opt_str("to-tag"), "", "to-tag")?.filter(|t| !t.is_empty());
        if op == Op::Answer && to_tag.is_none() {
            return Err("No to-tag in message".into());
        }
        let flags = Flags::parse(m, warnings)?;
        let sdp = Sdp::parse(sdp_text).map_err(|e| e.to_string())?;
        match op {
            Op::Offer => self.stats.offers += 1,
            Op::Answer => self.stats.answers += 1,
        }

        let created = !self.calls.contains_key(call_id);
        if created {
            if op == Op::Answer {
                return Err("Unknown call-id".into());
            }
            if self.calls.len() >= self.cfg.max_calls {
                self.stats.calls_rejected += 1;
                return Err("Parallel session limit reached".into());
            }
        }
        let table = self.table.clone();
        let call = self
            .calls
            .entry(call_id.to_string())
            .or_insert_with(|| Call {
                tags: [Some(from_tag.to_string()), None],
                media: Vec::new(),
                created_ms: now_ms,
                last_signal_ms: now_ms,
                delete_at_ms: None,
            });
        // Which leg sent this SDP.
        let is_tag = |c: &Call, leg: usize, t: &str| c.tags[leg].as_deref() == Some(t);
        let sender = match op {
            Op::Offer => {
                if !is_tag(call, 0, from_tag) && is_tag(call, 1, from_tag) {
                    1
                } else {
                    0
                }
            }
            Op::Answer => {
                let offerer = if is_tag(call, 0, from_tag) {
                    0
                } else if is_tag(call, 1, from_tag) {
                    1
                } else {
                    return Err("Invalid dialogue association (unknown from-tag)".into());
                };
                offerer ^ 1
            }
        };
        let receiver = sender ^ 1;
        match op {
            Op::Offer => {
                call.tags[sender] = Some(from_tag.to_string());
                if let Some(t) = to_tag {
                    call.tags[receiver] = Some(t.to_string());
                }
            }
            Op::Answer => call.tags[sender] = to_tag.map(str::to_string),
        }

        let media_ip = table.media_ip();
        let mut outs: Vec<Option<MediaOut>> = Vec::with_capacity(sdp.media().len());
        let mut fresh: Vec<u32> = Vec::new();
        let mut failure = None;
        for (i, info) in sdp.media().iter().enumerate() {
            if call.media.len() <= i {
                call.media.push(MediaState::default());
            }
            let ms = &mut call.media[i];
            if info.port == 0 {
                if let Some(s) = ms.slot.take() {
                    release_slot(&table, s, call_id);
                }
                outs.push(None);
                continue;
            }
            let slot = match ms.slot {
                Some(s) => s,
                None => match table.reserve_for(Owner::Ng) {
                    Ok(s) => {
                        fresh.push(s);
                        table.set_call_id(s, call_id);
                        ms.slot = Some(s);
                        ms.cfg = SlotConfig {
                            tag: tern_shared::table::call_tag(call_id),
                            ..Default::default()
                        };
                        for leg in &mut ms.cfg.legs {
                            leg.jitter = self.cfg.jitter;
                        }
                        debug!(call_id, slot = s, "ng: slot reserved");
                        s
                    }
                    Err(e) => {
                        failure = Some(match e {
                            TableError::Full => "Ran out of ports (no free relay slot)".to_string(),
                            e => format!("Slot table: {e}"),
                        });
                        break;
                    }
                },
            };
            let out = program_media(ms, info, &flags, op, sender);
            if let Some(j) = flags.jitter(self.cfg.jitter) {
                for leg in &mut ms.cfg.legs {
                    leg.jitter = j;
                }
            }
            if let Err(e) = table.publish(slot, &ms.cfg) {
                failure = Some(format!("Slot table: {e}"));
                break;
            }
            let ports = table.ports(slot, receiver);
            outs.push(Some(MediaOut {
                port: ports.rtp,
                rtcp_port: if out.rtcp_on_rtp {
                    ports.rtp
                } else {
                    ports.rtcp
                },
                mux: out.mux,
            }));
        }
        if let Some(reason) = failure {
            // Give back what this message took; a call it created goes too.
            for ms in &mut call.media {
                if ms.slot.is_some_and(|s| fresh.contains(&s)) {
                    ms.slot = None;
                }
            }
            for s in fresh {
                release_slot(&table, s, call_id);
            }
            if created {
                self.calls.remove(call_id);
                self.stats.calls_rejected += 1;
            }
            return Err(reason);
        }
        if op == Op::Offer && call.media.len() > sdp.media().len() {
            for ms in call.media.drain(sdp.media().len()..) {
                if let Some(s) = ms.slot {
                    release_slot(&table, s, call_id);
                }
            }
        }
        call.last_signal_ms = now_ms;
        call.delete_at_ms = None;
        if created {
            self.stats.calls_created += 1;
            let slots: Vec<u32> = call.media.iter().filter_map(|m| m.slot).collect();
            info!(call_id, slot = ?slots, "ng: call created");
        }
        let body = sdp.rewrite(&Rewrite {
            media_ip,
            media: outs,
            replace_origin: flags.replace_origin,
            replace_session_conn: flags.replace_session_conn,
            transport: flags.transport.clone(),
            rtcp_attr: flags.rtcp_attr,
        });
        Ok(Dict::new().with("sdp", bstr(body)))
    }

    fn delete(&mut self, m: &Msg<'_>, now_ms: u64, warnings: &mut Vec<String>) -> Reply {
        let call_id = field(m.str("call-id"), "No call-id in message", "call-id")?;
        field(m.opt_str("from-tag"), "", "from-tag")?;
        field(m.opt_str("to-tag"), "", "to-tag")?;
        let flags = Flags::parse(m, warnings)?;
        let delay = field(m.opt_int("delete-delay"), "", "delete-delay")?
            .filter(|d| *d >= 0)
            .map_or(self.cfg.delete_delay_s, |d| d as u64);
        self.stats.deletes += 1;
        let Some(call) = self.calls.get_mut(call_id) else {
            if self.reclaim_orphans_of(call_id) > 0 {
                return Ok(Dict::new());
            }
            let reason = "Call-ID not found or tags didn't match";
            if flags.fatal {
                return Err(reason.into());
            }
            warnings.push(reason.into());
            return Ok(Dict::new());
        };
        call.last_signal_ms = now_ms;
        let out = self.call_stats(call_id);
        if delay == 0 {
            self.end_call(call_id, now_ms, End::Deleted);
        } else if let Some(call) = self.calls.get_mut(call_id) {
            let at = now_ms.saturating_add(delay.saturating_mul(1000));
            call.delete_at_ms = Some(call.delete_at_ms.map_or(at, |t| t.min(at)));
        }
        Ok(out)
    }

    fn query(&mut self, m: &Msg<'_>) -> Reply {
        let call_id = field(m.str("call-id"), "No call-id in message", "call-id")?;
        field(m.opt_str("from-tag"), "", "from-tag")?;
        field(m.opt_str("to-tag"), "", "to-tag")?;
        if !self.calls.contains_key(call_id) {
            return Err("Unknown call-id".into());
        }
        Ok(self.call_stats(call_id))
    }

    fn list(&mut self, m: &Msg<'_>) -> Reply {
        let limit = field(m.opt_int("limit"), "", "limit")?.unwrap_or(32);
        if limit < 0 {
            return Err("invalid limit, must be >= 0".into());
        }
        let mut ids: Vec<&str> = self.calls.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(Dict::new().with("calls", str_list(ids)))
    }

    fn statistics(&mut self, now_ms: u64) -> Dict {
        self.sample_rates(now_ms);
        let (mut forwarded, mut dropped) = (0u64, 0u64);
        for w in 0..self.table.workers() {
            let (_, f, d) = self.table.worker_status(w);
            forwarded += f;
            dropped += d;
        }
        let n = self.calls.len() as u64;
        let avg_ms = self
            .total_call_ms
            .checked_div(self.ended_calls)
            .unwrap_or(0);
        let cur = Dict::new()
            .with("sessionsown", uint(n))
            .with("sessionsforeign", uint(0))
            .with("sessionstotal", uint(n))
            .with("transcodedmedia", uint(0))
            .with("packetrate", uint(self.rate.packet_rate))
            .with("byterate", uint(0))
            .with("errorrate", uint(self.rate.error_rate));
        let s = &self.stats;
        let tot = Dict::new()
            .with(
                "uptime",
                bstr(((now_ms.saturating_sub(self.started_ms)) / 1000).to_string()),
            )
            .with("managedsessions", uint(s.calls_created))
            .with("rejectedsessions", uint(s.calls_rejected))
            .with("timeoutsessions", uint(s.calls_timed_out))
            .with("silenttimeoutsessions", uint(0))
            .with("finaltimeoutsessions", uint(0))
            .with("offertimeoutsessions", uint(0))
            .with("regularterminatedsessions", uint(s.calls_deleted))
            .with("forcedterminatedsessions", uint(0))
            .with("relayedpackets", uint(forwarded))
            .with("relayedpacketerrors", uint(dropped))
            .with("zerowaystreams", uint(0))
            .with("onewaystreams", uint(0))
            .with(
                "avgcallduration",
                bstr(format!("{}.{:06}", avg_ms / 1000, (avg_ms % 1000) * 1000)),
            );
        let ctl = Dict::new()
            .with("offers", uint(s.offers))
            .with("answers", uint(s.answers))
            .with("deletes", uint(s.deletes))
            .with("received", uint(s.received))
            .with("replies", uint(s.replies))
            .with("retransmissions", uint(s.retransmissions))
            .with("errors", uint(s.errors))
            .with("droppedunauthorized", uint(s.dropped_unauthorized))
            .with("droppednocookie", uint(s.dropped_no_cookie));
        let t = &self.table;
        let slots = Dict::new()
            .with("capacity", uint(u64::from(t.capacity())))
            .with("free", uint(u64::from(t.count(SlotState::Free))))
            .with("reserved", uint(u64::from(t.count(SlotState::Reserved))))
            .with("active", uint(u64::from(t.count(SlotState::Active))))
            .with("draining", uint(u64::from(t.count(SlotState::Draining))));
        let st = Dict::new()
            .with("currentstatistics", cur.into_value())
            .with("totalstatistics", tot.into_value())
            .with("controlstatistics", ctl.into_value())
            .with("slots", slots.into_value());
        Dict::new().with("statistics", st.into_value())
    }

    fn sample_rates(&mut self, now_ms: u64) {
        let dt = now_ms.saturating_sub(self.rate.at_ms);
        if dt < 1000 {
            return;
        }
        let (mut f, mut d) = (0u64, 0u64);
        for w in 0..self.table.workers() {
            let (_, fw, dr) = self.table.worker_status(w);
            f += fw;
            d += dr;
        }
        self.rate = RateSample {
            at_ms: now_ms,
            forwarded: f,
            dropped: d,
            packet_rate: f.saturating_sub(self.rate.forwarded).saturating_mul(1000) / dt,
            error_rate: d.saturating_sub(self.rate.dropped).saturating_mul(1000) / dt,
        };
    }

    /// rtpengine's call statistics: `created`, `created_us`,
    /// `last signal`, `SSRC`, `tags` → tag → `medias` → `streams` (RTP and
    /// RTCP, each with `local port`, `endpoint`, `advertised endpoint`,
    /// `last packet`, `flags`, `stats` {`packets`, `bytes`, `errors`}), and
    /// `totals` → `RTP`/`RTCP` → {`packets`, `bytes`, `errors`}.
    ///
    /// A stream's `stats` count what the relay accepted from that leg's
    /// peer; `errors` counts its packets dropped (source, direction,
    /// malformed, no peer). RTCP bytes are not counted (0).
    ///
    /// Quality, as rtpengine names it where it has a name: the top-level
    /// `SSRC` dictionary, keyed by each leg's ingress SSRC (decimal), holds
    /// `cumulative loss` and `average MOS` / `lowest MOS` / `highest MOS`
    /// (one sample each: `MOS` ×10, `round-trip time` µs, `jitter` ms,
    /// `packet loss` %, `samples`); an RTP stream's `ingress SSRCs` lists
    /// that SSRC with the stream's packets and bytes. tern's own keys: an
    /// RTP stream's `quality` dictionary (RFC 3550: `expected`, `lost`
    /// (signed), `fraction lost` (1/256), `jitter us`, `duplicates`,
    /// `reordered`, `clock rate` (Hz); from RTCP when known:
    /// `round-trip time us`, `peer fraction lost`, `peer jitter us`; and
    /// `MOS x100`), and a tag's `DTMF` list (`digit`, `event`, `duration`
    /// (RTP timestamp units), `RTP timestamp`, `at` (Unix ms)).
    fn call_stats(&self, call_id: &str) -> Dict {
        let Some(call) = self.calls.get(call_id) else {
            return Dict::new();
        };
        let t = &self.table;
        let (mut rtp, mut rtcp) = ([0u64; 3], [0u64; 3]);
        let mut tags = Dict::new();
        let mut ssrcs = Dict::new();
        let mut last_packet = 0u64;
        for leg in 0..2 {
            let tag = call.tags[leg].clone().unwrap_or_default();
            let mut medias = Vec::new();
            let mut dtmf = Vec::new();
            for (i, ms) in call.media.iter().enumerate() {
                let Some(slot) = ms.slot else { continue };
                let cfg = &ms.cfg.legs[leg];
                let st = t.stats(slot, leg).unwrap_or_default();
                let q = t.quality(slot, leg);
                let ssrc_in = t.counters(slot, leg).ok().and_then(|c| c.ssrc_in());
                for e in t.dtmf_events(slot, leg) {
                    dtmf.push(
                        Dict::new()
                            .with("digit", bstr(e.digit.to_string()))
                            .with("event", uint(u64::from(e.event)))
                            .with("duration", uint(u64::from(e.duration)))
                            .with("RTP timestamp", uint(u64::from(e.rtp_timestamp)))
                            .with("at", uint(e.at_ms))
                            .with("media", uint(i as u64 + 1))
                            .into_value(),
                    );
                }
                if let (Some(ssrc), Some(_)) = (ssrc_in, q.mos) {
                    ssrcs.set(&ssrc.to_string(), rtpengine_ssrc_entry(&q));
                }
                let ports = t.ports(slot, leg);
                let errors = st.drops_total();
                last_packet = last_packet.max(st.last_rx_ms);
                rtp[0] += st.rx_packets;
                rtp[1] += st.rx_bytes;
                rtp[2] += errors;
                rtcp[0] += st.rtcp_rx_packets;
                let mut sflags = vec!["RTP"];
                if cfg.peer.is_some() {
                    sflags.push("filled");
                }
                if st.learned.is_some() {
                    sflags.push("confirmed");
                }
                match cfg.learning {
                    Learning::Strict => sflags.push("strict source address"),
                    Learning::LearnAlways => sflags.push("media handover"),
                    Learning::LearnOnce => {}
                }
                let rtp_stream = Dict::new()
                    .with("local port", uint(u64::from(ports.rtp)))
                    .with("endpoint", endpoint(st.learned.or(cfg.peer)))
                    .with("advertised endpoint", endpoint(ms.advertised[leg]))
                    .with("last packet", uint(st.last_rx_ms / 1000))
                    .with("flags", str_list(sflags))
                    .with(
                        "stats",
                        Dict::new()
                            .with("packets", uint(st.rx_packets))
                            .with("bytes", uint(st.rx_bytes))
                            .with("errors", uint(errors))
                            .into_value(),
                    )
                    .with("sent", {
                        Dict::new()
                            .with("packets", uint(st.tx_packets))
                            .with("bytes", uint(st.tx_bytes))
                            .into_value()
                    })
                    .with(
                        "ingress SSRCs",
                        Value::List(
                            ssrc_in
                                .map(|s| {
                                    Dict::new()
                                        .with("SSRC", uint(u64::from(s)))
                                        .with("packets", uint(st.rx_packets))
                                        .with("bytes", uint(st.rx_bytes))
                                        .into_value()
                                })
                                .into_iter()
                                .collect(),
                        ),
                    )
                    .with("quality", quality_dict(&q));
                let rtcp_peer = cfg.peer_rtcp.or_else(|| {
                    cfg.peer.map(|p| {
                        if cfg.rtcp_mux {
                            p
                        } else {
                            SocketAddr::new(p.ip(), p.port().wrapping_add(1))
                        }
                    })
                });
                let rtcp_stream = Dict::new()
                    .with(
                        "local port",
                        uint(u64::from(if cfg.rtcp_mux { ports.rtp } else { ports.rtcp })),
                    )
                    .with("endpoint", endpoint(rtcp_peer))
                    .with(
                        "advertised endpoint",
                        endpoint(
                            ms.advertised[leg]
                                .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1))),
                        ),
                    )
                    .with("last packet", uint(st.last_rx_ms / 1000))
                    .with("flags", str_list(["RTCP"]))
                    .with(
                        "stats",
                        Dict::new()
                            .with("packets", uint(st.rtcp_rx_packets))
                            .with("bytes", uint(0))
                            .with("errors", uint(0))
                            .into_value(),
                    );
                let mut mflags = vec!["initialized"];
                if cfg.direction.sends_to_peer() {
                    mflags.push("send");
                }
                if cfg.direction.accepts_from_peer() {
                    mflags.push("recv");
                }
                if cfg.rtcp_mux {
                    mflags.push("rtcp-mux");
                }
                let media = Dict::new()
                    .with("index", uint(i as u64 + 1))
                    .with("type", bstr(ms.kind.clone()))
                    .with("protocol", bstr(ms.proto.clone()))
                    .with("slot", uint(u64::from(slot)))
                    .with(
                        "streams",
                        Value::List(vec![rtp_stream.into_value(), rtcp_stream.into_value()]),
                    )
                    .with("flags", str_list(mflags));
                medias.push(media.into_value());
            }
            let mut d = Dict::new()
                .with("tag", bstr(tag.clone()))
                .with("created", uint(call.created_ms / 1000))
                .with("medias", Value::List(medias))
                .with("DTMF", Value::List(dtmf));
            if let Some(other) = &call.tags[leg ^ 1] {
                d.set("in dialogue with", bstr(other.clone()));
            }
            tags.set(&tag, d.into_value());
        }
        let totals = |v: [u64; 3]| {
            Dict::new()
                .with("packets", uint(v[0]))
                .with("bytes", uint(v[1]))
                .with("errors", uint(v[2]))
                .into_value()
        };
        Dict::new()
            .with("created", uint(call.created_ms / 1000))
            .with("created_us", uint((call.created_ms % 1000) * 1000))
            .with("last signal", uint(call.last_signal_ms / 1000))
            .with("last packet", uint(last_packet / 1000))
            .with("SSRC", ssrcs.into_value())
            .with("tags", tags.into_value())
            .with(
                "totals",
                Dict::new()
                    .with("RTP", totals(rtp))
                    .with("RTCP", totals(rtcp))
                    .into_value(),
            )
    }

    fn end_call(&mut self, call_id: &str, now_ms: u64, why: End) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        for ms in &call.media {
            if let Some(s) = ms.slot {
                release_slot(&self.table, s, call_id);
            }
        }
        self.total_call_ms += now_ms.saturating_sub(call.created_ms);
        self.ended_calls += 1;
        let slots: Vec<u32> = call.media.iter().filter_map(|m| m.slot).collect();
        match why {
            End::Deleted => self.stats.calls_deleted += 1,
            End::TimedOut => {
                self.stats.calls_timed_out += 1;
                warn!(call_id, slot = ?slots, "ng: call timed out (no media)");
            }
            End::Shutdown => {}
        }
        info!(call_id, slot = ?slots, "ng: call ended ({why:?})");
    }

    /// Ends calls whose `delete-delay` has passed and calls whose media has
    /// been silent for the timeout; drops expired cached replies. Returns the
    /// number of calls ended. Call it about once a second.
    pub fn poll_timeouts(&mut self, now_ms: u64) -> usize {
        self.cache.expire(now_ms, self.cfg.cache_ttl_ms);
        self.sample_rates(now_ms);
        let mut ended = Vec::new();
        for (id, call) in &self.calls {
            if call.delete_at_ms.is_some_and(|t| t <= now_ms) {
                ended.push((id.clone(), End::Deleted));
                continue;
            }
            if self.cfg.timeout_ms == 0 {
                continue;
            }
            let mut last = call.last_signal_ms;
            for ms in &call.media {
                if let Some(s) = ms.slot {
                    for leg in 0..2 {
                        if let Ok(st) = self.table.stats(s, leg) {
                            last = last.max(st.last_rx_ms);
                        }
                    }
                }
            }
            if now_ms.saturating_sub(last) >= self.cfg.timeout_ms {
                ended.push((id.clone(), End::TimedOut));
            }
        }
        let n = ended.len();
        for (id, why) in ended {
            self.end_call(&id, now_ms, why);
        }
        self.poll_orphans(now_ms);
        n
    }

    /// Forgets orphans someone else freed; releases those silent for the
    /// timeout.
    fn poll_orphans(&mut self, now_ms: u64) {
        if self.orphans.is_empty() {
            return;
        }
        let table = &self.table;
        self.orphans.retain(|&id, &mut (gen, _)| {
            matches!(table.state(id), SlotState::Active | SlotState::Reserved)
                && table.generation(id) == gen
        });
        if self.cfg.timeout_ms == 0 {
            return;
        }
        let silent: Vec<u32> = self
            .orphans
            .iter()
            .filter(|(&id, &(_, since))| {
                let last = (0..2)
                    .filter_map(|leg| table.stats(id, leg).ok())
                    .map(|st| st.last_rx_ms)
                    .fold(since, u64::max);
                now_ms.saturating_sub(last) >= self.cfg.timeout_ms
            })
            .map(|(&id, _)| id)
            .collect();
        for id in silent {
            self.reclaim_orphan(id, "media timeout");
        }
    }

    /// Releases orphan `id` and counts it.
    fn reclaim_orphan(&mut self, id: u32, why: &str) {
        if self.orphans.remove(&id).is_none() {
            return;
        }
        let label = self.table.call_id(id).unwrap_or_default();
        release_slot(&self.table, id, &label);
        self.table.count_reclaimed(1);
        self.stats.orphans_reclaimed += 1;
        info!(call_id = %label, slot = id, "ng: orphaned slot released ({why})");
    }

    /// Releases the orphans labelled with `call_id`; returns how many.
    fn reclaim_orphans_of(&mut self, call_id: &str) -> usize {
        let table = &self.table;
        let ids: Vec<u32> = self
            .orphans
            .keys()
            .copied()
            .filter(|&id| {
                let tag = table.read_config(id).map_or(0, |(c, _)| c.tag);
                table
                    .call_id(id)
                    .is_some_and(|l| tern_shared::table::label_matches(&l, tag, call_id))
            })
            .collect();
        for &id in &ids {
            self.reclaim_orphan(id, "delete");
        }
        ids.len()
    }

    /// Slots adopted as orphans and not yet released.
    pub fn orphans(&self) -> usize {
        self.orphans.len()
    }

    /// Ends every call and releases its slots (on shutdown: the calls live
    /// only in this process's memory, so a restarted control plane could
    /// never free them).
    pub fn release_all(&mut self, now_ms: u64) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_call(&id, now_ms, End::Shutdown);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum End {
    Deleted,
    TimedOut,
    Shutdown,
}

/// Microseconds of `ms`, rounded, as a bencode integer.
fn us(ms: f64) -> Value {
    uint((ms * 1000.0).round().max(0.0) as u64)
}

/// tern's per-stream `quality` dictionary (see `call_stats`).
fn quality_dict(q: &LegQuality) -> Value {
    let mut d = Dict::new()
        .with("expected", uint(q.expected))
        .with("lost", int(q.lost))
        .with("fraction lost", uint(u64::from(q.fraction_lost)))
        .with("jitter us", us(q.jitter_ms))
        .with("duplicates", uint(q.duplicates))
        .with("reordered", uint(q.reordered))
        .with("clock rate", uint(u64::from(q.clock_rate)));
    if let Some(r) = q.rtt_ms {
        d.set("round-trip time us", us(r));
    }
    if let Some(f) = q.peer_fraction_lost {
        d.set("peer fraction lost", uint(u64::from(f)));
    }
    if let Some(j) = q.peer_jitter_ms {
        d.set("peer jitter us", us(j));
    }
    if let Some(m) = q.mos {
        d.set("MOS x100", uint((m * 100.0).round() as u64));
    }
    d.into_value()
}

/// One entry of rtpengine's `SSRC` dictionary from a leg's statistics:
/// `cumulative loss`, and `average`/`lowest`/`highest MOS` as one sample
/// (`MOS` ×10, `round-trip time` µs, `jitter` ms, `packet loss` %).
fn rtpengine_ssrc_entry(q: &LegQuality) -> Value {
    let loss_pct = (q.lost.max(0) as u64)
        .saturating_mul(100)
        .saturating_add(q.expected / 2)
        .checked_div(q.expected)
        .unwrap_or(0);
    let sample = || {
        Dict::new()
            .with("MOS", uint((q.mos.unwrap_or(0.0) * 10.0).round() as u64))
            .with("round-trip time", us(q.rtt_ms.unwrap_or(0.0)))
            .with("jitter", uint(q.jitter_ms.round().max(0.0) as u64))
            .with("packet loss", uint(loss_pct))
    };
    Dict::new()
        .with("cumulative loss", int(q.lost))
        .with(
            "average MOS",
            sample().with("samples", uint(1)).into_value(),
        )
        .with("lowest MOS", sample().into_value())
        .with("highest MOS", sample().into_value())
        .into_value()
}

fn release_slot(table: &SlotTable, slot: u32, call_id: &str) {
    if let Err(e) = table.release(slot) {
        debug!(call_id, slot, "ng: release: {e}");
    }
}

/// What [`program_media`] decided about the SDP going out.
struct MediaDecision {
    mux: bool,
    rtcp_on_rtp: bool,
}

/// Programs the leg `sender` of `ms` from its SDP `info`, and the rtcp-mux
/// state of both legs; says what the SDP going to the other side carries.
fn program_media(
    ms: &mut MediaState,
    info: &MediaInfo,
    flags: &Flags,
    op: Op,
    sender: usize,
) -> MediaDecision {
    let receiver = sender ^ 1;
    let sdp_ip = info.conn.filter(|ip| !ip.is_unspecified());
    let ip = match (flags.trust_address, flags.received_from) {
        (false, Some(r)) if sdp_ip.is_some() => Some(r),
        _ => sdp_ip,
    };
    ms.kind = info.kind.clone();
    ms.proto = flags
        .transport
        .clone()
        .unwrap_or_else(|| info.proto.clone());
    ms.advertised[sender] = sdp_ip.map(|a| SocketAddr::new(a, info.port));
    let leg = &mut ms.cfg.legs[sender];
    leg.peer = ip.map(|a| SocketAddr::new(a, info.port));
    leg.peer_rtcp = match (info.rtcp, ip) {
        (Some((port, addr)), Some(ip)) if !info.rtcp_mux => {
            let a = if flags.trust_address {
                addr.unwrap_or(ip)
            } else {
                ip
            };
            Some(SocketAddr::new(a, port))
        }
        _ => None,
    };
    leg.learning = flags.learning();
    leg.direction = info.direction.reversed();
    leg.dtmf_pt = info.dtmf_pt;
    leg.clock_rate = info.clock_rate;
    if flags.ssrc_rewrite {
        let out = &mut ms.cfg.legs[receiver];
        out.rewrite_ssrc = true;
        if out.out_ssrc == 0 {
            out.out_ssrc = loop {
                let v: u32 = rand::random();
                if v != 0 {
                    break v;
                }
            };
        }
    }
    match op {
        Op::Offer => {
            let f = flags.mux;
            ms.mux_offered_by = info.rtcp_mux && !f.reject;
            ms.mux_offered_to = (info.rtcp_mux && !f.demux) || f.offer || f.require;
            ms.mux_flags = f;
            let was = ms.cfg.legs[sender].rtcp_mux;
            ms.cfg.legs[sender].rtcp_mux =
                ms.mux_offered_by && (was || f.accept || f.demux || f.require);
            if f.require {
                ms.cfg.legs[receiver].rtcp_mux = true;
            }
            MediaDecision {
                mux: ms.mux_offered_to,
                rtcp_on_rtp: f.require,
            }
        }
        Op::Answer => {
            let f = MuxFlags {
                offer: flags.mux.offer || ms.mux_flags.offer,
                accept: flags.mux.accept || ms.mux_flags.accept,
                demux: flags.mux.demux || ms.mux_flags.demux,
                require: flags.mux.require || ms.mux_flags.require,
                reject: flags.mux.reject || ms.mux_flags.reject,
            };
            let answered = (info.rtcp_mux && ms.mux_offered_to) || f.require;
            ms.cfg.legs[sender].rtcp_mux = answered;
            let offerer_mux = ms.mux_offered_by && (answered || f.accept || f.demux);
            ms.cfg.legs[receiver].rtcp_mux = offerer_mux;
            MediaDecision {
                mux: offerer_mux,
                rtcp_on_rtp: offerer_mux,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::bencode::encode;
    use tern_shared::table::TableParams;

    /// Unlinks the table's file when the test ends, passed or not.
    struct Unlink(Arc<SlotTable>);

    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = self.0.unlink();
        }
    }

    fn table(name: &str, lo: u16) -> Arc<SlotTable> {
        let inst = format!("t-h1-core-{name}-{}", std::process::id());
        Arc::new(
            SlotTable::create_or_attach(
                &inst,
                TableParams {
                    port_lo: lo,
                    port_hi: lo + 31,
                    workers: 1,
                    media_ip: "127.0.0.1".parse().unwrap(),
                },
            )
            .unwrap(),
        )
    }

    fn offer(call_id: &str, flags: &[&str], extra: &[(&str, i64)]) -> Vec<u8> {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                   m=audio 4000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\n\
                   a=rtpmap:101 telephone-event/48000\r\n";
        let mut d = Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr(call_id))
            .with("from-tag", bstr("ft"))
            .with("flags", str_list(flags.iter().copied()))
            .with("sdp", bstr(sdp));
        for (k, v) in extra {
            d.set(k, int(*v));
        }
        // Each its own cookie: a repeated one is a retransmission.
        let mut m = format!("{call_id} ").into_bytes();
        m.extend(encode(&d.into_value()));
        m
    }

    fn src() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    /// The offer's slot is labelled with the Call-ID, its offerer leg knows
    /// the telephone-event type and the codec clock, and the jitter buffer
    /// follows the flags, the keys and the relay-wide default.
    #[test]
    fn offer_labels_slot_and_programs_dtmf_clock_and_jitter() {
        let t = table("offer", 44000);
        let _unlink = Unlink(t.clone());
        let mut core = NgCore::new(t.clone(), CoreConfig::default(), 1000);
        let r = core
            .handle(&offer("call-1", &[], &[]), src(), 1000)
            .unwrap();
        assert!(
            String::from_utf8_lossy(&r).contains("6:result2:ok"),
            "{}",
            String::from_utf8_lossy(&r)
        );
        let slot = core.slots_of("call-1")[0];
        assert_eq!(t.call_id(slot).as_deref(), Some("call-1"));
        let (cfg, _) = t.read_config(slot).unwrap();
        assert_eq!(
            (cfg.legs[0].dtmf_pt, cfg.legs[0].clock_rate),
            (Some(101), 48_000)
        );
        assert!(!cfg.legs[0].jitter.enabled && !cfg.legs[1].jitter.enabled);

        // Flag and keys, on a new call; a key alone switches it on too.
        let msg = offer(
            "call-2",
            &["jitter-buffer"],
            &[("jitter-buffer-target", 40), ("jitter-buffer-max", 120)],
        );
        core.handle(&msg, src(), 1000).unwrap();
        let (cfg, _) = t.read_config(core.slots_of("call-2")[0]).unwrap();
        for leg in cfg.legs {
            assert_eq!(
                leg.jitter,
                JitterSettings {
                    enabled: true,
                    target_ms: 40,
                    max_ms: 120,
                    adaptive: false,
                }
            );
        }
        let msg = offer("call-3", &[], &[("jitter-buffer-max", 30)]);
        core.handle(&msg, src(), 1000).unwrap();
        let (cfg, _) = t.read_config(core.slots_of("call-3")[0]).unwrap();
        // max below the default target: the target is lowered to fit.
        let j = cfg.legs[1].jitter;
        assert_eq!(
            (j.enabled, j.target_ms, j.max_ms, j.adaptive),
            (true, 30, 30, false)
        );
        // The adaptive flag alone switches it on, adaptive.
        let msg = offer("call-5", &["jitter-buffer-adaptive"], &[]);
        core.handle(&msg, src(), 1000).unwrap();
        let (cfg, _) = t.read_config(core.slots_of("call-5")[0]).unwrap();
        let j = cfg.legs[0].jitter;
        assert!(j.enabled && j.adaptive);
        assert_eq!(
            (j.target_ms, j.max_ms),
            (DEFAULT_JITTER_TARGET_MS, DEFAULT_JITTER_MAX_MS)
        );
        // Out of range: a warning, nothing switched on.
        let r = core
            .handle(
                &offer("call-4", &[], &[("jitter-buffer-max", 0)]),
                src(),
                1000,
            )
            .unwrap();
        assert!(String::from_utf8_lossy(&r).contains("out of range"));
        let (cfg, _) = t.read_config(core.slots_of("call-4")[0]).unwrap();
        assert!(!cfg.legs[0].jitter.enabled);
    }

    #[test]
    fn relay_default_jitter_and_no_jitter_buffer_flag() {
        let t = table("default", 44100);
        let _unlink = Unlink(t.clone());
        let mut cfg = CoreConfig::default();
        cfg.jitter.enabled = true;
        let mut core = NgCore::new(t.clone(), cfg, 1000);
        core.handle(&offer("d-1", &[], &[]), src(), 1000).unwrap();
        let (c, _) = t.read_config(core.slots_of("d-1")[0]).unwrap();
        assert!(c.legs[0].jitter.enabled && c.legs[1].jitter.enabled);
        core.handle(&offer("d-2", &["no-jitter-buffer"], &[]), src(), 1000)
            .unwrap();
        let (c, _) = t.read_config(core.slots_of("d-2")[0]).unwrap();
        assert!(!c.legs[0].jitter.enabled);
        // Deleting releases the slot and clears its label.
        let slot = core.slots_of("d-1")[0];
        let mut del = b"c9 ".to_vec();
        del.extend(encode(
            &Dict::new()
                .with("command", bstr("delete"))
                .with("call-id", bstr("d-1"))
                .into_value(),
        ));
        let r = core.handle(&del, src(), 2000).unwrap();
        assert!(String::from_utf8_lossy(&r).contains("7:quality"));
        assert_eq!(t.call_id(slot), None);
    }
}
