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
