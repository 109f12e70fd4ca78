//! The sans-IO core of the ng control protocol: bytes in, bytes out, on a
//! clock the caller passes in. No socket is touched here; the server in
//! [`super`] feeds it datagrams and TCP frames.
//!
//! # Calls, legs and slots
//!
//! An ng call (one `call-id`) holds one or more branches (dialogues
//! between the offerer and one answerer, i.e. forks; see [`call`]), each
//! with one slot of the [`SlotTable`] per relayed media section (`m=` line
//! with a non-zero port). Leg 0 of every slot faces the party whose
//! `from-tag` created the call (the offerer), leg 1 the branch's answerer
//! (`to-tag`). An `offer` programs the offerer's leg with the address and
//! port of its SDP and returns SDP carrying the *other* leg's ports (it
//! goes to the answerer); an `answer` programs the answerer's leg and
//! returns SDP with the offerer's leg's ports. A re-offer (same call-id)
//! updates the same slots; a re-offer whose `from-tag` is the callee's
//! tag (a re-INVITE from the callee) works the other way round. An answer
//! from a second `to-tag`, or an offer with a new `via-branch`, opens
//! another branch on its own slots.
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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bt_bencode::Value;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern_shared::table::{
    JitterSettings, Learning, LegQuality, Owner, SlotConfig, SlotState, SlotTable, TableError,
};
use tracing::{debug, info, warn};

use crate::acl::Acl;
use crate::bencode::{bstr, decode_dict, encode_into, int, scan, str_list, uint, Dict, Msg, Scan};
use crate::cache::ReplyCache;
use crate::codec::{self, Codec};
use crate::error::{field, CommandError};
use crate::flags::Flags;
use crate::keys::{self, Warnings};
use crate::sdp::{CodecAttrs, MediaInfo, MediaOut, Rewrite, Sdp};
use crate::transcode;

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
    /// Most calls held at once (`tern relay --max-sessions`, rtpengine's
    /// `--max-sessions`): an offer for a new call past it is answered
    /// `result: load limit` when its `supports` names `load limit`
    /// (Kamailio's and OpenSIPS's modules then try the next relay of the
    /// set), else with the error `Parallel session limit reached`.
    /// Re-offers and answers of calls held are not limited.
    pub max_calls: usize,
    /// Jitter-buffer settings of a new call whose offer says neither
    /// `jitter-buffer` nor `no-jitter-buffer` (`tern relay --jitter-buffer`).
    pub jitter: JitterSettings,
    /// Names of the table's interfaces ([`SlotTable::interfaces`]), by
    /// index, for `direction`, `from-interface` and `to-interface`; one
    /// missing is `default` (rtpengine's name for an unnamed one).
    pub interfaces: Vec<String>,
    /// Where the tags of recorded calls are shared with the recording
    /// writer; `None`: not shared.
    pub record_tags: Option<record::RecordTags>,
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
            interfaces: Vec::new(),
            record_tags: None,
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
    /// Offers refused for want of a free slot or past the session limit.
    pub calls_rejected: u64,
    /// Offers for a new call refused past [`CoreConfig::max_calls`]
    /// (`load limit` or `Parallel session limit reached`).
    pub load_limited: u64,
    /// Unsupported keys, flags and list values named in `warning`s (each
    /// name once per message).
    pub unsupported: u64,
    /// Calls held now.
    pub calls_current: u64,
    /// Slots found active at start with no call to claim them (a killed
    /// control plane's), adopted as orphans.
    pub orphans_adopted: u64,
    /// Orphaned slots released (media timeout or `delete`).
    pub orphans_reclaimed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Offer,
    Answer,
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
    /// Bytes the relay sent for calls that ended.
    ended_bytes: u64,
    rate: RateSample,
    /// Slots ng reserved before this core started: slot id →
    /// (generation at adoption, adoption time ms).
    orphans: HashMap<u32, (u64, u64)>,
    /// Every random choice (SSRCs, where a slot search starts).
    rng: StdRng,
}

#[derive(Debug, Default, Clone, Copy)]
struct RateSample {
    at_ms: u64,
    forwarded: u64,
    dropped: u64,
    bytes: u64,
    packet_rate: u64,
    error_rate: u64,
    byte_rate: u64,
}

