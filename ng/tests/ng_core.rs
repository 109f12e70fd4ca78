//! The sans-IO ng core on a real slot table, without sockets or workers:
//! commands, SDP rewriting, slot programming, retransmissions, errors,
//! flags, timeouts and the access list, on a virtual clock.

use std::net::SocketAddr;

use tern_ng::bencode::{bstr, decode_dict, int, str_list, Dict, Value};
use tern_ng::{Acl, CoreConfig, NgCore};
use tern_shared::table::testing::TempTable;
use tern_shared::table::{Direction, Learning, SlotState};

const T0: u64 = 1_700_000_000_000;

struct Fx {
    core: NgCore,
    table: TempTable,
    src: SocketAddr,
    n: u64,
}

fn fx(name: &str, lo: u16, hi: u16, cfg: CoreConfig) -> Fx {
    let table = TempTable::with_media_ip(
        &format!("ngcore-{name}"),
        lo,
        hi,
        1,
        "192.0.2.1".parse().unwrap(),
    )
    .unwrap();
    Fx {
        core: NgCore::new(table.clone(), cfg, T0),
        table,
        src: "127.0.0.1:5060".parse().unwrap(),
        n: 0,
    }
}

fn sdp(ip: &str, port: u16, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1000 1000 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n{extra}"
    )
}

/// Path lookup in a decoded reply: dictionary keys, or list indexes.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Dict(d) => d
                .get(p.as_bytes())
                .unwrap_or_else(|| panic!("no key {p:?} in {cur:?}")),
            Value::List(l) => &l[p.parse::<usize>().unwrap()],
            _ => panic!("cannot index {cur:?} with {p}"),
        };
    }
    cur
}

