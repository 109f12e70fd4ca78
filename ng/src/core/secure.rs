//! Secure media over ng, as rtpengine does it: each leg's kind (plain RTP,
//! SDES-SRTP, DTLS-SRTP) comes from its own SDP's transport protocol, the
//! relay terminates it, and what each leg's peer is told (keys, the
//! fingerprint, setup, ICE-lite credentials and host candidates) is the
//! relay's own.
//!
//! - SDES (RFC 4568): an offerer's `a=crypto` lines are keys it sends
//!   with; the relay takes the first it can do and answers that tag with a
//!   key of its own. Toward an answerer the relay offers every suite it
//!   may (the `SDES-*` flags), one fresh key each, and keeps the list
//!   until the answer picks a tag.
//! - DTLS-SRTP (RFC 5763/5764): the relay's certificate fingerprint (the
//!   dataplane's, from the slot table) and `a=setup` (RFC 8842: `actpass`
//!   offering, `active` answering `actpass`, the opposite of a peer that
//!   chose); the peer's fingerprint and the relay's role go to the slot.
//! - ICE (RFC 8445 §2.5): ICE-lite toward a peer that does ICE (or with
//!   `ICE=force`), with credentials per leg; a changed peer ufrag is an ICE
//!   restart, answered with new credentials (RFC 8445 §9).
//!
//! As in rtpengine, `ICE=`, `DTLS=` and `transport-protocol` describe the
//! SDP to the recipient: a WebRTC offerer bridged to plain RTP (`ICE=remove
//! DTLS=off RTP/AVP` on the offer) still has its ICE and DTLS terminated,
//! and the answer back to it carries the relay's ICE-lite credentials and
//! host candidate, fingerprint, setup and the offer's `a=mid`.

use std::net::IpAddr;

use rand::rngs::StdRng;
use rand::RngCore;
use tern_shared::sdp::{candidate_value, crypto_value, fingerprint_value, host_priority, Setup};
use tern_shared::table::{
    srtp_suite, DtlsParams, DtlsRole, IceParams, IceToken, LegPorts, SlotTable, SrtpKeying,
    SRTP_SUITES,
};

use crate::error::CommandError;
use crate::flags::{DtlsMode, Flags, IceMode};
use crate::sdp::{MediaInfo, PeerCrypto};

use super::{MediaState, Op};

/// What a leg's transport protocol asks of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Plain,
    /// `RTP/SAVP`, `RTP/SAVPF`: SDES keys in `a=crypto`.
    Sdes,
    /// `UDP/TLS/RTP/SAVP`, `UDP/TLS/RTP/SAVPF`.
    Dtls,
}

pub(super) fn kind(proto: &str) -> Kind {
    match proto {
        "RTP/SAVP" | "RTP/SAVPF" => Kind::Sdes,
        "UDP/TLS/RTP/SAVP" | "UDP/TLS/RTP/SAVPF" => Kind::Dtls,
        _ => Kind::Plain,
    }
}

/// What the relay has said, or will say, to one leg's peer about secure
/// media; kept from offer to answer.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct LegPlan {
    /// The transport protocol the relay speaks to the peer.
    pub(super) proto: Option<String>,
    /// SDES lines the relay offered the peer: its own keys, by tag.
    pub(super) offered: Vec<PeerCrypto>,
    /// The SDES line the relay answers the peer with (tag and suite of the
    /// peer's line, the relay's key).
    pub(super) answer: Option<PeerCrypto>,
    /// The relay's `a=setup` toward the peer.
    pub(super) setup: Option<Setup>,
    /// The peer's ICE ufrag the relay last saw.
    pub(super) peer_ufrag: Option<String>,
    /// The peer's `a=mid`: an answer to the peer carries it (RFC 8843
    /// §7.3, RFC 9143 §7.3) when the answerer's SDP has none.
    pub(super) mid: Option<String>,
}

impl std::fmt::Debug for LegPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegPlan")
            .field("proto", &self.proto)
            .field("offered", &self.offered.len())
            .field("answer", &self.answer)
            .field("setup", &self.setup)
            .field("mid", &self.mid)
            .finish()
    }
}