type Reply = Result<Dict, CommandError>;

mod call;
mod control;
mod iface;
mod media_play;
mod offer;
pub mod record;
mod reports;
mod secure;

use call::{Call, Doomed, MediaState, Pick};
use control::Control;

impl NgCore {
    /// The table's interfaces under their configured names.
    fn ifaces(&self) -> iface::Ifaces {
        let list = self.table.interfaces();
        iface::Ifaces(
            list.iter()
                .enumerate()
                .map(|(i, l)| iface::Iface {
                    name: self
                        .cfg
                        .interfaces
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| tern_shared::iface::DEFAULT_NAME.to_string()),
                    sdp_ip: l.advertised,
                })
                .collect(),
        )
    }

    /// A core programming `table`, started at `now_ms`. Adopts the slots a
    /// previous ng control plane left reserved or active as orphans (see
    /// the module documentation).
    pub fn new(table: Arc<SlotTable>, cfg: CoreConfig, now_ms: u64) -> NgCore {
        NgCore::with_rng(table, cfg, now_ms, StdRng::from_entropy())
    }

    /// [`NgCore::new`] drawing its random values from `rng`
    /// (`StdRng::seed_from_u64(n)` makes a test repeatable).
    pub fn with_rng(table: Arc<SlotTable>, cfg: CoreConfig, now_ms: u64, rng: StdRng) -> NgCore {
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
            rng,
            table,
            cfg,
            calls: HashMap::new(),
            cache: ReplyCache::default(),
            started_ms: now_ms,
            total_call_ms: 0,
            ended_calls: 0,
            ended_bytes: 0,
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

    /// The slots call `call_id` holds: its branches in order, each in
    /// media order.
    pub fn slots_of(&self, call_id: &str) -> Vec<u32> {
        self.calls.get(call_id).map(Call::slots).unwrap_or_default()
    }

    /// The branches of call `call_id` (see the module documentation), in
    /// the order they were opened: each one's answerer tag (`None` while
    /// unanswered) and its slots in media order.
    pub fn branches_of(&self, call_id: &str) -> Vec<(Option<String>, Vec<u32>)> {
        self.calls
            .get(call_id)
            .map(|c| {
                c.branches
                    .iter()
                    .map(|b| (b.tags[1].clone(), b.slots().collect()))
                    .collect()
            })
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
                    .with("error-reason", bstr(reason.to_string()))
                    .into_value()
            }
        };
        let mut reply = Vec::with_capacity(cookie.len() + 1024);
        reply.extend_from_slice(cookie);
        reply.push(b' ');
        encode_into(&value, &mut reply);
        self.cache.insert(
            key,
            reply.clone(),
            now_ms,
            self.cfg.cache_max_entries,
            self.cfg.cache_max_bytes,
        );
        self.stats.replies += 1;
        Some(reply)
    }

    fn execute(&mut self, body: &[u8], now_ms: u64) -> Reply {
        let n = match scan(body, MAX_MESSAGE) {
            Scan::Complete(n) => n,
            Scan::Incomplete => return Err(CommandError::Bencode("Truncated bencode message")),
            Scan::Invalid(r) => return Err(CommandError::Bencode(r)),
        };
        if !body[n..].iter().all(u8::is_ascii_whitespace) {
            return Err(CommandError::Bencode(
                "Trailing data after bencode dictionary",
            ));
        }
        let mut dict = decode_dict(&body[..n]).map_err(CommandError::Bencode)?;
        let mut warnings = Warnings::default();
        crate::rtpp::expand(&mut dict, &mut warnings)?;
        for k in dict.keys() {
            match std::str::from_utf8(k.as_slice()) {
                Ok(k) if keys::is_known(k) => {}
                Ok(k) => warnings.key(k),
                Err(_) => warnings.key(&String::from_utf8_lossy(k.as_slice())),
            }
        }
        let m = Msg(&dict);
        let cmd = field(m.str("command"), "No command in message", "command")?;
        let mut out = match cmd {
            "ping" => Ok(Dict::new().with("result", bstr("pong"))),
            "offer" | "answer" => {
                let op = if cmd == "offer" {
                    Op::Offer
                } else {
                    Op::Answer
                };
                let r = self.offer_answer(&m, now_ms, op, &mut warnings);
                if let (Ok(_), Ok(Some(id))) = (&r, m.opt_str("call-id")) {
                    self.note_record_tags(id);
                }
                r
            }
            "delete" => self.delete(&m, now_ms, &mut warnings),
            "query" => self.query(&m),
            "list" => self.list(&m),
            "statistics" => Ok(self.statistics(now_ms)),
            "block DTMF" => self.media_control(&m, Control::Dtmf, true, &mut warnings),
            "unblock DTMF" => self.media_control(&m, Control::Dtmf, false, &mut warnings),
            "block media" => self.media_control(&m, Control::Media, true, &mut warnings),
            "unblock media" => self.media_control(&m, Control::Media, false, &mut warnings),
            "silence media" => self.media_control(&m, Control::Silence, true, &mut warnings),
            "unsilence media" => self.media_control(&m, Control::Silence, false, &mut warnings),
            "play DTMF" => self.play_dtmf(&m, &mut warnings),
            "play media" => self.play_media(&m, &mut warnings),
            "stop media" => self.stop_media(&m, &mut warnings),
            "start recording" => self.recording(&m, record::RecordOp::Start, &mut warnings),
            "stop recording" => self.recording(&m, record::RecordOp::Stop, &mut warnings),
            "pause recording" => self.recording(&m, record::RecordOp::Pause, &mut warnings),
            _ => Err(CommandError::UnknownCommand),
        }?;
        if !warnings.is_empty() {
            self.stats.unsupported += warnings.unsupported_count() as u64;
            let text = warnings.render();
            debug!(cmd, "ng: warning: {text}");
            out.set("warning", bstr(text));
        }
        if !out.has("result") {
            out.set("result", bstr("ok"));
        }
        Ok(out)
    }

    fn end_call(&mut self, call_id: &str, now_ms: u64, why: End) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        if let Some(rt) = &self.cfg.record_tags {
            rt.set(call_id, None);
        }
        self.ended_bytes += call_tx_bytes(&self.table, &call);
        let slots = call.slots();
        for &s in &slots {
            release_slot(&self.table, s, call_id);
        }
        self.total_call_ms += now_ms.saturating_sub(call.created_ms);
        self.ended_calls += 1;
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
        self.poll_branch_deletes(now_ms);
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
            for s in call.slots() {
                for leg in 0..2 {
                    if let Ok(st) = self.table.stats(s, leg) {
                        last = last.max(st.last_rx_ms);
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

    /// Releases the branches whose own `delete-delay` has passed; a call
    /// left with none ends.
    fn poll_branch_deletes(&mut self, now_ms: u64) {
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.branches
                    .iter()
                    .any(|b| b.delete_at_ms.is_some_and(|t| t <= now_ms))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let hit: Vec<usize> = self.calls.get(&id).map_or_else(Vec::new, |c| {
                (0..c.branches.len())
                    .filter(|&i| c.branches[i].delete_at_ms.is_some_and(|t| t <= now_ms))
                    .collect()
            });
            self.delete_branches(&id, &hit, now_ms);
        }
    }

    /// Releases branches `hit` (ascending indexes) of call `call_id`; ends
    /// the call when none is left.
    fn delete_branches(&mut self, call_id: &str, hit: &[usize], now_ms: u64) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        for &i in hit.iter().rev() {
            if i >= call.branches.len() {
                continue;
            }
            let b = call.remove_branch(i);
            let slots: Vec<u32> = b.slots().collect();
            for &s in &slots {
                release_slot(&self.table, s, call_id);
            }
            info!(call_id, tag = ?b.tags[1], via_branch = ?b.via, slot = ?slots, "ng: branch deleted");
        }
        if call.branches.is_empty() {
            self.end_call(call_id, now_ms, End::Deleted);
        }
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

/// Bytes the relay sent on every leg of `call`'s slots so far.
fn call_tx_bytes(table: &SlotTable, call: &Call) -> u64 {
    call.slots()
        .into_iter()
        .flat_map(|s| (0..2).filter_map(move |leg| table.stats(s, leg).ok()))
        .map(|st| st.tx_bytes)
        .sum()
}

fn release_slot(table: &SlotTable, slot: u32, call_id: &str) {
    if let Err(e) = table.release(slot) {
        debug!(call_id, slot, "ng: release: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::encode;
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
