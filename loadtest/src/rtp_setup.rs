//! `tern load rtp`'s generator and its call setup: the streams
//! ([`Stream`]), the generator's sockets and state ([`Gen`]), and
//! [`setup`], which binds the sockets and sets up the calls over ng (offer
//! and answer, SDES keys with `--srtp`) or starts the floor; [`NgCalls`]
//! deletes the calls again.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use tern_secure::srtp::{Context, Suite};
use tern_shared::sdp::crypto_value;

use crate::ng::{self, Ben, NgClient};
use crate::seq::SeqStats;
use crate::srtp::{offered_crypto, sdes_flags, srtp_context, Check};
use crate::{floor, sys, Error, RtpArgs};

/// One RTP stream of a call: A→B (caller to callee), or B→A with
/// `--both-ways`/`--srtp`.
pub(crate) struct Stream {
    pub(crate) dest: libc::sockaddr_in,
    /// The sending socket: an index into [`Gen::socks`].
    pub(crate) sock: usize,
    pub(crate) ssrc: u32,
    pub(crate) seq: u16,
    /// RTP timestamp at the generator's clock origin ([`Gen::origin_ns`]):
    /// a packet's timestamp follows its nominal send time at 8 kHz, so
    /// that a relay's jitter buffer sees a sender whose clock keeps time.
    pub(crate) ts: u32,
    pub(crate) stats: SeqStats,
    pub(crate) rewritten: bool,
    /// B→A: received on the caller's side.
    pub(crate) back: bool,
    /// Protects what the generator sends (B→A under `--srtp`: the
    /// callee's own key, given in its answer).
    pub(crate) tx_srtp: Option<Context>,
    /// A→B under `--srtp`: the packets arrive protected, their payload
    /// unreadable, so their send times are kept here by sequence number.
    pub(crate) ring: Option<Box<[Sent]>>,
    /// Call 0 with `--both-ways`/`--srtp`: the packets sampled for the
    /// path check.
    pub(crate) check: Option<Box<Check>>,
    /// RTP payload type sent: 0 (PCMU), or what `--transcode` has this
    /// side send (PCMA from the callee; Opus, 111, from the caller).
    pub(crate) pt: u8,
    /// Under `--transcode`: the payload type this stream must arrive in
    /// (the receiver's codec).
    pub(crate) rx_pt: u8,
    /// Under `--transcode OPUS`, the caller's streams: the Opus frame
    /// every packet carries (20 ms of a tone, encoded once).
    pub(crate) opus: Option<std::sync::Arc<[u8]>>,
}

/// What `--transcode` asks the relay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Xc {
    /// The caller sends PCMU, the callee answers and sends PCMA.
    Pcma,
    /// The caller offers and sends Opus, the callee answers and sends
    /// PCMU.
    Opus,
}

impl Xc {
    /// (payload type, rtpmap) of the caller's offer and of the callee's
    /// answer.
    fn codecs(self) -> ((u8, &'static str), (u8, &'static str)) {
        match self {
            Xc::Pcma => ((0, "PCMU/8000"), (8, "PCMA/8000")),
            Xc::Opus => ((111, "opus/48000/2"), (0, "PCMU/8000")),
        }
    }
}

/// One 20 ms Opus frame of a 440 Hz tone (48 kHz mono, libopus' VoIP
/// defaults), what an Opus caller sends in every packet.
fn opus_frame() -> Result<std::sync::Arc<[u8]>, Error> {
    use tern_codec::opus::{OpusEncoder, OpusFmtp};
    let mut enc = OpusEncoder::new(&OpusFmtp::default()).map_err(|e| format!("opus: {e}"))?;
    let pcm: Vec<i16> = (0..960)
        .map(|i| {
            ((2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 48_000.0).sin() * 8000.0) as i16
        })
        .collect();
    let mut out = vec![0u8; 1500];
    let n = enc
        .encode(&pcm, &mut out)
        .map_err(|e| format!("opus: {e}"))?;
    out.truncate(n);
    Ok(out.into())
}

/// Send times kept per stream for packets that arrive protected.
pub(crate) const RING: usize = 256;