/// What a `query` reports of one leg: the SRTP suite in use (SDES's, or
/// the one the DTLS handshake exported), the DTLS role and state
/// (`off`, `active`/`passive` with `handshaking`/`connected`), and the ICE
/// state (`off`, `lite` with `waiting`/`nominated`: the relay latched to
/// a pair). Never a key.
pub(super) fn describe(
    ms: &MediaState,
    leg: usize,
    table: &SlotTable,
) -> (Option<&'static str>, String, String) {
    let sec = &ms.cfg.legs[leg].secure;
    let dtls_keys = ms.slot.and_then(|s| table.dtls_keying(s, leg));
    let suite = match sec.dtls {
        Some(_) => dtls_keys.map(|(rx, _)| rx.suite),
        None => sec.tx.or(sec.rx).map(|k| k.suite),
    }
    .and_then(srtp_suite)
    .map(|s| s.0);
    let dtls = match sec.dtls {
        None => "off".to_string(),
        Some(p) => format!(
            "{}, {}",
            if p.role == DtlsRole::Active {
                "active"
            } else {
                "passive"
            },
            if dtls_keys.is_some() {
                "connected"
            } else {
                "handshaking"
            }
        ),
    };
    let ice = match sec.ice {
        None => "off".to_string(),
        Some(_) => {
            let latched = ms
                .slot
                .and_then(|s| table.stats(s, leg).ok())
                .is_some_and(|st| st.learned.is_some());
            format!("lite, {}", if latched { "nominated" } else { "waiting" })
        }
    };
    (suite, dtls, ice)
}

fn random_key(rng: &mut StdRng, suite: u8) -> Option<Vec<u8>> {
    let (_, k, s) = srtp_suite(suite)?;
    let mut v = vec![0u8; k + s];
    rng.fill_bytes(&mut v);
    Some(v)
}

/// Everything the SDP going to leg `to`'s peer needs from the negotiation.
pub(super) struct Offered {
    /// Section attributes to add.
    pub(super) attrs: Vec<String>,
    /// `a=ice-lite` belongs at the session level (RFC 8839 §5.3).
    pub(super) ice_lite: bool,
    /// The `m=` protocol toward that peer.
    pub(super) proto: Option<String>,
}

/// Negotiates secure media for one media section: the leg `sender` from
/// its SDP `info`, and what the SDP to the other leg carries.
///
/// Errors: an SDES offer with no line tern can do, an answer whose
/// `a=crypto` tag was not offered, DTLS without a certificate (no
/// dataplane has published one) or without the peer's fingerprint.
#[allow(clippy::too_many_arguments)]
pub(super) fn negotiate(
    ms: &mut MediaState,
    info: &MediaInfo,
    flags: &Flags,
    op: Op,
    sender: usize,
    rng: &mut StdRng,
    fingerprint: Option<[u8; 32]>,
    media_ip: IpAddr,
    ports: LegPorts,
    mux: bool,
    index: usize,
) -> Result<Offered, CommandError> {
    let to = sender ^ 1;
    // A DTLS-SRTP sender is answered with the relay's fingerprint: refuse
    // now rather than at the answer when there is none.
    if kind(&info.proto) == Kind::Dtls && fingerprint.is_none() {
        return Err(CommandError::Sdp(
            "DTLS-SRTP asked for but the dataplane has no DTLS certificate".into(),
        ));
    }
    take_sender(ms, info, flags, op, sender, rng)?;
    // What the SDP to `to` says: on an offer, the relay's offer; on an
    // answer, its answer to what `to` offered.
    let out_proto = match op {
        Op::Offer => out_transport(flags, &info.proto),
        Op::Answer => ms.plan[to]
            .proto
            .clone()
            .unwrap_or_else(|| info.proto.clone()),
    };
    let mut attrs = Vec::new();
    let plan = &mut ms.plan[to];
    let sec = &mut ms.cfg.legs[to].secure;
    match (kind(&out_proto), op) {
        (Kind::Sdes, Op::Offer) => {
            if plan.offered.is_empty() || plan.proto.as_deref() != Some(out_proto.as_str()) {
                plan.offered = SRTP_SUITES
                    .iter()
                    .filter(|s| flags.sdes.allows(s.1))
                    .filter_map(|s| {
                        Some(PeerCrypto {
                            tag: rtpengine_tag(s.1),
                            suite: s.0,
                            key_salt: random_key(rng, s.0)?,
                        })
                    })
                    .collect();
            }
            if plan.offered.is_empty() {
                return Err(CommandError::Sdp(
                    "SDES flags leave no crypto suite to offer".into(),
                ));
            }
            for c in &plan.offered {
                let name = srtp_suite(c.suite).map_or("", |s| s.0);
                attrs.push(format!(
                    "a=crypto:{}",
                    crypto_value(c.tag, name, &c.key_salt)
                ));
            }
        }
        (Kind::Sdes, Op::Answer) => {
            let Some(c) = &plan.answer else {
                return Err(CommandError::Sdp("no a=crypto to answer".into()));
            };
            let name = srtp_suite(c.suite).map_or("", |s| s.0);
            attrs.push(format!(
                "a=crypto:{}",
                crypto_value(c.tag, name, &c.key_salt)
            ));
        }
        (Kind::Dtls, _) => {
            let Some(fp) = fingerprint else {
                return Err(CommandError::Sdp(
                    "DTLS-SRTP asked for but the dataplane has no DTLS certificate".into(),
                ));
            };
            let setup = match op {
                Op::Offer => match flags.dtls {
                    DtlsMode::Passive => Setup::Passive,
                    DtlsMode::Active => Setup::Active,
                    _ => plan
                        .setup
                        .filter(|_| sec.dtls.is_some())
                        .unwrap_or(Setup::ActPass),
                },
                Op::Answer => plan.setup.unwrap_or(Setup::Active),
            };
            plan.setup = Some(setup);
            attrs.push(format!(
                "a=fingerprint:{}",
                fingerprint_value("sha-256", &fp)
            ));
            attrs.push(format!("a=setup:{}", setup.as_str()));
        }
        (Kind::Plain, _) => {}
    }
    plan.proto = Some(out_proto.clone());
    // ICE toward `to`.
    let want_ice = match op {
        Op::Offer => match flags.ice {
            IceMode::Force => true,
            IceMode::Remove => false,
            IceMode::Default | IceMode::Optional => info.sec.ice_ufrag.is_some(),
        },
        // The offerer's leg was set up from its own offer: an offerer
        // that did ICE is answered with ICE (an answer cannot add ICE to
        // an offer without it, RFC 8839 §4.2.4), unless `ICE=remove`.
        Op::Answer => sec.ice.is_some() && flags.ice != IceMode::Remove,
    };
    let mut ice_lite = false;
    if want_ice {
        if sec.ice.is_none() {
            sec.ice = Some(IceParams::fresh(rng));
        }
        if let Some(p) = &sec.ice {
            ice_lite = true;
            attrs.push(format!("a=ice-ufrag:{}", p.local_ufrag.as_str()));
            attrs.push(format!("a=ice-pwd:{}", p.local_pwd.as_str()));
            let prio = host_priority(1, 65535);
            attrs.push(format!(
                "a=candidate:{}",
                candidate_value("1", 1, "UDP", prio, media_ip, ports.rtp, "host")
            ));
            if !mux {
                attrs.push(format!(
                    "a=candidate:{}",
                    candidate_value(
                        "1",
                        2,
                        "UDP",
                        host_priority(2, 65535),
                        media_ip,
                        ports.rtcp,
                        "host"
                    )
                ));
            }
        }
    } else {
        sec.ice = None;
    }
    if info.sec.mid.is_none() {
        match (op, &plan.mid) {
            // The answer goes back with the offerer's own mid.
            (Op::Answer, Some(mid)) => attrs.push(format!("a=mid:{mid}")),
            _ if flags.generate_mid => attrs.push(format!("a=mid:{index}")),
            _ => {}
        }
    }
    Ok(Offered {
        attrs,
        ice_lite,
        proto: Some(out_proto),
    })
}