fn s(v: &Value) -> String {
    String::from_utf8(v.as_byte_str().unwrap().to_vec()).unwrap()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

impl Fx {
    fn raw(&mut self, msg: &[u8], now: u64) -> Option<Vec<u8>> {
        self.core.handle(msg, self.src, now)
    }

    /// Sends `d` under a fresh cookie; returns the reply dictionary.
    fn cmd(&mut self, d: Dict) -> Value {
        self.n += 1;
        let cookie = format!("c{}", self.n);
        self.cmd_cookie(&cookie, d, T0 + self.n)
    }

    fn cmd_cookie(&mut self, cookie: &str, d: Dict, now: u64) -> Value {
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend(bt_encode(&d.into_value()));
        let reply = self.raw(&msg, now).expect("a reply");
        let body = reply
            .strip_prefix(format!("{cookie} ").as_bytes())
            .expect("same cookie");
        Value::Dict(decode_dict(body).unwrap())
    }

    fn offer(&mut self, call: &str, from: &str, sdp: &str, extra: Dict) -> Value {
        let mut d = extra;
        d.set("command", bstr("offer"))
            .set("call-id", bstr(call))
            .set("from-tag", bstr(from))
            .set("sdp", bstr(sdp));
        self.cmd(d)
    }

    fn answer(&mut self, call: &str, from: &str, to: &str, sdp: &str, extra: Dict) -> Value {
        let mut d = extra;
        d.set("command", bstr("answer"))
            .set("call-id", bstr(call))
            .set("from-tag", bstr(from))
            .set("to-tag", bstr(to))
            .set("sdp", bstr(sdp));
        self.cmd(d)
    }

    fn ok_sdp(v: &Value) -> String {
        assert_eq!(s(at(v, &["result"])), "ok", "{v:?}");
        s(at(v, &["sdp"]))
    }
}

fn bt_encode(v: &Value) -> Vec<u8> {
    tern_ng::bencode::encode(v)
}

fn m_port(sdp: &str) -> u16 {
    let m = sdp.lines().find(|l| l.starts_with("m=")).unwrap();
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn ping_pong_keeps_cookie() {
    let mut f = fx("ping", 47000, 47099, CoreConfig::default());
    let r = f.raw(b"abc123 d7:command4:pinge", T0).unwrap();
    assert_eq!(r, b"abc123 d6:result4:ponge");
}

#[test]
fn offer_answer_program_one_slot_and_rewrite_sdp() {
    let mut f = fx("oa", 47100, 47199, CoreConfig::default());
    let r = f.offer(
        "call-1",
        "tagA",
        &sdp("10.0.0.1", 4000, "a=rtcp:4001\r\n"),
        Dict::new().with("replace", str_list(["origin", "session-connection"])),
    );
    let out = Fx::ok_sdp(&r);
    let slots = f.core.slots_of("call-1");
    assert_eq!(slots.len(), 1);
    let id = slots[0];
    assert_eq!(f.table.state(id), SlotState::Active);
    let (cfg, _) = f.table.read_config(id).unwrap();
    assert_eq!(cfg.legs[0].peer, Some("10.0.0.1:4000".parse().unwrap()));
    assert_eq!(
        cfg.legs[0].peer_rtcp,
        Some("10.0.0.1:4001".parse().unwrap())
    );
    assert_eq!(cfg.legs[0].learning, Learning::LearnOnce);
    assert_eq!(cfg.legs[1].peer, None);
    // The offer goes to the callee: leg 1's ports, the relay's address.
    let b = f.table.ports(id, 1);
    assert_eq!(m_port(&out), b.rtp);
    assert!(out.contains(&format!("a=rtcp:{}\r\n", b.rtcp)), "{out}");
    assert!(out.contains("c=IN IP4 192.0.2.1\r\n"));
    assert!(out.contains("o=- 1000 1001 IN IP4 192.0.2.1\r\n"), "{out}");
    assert!(!out.contains("10.0.0.1"));
    assert!(out.contains("a=rtpmap:101 telephone-event/8000\r\n"));

    let r = f.answer(
        "call-1",
        "tagA",
        "tagB",
        &sdp("10.0.0.2", 5000, ""),
        Dict::new(),
    );
    let out = Fx::ok_sdp(&r);
    let a = f.table.ports(id, 0);
    assert_eq!(m_port(&out), a.rtp);
    let (cfg, _) = f.table.read_config(id).unwrap();
    assert_eq!(cfg.legs[1].peer, Some("10.0.0.2:5000".parse().unwrap()));
    assert_eq!(cfg.legs[0].peer, Some("10.0.0.1:4000".parse().unwrap()));
    // Session c= rewritten because the media relies on it; origin kept.
    assert!(out.contains("c=IN IP4 192.0.2.1\r\n"));
    assert!(out.contains("o=- 1000 1001 IN IP4 10.0.0.2\r\n"), "{out}");

    // A re-offer updates the same slot.
    let r = f.offer(
        "call-1",
        "tagA",
        &sdp("10.0.0.9", 4100, "a=sendonly\r\n"),
        Dict::new(),
    );
    let out = Fx::ok_sdp(&r);
    assert_eq!(f.core.slots_of("call-1"), vec![id]);
    assert_eq!(m_port(&out), b.rtp);
    let (cfg, _) = f.table.read_config(id).unwrap();
    assert_eq!(cfg.legs[0].peer, Some("10.0.0.9:4100".parse().unwrap()));
    assert_eq!(cfg.legs[0].direction, Direction::RecvOnly);
    assert_eq!(f.table.count(SlotState::Active), 1);

    // A re-INVITE from the callee: its tag is the from-tag.
    let r = f.offer(
        "call-1",
        "tagB",
        &sdp("10.0.0.3", 6000, ""),
        Dict::new().with("to-tag", bstr("tagA")),
    );
    let out = Fx::ok_sdp(&r);
    assert_eq!(m_port(&out), a.rtp, "goes to the caller: leg 0's ports");
    let (cfg, _) = f.table.read_config(id).unwrap();
    assert_eq!(cfg.legs[1].peer, Some("10.0.0.3:6000".parse().unwrap()));
    let r = f.answer(
        "call-1",
        "tagB",
        "tagA",
        &sdp("10.0.0.1", 4000, ""),
        Dict::new(),
    );
    assert_eq!(m_port(&Fx::ok_sdp(&r)), b.rtp);
    let (cfg, _) = f.table.read_config(id).unwrap();
    assert_eq!(cfg.legs[0].peer, Some("10.0.0.1:4000".parse().unwrap()));

    // Delete frees the slot.
    let r = f.cmd(
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("call-1")),
    );
    assert_eq!(s(at(&r, &["result"])), "ok");
    assert_eq!(f.table.state(id), SlotState::Draining);
    assert_eq!(f.core.stats().calls_current, 0);
    assert_eq!(f.core.stats().calls_deleted, 1);
}

#[test]
fn retransmitted_cookie_gets_identical_reply_and_no_new_slot() {
    let mut f = fx("retx", 47200, 47299, CoreConfig::default());
    let mut d = Dict::new();
    d.set("command", bstr("offer"))
        .set("call-id", bstr("rx"))
        .set("from-tag", bstr("a"))
        .set("sdp", bstr(sdp("10.0.0.1", 4000, "")));
    let mut msg = b"cookie-1 ".to_vec();
    msg.extend(bt_encode(&d.into_value()));
    let r1 = f.raw(&msg, T0).unwrap();
    assert_eq!(f.table.count(SlotState::Active), 1);
    for k in 1..5 {
        let r = f.raw(&msg, T0 + k * 1000).unwrap();
        assert_eq!(r, r1);
    }
    assert_eq!(f.table.count(SlotState::Active), 1);
    assert_eq!(f.table.count(SlotState::Reserved), 0);
    let st = f.core.stats();
    assert_eq!((st.offers, st.retransmissions), (1, 4));
    // From another source (or port) the cookie is another message (a
    // re-offer of the same call: same slot, same SDP).
    let other: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let r2 = f.core.handle(&msg, other, T0 + 10).unwrap();
    assert_eq!(f.core.stats().offers, 2);
    assert_eq!(r2, r1);
    // After the cache expiry the cookie is executed again.
    f.core.poll_timeouts(T0 + 31_000);
    let _ = f.raw(&msg, T0 + 31_000).unwrap();
    assert_eq!(f.core.stats().offers, 3);
    assert_eq!(f.table.count(SlotState::Active), 1);
}

#[test]
fn cache_is_bounded() {
    let cfg = CoreConfig {
        cache_max_entries: 10,
        ..Default::default()
    };
    let mut f = fx("cache", 47300, 47399, cfg);
    for i in 0..100 {
        let msg = format!("k{i} d7:command4:pinge");
        f.raw(msg.as_bytes(), T0).unwrap();
    }
    // The oldest were evicted: k0 is executed again, k99 is not.
    let before = f.core.stats().retransmissions;
    f.raw(b"k99 d7:command4:pinge", T0).unwrap();
    f.raw(b"k0 d7:command4:pinge", T0).unwrap();
    assert_eq!(f.core.stats().retransmissions, before + 1);
}

#[test]
fn query_reports_rtpengine_keys_and_counters() {
    let mut f = fx("query", 47400, 47499, CoreConfig::default());
    Fx::ok_sdp(&f.offer("q", "ta", &sdp("10.0.0.1", 4000, ""), Dict::new()));
    Fx::ok_sdp(&f.answer("q", "ta", "tb", &sdp("10.0.0.2", 5000, ""), Dict::new()));
    let id = f.core.slots_of("q")[0];
    // Stand in for the worker: leg 0 received 3 RTP packets of 172 bytes.
    let c = f.table.counters(id, 0).unwrap();
    for _ in 0..3 {
        c.count_rx(172, T0 + 50);
    }
    f.table.counters(id, 1).unwrap().count_rtcp_rx(T0 + 60);
    let r = f.cmd(
        Dict::new()
            .with("command", bstr("query"))
            .with("call-id", bstr("q")),
    );
    assert_eq!(s(at(&r, &["result"])), "ok");
    assert_eq!(n(at(&r, &["totals", "RTP", "packets"])), 3);
    assert_eq!(n(at(&r, &["totals", "RTP", "bytes"])), 516);
    assert_eq!(n(at(&r, &["totals", "RTP", "errors"])), 0);
    assert_eq!(n(at(&r, &["totals", "RTCP", "packets"])), 1);
    let st = at(&r, &["tags", "ta", "medias", "0", "streams", "0"]);
    assert_eq!(n(at(st, &["stats", "packets"])), 3);
    assert_eq!(
        n(at(st, &["local port"])),
        u64::from(f.table.ports(id, 0).rtp)
    );
    assert_eq!(s(at(st, &["endpoint", "family"])), "IPv4");
    assert_eq!(s(at(st, &["endpoint", "address"])), "10.0.0.1");
    assert_eq!(n(at(st, &["endpoint", "port"])), 4000);
    assert_eq!(n(at(st, &["advertised endpoint", "port"])), 4000);
    assert_eq!(s(at(&r, &["tags", "ta", "in dialogue with"])), "tb");
    assert_eq!(s(at(&r, &["tags", "tb", "medias", "0", "type"])), "audio");
    assert_eq!(
        s(at(&r, &["tags", "tb", "medias", "0", "protocol"])),
        "RTP/AVP"
    );
    assert_eq!(
        n(at(
            &r,
            &["tags", "tb", "medias", "0", "streams", "1", "stats", "packets"]
        )),
        1
    );
    assert_eq!(n(at(&r, &["created"])), T0 / 1000);
    // list and statistics.
    let r = f.cmd(Dict::new().with("command", bstr("list")));
    assert_eq!(s(at(&r, &["calls", "0"])), "q");
    let r = f.cmd(Dict::new().with("command", bstr("statistics")));
    assert_eq!(
        n(at(
            &r,
            &["statistics", "currentstatistics", "sessionstotal"]
        )),
        1
    );
    assert_eq!(
        n(at(
            &r,
            &["statistics", "totalstatistics", "managedsessions"]
        )),
        1
    );
    // delete returns the final statistics too.
    let r = f.cmd(
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("q")),
    );
    assert_eq!(n(at(&r, &["totals", "RTP", "packets"])), 3);
    let r = f.cmd(
        Dict::new()
            .with("command", bstr("query"))
            .with("call-id", bstr("q")),
    );
    assert_eq!(s(at(&r, &["result"])), "error");
}

