//! One ng exchange over UDP and readers of its reply, for the tests that
//! drive a relay with raw ng messages.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tern_ng::bencode::{decode_dict, encode, ByteString, Dict, Value};

/// A decoded reply dictionary.
pub type BDict = BTreeMap<ByteString, Value>;

/// Sends `<cookie> <msg>` to `to` and returns the decoded reply (bounded
/// wait: 3 s); the cookie must be echoed. `result` is not checked.
pub fn ng_exchange(sock: &UdpSocket, to: SocketAddr, cookie: &str, msg: Dict) -> BDict {
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut m = format!("{cookie} ").into_bytes();
    m.extend(encode(&msg.into_value()));
    sock.send_to(&m, to).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("ng reply");
    let body = buf[..n]
        .strip_prefix(format!("{cookie} ").as_bytes())
        .expect("cookie echoed");
    decode_dict(body).expect("bencode reply")
}

/// The string under `k`, or "".
pub fn str_of(d: &BDict, k: &str) -> String {
    d.get(k.as_bytes())
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

/// The port of the `m=audio` line of the reply's `sdp`.
pub fn sdp_port(d: &BDict) -> u16 {
    let s = str_of(d, "sdp");
    let m = s
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .unwrap_or_else(|| panic!("no m=audio in {s}"));
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

/// An ng client of one relay: every command under a fresh cookie
/// (`<prefix>-<n>`, distinct from other tests' cookies, since rtpengine
/// caches replies by cookie), and its `result` must be `ok`.
#[allow(dead_code)]
pub struct NgClient {
    sock: UdpSocket,
    to: SocketAddr,
    prefix: String,
    n: u32,
}

#[allow(dead_code)]
impl NgClient {
    pub fn new(to: SocketAddr, prefix: &str) -> NgClient {
        NgClient {
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            to,
            prefix: prefix.to_string(),
            n: 0,
        }
    }

    /// `d`, whose reply must say `result: ok`.
    pub fn ok(&mut self, d: Dict) -> BDict {
        self.n += 1;
        let r = ng_exchange(
            &self.sock,
            self.to,
            &format!("{}-{}", self.prefix, self.n),
            d,
        );
        assert_eq!(str_of(&r, "result"), "ok", "{r:?}");
        r
    }

    /// An offer from tag `A` with `sdp_a`, and the answer from tag `B`
    /// with `sdp_b`, both with `flags`: (the port B's media goes to, the
    /// port A's goes to).
    pub fn offer_answer(
        &mut self,
        call: &str,
        sdp_a: &str,
        sdp_b: &str,
        flags: &[&str],
    ) -> (u16, u16) {
        use tern_ng::bencode::{bstr, str_list};
        let r = self.ok(Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr(call))
            .with("from-tag", bstr("A"))
            .with("flags", str_list(flags))
            .with("sdp", bstr(sdp_a)));
        let to_b = sdp_port(&r);
        let r = self.ok(Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr(call))
            .with("from-tag", bstr("A"))
            .with("to-tag", bstr("B"))
            .with("flags", str_list(flags))
            .with("sdp", bstr(sdp_b)));
        (to_b, sdp_port(&r))
    }
}
