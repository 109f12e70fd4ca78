//! [`SipCore`]'s gatekeeping: who may make a request (digest
//! authentication, RFC 7616 with RFC 3261 §22) and where a number that is
//! no local user goes (`[[routes]]` to a trunk). Kept out of `core.rs`,
//! beside the routing that calls it.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, warn};

use crate::core::SipCore;
use crate::digest::{self, Verdict};
use crate::method::Method;
use crate::msg::{self, Msg};

impl SipCore {
    /// Digest check for `req` (RFC 7616 with RFC 3261 §22). Returns the
    /// authenticated user (empty when the request needs no
    /// authentication), or `None` after queueing 401/407 (challenge, MD5
    /// then SHA-256; `stale=true` for an expired nonce or a replayed
    /// nonce-count), 403 (wrong credentials) or 400 (a digest `uri` that
    /// is not the Request-URI, RFC 2617 §3.2.2.5; counted in
    /// [`CoreStats::malformed_requests`]).
    ///
    /// Policy: with no users configured, nothing is authenticated except
    /// that an INVITE for a foreign domain gets 403 (tern is not an open
    /// relay). With users, REGISTER always needs authentication, an INVITE
    /// for a foreign domain always, and an INVITE for a local user as
    /// [`SipConfig::auth_invites`] says (default: yes). Local means the
    /// Request-URI host passes [`SipConfig::is_local_host`].
    pub(crate) fn authenticate(
        &mut self,
        req: &Msg,
        src: SocketAddr,
        proxy: bool,
        now: Instant,
    ) -> Option<String> {
        self.authenticate_with(req, src, proxy, false, now)
    }

    /// The trunk way out of an INVITE for a local-domain number that is
    /// no configured or registered user and matches a `[[routes]]` entry.
    pub(crate) fn route_of(&mut self, req: &Msg, now: Instant) -> Option<crate::b2bua::TrunkLeg> {
        if self.cfg.routes.is_empty() {
            return None;
        }
        let local = req
            .uri_text()
            .and_then(msg::uri_host_port)
            .is_some_and(|(h, _)| self.cfg.is_local_host(&h, self.local.ip()));
        let user = req.uri_user()?;
        if !local || self.ha1.contains_key(&user) || !self.loc.lookup_user(&user, now).is_empty() {
            return None;
        }
        let (route, number) = crate::trunk::lookup(&self.cfg.routes, &user)?;
        let trunk = self.cfg.trunks.get(route.trunk)?;
        let gateways =
            self.trunks
                .gateways_for(trunk, &mut self.b2bua.gateways, &mut self.rng, now);
        Some(crate::b2bua::TrunkLeg {
            trunk: trunk.name.clone(),
            user: number,
            gateways,
            next: 1,
            credentials: trunk.credentials.clone(),
            auth_tried: false,
        })
    }

    /// [`SipCore::authenticate`]; `force`: an INVITE is authenticated
    /// even where `auth_invites` would let it through (a routed number).
    pub(crate) fn authenticate_with(
        &mut self,
        req: &Msg,
        src: SocketAddr,
        proxy: bool,
        force: bool,
        now: Instant,
    ) -> Option<String> {
        let method = req.method().unwrap_or_default();
        if req.request_method() == Some(Method::Invite) {
            let local = req
                .uri_text()
                .and_then(msg::uri_host_port)
                .is_some_and(|(h, _)| self.cfg.is_local_host(&h, self.local.ip()));
            if local && !force && !self.cfg.auth_invites.unwrap_or(!self.ha1.is_empty()) {
                return Some(String::new());
            }
            if self.ha1.is_empty() {
                self.stats.auth_failures += 1;
                warn!(call_id = %req.call_id, %src, uri = req.uri_text().unwrap_or(""), "INVITE for a foreign domain refused: not a relay");
                self.reply(req, 403, src, |r| {
                    r.header("Warning", "399 tern \"not a relay for this domain\"")
                });
                return None;
            }
        } else if self.ha1.is_empty() {
            return Some(String::new());
        }
        let (cred_hdr, chal_hdr, chal_code) = if proxy {
            ("Proxy-Authorization", "Proxy-Authenticate", 407)
        } else {
            ("Authorization", "WWW-Authenticate", 401)
        };
        let ha1 = &self.ha1;
        // A retransmission repeats branch, Call-ID and CSeq.
        let txn = format!(
            "{}|{}|{}",
            req.top_via().branch().unwrap_or(""),
            req.call_id,
            req.cseq.num
        );
        let request = digest::RequestLine {
            method,
            uri: req.uri_text().unwrap_or_default(),
            txn: &txn,
        };
        let verdict = digest::verify(
            req.headers(cred_hdr),
            request,
            &self.cfg.realm,
            &mut self.nonces,
            now,
            |u| ha1.get(u),
        );
        match verdict {
            Verdict::Ok(user) => Some(user),
            Verdict::Challenge | Verdict::Stale => {
                self.stats.challenges += 1;
                let stale = verdict == Verdict::Stale;
                let [md5, sha] = self.nonces.challenges(&self.cfg.realm, now, stale);
                // Browser stacks over WebSocket (JsSIP, SIP.js) speak only
                // MD5, and JsSIP takes the last challenge it reads: they
                // get the MD5 one alone.
                let browser = self
                    .out
                    .links
                    .current()
                    .is_some_and(|s| s.addr == src && s.transport.is_websocket());
                debug!(call_id = %req.call_id, %src, method, stale, browser, "digest challenge");
                self.reply(req, chal_code, src, |r| {
                    let r = r.header(chal_hdr, md5);
                    if browser {
                        r
                    } else {
                        r.header(chal_hdr, sha)
                    }
                });
                None
            }
            Verdict::Forbidden => {
                self.stats.auth_failures += 1;
                warn!(call_id = %req.call_id, %src, method, "digest authentication failed");
                self.reply(req, 403, src, |r| r);
                None
            }
            Verdict::UriMismatch => {
                // Bad input, not a wrong password (RFC 2617 §3.2.2.5).
                self.stats.malformed_requests += 1;
                debug!(call_id = %req.call_id, %src, method, "digest uri is not the Request-URI");
                self.reply(req, 400, src, |r| {
                    r.header(
                        "Warning",
                        "399 tern \"digest uri does not match the Request-URI\"",
                    )
                });
                None
            }
        }
    }
}
