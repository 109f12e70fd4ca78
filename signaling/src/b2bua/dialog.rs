//! `Dialog`: one side of a call (RFC 3261 §12), the same type for the
//! caller's dialog (where we are the UAS) and the callee's (where we are
//! the UAC), and [`Side`], which names them.

use std::net::SocketAddr;

use super::webrtc::LegWebrtc;
use crate::build::OutMsg;
use crate::msg::Msg;
use crate::sdp::AudioInfo;

/// Which dialog of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller's dialog (we are its UAS).
    Caller,
    /// The callee's dialog (we are its UAC).
    Callee,
}

impl Side {
    /// The other dialog.
    pub fn other(self) -> Side {
        match self {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        }
    }

    /// The slot leg facing this side, and its index in
    /// `Call`'s dialogs: 0 for the caller, 1 for the callee.
    pub fn leg(self) -> usize {
        match self {
            Side::Caller => 0,
            Side::Callee => 1,
        }
    }
}

/// Our role in a dialog (RFC 3261 §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// We answered the INVITE that made it (the caller's dialog).
    Uas,
    /// We sent the INVITE that made it (the callee's dialog).
    Uac,
}

/// The state of one dialog (RFC 3261 §12.1.1, §12.1.2) and the latest
/// media its party described.
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    /// Our role in it.
    pub(crate) role: Role,
    /// Where the party's messages come from and ours go.
    pub(crate) peer: SocketAddr,
    /// The dialog's Call-ID (the caller's own; ours toward the callee).
    pub(crate) call_id: String,
    /// Our tag (the To tag we gave the caller; our From tag toward the
    /// callee).
    pub(crate) local_tag: String,
    /// The party's tag: the caller's From tag, or the callee's To tag once
    /// a response carried one.
    pub(crate) remote_tag: Option<String>,
    /// The From header of our requests in this dialog, our tag included.
    pub(crate) local: String,
    /// The To header of our requests: as a UAS, the caller's From as it
    /// wrote it (its tag included); as a UAC, the callee's address without
    /// a tag ([`Dialog::remote_tag`] is added).
    pub(crate) remote: String,
    /// The remote target: the Request-URI of our requests in this dialog.
    pub(crate) target: String,
    /// The route set, as Route header values in order.
    pub(crate) route: Vec<String>,
    /// The CSeq number of the last request we sent in this dialog.
    pub(crate) local_cseq: u32,
    /// The latest SDP this party sent (`None` before any).
    pub(crate) media: Option<AudioInfo>,
    /// The leg's kind and WebRTC state (plain until its SDP or the
    /// transport says otherwise).
    pub(crate) webrtc: LegWebrtc,
}

impl Dialog {
    /// The dialog an INVITE `req` from `src` makes where we answer it
    /// (RFC 3261 §12.1.1): our To tag `tag`, the party's Contact as the
    /// remote target (its From URI without one), its Record-Route in
    /// order as the route set.
    pub(crate) fn uas(
        req: &Msg,
        src: SocketAddr,
        tag: String,
        media: AudioInfo,
        webrtc: LegWebrtc,
    ) -> Dialog {
        Dialog {
            role: Role::Uas,
            peer: src,
            call_id: req.call_id.clone(),
            local: format!("{};tag={tag}", req.header("To").unwrap_or_default()),
            local_tag: tag,
            remote_tag: req.from.tag().map(str::to_string),
            remote: req.header("From").unwrap_or_default().to_string(),
            target: req
                .contacts()
                .first()
                .map(|c| c.uri.clone())
                .unwrap_or_else(|| req.from.uri.clone()),
            route: req.headers("Record-Route").map(str::to_string).collect(),
            local_cseq: 0,
            media: Some(media),
            webrtc,
        }
    }

    /// A request of ours in this dialog (RFC 3261 §12.2.1.1) with CSeq
    /// `cseq`, top Via `via` and `user_agent` as its User-Agent.
    pub(crate) fn request(
        &self,
        method: rsip::Method,
        cseq: u32,
        via: String,
        user_agent: &str,
    ) -> OutMsg {
        let to = match (self.role, &self.remote_tag) {
            (Role::Uac, Some(t)) => format!("{};tag={t}", self.remote),
            _ => self.remote.clone(),
        };
        let mut r = OutMsg::request(method, &self.target)
            .header("Via", via)
            .header("Max-Forwards", "70");
        for route in &self.route {
            r.push("Route", route.clone());
        }
        r.header("From", self.local.clone())
            .header("To", to)
            .header("Call-ID", self.call_id.clone())
            .header("CSeq", format!("{cseq} {method}"))
            .header("User-Agent", user_agent.to_string())
    }