/// A packet in [`Stream::ring`].
#[derive(Clone, Copy, Default)]
pub(crate) struct Sent {
    pub(crate) seq: u16,
    pub(crate) id: u8,
    pub(crate) ns: u64,
    pub(crate) nominal: u64,
}

/// Deletes the calls it set up when dropped.
struct NgCalls {
    ng: NgClient,
    ids: Vec<String>,
}

impl Drop for NgCalls {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            let del = Ben::Dict(vec![("command", Ben::s("delete")), ("call-id", Ben::s(id))]);
            if let Err(e) = self.ng.cmd(&del) {
                eprintln!("tern load: delete: {e}");
                if e.to_string().ends_with("no reply") {
                    break; // the relay is gone: do not wait on every call
                }
            }
        }
    }
}

/// The generator: sockets, streams and the floor, if any.
pub(crate) struct Gen {
    /// CLOCK_MONOTONIC ns at which every stream's timestamp is `Stream::ts`.
    pub(crate) origin_ns: u64,
    /// The caller (A) side's sockets, then the callee (B) side's.
    pub(crate) socks: Vec<UdpSocket>,
    /// The sockets that receive (indexes into `socks`): the callee's, and
    /// the caller's too when sending both ways.
    pub(crate) rx: Vec<usize>,
    pub(crate) rx_fds: Vec<i32>,
    /// With both ways, stream `2i` is call `i`'s A→B, `2i + 1` its B→A;
    /// else stream `i` is call `i`'s A→B.
    pub(crate) streams: Vec<Stream>,
    pub(crate) calls: usize,
    /// Stream `j`'s SSRC is `ssrc_base ^ j`.
    pub(crate) ssrc_base: u32,
    /// The first callee-side socket in `socks`.
    pub(crate) b0: usize,
    pub(crate) floor: Option<floor::Floor>,
    /// `--transcode`: the stream each relay port sends, for packets whose
    /// payload the relay re-encoded (by UDP source port).
    pub(crate) by_src: Option<std::collections::HashMap<u16, usize>>,
    _ng: Option<NgCalls>,
}

impl Gen {
    /// The stream whose packets carry `ssrc`.
    /// The stream a transcoded packet from relay port `src` belongs to.
    pub(crate) fn by_src(&self, src: u16) -> Option<usize> {
        self.by_src.as_ref()?.get(&src).copied()
    }

    pub(crate) fn by_ssrc(&mut self, ssrc: u32) -> Option<(usize, &mut Stream)> {
        let j = (ssrc ^ self.ssrc_base) as usize;
        self.streams
            .get_mut(j)
            .filter(|s| s.ssrc == ssrc)
            .map(|s| (j, s))
    }
}