#[test]
fn flags_program_the_legs() {
    let mut f = fx("flags", 47500, 47599, CoreConfig::default());
    let offer_sdp = sdp(
        "10.0.0.1",
        4000,
        "a=rtcp-mux\r\na=ice-ufrag:x\r\na=candidate:1 1 UDP 1 10.0.0.1 4000 typ host\r\n",
    );
    // Without trust-address the received-from address wins.
    let r = f.offer(
        "f",
        "a",
        &offer_sdp,
        Dict::new()
            .with(
                "flags",
                str_list(["strict source", "SSRC-rewrite", "no-such-flag", "symmetric"]),
            )
            .with("received-from", str_list(["IP4", "198.51.100.7"]))
            .with("ICE", bstr("remove"))
            .with("transport-protocol", bstr("RTP/AVPF"))
            .with("direction", str_list(["internal", "external"]))
            .with("rtcp-mux", str_list(["demux"])),
    );
    let out = Fx::ok_sdp(&r);
    assert!(s(at(&r, &["warning"])).contains("no-such-flag"));
    assert!(!out.contains("candidate") && !out.contains("ice-ufrag"));
    assert!(
        !out.contains("a=rtcp-mux"),
        "demux: not offered to the callee"
    );
    assert!(out.contains(" RTP/AVPF 0 8 101\r\n"));
    let id = f.core.slots_of("f")[0];
    let (cfg, _) = f.table.read_config(id).unwrap();
    assert_eq!(cfg.legs[0].peer, Some("198.51.100.7:4000".parse().unwrap()));
    assert_eq!(cfg.legs[0].learning, Learning::Strict);
    assert!(cfg.legs[1].rewrite_ssrc && cfg.legs[1].out_ssrc != 0);
    assert!(!cfg.legs[0].rewrite_ssrc);
    assert!(
        cfg.legs[0].rtcp_mux,
        "demux: the relay takes mux from the caller"
    );
    assert!(!cfg.legs[1].rtcp_mux);
    let ssrc = cfg.legs[1].out_ssrc;

    // Answer without mux; the caller still gets mux (demux), trust-address.
    let r = f.answer(
        "f",
        "a",
        "b",
        &sdp("10.0.0.2", 5000, ""),
        Dict::new()
            .with("flags", str_list(["trust-address"]))
            .with("received-from", str_list(["IP4", "198.51.100.8"])),
    );
    let out = Fx::ok_sdp(&r);
    let a = f.table.ports(id, 0);
    assert!(out.contains("a=rtcp-mux\r\n"), "{out}");
    assert!(!out.contains(&format!("a=rtcp:{}", a.rtcp)));
    let (cfg, _) = f.table.read_config(id).unwrap();
    assert_eq!(cfg.legs[1].peer, Some("10.0.0.2:5000".parse().unwrap()));
    assert_eq!(cfg.legs[1].learning, Learning::LearnOnce);
    assert_eq!(cfg.legs[1].out_ssrc, ssrc, "SSRC kept across messages");
    assert!(s(at(&r, &["result"])) == "ok");

    // rtcp-mux passes through when both sides agree.
    let mux = sdp("10.0.0.1", 4000, "a=rtcp-mux\r\n");
    let out = Fx::ok_sdp(&f.offer("m", "a", &mux, Dict::new()));
    assert!(out.contains("a=rtcp-mux\r\n"));
    let out = Fx::ok_sdp(&f.answer(
        "m",
        "a",
        "b",
        &sdp("10.0.0.2", 5000, "a=rtcp-mux\r\n"),
        Dict::new(),
    ));
    let id = f.core.slots_of("m")[0];
    let a = f.table.ports(id, 0);
    assert!(out.contains("a=rtcp-mux\r\n"));
    assert!(!out.contains(&format!("a=rtcp:{}", a.rtcp)));
    let (cfg, _) = f.table.read_config(id).unwrap();
    assert!(cfg.legs[0].rtcp_mux && cfg.legs[1].rtcp_mux);
    // ...and is dropped when the callee declines.
    Fx::ok_sdp(&f.offer("m2", "a", &mux, Dict::new()));
    let out = Fx::ok_sdp(&f.answer("m2", "a", "b", &sdp("10.0.0.2", 5000, ""), Dict::new()));
    assert!(!out.contains("a=rtcp-mux"));
    let (cfg, _) = f.table.read_config(f.core.slots_of("m2")[0]).unwrap();
    assert!(!cfg.legs[0].rtcp_mux && !cfg.legs[1].rtcp_mux);
}

