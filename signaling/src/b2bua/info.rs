//! INFO (RFC 6086) inside an answered or confirmed call (elsewhere: 481,
//! like an early dialog's): relayed into the other dialog with its
//! body (`application/dtmf-relay`, `application/dtmf` or any other
//! package), `Info-Package` and `Content-Disposition`, and the final
//! response relayed back with its body. Several may be outstanding at
//! once (DTMF digits in a row), each under its own CSeq in the other
//! dialog; provisional responses are not relayed (§17.2.2: a UAS of a
//! non-INVITE need send none).

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info};

use super::call::{Call, CallState, Info};
use super::dialog::Side;
use super::send::{new_branch, new_in_dialog};
use super::B2bua;
use crate::msg::{Msg, Start};
use crate::retransmit::RtKey;
use crate::tu::Tu;

/// INFOs kept per call: outstanding ones, then answered ones (to absorb
/// retransmissions). A new INFO while this many are outstanding gets 500
/// with Retry-After (RFC 3261 §21.5.1).
const INFOS_KEPT: usize = 16;

/// Headers of an INFO relayed with it besides the body's Content-Type.
const INFO_HEADERS: [&str; 2] = ["Info-Package", "Content-Disposition"];

impl B2bua {
    /// An INFO from dialog `side` of call `id`.
    pub(crate) fn on_info(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        side: Side,
        req: Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        let Some(mut call) = self.calls.remove(&id) else {
            tu.reply(&req, 481, src, |r| r);
            return;
        };
        info_in(tu, &mut call, side, req, src, now);
        self.calls.insert(id, call);
    }

    /// A response (from dialog `side`) to an INFO we relayed: the final
    /// one goes back to the INFO's sender with its body.
    pub(super) fn on_info_response(&mut self, tu: &mut Tu<'_>, id: u64, side: Side, resp: &Msg) {
        let code = resp.code().unwrap_or(0);
        self.with_call(id, |_, call| {
            let Some(i) = call.infos.iter_mut().find(|i| {
                i.from == side.other()
                    && i.cseq == resp.cseq.num
                    && resp.top_via().branch() == Some(i.branch.as_str())
            }) else {
                tu.stats.stray_responses += 1;
                return;
            };
            if code < 200 || i.last_response.is_some() {
                return;
            }
            tu.stop_retrans(RtKey::Info(call.id, i.cseq));
            let mut r = tu.response(&i.req, code, None, i.src);
            if let Start::Response { reason, .. } = &resp.start {
                if !reason.trim().is_empty() {
                    r = r.reason(reason);
                }
            }
            if !resp.body().is_empty() {
                let ct = resp
                    .header("Content-Type")
                    .unwrap_or("application/octet-stream");
                r = r.body(ct, resp.body().to_vec());
            }
            debug!(call_id = %i.req.call_id, code, "INFO answered");
            let bytes = r.to_bytes();
            tu.send(i.src, bytes.clone());
            i.last_response = Some(bytes);
        });
    }

    /// Our relayed INFO with CSeq `cseq` got no answer (timer F): 408 to
    /// its sender.
    pub(super) fn on_info_timeout(&mut self, tu: &mut Tu<'_>, id: u64, cseq: u32) {
        self.with_call(id, |_, call| {
            let Some(i) = call
                .infos
                .iter_mut()
                .find(|i| i.cseq == cseq && i.last_response.is_none())
            else {
                return;
            };
            let bytes = tu.response(&i.req, 408, None, i.src).to_bytes();
            tu.send(i.src, bytes.clone());
            i.last_response = Some(bytes);
        });
    }
}

fn info_in(tu: &mut Tu<'_>, call: &mut Call, side: Side, req: Msg, src: SocketAddr, now: Instant) {
    if let Some(i) = call
        .infos
        .iter()
        .find(|i| i.from == side && i.req.cseq.num == req.cseq.num)
    {
        // Retransmission: repeat the final response, if any yet.
        if let Some(bytes) = i.last_response.clone() {
            tu.send(src, bytes);
        }
        return;
    }
    if !matches!(call.state, CallState::Answered | CallState::Confirmed) {
        tu.reply(&req, 481, src, |r| r);
        return;
    }
    if req.max_forwards() == Some(0) {
        tu.reply(&req, 483, src, |r| r);
        return;
    }
    if call.infos.len() >= INFOS_KEPT {
        match call.infos.iter().position(|i| i.last_response.is_some()) {
            Some(p) => {
                call.infos.remove(p);
            }
            None => {
                tu.reply(&req, 500, src, |r| r.header("Retry-After", "1"));
                return;
            }
        }
    }
    let branch = new_branch(tu.rng);
    let (cseq, dest, mut out) = new_in_dialog(tu, call, side.other(), rsip::Method::Info, &branch);
    for h in INFO_HEADERS {
        for v in req.headers(h) {
            out.push(h, v.to_string());
        }
    }
    if !req.body().is_empty() {
        let ct = req
            .header("Content-Type")
            .unwrap_or("application/octet-stream");
        out = out.body(ct, req.body().to_vec());
    }
    tu.stats.info_relayed += 1;
    info!(call_id = %call.call_id(), slot = ?call.slot, ?side, content_type = req.header("Content-Type").unwrap_or(""), "INFO relayed");
    tu.send_retrans(RtKey::Info(call.id, cseq), dest, out.to_bytes(), true, now);
    call.infos.push(Info {
        from: side,
        req,
        src,
        cseq,
        branch,
        last_response: None,
    });
}