    /// Takes the next local CSeq number (§12.2.1.1).
    pub(crate) fn next_cseq(&mut self) -> u32 {
        self.local_cseq += 1;
        self.local_cseq
    }

    /// Whether `req` (a request with a To tag) carries this dialog's tags
    /// (§12.2.2): the party's tag in From, ours in To. In the callee's
    /// dialog the party's tag must be known.
    pub(crate) fn matches(&self, req: &Msg) -> bool {
        let remote_ok = match self.role {
            Role::Uas => req.from.tag() == self.remote_tag.as_deref(),
            Role::Uac => req.from.tag().is_some() && req.from.tag() == self.remote_tag.as_deref(),
        };
        remote_ok && req.to.tag() == Some(self.local_tag.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::parse;

    fn dialog(role: Role, remote_tag: Option<&str>) -> Dialog {
        Dialog {
            role,
            peer: "192.0.2.1:5060".parse().unwrap(),
            call_id: "c1".into(),
            local_tag: "ours".into(),
            remote_tag: remote_tag.map(str::to_string),
            local: "<sip:a@x>;tag=ours".into(),
            remote: match role {
                Role::Uas => "<sip:b@y>;tag=theirs".into(),
                Role::Uac => "<sip:b@y>".into(),
            },
            target: "sip:b@192.0.2.1:5060".into(),
            route: vec!["<sip:p1;lr>".into(), "<sip:p2;lr>".into()],
            local_cseq: 1,
            media: None,
            webrtc: LegWebrtc::default(),
        }
    }

    fn bye(from_tag: &str, to_tag: &str) -> Msg {
        let text = format!(
            "BYE sip:tern@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb\r\nFrom: <sip:b@y>;tag={from_tag}\r\nTo: <sip:a@x>;tag={to_tag}\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn requests_carry_the_dialog_state_for_both_roles() {
        for (role, to) in [
            (Role::Uas, "To: <sip:b@y>;tag=theirs\r\n"),
            (Role::Uac, "To: <sip:b@y>;tag=theirs\r\n"),
        ] {
            let mut d = dialog(role, Some("theirs"));
            let cseq = d.next_cseq();
            assert_eq!(cseq, 2);
            let wire = d
                .request(
                    rsip::Method::Bye,
                    cseq,
                    "SIP/2.0/UDP h;branch=z9hG4bKx".into(),
                    "ua",
                )
                .to_bytes();
            let wire = String::from_utf8(wire).unwrap();
            assert!(
                wire.starts_with("BYE sip:b@192.0.2.1:5060 SIP/2.0\r\n"),
                "{wire}"
            );
            assert!(
                wire.contains("Route: <sip:p1;lr>\r\nRoute: <sip:p2;lr>\r\n"),
                "{wire}"
            );
            assert!(wire.contains("From: <sip:a@x>;tag=ours\r\n"), "{wire}");
            assert!(wire.contains(to), "{role:?}: {wire}");
            assert!(wire.contains("CSeq: 2 BYE\r\n"), "{wire}");
        }
        // A UAC dialog before the callee's tag: To without a tag.
        let d = dialog(Role::Uac, None);
        let wire = d
            .request(
                rsip::Method::Bye,
                1,
                "SIP/2.0/UDP h;branch=z9hG4bKx".into(),
                "ua",
            )
            .to_bytes();
        assert!(String::from_utf8(wire)
            .unwrap()
            .contains("To: <sip:b@y>\r\n"));
    }

    #[test]
    fn requests_match_on_both_tags() {
        for role in [Role::Uas, Role::Uac] {
            let d = dialog(role, Some("theirs"));
            assert!(d.matches(&bye("theirs", "ours")), "{role:?}");
            assert!(!d.matches(&bye("other", "ours")), "{role:?}");
            assert!(!d.matches(&bye("theirs", "other")), "{role:?}");
        }
        assert_eq!(Side::Caller.other(), Side::Callee);
        assert_eq!((Side::Caller.leg(), Side::Callee.leg()), (0, 1));
    }
}