#[test]
fn two_media_sections_take_two_slots_and_rejected_ones_none() {
    let mut f = fx("multi", 47600, 47699, CoreConfig::default());
    let two = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\nm=video 0 RTP/AVP 97\r\n";
    let out = Fx::ok_sdp(&f.offer("mm", "a", two, Dict::new()));
    let slots = f.core.slots_of("mm");
    assert_eq!(slots.len(), 2);
    let ports: Vec<u16> = out
        .lines()
        .filter(|l| l.starts_with("m="))
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        ports,
        vec![
            f.table.ports(slots[0], 1).rtp,
            f.table.ports(slots[1], 1).rtp,
            0
        ]
    );
    // The callee rejects video: its slot is released.
    let ans = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=video 0 RTP/AVP 97\r\n";
    Fx::ok_sdp(&f.answer("mm", "a", "b", ans, Dict::new()));
    assert_eq!(f.core.slots_of("mm"), vec![slots[0]]);
    assert_eq!(f.table.state(slots[1]), SlotState::Draining);
}

#[test]
fn full_table_is_an_error_and_leaks_nothing() {
    // 8 ports: two slots.
    let mut f = fx("full", 47700, 47707, CoreConfig::default());
    Fx::ok_sdp(&f.offer("c1", "a", &sdp("10.0.0.1", 4000, ""), Dict::new()));
    Fx::ok_sdp(&f.offer("c2", "a", &sdp("10.0.0.1", 4000, ""), Dict::new()));
    let r = f.offer("c3", "a", &sdp("10.0.0.1", 4000, ""), Dict::new());
    assert_eq!(s(at(&r, &["result"])), "error");
    assert!(s(at(&r, &["error-reason"])).contains("Ran out of ports"));
    assert_eq!(f.core.stats().calls_current, 2);
    // A two-media offer that gets only one slot gives it back.
    let cmd = |c: &str| {
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr(c))
    };
    f.cmd(cmd("c1"));
    let drained: Vec<u32> = (0..2)
        .filter(|&i| f.table.state(i) == SlotState::Draining)
        .collect();
    for id in drained {
        f.table.finish_drain(id).unwrap();
    }
    let two = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\n";
    let r = f.offer("c4", "a", two, Dict::new());
    assert_eq!(s(at(&r, &["result"])), "error");
    assert_eq!(f.table.count(SlotState::Active), 1);
    assert_eq!(f.table.count(SlotState::Reserved), 0);
    assert_eq!(f.core.stats().calls_current, 1);
    assert_eq!(f.core.stats().calls_rejected, 2);
}

#[test]
fn media_timeout_counts_from_setup_and_last_packet() {
    let cfg = CoreConfig {
        timeout_ms: 60_000,
        ..Default::default()
    };
    let mut f = fx("timeout", 47800, 47899, cfg);
    Fx::ok_sdp(&f.offer("t1", "a", &sdp("10.0.0.1", 4000, ""), Dict::new()));
    Fx::ok_sdp(&f.offer("t2", "a", &sdp("10.0.0.1", 4000, ""), Dict::new()));
    let id2 = f.core.slots_of("t2")[0];
    // t2 has media at T0 + 50 s.
    f.table.counters(id2, 1).unwrap().count_rx(100, T0 + 50_000);
    assert_eq!(f.core.poll_timeouts(T0 + 59_000), 0);
    assert_eq!(f.core.poll_timeouts(T0 + 61_000), 1);
    assert_eq!(f.core.slots_of("t1"), Vec::<u32>::new());
    assert_eq!(f.core.slots_of("t2"), vec![id2]);
    assert_eq!(f.core.poll_timeouts(T0 + 111_000), 1);
    assert_eq!(f.core.stats().calls_timed_out, 2);
    assert_eq!(f.core.stats().calls_current, 0);
    assert_eq!(f.table.count(SlotState::Active), 0);
}