fn bind_socks(ip: Ipv4Addr, n: usize) -> io::Result<Vec<UdpSocket>> {
    (0..n)
        .map(|_| {
            let s = UdpSocket::bind((ip, 0))?;
            sys::set_bufs(&s, 8 << 20);
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

/// The relay's address in an ng reply's SDP (its ng address when the SDP
/// says 0.0.0.0).
fn reply_media(a: &RtpArgs, what: &str, sdp: &str) -> Result<SocketAddr, Error> {
    let dest = ng::media_addr(sdp).ok_or_else(|| format!("{what}: no media in {sdp:?}"))?;
    Ok(if dest.ip().is_unspecified() {
        SocketAddr::new(a.ng.ip(), dest.port())
    } else {
        dest
    })
}

pub(crate) fn setup(a: &RtpArgs, srtp: Option<Suite>, shutdown: &AtomicBool) -> Result<Gen, Error> {
    let xc = match a.transcode.as_deref() {
        None => None,
        Some(c) if c.eq_ignore_ascii_case("PCMA") => Some(Xc::Pcma),
        Some(c) if c.eq_ignore_ascii_case("OPUS") => Some(Xc::Opus),
        Some(c) => return Err(format!("--transcode {c}: PCMA or OPUS").into()),
    };
    let transcode = xc.is_some();
    let frame = match xc {
        Some(Xc::Opus) => Some(opus_frame()?),
        _ => None,
    };
    if transcode && srtp.is_some() {
        return Err("--transcode and --srtp do not go together".into());
    }
    let both = a.both_ways || srtp.is_some() || transcode;
    let mut by_src = transcode.then(std::collections::HashMap::new);
    let k = a.sockets.max(1);
    let mut socks = bind_socks(a.local_ip, k)?;
    socks.extend(bind_socks(a.local_ip, if a.floor { 1 } else { k })?);
    let rx: Vec<usize> = if both {
        (0..socks.len()).collect()
    } else {
        (k..socks.len()).collect()
    };
    let rx_fds = rx.iter().map(|&s| socks[s].as_raw_fd()).collect();
    let pid = std::process::id();
    let ssrc_base = 0x5E00_0000 ^ (pid << 12);
    let mk = |j: usize, sock: usize, dest: SocketAddr, back: bool| -> Result<Stream, Error> {
        Ok(Stream {
            dest: sys::sockaddr_v4(sys::v4(dest)?),
            sock,
            ssrc: ssrc_base ^ j as u32,
            seq: (j as u16).wrapping_mul(7919),
            ts: (j as u32).wrapping_mul(104_729),
            stats: SeqStats::new(),
            rewritten: false,
            back,
            tx_srtp: None,
            ring: None,
            check: None,
            // Under --transcode each side sends its own codec and
            // receives the other's transcoded into it.
            pt: match (xc, back) {
                (Some(x), false) => x.codecs().0 .0,
                (Some(x), true) => x.codecs().1 .0,
                (None, _) => 0,
            },
            rx_pt: match (xc, back) {
                (Some(x), false) => x.codecs().1 .0,
                (Some(x), true) => x.codecs().0 .0,
                (None, _) => 0,
            },
            opus: frame.clone().filter(|_| !back),
        })
    };
    if a.floor {
        let to = sys::v4(socks[k].local_addr()?)?;
        let f = floor::Floor::start(SocketAddr::new(IpAddr::V4(a.local_ip), 0), to, a.floor_cpu)?;
        let streams = (0..a.calls)
            .map(|i| mk(i, i % k, f.addr, false))
            .collect::<Result<_, _>>()?;
        return Ok(Gen {
            origin_ns: sys::now_ns(),
            socks,
            rx,
            rx_fds,
            streams,
            calls: a.calls,
            ssrc_base,
            b0: k,
            floor: Some(f),
            by_src: None,
            _ng: None,
        });
    }
    let mut ng = NgCalls {
        ng: NgClient::with_local(a.ng, Some(IpAddr::V4(a.local_ip)))?,
        ids: Vec::with_capacity(a.calls),
    };
    ng.ng
        .ping()
        .map_err(|e| format!("{e} (is a relay serving ng on {}?)", a.ng))?;
    let mut streams = Vec::with_capacity(a.calls * if both { 2 } else { 1 });
    let mut offer_flags = vec!["trust-address"];
    if a.ssrc_rewrite {
        offer_flags.push("SSRC-rewrite");
    }
    if a.jitter_buffer {
        offer_flags.push("jitter-buffer");
    }
    for i in 0..a.calls {
        if shutdown.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        let id = format!("tern-load-{pid}-{i}");
        let from = socks[i % k].local_addr()?;
        let to = socks[k + i % k].local_addr()?;
        let mut offer = vec![
            ("command", Ben::s("offer")),
            ("call-id", Ben::s(&id)),
            ("from-tag", Ben::s("caller")),
            ("replace", Ben::list(["origin", "session-connection"])),
            ("flags", Ben::list(offer_flags.iter().copied())),
            (
                "sdp",
                Ben::s(match xc {
                    Some(x) => {
                        let (pt, map) = x.codecs().0;
                        ng::sdp_codec(from, i as u64, "RTP/AVP", &[], pt, map)
                    }
                    None => ng::sdp(from, i as u64),
                }),
            ),
        ];
        if let Some(t) = a.jitter_buffer_target {
            offer.push(("jitter-buffer-target", Ben::Int(i64::from(t))));
        }
        if let Some(m) = a.jitter_buffer_max {
            offer.push(("jitter-buffer-max", Ben::Int(i64::from(m))));
        }
        if let Some(s) = srtp {
            offer.push(("transport-protocol", Ben::s("RTP/SAVP")));
            offer.push(("SDES", sdes_flags(s)));
        }
        if let Some(x) = xc {
            let to = if x == Xc::Opus { "PCMU" } else { "PCMA" };
            offer.push(("codec", Ben::Dict(vec![("transcode", Ben::list([to]))])));
        }
        let offer = Ben::Dict(offer);
        let reply = ng.ng.cmd(&offer).map_err(|e| format!("offer {i}: {e}"))?;
        ng.ids.push(id.clone());
        // The offer's SDP goes to the callee: where the callee sends.
        let offered = ng::reply_sdp(&reply)?;
        let back_dest = reply_media(a, &format!("offer {i}"), &offered)?;
        let mut answer_sdp = if let Some(x) = xc {
            let (pt, map) = x.codecs().1;
            ng::sdp_codec(to, i as u64, "RTP/AVP", &[], pt, map)
        } else {
            ng::sdp(to, i as u64)
        };
        let mut tx_srtp = None;
        let mut rx_srtp = None;
        if let Some(s) = srtp {
            let (tag, relay_key) = offered_crypto(i, &offered, s)?;
            if i == 0 {
                rx_srtp = Some((srtp_context(s, &relay_key)?, tag));
            }
            let mine: Vec<u8> = (0..s.master_len()).map(|_| rand::random::<u8>()).collect();
            tx_srtp = Some(srtp_context(s, &mine)?);
            let line = crypto_value(tag, s.name(), &mine);
            answer_sdp = ng::sdp_with(to, i as u64, "RTP/SAVP", &[&line]);
        }
        let answer = Ben::Dict(vec![
            ("command", Ben::s("answer")),
            ("call-id", Ben::s(&id)),
            ("from-tag", Ben::s("caller")),
            ("to-tag", Ben::s("callee")),
            ("replace", Ben::list(["origin", "session-connection"])),
            ("flags", Ben::list(["trust-address"])),
            ("sdp", Ben::s(answer_sdp)),
        ]);
        let reply = ng.ng.cmd(&answer).map_err(|e| format!("answer {i}: {e}"))?;
        // The answer's SDP goes to the caller: where the caller sends.
        let sdp = ng::reply_sdp(&reply)?;
        if srtp.is_some()
            && (ng::media_proto(&sdp) != Some("RTP/AVP")
                || ng::crypto_values(&sdp).next().is_some())
        {
            return Err(format!(
                "answer {i}: the relay's answer toward the caller is not plain RTP/AVP: {sdp:?}"
            )
            .into());
        }
        let dest = reply_media(a, &format!("answer {i}"), &sdp)?;
        if !both {
            streams.push(mk(i, i % k, dest, false)?);
            continue;
        }
        let mut ab = mk(2 * i, i % k, dest, false)?;
        if srtp.is_some() {
            ab.ring = Some(vec![Sent::default(); RING].into_boxed_slice());
        }
        if let Some(m) = by_src.as_mut() {
            // The relay sends A→B from the port it offered B, B→A from
            // the one it answered A with.
            m.insert(back_dest.port(), 2 * i);
            m.insert(dest.port(), 2 * i + 1);
        }
        let mut ba = mk(2 * i + 1, k + i % k, back_dest, true)?;
        ba.tx_srtp = tx_srtp;
        // The path check compares payloads, which transcoding changes;
        // a transcoded packet is checked for its payload type instead.
        if i == 0 && !transcode {
            ab.check = Some(Check::new("A→B", rx_srtp));
            ba.check = Some(Check::new("B→A", None));
        }
        streams.push(ab);
        streams.push(ba);
    }
    Ok(Gen {
        origin_ns: sys::now_ns(),
        socks,
        rx,
        rx_fds,
        streams,
        calls: a.calls,
        ssrc_base,
        b0: k,
        floor: None,
        by_src,
        _ng: Some(ng),
    })
}
