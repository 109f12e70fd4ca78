//! Where a REFER (RFC 3515) sends a transfer: its `Refer-To` parsed
//! (`crate::refer`), then resolved by the core as a new call's target
//! is: a registered contact of a local user (blind), or, with an
//! embedded `Replaces` (RFC 3891 §3), a dialog tern holds (attended).
//! The B2BUA (`b2bua/transfer.rs`) takes it from there. A new INVITE
//! carrying `Replaces` (RFC 3891 §3) is matched here to the dialog it
//! names (481 when none) before the B2BUA swaps it in.
//!
//! A REFER without exactly one `Refer-To`, or with a malformed one, gets
//! 400 (RFC 3515 §2.4.1); a target that is no registered local user
//! (routes and trunks are not used for transfers), or a Replaces that
//! names no dialog of ours, gets 404.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use crate::b2bua::{Referred, Side, Target};
use crate::core::SipCore;
use crate::msg::{self, Msg};
use crate::refer::{parse_refer_to, parse_replaces};

impl SipCore {
    /// A REFER in dialog `side` of call `id` (its tags matched).
    pub(crate) fn on_refer(
        &mut self,
        id: u64,
        side: Side,
        req: Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        let values: Vec<&str> = req.headers("Refer-To").collect();
        let parsed = match values.as_slice() {
            [one] => parse_refer_to(one).map_err(|e| e.to_string()),
            [] => Err("no Refer-To".to_string()),
            _ => Err("more than one Refer-To".to_string()),
        };
        let refer_to = match parsed {
            Ok(r) => r,
            Err(why) => {
                self.stats.malformed_requests += 1;
                debug!(call_id = %req.call_id, %why, "REFER refused");
                self.reply(&req, 400, src, |r| {
                    r.header("Warning", format!("399 tern \"{why}\""))
                });
                return;
            }
        };
        let to = match &refer_to.replaces {
            Some(rep) => self
                .b2bua
                .find_dialog(&rep.call_id, &rep.to_tag, &rep.from_tag)
                .map(|(id2, side2)| Referred::Dialog(id2, side2)),
            None => self
                .local_contact(&refer_to.uri, now)
                .map(Referred::Contact),
        };
        let Some(to) = to else {
            debug!(call_id = %req.call_id, target = %refer_to.uri, "REFER to no user or dialog of ours");
            self.reply(&req, 404, src, |r| {
                r.header("Warning", "399 tern \"no such transfer target\"")
            });
            return;
        };
        let (b2bua, mut tu) = self.tu();
        b2bua.on_refer(&mut tu, id, side, &req, src, &refer_to, to, now);
    }

    /// The first reachable registered contact of the local user `uri`
    /// names (a `sip:`/`sips:` URI of one of our domains).
    fn local_contact(&self, uri: &str, now: Instant) -> Option<Target> {
        let (host, _) = msg::uri_host_port(uri)?;
        if !self.cfg.is_local_host(&host, self.local.ip()) {
            return None;
        }
        let user = msg::uri_user(uri)?;
        let b = self
            .loc
            .lookup_user(user, now)
            .into_iter()
            .find(|b| !self.out.links.flow_down(b.target))?;
        Some(Target {
            uri: b.contact,
            dest: b.target,
            webrtc: b.transport.is_websocket(),
        })
    }
}

impl SipCore {
    /// A new INVITE with a `Replaces` header (RFC 3891 §3): one valid
    /// Replaces (else 400), the INVITE authenticated like any other,
    /// then the dialog it names must be one of ours (else 481); the
    /// B2BUA (`b2bua/transfer.rs`) puts the new dialog in its place.
    pub(crate) fn on_replacing_invite(&mut self, req: Msg, src: SocketAddr, now: Instant) {
        let values: Vec<&str> = req.headers("Replaces").collect();
        let parsed = match values.as_slice() {
            [one] => parse_replaces(one).map_err(|e| e.to_string()),
            _ => Err("more than one Replaces".to_string()),
        };
        let rep = match parsed {
            Ok(r) => r,
            Err(why) => {
                self.stats.malformed_requests += 1;
                self.reply(&req, 400, src, |r| {
                    r.header("Warning", format!("399 tern \"Replaces: {why}\""))
                });
                return;
            }
        };
        if self.authenticate(&req, src, true, now).is_none() {
            return;
        }
        let Some((id, side)) = self
            .b2bua
            .find_dialog(&rep.call_id, &rep.to_tag, &rep.from_tag)
        else {
            debug!(call_id = %req.call_id, replaces = %rep.call_id, "Replaces names no dialog of ours");
            self.reply(&req, 481, src, |r| r);
            return;
        };
        let (b2bua, mut tu) = self.tu();
        b2bua.on_replacing_invite(&mut tu, req, src, id, side, rep.early_only, now);
    }
}