/// A core that starts on a table with active slots (its predecessor was
/// killed) adopts only ng's as orphans: released by the media timeout,
/// counted from adoption or their last packet, and counted in the table;
/// the SIP plane's slot is left alone.
#[test]
fn orphans_of_a_killed_core_are_reclaimed_and_sip_slots_kept() {
    use tern_shared::table::{Owner, SlotConfig};
    let cfg = CoreConfig {
        timeout_ms: 60_000,
        ..Default::default()
    };
    let mut f = fx("orphans", 47900, 47999, cfg.clone());
    let mut ids = Vec::new();
    for owner in [Owner::Ng, Owner::Ng, Owner::Sip] {
        let id = f.table.reserve_for(owner).unwrap();
        f.table.publish(id, &SlotConfig::default()).unwrap();
        ids.push(id);
    }
    // The second had media 30 s after the restart.
    let t1 = T0 + 1_000;
    f.core = NgCore::new(f.table.clone(), cfg, t1);
    assert_eq!(f.core.stats().orphans_adopted, 2);
    f.table
        .counters(ids[1], 0)
        .unwrap()
        .count_rx(100, t1 + 30_000);
    assert_eq!(f.core.poll_timeouts(t1 + 59_000), 0);
    assert_eq!(f.core.orphans(), 2);
    f.core.poll_timeouts(t1 + 61_000);
    assert_eq!(f.table.state(ids[0]), SlotState::Draining);
    assert_eq!(f.table.state(ids[1]), SlotState::Active);
    f.core.poll_timeouts(t1 + 91_000);
    assert_eq!(f.table.state(ids[1]), SlotState::Draining);
    assert_eq!(f.table.state(ids[2]), SlotState::Active, "the B2BUA's slot");
    assert_eq!(f.core.stats().orphans_reclaimed, 2);
    assert_eq!(f.table.reclaimed(), 2);
    assert_eq!(f.core.orphans(), 0);
    // A slot reused since adoption is no orphan any more.
    let id = f.table.reserve_for(Owner::Ng).unwrap();
    f.table.publish(id, &SlotConfig::default()).unwrap();
    let mut g = NgCore::new(f.table.clone(), CoreConfig::default(), t1);
    f.table.release(id).unwrap();
    f.table.finish_drain(id).unwrap();
    assert_eq!(g.poll_timeouts(t1 + 1_000_000), 0);
    assert_eq!(g.stats().orphans_reclaimed, 0);
}

#[test]
fn delete_delay_keeps_the_call_until_it_passes() {
    let mut f = fx("delay", 47900, 47999, CoreConfig::default());
    Fx::ok_sdp(&f.offer("d", "a", &sdp("10.0.0.1", 4000, ""), Dict::new()));
    let r = f.cmd(
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("d"))
            .with("delete-delay", int(5)),
    );
    assert_eq!(s(at(&r, &["result"])), "ok");
    assert_eq!(f.core.stats().calls_current, 1);
    assert_eq!(f.core.poll_timeouts(T0 + 4_000), 0);
    assert_eq!(f.core.poll_timeouts(T0 + 5_100), 1);
    assert_eq!(f.table.count(SlotState::Active), 0);
    // Deleting an unknown call is a warning, or an error with "fatal".
    let r = f.cmd(
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("zz")),
    );
    assert_eq!(s(at(&r, &["result"])), "ok");
    assert!(s(at(&r, &["warning"])).contains("not found"));
    let r = f.cmd(
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("zz"))
            .with("flags", str_list(["fatal"])),
    );
    assert_eq!(s(at(&r, &["result"])), "error");
}

#[test]
fn sources_outside_the_acl_are_dropped_and_counted() {
    let mut f = fx("acl", 48000, 48099, CoreConfig::default());
    let far: SocketAddr = "203.0.113.5:4000".parse().unwrap();
    assert_eq!(f.core.handle(b"x d7:command4:pinge", far, T0), None);
    assert_eq!(f.core.stats().dropped_unauthorized, 1);
    let cfg = CoreConfig {
        acl: Acl::new(vec!["203.0.113.0/24".parse().unwrap()]),
        ..Default::default()
    };
    let mut f = fx("acl2", 48100, 48199, cfg);
    assert!(f.core.handle(b"x d7:command4:pinge", far, T0).is_some());
    let v6: SocketAddr = "[::1]:4000".parse().unwrap();
    assert!(f.core.handle(b"y d7:command4:pinge", v6, T0).is_some());
}