/// Programs leg `sender` from what its own SDP says.
fn take_sender(
    ms: &mut MediaState,
    info: &MediaInfo,
    flags: &Flags,
    op: Op,
    sender: usize,
    rng: &mut StdRng,
) -> Result<(), CommandError> {
    let plan = &mut ms.plan[sender];
    let sec = &mut ms.cfg.legs[sender].secure;
    match kind(&info.proto) {
        Kind::Sdes => {
            let chosen = match op {
                // The answerer picked one of the lines the relay offered.
                Op::Answer if !plan.offered.is_empty() => {
                    let theirs = info.sec.crypto.iter().find_map(|c| {
                        let ours = plan
                            .offered
                            .iter()
                            .find(|o| o.tag == c.tag && o.suite == c.suite)?;
                        Some((c.clone(), ours.clone()))
                    });
                    let Some((theirs, ours)) = theirs else {
                        return Err(CommandError::Sdp(
                            "the answer's a=crypto matches no offered line".into(),
                        ));
                    };
                    plan.answer = None;
                    (theirs, ours.key_salt)
                }
                _ => {
                    let Some(c) = info.sec.crypto.first() else {
                        return Err(CommandError::Sdp("no supported a=crypto in the SDP".into()));
                    };
                    // A re-offer with the same key keeps the relay's (no
                    // needless re-key); a changed one re-keys both ways.
                    let keep = plan
                        .answer
                        .as_ref()
                        .filter(|a| a.tag == c.tag && a.suite == c.suite)
                        .filter(|_| {
                            sec.rx.map(|k| k.key_salt().to_vec()) == Some(c.key_salt.clone())
                        })
                        .map(|a| a.key_salt.clone());
                    let ours = match keep {
                        Some(k) => k,
                        None => random_key(rng, c.suite)
                            .ok_or_else(|| CommandError::Sdp("unknown SRTP suite".into()))?,
                    };
                    plan.answer = Some(PeerCrypto {
                        tag: c.tag,
                        suite: c.suite,
                        key_salt: ours.clone(),
                    });
                    (c.clone(), ours)
                }
            };
            let (theirs, ours) = chosen;
            sec.rx = SrtpKeying::new(theirs.suite, &theirs.key_salt);
            sec.tx = SrtpKeying::new(theirs.suite, &ours);
            sec.dtls = None;
            if op == Op::Offer {
                plan.proto = Some(info.proto.clone());
            }
        }
        // The sender's own DTLS-SRTP is always taken: `DTLS=` concerns
        // what the relay offers the recipient (rtpengine's
        // `__generate_crypto` applies it to the recipient's side only).
        Kind::Dtls => {
            let Some((hash, digest)) = &info.sec.fingerprint else {
                return Err(CommandError::Sdp("DTLS-SRTP without a=fingerprint".into()));
            };
            let role = match (info.sec.setup, op) {
                (Some(Setup::Active), _) => DtlsRole::Passive,
                (Some(Setup::Passive), _) => DtlsRole::Active,
                // An answer may not say actpass; the relay then connects.
                (_, Op::Answer) => DtlsRole::Active,
                (_, Op::Offer) => match flags.dtls {
                    DtlsMode::Passive => DtlsRole::Passive,
                    _ => DtlsRole::Active,
                },
            };
            sec.dtls = DtlsParams::new(role, *hash, digest);
            sec.rx = None;
            sec.tx = None;
            plan.setup = Some(match role {
                DtlsRole::Active => Setup::Active,
                DtlsRole::Passive => Setup::Passive,
            });
            if op == Op::Offer {
                plan.proto = Some(info.proto.clone());
            }
        }
        _ => {
            sec.rx = None;
            sec.tx = None;
            sec.dtls = None;
            if op == Op::Offer {
                plan.proto = Some(info.proto.clone());
            }
        }
    }
    plan.mid = info.sec.mid.clone();
    // ICE from the sender's side: its ufrag, and a restart when it moved.
    // `ICE=` concerns the SDP to the recipient (rtpengine's `__ice_offer`:
    // `remove` clears ICE toward the recipient only), so an ICE sender's
    // leg does ICE-lite whatever the flag, and the SDP back to it (the
    // answer, or a later offer) carries the relay's credentials.
    match &info.sec.ice_ufrag {
        Some(u) => {
            let restart = plan.peer_ufrag.as_deref().is_some_and(|p| p != u);
            if restart || sec.ice.is_none() {
                sec.ice = Some(IceParams::fresh(rng));
            }
            if let Some(p) = sec.ice.as_mut() {
                p.remote_ufrag = IceToken::new(u);
            }
            plan.peer_ufrag = Some(u.clone());
        }
        None => {
            sec.ice = None;
            plan.peer_ufrag = None;
        }
    }
    Ok(())
}

