//! Each leg's kind and, for a WebRTC leg, what the relay terminates on it:
//! DTLS-SRTP (RFC 5763/5764) with the peer's fingerprint pinned, and
//! ICE-lite (RFC 8445 §2.5) with credentials of our own.
//!
//! A leg's kind is read from its party's own SDP ([`LegWebrtc::take`]);
//! before any (the callee, until it answers) it is the transport's hint
//! (a party that registered or arrived over WS/WSS, RFC 7118). The slot
//! bridges the kinds: a WebRTC leg next to a plain RTP/AVP one.
//!
//! Roles (RFC 8842 §5, RFC 8829 §5.3.1): answering, tern is `passive`
//! (the browser is the DTLS client) unless the offer said `passive`;
//! offering, it says `actpass` and takes the opposite of the answer's
//! choice. A re-offer that keeps the fingerprint keeps the DTLS
//! association and the roles; one with a new `a=ice-ufrag` is an ICE
//! restart (RFC 8445 §9, RFC 8839 §4.4.1.1.1), answered with new local
//! credentials.

use rand::rngs::StdRng;
use tern_shared::sdp::Setup;
use tern_shared::table::{DtlsParams, DtlsRole, IceParams, IceToken, LegSecurity};

use crate::sdp::SdpError;
use crate::sdp_webrtc::{MLine, WebrtcInfo, PLAIN_PROFILE, WEBRTC_PROFILE};

/// The Warning text of a WebRTC call the relay cannot terminate.
pub(crate) const NO_CERT: &str = "WebRTC media needs a DTLS certificate and the dataplane has none";

/// Which half of an offer/answer exchange an SDP is (RFC 3264).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A new offer.
    Offer,
    /// The answer to the latest offer.
    Answer,
}

/// One leg's kind and WebRTC state, kept for the life of the call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LegWebrtc {
    /// The transport said WebRTC (WS/WSS).
    pub(crate) hint: bool,
    /// The leg is WebRTC: from the party's latest SDP, or the hint before.
    pub(crate) on: bool,
    /// Our ICE-lite credentials toward the party and its ufrag.
    pub(crate) ice: Option<IceParams>,
    /// Our DTLS role toward the party, once known.
    pub(crate) role: Option<DtlsRole>,
    /// The party's certificate fingerprint (RFC 8122 hash number, digest).
    pub(crate) peer_fp: Option<(u8, Vec<u8>)>,
    /// The party's ICE ufrag as last seen (a new one is an ICE restart).
    pub(crate) peer_ufrag: Option<String>,
    /// The `m=` lines negotiated with the party (RFC 3264 §8.1: later
    /// SDP toward it keeps them).
    pub(crate) layout: Vec<MLine>,
}

impl LegWebrtc {
    /// A leg before its party's SDP: WebRTC when the transport says so.
    pub(crate) fn hinted(hint: bool) -> LegWebrtc {
        LegWebrtc {
            hint,
            on: hint,
            ..LegWebrtc::default()
        }
    }

    /// Takes the party's own SDP `w` (its offer or its answer): the kind,
    /// and for WebRTC the peer's fingerprint and ufrag, our role, and our
    /// ICE credentials (new on the first SDP and on an ICE restart). An
    /// offer's `m=` lines become the leg's layout; an answer keeps the
    /// offer's (RFC 3264 §6). Nothing changes on an error.
    ///
    /// Errors: those of [`WebrtcInfo::is_webrtc`].
    pub(crate) fn take(
        &mut self,
        w: &WebrtcInfo,
        op: Op,
        rng: &mut StdRng,
    ) -> Result<(), SdpError> {
        let webrtc = w.is_webrtc()?;
        if op == Op::Offer || self.layout.is_empty() {
            self.layout = w.layout.clone();
        }
        if !webrtc {
            *self = LegWebrtc {
                hint: self.hint,
                layout: std::mem::take(&mut self.layout),
                ..LegWebrtc::default()
            };
            return Ok(());
        }
        self.on = true;
        let restart = self.peer_ufrag.is_some() && self.peer_ufrag != w.ice_ufrag;
        if restart || self.ice.is_none() {
            self.ice = Some(IceParams::fresh(rng));
        }
        if let Some(ice) = self.ice.as_mut() {
            ice.remote_ufrag = w.ice_ufrag.as_deref().and_then(IceToken::new);
        }
        self.peer_ufrag = w.ice_ufrag.clone();
        // The same certificate keeps the DTLS association: its roles stay
        // (RFC 8842 §5.5).
        let keep = self
            .role
            .filter(|_| self.peer_fp.is_some() && self.peer_fp == w.fingerprint);
        self.role = Some(match (w.setup, op) {
            (Some(Setup::Active), _) => DtlsRole::Passive,
            (Some(Setup::Passive), _) => DtlsRole::Active,
            // An answer without a=setup (or with actpass, which it may not
            // say) is taken as active, the answerer's default (RFC 5763 §5).
            (_, Op::Answer) => DtlsRole::Passive,
            (_, Op::Offer) => keep.unwrap_or(DtlsRole::Passive),
        });
        self.peer_fp = w.fingerprint.clone();
        Ok(())
    }

    /// Gives a WebRTC leg ICE credentials before we offer it any.
    pub(crate) fn ensure_ice(&mut self, rng: &mut StdRng) {
        if self.on && self.ice.is_none() {
            self.ice = Some(IceParams::fresh(rng));
        }
    }

    /// What the slot leg terminates: nothing for a plain leg; ICE-lite,
    /// and DTLS-SRTP once our role and the peer's fingerprint are known,
    /// for a WebRTC one.
    pub(crate) fn security(&self) -> LegSecurity {
        if !self.on {
            return LegSecurity::default();
        }
        let dtls = match (self.role, &self.peer_fp) {
            (Some(role), Some((hash, digest))) => DtlsParams::new(role, *hash, digest),
            _ => None,
        };
        LegSecurity {
            rx: None,
            tx: None,
            ice: self.ice,
            dtls,
        }
    }

    /// Our `a=setup` in an offer to the party: `actpass`, or our role
    /// while a DTLS association is up (RFC 8842 §5.5 keeps it).
    pub(crate) fn offer_setup(&self) -> Setup {
        match (self.role, &self.peer_fp) {
            (Some(DtlsRole::Active), Some(_)) => Setup::Active,
            (Some(DtlsRole::Passive), Some(_)) => Setup::Passive,
            _ => Setup::ActPass,
        }
    }

    /// Our `a=setup` in an answer to the party's offer.
    pub(crate) fn answer_setup(&self) -> Setup {
        match self.role {
            Some(DtlsRole::Active) => Setup::Active,
            _ => Setup::Passive,
        }
    }

    /// The audio `a=mid` toward the party: its own (or ours from an
    /// earlier offer), else `0`.
    pub(crate) fn mid(&self) -> String {
        self.layout
            .iter()
            .find(|m| m.anchored)
            .and_then(|m| m.mid.clone())
            .unwrap_or_else(|| "0".to_string())
    }

    /// The media profile the leg speaks.
    pub(crate) fn profile(&self) -> &'static str {
        if self.on {
            WEBRTC_PROFILE
        } else {
            PLAIN_PROFILE
        }
    }
}