/// Thirty malformed messages: each gets `result: error` with a reason, and
/// the core still answers ping and holds no slot afterwards.
#[test]
fn malformed_messages_get_errors() {
    let mut f = fx("bad", 48200, 48299, CoreConfig::default());
    let good = sdp("10.0.0.1", 4000, "");
    let enc = |d: Dict| bt_encode(&d.into_value());
    let offer = |sdp: &str| {
        Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr("x"))
            .with("from-tag", bstr("a"))
            .with("sdp", bstr(sdp))
    };
    let mut deep = b"d1:a".to_vec();
    deep.extend(vec![b'l'; 5000]);
    deep.extend(vec![b'e'; 5001]);
    let bad: Vec<Vec<u8>> = vec![
        b"d7:command4:pi".to_vec(),
        b"d7:command4:ping".to_vec(),
        b"".to_vec(),
        b"garbage".to_vec(),
        b"l7:command4:pinge".to_vec(),
        b"i42e".to_vec(),
        b"d7:command4:pingeTRAILING".to_vec(),
        b"d7:commandi1ee".to_vec(),
        b"d7:command4:fly!e".to_vec(),
        b"de".to_vec(),
        b"d3:sdp99999999999:xe".to_vec(),
        b"d7:command999999999999999999999999:pinge".to_vec(),
        b"d7:command4:pingi1e".to_vec(),
        deep,
        b"di1e4:pinge".to_vec(),
        b"d7:command6:offer7:call-id1:x8:from-tag1:ae".to_vec(),
        enc(offer(&good).with("call-id", int(5))),
        enc(offer(&good).with("from-tag", str_list(["a"]))),
        enc(Dict::new()
            .with("command", bstr("offer"))
            .with("from-tag", bstr("a"))
            .with("sdp", bstr(good.clone()))),
        enc(Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr("x"))
            .with("sdp", bstr(good.clone()))),
        enc(offer(
            "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\n",
        )),
        enc(offer("this is not sdp")),
        enc(offer(
            "v=0\r\nc=IN IP4 300.1.1.1\r\nm=audio 4000 RTP/AVP 0\r\n",
        )),
        enc(offer(
            "v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 99999 RTP/AVP 0\r\n",
        )),
        enc(offer(&good).with("flags", int(3))),
        enc(offer(&good).with("replace", Value::List(vec![int(1)]))),
        enc(Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr("unknown"))
            .with("from-tag", bstr("a"))
            .with("to-tag", bstr("b"))
            .with("sdp", bstr(good.clone()))),
        enc(Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr("x"))
            .with("from-tag", bstr("a"))
            .with("sdp", bstr(good.clone()))),
        enc(Dict::new()
            .with("command", bstr("query"))
            .with("call-id", bstr("nope"))),
        enc(Dict::new()
            .with("command", bstr("list"))
            .with("limit", int(-1))),
    ];
    assert_eq!(bad.len(), 30);
    for (i, body) in bad.iter().enumerate() {
        let cookie = format!("bad{i}");
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend_from_slice(body);
        let reply = f
            .raw(&msg, T0)
            .unwrap_or_else(|| panic!("message {i}: no reply"));
        let rest = reply.strip_prefix(format!("{cookie} ").as_bytes()).unwrap();
        let d = Value::Dict(decode_dict(rest).unwrap());
        assert_eq!(s(at(&d, &["result"])), "error", "message {i}: {d:?}");
        assert!(!s(at(&d, &["error-reason"])).is_empty());
    }
    assert_eq!(f.core.stats().errors, 30);
    assert_eq!(f.table.count(SlotState::Free), f.table.capacity());
    assert_eq!(
        f.raw(b"p d7:command4:pinge", T0).unwrap(),
        b"p d6:result4:ponge"
    );
    // No cookie: nothing to answer with.
    assert_eq!(f.raw(b"d7:command4:pinge", T0), None);
    assert_eq!(f.raw(b" d7:command4:pinge", T0), None);
}

/// Arbitrary bytes never panic the core.
#[test]
fn fuzzish_inputs_never_panic() {
    let mut f = fx("fuzz", 48300, 48399, CoreConfig::default());
    let seed = b"c d7:command5:offer7:call-id1:x8:from-tag1:a3:sdp60:v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:4001\r\n5:flagsl13:trust-addressee";
    let mut state = 0x1234_5678_u64;
    let mut rnd = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut m = seed.to_vec();
        for _ in 0..(rnd() % 4 + 1) {
            let pos = (rnd() as usize) % m.len();
            match rnd() % 3 {
                0 => m[pos] = rnd() as u8,
                1 => {
                    m.truncate(pos.max(2));
                }
                _ => m.insert(pos, b"dlie:0123456789 "[(rnd() % 16) as usize]),
            }
        }
        let _ = f.raw(&m, T0);
        f.core.poll_timeouts(T0);
    }
    assert_eq!(
        f.raw(b"p d7:command4:pinge", T0).unwrap(),
        b"p d6:result4:ponge"
    );
}

/// The core's random choices come from the RNG it is handed: the same
/// seed picks the same slot (ports) and SSRC on a fresh table, another
/// seed other ones.
#[test]
fn a_seeded_core_picks_the_same_ports_and_ssrc() {
    use rand::SeedableRng;
    let run = |name: &str, seed: u64| {
        let mut f = fx(name, 48000, 48399, CoreConfig::default());
        f.core = NgCore::with_rng(
            f.table.clone(),
            CoreConfig::default(),
            T0,
            rand::rngs::StdRng::seed_from_u64(seed),
        );
        let sdp = Fx::ok_sdp(&f.offer(
            "s1",
            "a",
            &sdp("10.0.0.1", 4000, ""),
            Dict::new().with("flags", str_list(["SSRC-rewrite"])),
        ));
        let slot = f.core.slots_of("s1")[0];
        let ssrc = f.table.read_config(slot).unwrap().0.legs[1].out_ssrc;
        (sdp, ssrc)
    };
    let (a, b) = (run("seed-a", 7), run("seed-b", 7));
    assert_eq!(a, b);
    assert_ne!(a.1, 0);
    let others: Vec<_> = (8..12).map(|s| run(&format!("seed-{s}"), s)).collect();
    assert!(
        others.iter().any(|o| o != &a),
        "other seeds choose otherwise"
    );
}