/// Whether `proto` carries RTP (rtpengine's `proto_is_rtp`): `RTP/AVP`,
/// `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`, … but not `UDP/DTLS/SCTP`, `udptl`.
pub(super) fn is_rtp(proto: &str) -> bool {
    proto.split('/').any(|p| p == "RTP")
}

/// The `m=` protocol of an offer to the recipient: `transport-protocol`
/// replaces RTP protocols only (rtpengine); a data channel's
/// `UDP/DTLS/SCTP` or T.38's `udptl` stays.
pub(super) fn out_transport(flags: &Flags, proto: &str) -> String {
    match &flags.transport {
        Some(t) if is_rtp(proto) => t.clone(),
        _ => proto.to_string(),
    }
}

/// The `a=crypto` tag rtpengine gives suite `name` when it offers every
/// suite it knows, in its order (AEAD_AES_256_GCM 1 … NULL_HMAC_SHA1_32
/// 12): tern offers its subset under the same tags, so an offer reads the
/// same from either relay. Tags are the offerer's choice (RFC 4568 §9.1).
fn rtpengine_tag(name: &str) -> u32 {
    const ORDER: [&str; 12] = [
        "AEAD_AES_256_GCM",
        "AEAD_AES_128_GCM",
        "AES_256_CM_HMAC_SHA1_80",
        "AES_256_CM_HMAC_SHA1_32",
        "AES_192_CM_HMAC_SHA1_80",
        "AES_192_CM_HMAC_SHA1_32",
        "AES_CM_128_HMAC_SHA1_80",
        "AES_CM_128_HMAC_SHA1_32",
        "F8_128_HMAC_SHA1_80",
        "F8_128_HMAC_SHA1_32",
        "NULL_HMAC_SHA1_80",
        "NULL_HMAC_SHA1_32",
    ];
    ORDER
        .iter()
        .position(|n| *n == name)
        .map_or(99, |i| i as u32 + 1)
}
