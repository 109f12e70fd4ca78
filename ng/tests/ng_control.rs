//! ng media control in the sans-IO core, on a real slot table: `block
//! DTMF`/`unblock DTMF`, `block media`/`unblock media`, `silence media`/
//! `unsilence media`, call-wide and directional (rtpengine 10.5's
//! semantics), read back from the slot legs' flags the worker acts on.
//!
//! Ports: 49700-49799.

use std::net::SocketAddr;

use tern_ng::bencode::{bstr, decode_dict, int, str_list, Dict, Value};
use tern_ng::{CoreConfig, NgCore};
use tern_shared::table::testing::TempTable;
use tern_shared::table::LegConfig;

const T0: u64 = 1_700_000_000_000;

struct Fx {
    core: NgCore,
    table: TempTable,
    n: u64,
}

impl Fx {
    fn new(name: &str) -> Fx {
        let table = TempTable::with_media_ip(
            &format!("ngctl-{name}"),
            49700,
            49799,
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

    /// `d` under a fresh cookie: (result, error-reason).
    fn cmd(&mut self, d: Dict) -> (String, String) {
        self.n += 1;
        let cookie = format!("c{}", self.n);
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend(tern_ng::bencode::encode(&d.into_value()));
        let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let reply = self.core.handle(&msg, src, T0 + self.n).expect("a reply");
        let body = reply.strip_prefix(format!("{cookie} ").as_bytes()).unwrap();
        let v = Value::Dict(decode_dict(body).unwrap());
        let get = |k: &str| match &v {
            Value::Dict(d) => d
                .get(k.as_bytes())
                .and_then(|v| v.as_byte_str())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
            _ => String::new(),
        };
        (get("result"), get("error-reason"))
    }

    fn control(&mut self, command: &str, extra: Dict) -> (String, String) {
        let mut d = extra;
        d.set("command", bstr(command)).set("call-id", bstr("c1"));
        self.cmd(d)
    }

    /// A call c1 between A (192.0.2.10) and B (192.0.2.20).
    fn call(&mut self) {
        let sdp = |ip: &str, port: u16| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
            )
        };
        let offer = Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr("c1"))
            .with("from-tag", bstr("A"))
            .with("sdp", bstr(sdp("192.0.2.10", 4000)));
        assert_eq!(self.cmd(offer).0, "ok");
        let answer = Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr("c1"))
            .with("from-tag", bstr("A"))
            .with("to-tag", bstr("B"))
            .with("sdp", bstr(sdp("192.0.2.20", 5000)));
        assert_eq!(self.cmd(answer).0, "ok");
    }

    /// Each leg's (block DTMF, block media, silence media) of the call's
    /// one slot; leg 0 is A's.
    fn flags(&self) -> [(bool, bool, bool); 2] {
        let id = (0..self.table.capacity())
            .find(|&id| self.table.call_id(id).as_deref() == Some("c1"))
            .expect("the call's slot");
        let (cfg, _) = self.table.read_config(id).unwrap();
        let f = |l: &LegConfig| (l.block_dtmf, l.block_media, l.silence_media);
        [f(&cfg.legs[0]), f(&cfg.legs[1])]
    }
}

impl Fx {
    /// Each leg's play request: (id, events).
    fn plays(&self) -> [Option<(u32, Vec<u8>)>; 2] {
        let id = (0..self.table.capacity())
            .find(|&id| self.table.call_id(id).as_deref() == Some("c1"))
            .expect("the call's slot");
        let (cfg, _) = self.table.read_config(id).unwrap();
        cfg.legs
            .map(|l| l.play.map(|p| (p.id, p.events().to_vec())))
    }
}

const OFF: (bool, bool, bool) = (false, false, false);
const DTMF: (bool, bool, bool) = (true, false, false);