// Secure media: SDES both ways, ICE-lite, refusals.

fn crypto_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("a=crypto:")).collect()
}

fn slot_of(f: &Fx, reply_sdp: &str) -> u32 {
    let port = m_port(reply_sdp);
    (0..f.table.capacity())
        .find(|&id| (0..2).any(|leg| f.table.ports(id, leg).rtp == port))
        .expect("a slot owns the answered port")
}

#[test]
fn sdes_offer_to_an_srtp_answerer_keys_both_directions() {
    let mut f = fx("sdes-out", 48400, 48499, CoreConfig::default());
    let a = sdp("10.0.0.1", 4000, "");
    let offer = Fx::ok_sdp(&f.offer(
        "sdes1",
        "ft",
        &a,
        Dict::new().with("transport-protocol", bstr("RTP/SAVP")),
    ));
    assert!(
        offer.contains("m=audio ") && offer.contains(" RTP/SAVP 0 8 101"),
        "{offer}"
    );
    let lines = crypto_lines(&offer);
    let names: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(
        names,
        [
            "AEAD_AES_256_GCM",
            "AEAD_AES_128_GCM",
            "AES_256_CM_HMAC_SHA1_80",
            "AES_CM_128_HMAC_SHA1_80",
            "AES_CM_128_HMAC_SHA1_32"
        ]
    );
    assert!(lines[0].starts_with("a=crypto:1 "), "{offer}");
    // The answerer picks tag 7 and sends with its own key.
    let theirs = [0x42u8; 30];
    let b = format!(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/SAVP 0\r\na=crypto:{}\r\n",
        tern_shared::sdp::crypto_value(7, "AES_CM_128_HMAC_SHA1_80", &theirs)
    );
    let ans = Fx::ok_sdp(&f.answer("sdes1", "ft", "tt", &b, Dict::new()));
    assert!(
        ans.contains(" RTP/AVP 0"),
        "the offerer gets its own protocol: {ans}"
    );
    assert!(crypto_lines(&ans).is_empty(), "{ans}");
    let id = slot_of(&f, &ans);
    let (cfg, _) = f.table.read_config(id).unwrap();
    assert!(cfg.legs[0].secure.is_plain());
    let b_sec = cfg.legs[1].secure;
    assert_eq!(b_sec.rx.unwrap().suite, 1);
    assert_eq!(b_sec.rx.unwrap().key_salt(), &theirs[..]);
    let ours = tern_shared::sdp::Crypto::parse(&lines[3]["a=crypto:".len()..]).unwrap();
    assert_eq!(
        b_sec.tx.unwrap().key_salt(),
        ours.key_salt(),
        "tag 4's offered key"
    );

    // An answer naming a tag never offered is refused.
    let bad = b.replace("a=crypto:7 ", "a=crypto:9 ");
    let v = f.answer("sdes1", "ft", "tt", &bad, Dict::new());
    assert_eq!(s(at(&v, &["result"])), "error");
    assert!(s(at(&v, &["error-reason"])).contains("a=crypto"), "{v:?}");
}

#[test]
fn sdes_flags_limit_what_is_offered() {
    let mut f = fx("sdes-flags", 48500, 48599, CoreConfig::default());
    let a = sdp("10.0.0.1", 4000, "");
    let only = Fx::ok_sdp(
        &f.offer(
            "sdes2",
            "ft",
            &a,
            Dict::new()
                .with("transport-protocol", bstr("RTP/SAVP"))
                .with("SDES", str_list(["only-AES_CM_128_HMAC_SHA1_80"])),
        ),
    );
    let lines = crypto_lines(&only);
    assert_eq!(lines.len(), 1, "{only}");
    assert!(lines[0].starts_with("a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:"));
    let v = f.offer(
        "sdes3",
        "ft",
        &a,
        Dict::new()
            .with("transport-protocol", bstr("RTP/SAVP"))
            .with("flags", str_list(["SDES-off"])),
    );
    assert_eq!(s(at(&v, &["result"])), "error", "nothing left to offer");
}

#[test]
fn sdes_offerer_bridged_to_plain_gets_the_relays_key_in_the_answer() {
    let mut f = fx("sdes-in", 48600, 48699, CoreConfig::default());
    let theirs = [7u8; 28];
    let a = format!(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:{}\r\na=crypto:{}\r\n",
        tern_shared::sdp::crypto_value(3, "AEAD_AES_128_GCM", &theirs),
        tern_shared::sdp::crypto_value(5, "NO_SUCH_SUITE", &[1u8; 30]),
    );
    let offer = Fx::ok_sdp(&f.offer(
        "sdes4",
        "ft",
        &a,
        Dict::new().with("transport-protocol", bstr("RTP/AVP")),
    ));
    assert!(
        offer.contains(" RTP/AVP 0") && crypto_lines(&offer).is_empty(),
        "{offer}"
    );
    let ans = Fx::ok_sdp(&f.answer("sdes4", "ft", "tt", &sdp("10.0.0.2", 5000, ""), Dict::new()));
    assert!(ans.contains(" RTP/SAVP "), "{ans}");
    let lines = crypto_lines(&ans);
    assert_eq!(lines.len(), 1, "{ans}");
    let ours = tern_shared::sdp::Crypto::parse(&lines[0]["a=crypto:".len()..]).unwrap();
    assert_eq!((ours.tag, ours.suite), (3, "AEAD_AES_128_GCM"));
    let id = slot_of(&f, &ans);
    let (cfg, _) = f.table.read_config(id).unwrap();
    let a_sec = cfg.legs[0].secure;
    assert_eq!(a_sec.rx.unwrap().key_salt(), &theirs[..]);
    assert_eq!(a_sec.tx.unwrap().key_salt(), ours.key_salt());
    assert_ne!(ours.key_salt(), &theirs[..], "the relay's own key");
    assert!(cfg.legs[1].secure.is_plain());

    // query names the suite, never a key.
    let q = f.cmd(
        Dict::new()
            .with("command", bstr("query"))
            .with("call-id", bstr("sdes4")),
    );
    let text = format!("{q:?}");
    assert!(text.contains("AEAD_AES_128_GCM"), "{text}");
    let b64 = lines[0].split("inline:").nth(1).unwrap();
    assert!(!text.contains(b64), "no key in query");
}

