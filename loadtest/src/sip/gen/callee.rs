//! The callee side of the generator: answering the SUT's INVITEs
//! (100/180/200 with SDP, 2xx retransmissions until the ACK), BYE, and the
//! callee's timers.

use super::*;

impl Gen<'_> {
    /// A datagram on the callee socket: the SUT's INVITE, ACK and BYE of
    /// the B legs.
    pub(super) fn on_callee(&mut self, m: &Msg, src: SocketAddr, now: u64) {
        let Some(method) = m.method() else {
            self.c.stray += 1; // e.g. a late response to our REGISTER
            return;
        };
        let Some(call_id) = m.call_id() else {
            self.c.unexpected += 1;
            return;
        };
        match method {
            "INVITE" if m.header("to").and_then(msg::tag_of).is_some() => {
                // A re-INVITE: the generator's calls never change.
                self.c.unexpected += 1;
                if let Some(r) = response(m, 501, None, "", None) {
                    self.send(true, &r, src);
                }
            }
            "INVITE" => {
                if let Some(u) = self.uas.get(call_id) {
                    // A retransmitted INVITE gets the same 2xx.
                    let ok = u.ok.clone();
                    self.send(true, &ok, src);
                    return;
                }
                self.uas_tags += 1;
                let tag = format!("u{}", self.uas_tags);
                let contact = format!(
                    "Contact: <sip:{}@{}>\r\nContent-Type: application/sdp\r\n",
                    self.a.user, self.callee_hp
                );
                let sdp = sdp(self.a.local_ip, self.media[1], self.uas_tags);
                let Some(ok) = response(m, 200, Some(&tag), &contact, Some(&sdp)) else {
                    self.c.unexpected += 1;
                    return;
                };
                self.send(true, &ok, src);
                let turnaround = sys::now_ns().saturating_sub(now).max(1);
                self.callee_h.saturating_record(turnaround);
                let idx = m
                    .header("from")
                    .and_then(msg::uri_of)
                    .and_then(|u| u.strip_prefix("sip:")?.strip_prefix(CALLER))
                    .and_then(|u| u.split('@').next()?.parse::<u64>().ok());
                if let Some(c) = idx.and_then(|i| self.calls.get_mut(&i)) {
                    // Retransmissions are not counted: the first 2xx is
                    // the one that set the call up.
                    c.callee_ns = turnaround;
                }
                let gen = 1;
                self.uas.insert(
                    call_id.to_string(),
                    Uas {
                        ok,
                        src,
                        acked: false,
                        next_at: now + T1,
                        interval: T1,
                        deadline: now + 64 * T1,
                        timer_gen: gen,
                    },
                );
                self.timers
                    .push(Reverse((now + T1, Key::Uas(call_id.to_string()), gen)));
            }
            "ACK" => match self.uas.get_mut(call_id) {
                Some(u) => {
                    u.acked = true;
                    u.timer_gen = u.timer_gen.wrapping_add(1);
                }
                None => self.c.stray += 1,
            },
            "BYE" | "CANCEL" | "OPTIONS" => {
                // A BYE ends the B leg; a BYE for a leg we forgot (its
                // 200 was lost) still gets 200, as the dialog existed.
                if method == "BYE" {
                    self.uas.remove(call_id);
                }
                if let Some(r) = response(m, 200, None, "", None) {
                    self.send(true, &r, src);
                }
            }
            _ => {
                self.c.unexpected += 1;
                if let Some(r) = response(m, 501, None, "", None) {
                    self.send(true, &r, src);
                }
            }
        }
    }

    pub(super) fn uas_timer(&mut self, id: String, gen: u32, now: u64) {
        let Some(u) = self.uas.get_mut(&id) else {
            return;
        };
        if u.timer_gen != gen || u.acked {
            return;
        }
        if now >= u.deadline {
            // §13.3.1.4: no ACK in 64·T1; the caller side will see it fail
            // or not, and its report says so.
            self.uas.remove(&id);
            return;
        }
        u.interval = (u.interval * 2).min(T2);
        u.next_at = now + u.interval;
        u.timer_gen = u.timer_gen.wrapping_add(1);
        let (at, gen, ok, src) = (u.next_at.min(u.deadline), u.timer_gen, u.ok.clone(), u.src);
        self.timers.push(Reverse((at, Key::Uas(id), gen)));
        self.c.uas_retransmits += 1;
        self.send(true, &ok, src);
    }
}
