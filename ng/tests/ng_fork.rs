//! Forked calls in the sans-IO ng core, on a real slot table: one offer,
//! answers from several to-tags (or one offer per via-branch), each fork on
//! its own slots; `delete` of one branch; `query` filtered by tag.
//!
//! Ports: 49400-49599.

use std::net::SocketAddr;

use tern_ng::bencode::{bstr, decode_dict, int, str_list, Dict, Value};
use tern_ng::{CoreConfig, NgCore};
use tern_shared::table::testing::TempTable;
use tern_shared::table::SlotState;

const T0: u64 = 1_700_000_000_000;

struct Fx {
    core: NgCore,
    table: TempTable,
    n: u64,
}

fn fx(name: &str, lo: u16, hi: u16) -> Fx {
    let table = TempTable::with_media_ip(
        &format!("ngfork-{name}"),
        lo,
        hi,
        1,
        "192.0.2.1".parse().unwrap(),
    )
    .unwrap();
    Fx {
        core: NgCore::new(table.clone(), CoreConfig::default(), T0),
        table,
        n: 0,
    }
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Dict(d) => d.get(p.as_bytes())?,
            Value::List(l) => l.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn s(v: &Value, path: &[&str]) -> String {
    get(v, path)
        .and_then(|v| v.as_byte_str())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn tags(v: &Value) -> Vec<String> {
    match get(v, &["tags"]) {
        Some(Value::Dict(d)) => d
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// The port of the reply SDP's `m=audio` line.
fn port(v: &Value) -> u16 {
    let sdp = s(v, &["sdp"]);
    let m = sdp
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .unwrap_or_else(|| panic!("no m=audio in {v:?}"));
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

fn addr(a: &str) -> Option<SocketAddr> {
    Some(a.parse().unwrap())
}

impl Fx {
    fn at(&mut self, d: Dict, now: u64) -> Value {
        self.n += 1;
        let mut msg = format!("k{} ", self.n).into_bytes();
        msg.extend(tern_ng::bencode::encode(&d.into_value()));
        let r = self
            .core
            .handle(&msg, "127.0.0.1:5060".parse().unwrap(), now);
        let r = r.expect("a reply");
        let body = &r[r.iter().position(|&b| b == b' ').unwrap() + 1..];
        Value::Dict(decode_dict(body).unwrap())
    }

    fn cmd(&mut self, d: Dict) -> Value {
        let now = T0 + self.n;
        self.at(d, now)
    }

    fn ok(&mut self, d: Dict) -> Value {
        let r = self.cmd(d);
        assert_eq!(s(&r, &["result"]), "ok", "{r:?}");
        r
    }

    fn offer(&mut self, from: &str, sdp_: String, via: Option<&str>) -> Value {
        let mut d = Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr("fork-1"))
            .with("from-tag", bstr(from))
            .with("sdp", bstr(sdp_));
        if let Some(v) = via {
            d.set("via-branch", bstr(v));
        }
        self.ok(d)
    }

    fn answer(&mut self, from: &str, to: &str, sdp_: String, via: Option<&str>) -> Value {
        let mut d = Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr("fork-1"))
            .with("from-tag", bstr(from))
            .with("to-tag", bstr(to))
            .with("sdp", bstr(sdp_));
        if let Some(v) = via {
            d.set("via-branch", bstr(v));
        }
        self.ok(d)
    }

    fn tagged(&mut self, cmd: &str, keys: &[(&str, &str)]) -> Value {
        let mut d = Dict::new()
            .with("command", bstr(cmd))
            .with("call-id", bstr("fork-1"));
        for (k, v) in keys {
            d.set(k, bstr(*v));
        }
        self.cmd(d)
    }

    /// Each branch's answerer tag and its one slot.
    fn branches(&self) -> Vec<(Option<String>, u32)> {
        self.core
            .branches_of("fork-1")
            .into_iter()
            .map(|(t, s)| {
                assert_eq!(s.len(), 1, "one audio slot per branch");
                (t, s[0])
            })
            .collect()
    }

    fn peers(&self, slot: u32) -> [Option<SocketAddr>; 2] {
        let (cfg, _) = self.table.read_config(slot).unwrap();
        [cfg.legs[0].peer, cfg.legs[1].peer]
    }

    /// A forking proxy's call: offer from A, early answers from B1 and B2
    /// (both to the same offer: no via-branch). Returns the ports given
    /// to the callees, to A in B1's answer and to A in B2's.
    fn forked(&mut self) -> (u16, u16, u16) {
        let off = port(&self.offer("A", sdp("10.0.0.1", 4000), None));
        let a1 = port(&self.answer("A", "B1", sdp("10.0.0.2", 5000), None));
        let a2 = port(&self.answer("A", "B2", sdp("10.0.0.3", 6000), None));
        (off, a1, a2)
    }
}

/// Two answers with different to-tags: two branches on distinct slots,
/// each programmed with its own answerer, the offerer on both; A is given
/// a new port with the second answer (rtpengine 10.5 does the same).
#[test]
fn second_to_tag_forks_onto_its_own_slot() {
    let mut f = fx("two", 49400, 49439);
    let (off, a1, a2) = f.forked();
    assert_ne!(a1, a2, "the second answer gives A its own port toward B2");
    let b = f.branches();
    assert_eq!(
        b.iter().map(|(t, _)| t.as_deref()).collect::<Vec<_>>(),
        [Some("B1"), Some("B2")]
    );
    let (s1, s2) = (b[0].1, b[1].1);
    assert_ne!(s1, s2);
    assert_eq!(f.table.ports(s1, 1).rtp, off, "the offer's port is B1's");
    assert_eq!(f.table.ports(s1, 0).rtp, a1);
    assert_eq!(f.table.ports(s2, 0).rtp, a2);
    assert_ne!(f.table.ports(s2, 1).rtp, off);
    assert_eq!(f.peers(s1), [addr("10.0.0.1:4000"), addr("10.0.0.2:5000")]);
    assert_eq!(f.peers(s2), [addr("10.0.0.1:4000"), addr("10.0.0.3:6000")]);
    for s in [s1, s2] {
        assert_eq!(f.table.state(s), SlotState::Active);
    }
    // The same to-tag again (its 200 OK) stays on its branch and port.
    let again = f.answer("A", "B1", sdp("10.0.0.2", 5002), None);
    assert_eq!(port(&again), a1);
    assert_eq!(f.branches().len(), 2);
    assert_eq!(f.peers(s1)[1], addr("10.0.0.2:5002"));
    assert_eq!(f.peers(s2)[1], addr("10.0.0.3:6000"));
    // A re-offer from A with B2's to-tag updates B2's branch only.
    f.ok(Dict::new()
        .with("command", bstr("offer"))
        .with("call-id", bstr("fork-1"))
        .with("from-tag", bstr("A"))
        .with("to-tag", bstr("B2"))
        .with("sdp", bstr(sdp("10.0.0.1", 4010))));
    assert_eq!(f.peers(s2)[0], addr("10.0.0.1:4010"));
    assert_eq!(f.peers(s1)[0], addr("10.0.0.1:4000"));
}

/// `query` and `list` show both forks; a tag filter shows that party and
/// those in dialogue with it.
#[test]
fn query_and_list_show_both_branches() {
    let mut f = fx("query", 49500, 49539);
    let (_, a1, a2) = f.forked();
    let q = f.tagged("query", &[]);
    assert_eq!(tags(&q), ["A", "B1", "B2"]);
    // A's current dialogue is the latest answer; its forks are listed.
    assert_eq!(s(&q, &["tags", "A", "in dialogue with"]), "B2");
    let local = |q: &Value, path: &[&str]| {
        get(q, path)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{path:?} in {q:?}"))
    };
    let a_port = ["tags", "A", "medias", "0", "streams", "0", "local port"];
    assert_eq!(local(&q, &a_port), u64::from(a2));
    let b = |i: &'static str, k: &'static str| -> Vec<&'static str> {
        vec!["tags", "A", "branches", i, k]
    };
    assert_eq!(s(&q, &b("0", "in dialogue with")), "B1");
    assert_eq!(s(&q, &b("1", "in dialogue with")), "B2");
    let mut p = b("0", "medias");
    p.extend(["0", "streams", "0", "local port"]);
    assert_eq!(local(&q, &p), u64::from(a1));
    assert_eq!(s(&q, &["tags", "B1", "in dialogue with"]), "A");

    let q = f.tagged("query", &[("from-tag", "A"), ("to-tag", "B1")]);
    assert_eq!(tags(&q), ["A", "B1"], "to-tag B1: B1 and A");
    let q = f.tagged("query", &[("from-tag", "A")]);
    assert_eq!(tags(&q), ["A", "B1", "B2"], "from-tag A: A and both forks");
    let q = f.tagged("query", &[("from-tag", "A"), ("to-tag", "nobody")]);
    assert!(tags(&q).is_empty());

    let l = f.cmd(Dict::new().with("command", bstr("list")));
    assert_eq!(
        get(&l, &["calls"]),
        Some(&str_list(["fork-1"])),
        "one call, however many forks"
    );
}

/// `delete` with B1's to-tag releases B1's slot only; B2's stays active;
/// from-tag alone then ends the call.
#[test]
fn delete_to_tag_removes_only_that_branch() {
    let mut f = fx("delete", 49540, 49579);
    f.forked();
    let b = f.branches();
    let (s1, s2) = (b[0].1, b[1].1);
    let r = f.tagged(
        "delete",
        &[("from-tag", "A"), ("to-tag", "B1"), ("delete-delay", "0")],
    );
    assert_eq!(s(&r, &["result"]), "ok", "{r:?}");
    assert_eq!(s(&r, &["warning"]), "");
    assert_eq!(tags(&r), ["A", "B1"], "the stats of what was named");
    assert_ne!(f.table.state(s1), SlotState::Active, "B1's slot released");
    assert_eq!(f.table.state(s2), SlotState::Active, "B2's slot intact");
    assert_eq!(f.branches(), [(Some("B2".to_string()), s2)]);
    assert_eq!(f.core.stats().calls_current, 1);
    let q = f.tagged("query", &[]);
    assert_eq!(tags(&q), ["A", "B2"]);
    assert_eq!(s(&q, &["tags", "A", "in dialogue with"]), "B2");
    assert!(get(&q, &["tags", "A", "branches"]).is_none());

    // B1 is gone: a second delete of it matches nothing.
    let r = f.tagged("delete", &[("from-tag", "A"), ("to-tag", "B1")]);
    assert_eq!(
        s(&r, &["warning"]),
        "Call-ID not found or tags didn't match"
    );
    let r = f.cmd(
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("fork-1"))
            .with("from-tag", bstr("A"))
            .with("to-tag", bstr("B1"))
            .with("flags", str_list(["fatal"])),
    );
    assert_eq!(s(&r, &["result"]), "error");
    assert_eq!(f.table.state(s2), SlotState::Active);

    // The offerer's tag alone: everything.
    let r = f.tagged("delete", &[("from-tag", "A")]);
    assert_eq!(s(&r, &["result"]), "ok");
    assert_ne!(f.table.state(s2), SlotState::Active);
    assert_eq!(f.core.stats().calls_current, 0);
}

/// The last branch deleted by its to-tag ends the call; a delete with a
/// delay releases the branch when the delay has passed.
#[test]
fn branch_delete_delay_and_last_branch() {
    let mut f = fx("delay", 49580, 49599);
    f.forked();
    let b = f.branches();
    let (s1, s2) = (b[0].1, b[1].1);
    let d = Dict::new()
        .with("command", bstr("delete"))
        .with("call-id", bstr("fork-1"))
        .with("from-tag", bstr("A"))
        .with("to-tag", bstr("B1"))
        .with("delete-delay", int(5));
    let r = f.at(d, T0 + 1000);
    assert_eq!(s(&r, &["result"]), "ok");
    assert_eq!(f.table.state(s1), SlotState::Active, "not yet");
    f.core.poll_timeouts(T0 + 4000);
    assert_eq!(f.table.state(s1), SlotState::Active);
    f.core.poll_timeouts(T0 + 6500);
    assert_ne!(f.table.state(s1), SlotState::Active, "after the delay");
    assert_eq!(f.table.state(s2), SlotState::Active);
    assert_eq!(f.core.stats().calls_current, 1);
    let r = f.tagged(
        "delete",
        &[("from-tag", "A"), ("to-tag", "B2"), ("delete-delay", "0")],
    );
    assert_eq!(s(&r, &["result"]), "ok");
    assert_ne!(f.table.state(s2), SlotState::Active);
    assert_eq!(f.core.stats().calls_current, 0, "no branch left: no call");
}

/// One offer per via-branch (a forking proxy offering each fork): each
/// fork is given its own port; the answers find their branch by it;
/// `delete` with only a via-branch removes that fork.
#[test]
fn via_branch_offers_give_each_fork_its_port() {
    let mut f = fx("via", 49440, 49479);
    let p1 = port(&f.offer("A", sdp("10.0.0.1", 4000), Some("z9hG4bK.1")));
    let p2 = port(&f.offer("A", sdp("10.0.0.1", 4000), Some("z9hG4bK.2")));
    assert_ne!(p1, p2, "a new via-branch opens a fork with its own port");
    // The same via-branch again is a re-offer of its fork.
    let p2b = port(&f.offer("A", sdp("10.0.0.1", 4000), Some("z9hG4bK.2")));
    assert_eq!(p2b, p2);
    assert_eq!(f.core.branches_of("fork-1").len(), 2);
    // Answers in the other order: each lands on its via-branch's fork.
    let a2 = port(&f.answer("A", "B2", sdp("10.0.0.3", 6000), Some("z9hG4bK.2")));
    let a1 = port(&f.answer("A", "B1", sdp("10.0.0.2", 5000), Some("z9hG4bK.1")));
    assert_ne!(a1, a2);
    let b = f.branches();
    assert_eq!(
        b.iter().map(|(t, _)| t.as_deref()).collect::<Vec<_>>(),
        [Some("B1"), Some("B2")]
    );
    let (s1, s2) = (b[0].1, b[1].1);
    assert_eq!(f.table.ports(s1, 1).rtp, p1);
    assert_eq!(f.table.ports(s2, 1).rtp, p2);
    assert_eq!(f.peers(s1)[1], addr("10.0.0.2:5000"));
    assert_eq!(f.peers(s2)[1], addr("10.0.0.3:6000"));
    let q = f.tagged("query", &[("to-tag", "B2")]);
    assert_eq!(s(&q, &["tags", "B2", "via-branch"]), "z9hG4bK.2");

    let r = f.tagged(
        "delete",
        &[
            ("from-tag", "A"),
            ("via-branch", "z9hG4bK.1"),
            ("delete-delay", "0"),
        ],
    );
    assert_eq!(s(&r, &["result"]), "ok");
    assert_eq!(s(&r, &["warning"]), "");
    assert_ne!(f.table.state(s1), SlotState::Active);
    assert_eq!(f.table.state(s2), SlotState::Active);
    assert_eq!(f.branches(), [(Some("B2".to_string()), s2)]);
}