#[test]
fn ice_lite_toward_an_ice_peer_with_host_candidates() {
    let mut f = fx("ice", 48700, 48799, CoreConfig::default());
    let a = sdp(
        "10.0.0.1",
        4000,
        "a=ice-ufrag:Abcd\r\na=ice-pwd:0123456789012345678901\r\na=candidate:1 1 UDP 2130706431 10.0.0.1 4000 typ host\r\n",
    );
    let offer = Fx::ok_sdp(&f.offer("ice1", "ft", &a, Dict::new().with("ICE", bstr("force"))));
    assert!(offer.contains("a=ice-lite\r\n"), "{offer}");
    assert!(
        !offer.contains("Abcd"),
        "the peer's credentials do not travel: {offer}"
    );
    let port = m_port(&offer);
    assert!(
        offer.contains(&format!("192.0.2.1 {port} typ host")),
        "a host candidate on the relay's port: {offer}"
    );
    let id = slot_of(&f, &offer);
    let (cfg, _) = f.table.read_config(id).unwrap();
    let a_ice = cfg.legs[0].secure.ice.expect("ICE-lite toward A");
    assert_eq!(a_ice.remote_ufrag.unwrap().as_str(), "Abcd");
    let b_ice = cfg.legs[1].secure.ice.expect("ICE-lite toward B (force)");
    assert!(offer.contains(&format!("a=ice-ufrag:{}", b_ice.local_ufrag.as_str())));
    assert_eq!(b_ice.local_pwd.as_str().len(), 24);
    // ICE=remove strips it.
    let plain = Fx::ok_sdp(&f.offer("ice2", "ft", &a, Dict::new().with("ICE", bstr("remove"))));
    assert!(
        !plain.contains("ice-") && !plain.contains("candidate"),
        "{plain}"
    );
}

#[test]
fn dtls_offerer_gets_the_relays_fingerprint_and_query_follows_the_handshake() {
    let mut f = fx("dtls", 48800, 48899, CoreConfig::default());
    let a = sdp(
        "10.0.0.1",
        4000,
        "a=fingerprint:sha-256 AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB\r\na=setup:actpass\r\na=rtcp-mux\r\n",
    )
    .replace("RTP/AVP", "UDP/TLS/RTP/SAVPF");
    let plain = Dict::new().with("transport-protocol", bstr("RTP/AVP"));
    // No dataplane has published a certificate: DTLS cannot be answered.
    let v = f.offer("dtls0", "ft", &a, plain.clone());
    assert_eq!(s(at(&v, &["result"])), "error", "{v:?}");
    assert!(s(at(&v, &["error-reason"])).contains("DTLS"));

    f.table.set_dtls_fingerprint(&[0xcd; 32]);
    let offer = Fx::ok_sdp(&f.offer("dtls1", "ft", &a, plain));
    assert!(
        offer.contains(" RTP/AVP ") && !offer.contains("fingerprint"),
        "{offer}"
    );
    let id = slot_of(&f, &offer);
    let (cfg, _) = f.table.read_config(id).unwrap();
    let d = cfg.legs[0].secure.dtls.expect("DTLS toward A");
    assert_eq!(
        d.role,
        tern_shared::table::DtlsRole::Active,
        "answering actpass, the relay connects"
    );
    assert_eq!(d.digest(), &[0xab; 32][..]);
    let ans = Fx::ok_sdp(&f.answer("dtls1", "ft", "tt", &sdp("10.0.0.2", 5000, ""), Dict::new()));
    assert!(ans.contains(" UDP/TLS/RTP/SAVPF "), "{ans}");
    assert!(
        ans.contains(&format!("a=fingerprint:sha-256 {}", ["CD"; 32].join(":"))),
        "{ans}"
    );
    assert!(
        ans.contains("a=setup:active") && !ans.contains("AB:AB"),
        "{ans}"
    );

    let query = |f: &mut Fx| {
        let q = f.cmd(
            Dict::new()
                .with("command", bstr("query"))
                .with("call-id", bstr("dtls1")),
        );
        s(at(&q, &["tags", "ft", "medias", "0", "DTLS"]))
    };
    assert_eq!(query(&mut f), "active, handshaking");
    let k = tern_shared::table::SrtpKeying::new(1, &[9u8; 30]).unwrap();
    f.table.set_dtls_keying(id, 0, Some((k, k))).unwrap();
    assert_eq!(query(&mut f), "active, connected");
}
