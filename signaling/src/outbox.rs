//! [`Outbox`]: the queue of messages the sans-IO core has to send, each
//! with the transport [`Links`] picks for it, and the helpers that build
//! our responses (Server header, stateless To tag).

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::build::{response_to, OutMsg};
use crate::digest;
use crate::msg::Msg;
use crate::transport::{response_dest, set_via_transport, Links, Transmit, Transport};

/// What goes out, in order, and which transport each destination gets.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Destination → transport (UDP or a TCP connection).
    pub(crate) links: Links,
    queue: VecDeque<Transmit>,
}

impl Outbox {
    /// An empty queue with no TCP peers known.
    pub(crate) fn new() -> Outbox {
        Outbox {
            links: Links::new(),
            queue: VecDeque::new(),
        }
    }

    /// Queues `bytes` for `dest` once, on the transport [`Links`] picks.
    pub(crate) fn send(&mut self, dest: SocketAddr, bytes: Vec<u8>) {
        let transport = self.links.route_message(dest, &bytes);
        self.push(transport, dest, bytes);
    }

    /// Queues `bytes` for `dest` on `transport` (already routed).
    pub(crate) fn push(&mut self, transport: Transport, dest: SocketAddr, bytes: Vec<u8>) {
        self.queue.push_back(outgoing(transport, dest, bytes));
    }

    /// The next message to send, oldest first.
    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// Sends a stateless response to `req` (To tag derived from the
    /// request, so a retransmitted request gets the same tag), with
    /// `server` as its Server header; `f` adds headers.
    pub(crate) fn reply(
        &mut self,
        server: &str,
        req: &Msg,
        code: u16,
        src: SocketAddr,
        f: impl FnOnce(OutMsg) -> OutMsg,
    ) {
        let tag = stateless_tag(req);
        let r = f(response(server, req, code, Some(&tag), src));
        self.send(src, r.to_bytes());
    }
}

/// A response to `req` with `server` as its Server header.
pub(crate) fn response(
    server: &str,
    req: &Msg,
    code: u16,
    to_tag: Option<&str>,
    src: SocketAddr,
) -> OutMsg {
    response_to(req, code, to_tag, src).header("Server", server.to_string())
}

/// A [`Transmit`] to `dest` (for a response, where its request came
/// from); a request to go over TCP gets `TCP` in its top Via (ours), RFC
/// 3261 §18.1.1, and a response over UDP goes where its top Via says
/// ([`response_dest`], §18.2.2, RFC 3581 §4).
fn outgoing(transport: Transport, dest: SocketAddr, bytes: Vec<u8>) -> Transmit {
    let (dest, bytes) = match transport {
        Transport::Udp if response_code(&bytes).is_some() => (response_dest(&bytes, dest), bytes),
        Transport::Udp => (dest, bytes),
        _ => (dest, set_via_transport(bytes, transport.via_token())),
    };
    Transmit {
        transport,
        dest,
        bytes,
    }
}

/// The status code of a serialized response; `None` for a request.
pub(crate) fn response_code(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// A To tag for stateless responses: stable for retransmissions of one
/// request (MD5 of Call-ID, From tag and branch).
fn stateless_tag(req: &Msg) -> String {
    let h = digest::md5_hex(&format!(
        "{}|{}|{}",
        req.call_id,
        req.from.tag().unwrap_or(""),
        req.top_via().branch().unwrap_or("")
    ));
    h[..16].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn response_code_reads_status_lines_only() {
        use super::response_code;
        assert_eq!(response_code(b"SIP/2.0 486 Busy Here\r\n"), Some(486));
        assert_eq!(response_code(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(response_code(b"BYE sip:a SIP/2.0\r\n"), None);
        assert_eq!(response_code(b"SIP/2.0 4"), None);
    }
}