#[test]
fn call_wide_and_directional_blocks_as_rtpengine() {
    let mut f = Fx::new("blocks");
    f.call();
    assert_eq!(f.flags(), [OFF, OFF]);

    // Only call-id: the whole call. A from-tag without `directional`
    // is ignored, as rtpengine's media_match does.
    assert_eq!(f.control("block DTMF", Dict::new()).0, "ok");
    assert_eq!(f.flags(), [DTMF, DTMF]);
    let untargeted = Dict::new().with("from-tag", bstr("A"));
    assert_eq!(f.control("unblock DTMF", untargeted).0, "ok");
    assert_eq!(f.flags(), [OFF, OFF]);

    // Directional: only what A sends.
    let a = || {
        Dict::new()
            .with("from-tag", bstr("A"))
            .with("flags", str_list(["directional"]))
    };
    assert_eq!(f.control("block DTMF", a()).0, "ok");
    assert_eq!(f.flags(), [DTMF, OFF]);
    // Unblocking the call leaves A's own block, unless `all`.
    assert_eq!(f.control("block DTMF", Dict::new()).0, "ok");
    assert_eq!(f.control("unblock DTMF", Dict::new()).0, "ok");
    assert_eq!(f.flags(), [DTMF, OFF]);
    let all = Dict::new().with("flags", str_list(["all"]));
    assert_eq!(f.control("unblock DTMF", all).0, "ok");
    assert_eq!(f.flags(), [OFF, OFF]);

    // By advertised address: B; media and silence are their own flags.
    let b = || Dict::new().with("address", bstr("192.0.2.20"));
    assert_eq!(f.control("block media", b()).0, "ok");
    assert_eq!(f.control("silence media", a()).0, "ok");
    assert_eq!(f.flags(), [(false, false, true), (false, true, false)]);
    assert_eq!(f.control("unblock media", b()).0, "ok");
    assert_eq!(f.control("unsilence media", a()).0, "ok");
    assert_eq!(f.flags(), [OFF, OFF]);

    // A re-offer keeps what is blocked.
    assert_eq!(f.control("block DTMF", a()).0, "ok");
    let reoffer = Dict::new()
        .with("command", bstr("offer"))
        .with("call-id", bstr("c1"))
        .with("from-tag", bstr("A"))
        .with(
            "sdp",
            bstr("v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\n"),
        );
    assert_eq!(f.cmd(reoffer).0, "ok");
    assert_eq!(f.flags(), [DTMF, OFF]);
}

#[test]
fn unknown_call_party_address_or_label_is_an_error_with_rtpengines_reason() {
    let mut f = Fx::new("errors");
    let r = f.control("block DTMF", Dict::new());
    assert_eq!(r, ("error".into(), "Unknown call-ID".into()));
    f.call();
    let cases = [
        (
            Dict::new()
                .with("from-tag", bstr("nobody"))
                .with("flags", str_list(["directional"])),
            "From-tag given, but no such tag exists",
        ),
        (
            Dict::new().with("address", bstr("not an address")),
            "Failed to parse network address",
        ),
        (
            Dict::new().with("address", bstr("198.51.100.7")),
            "Failed to match address to any tag",
        ),
        (
            Dict::new().with("label", bstr("caller")),
            "No monologue matching the given label",
        ),
    ];
    for (extra, reason) in cases {
        assert_eq!(
            f.control("block media", extra),
            ("error".into(), reason.into())
        );
    }
    let missing = Dict::new().with("command", bstr("block DTMF"));
    assert_eq!(
        f.cmd(missing),
        ("error".into(), "No call-id in message".into())
    );
    // Nothing was blocked by the failures.
    assert_eq!(f.flags(), [OFF, OFF]);
}

#[test]
fn play_dtmf_queues_events_on_the_selected_partys_leg() {
    let mut f = Fx::new("play");
    f.call();
    let play = |code: Value| {
        Dict::new()
            .with("from-tag", bstr("B"))
            .with("code", code)
            .with("duration", int(40))
    };
    assert_eq!(f.control("play DTMF", play(bstr("#"))).0, "ok");
    assert_eq!(f.control("play DTMF", play(int(3))).0, "ok");
    // B's leg (1) carries both, the newest last; id counts them.
    assert_eq!(f.plays(), [None, Some((2, vec![11, 3]))]);
    // Every party with `all`.
    let all = Dict::new()
        .with("code", bstr("d"))
        .with("flags", str_list(["all"]));
    assert_eq!(f.control("play DTMF", all).0, "ok");
    assert_eq!(f.plays(), [Some((1, vec![15])), Some((3, vec![11, 3, 15]))]);

    let errors = [
        (
            Dict::new().with("code", bstr("1")),
            "No participant party specified",
        ),
        (play(bstr("E")), "Out of range 'code' specified"),
        (play(bstr("12")), "Out of range 'code' specified"),
        (play(int(16)), "Out of range 'code' specified"),
        (
            Dict::new().with("from-tag", bstr("B")),
            "No DTMF code specified",
        ),
    ];
    for (d, reason) in errors {
        assert_eq!(f.control("play DTMF", d), ("error".into(), reason.into()));
    }
    assert_eq!(f.plays(), [Some((1, vec![15])), Some((3, vec![11, 3, 15]))]);
}
