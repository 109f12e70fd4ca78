//! No silent key: every key, flag and list value of rtpengine 10.5
//! (tests/data/rtpengine_10_5_keys.json) that docs/NG.md marks
//! unsupported comes back in the reply's `warning`, and those it marks
//! supported do not. Also: `rtpp-flags` equals the dictionary form, the
//! session limit answers `load limit`, and `statistics` carries
//! rtpengine's keys. Tables only (no sockets); port numbers 49200-49399.

use std::collections::HashMap;
use std::net::SocketAddr;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tern_ng::bencode::{bstr, decode_dict, encode, int, str_list, Dict, Value};
use tern_ng::{CoreConfig, NgCore};
use tern_shared::table::testing::TempTable;

const T0: u64 = 1_700_000_000_000;

struct Fx {
    core: NgCore,
    _table: TempTable,
    n: u64,
}

fn fx(name: &str, lo: u16, cfg: CoreConfig) -> Fx {
    let table = TempTable::new(&format!("ngkeys-{name}"), lo, lo + 39, 1).unwrap();
    Fx {
        core: NgCore::with_rng(table.clone(), cfg, T0, StdRng::seed_from_u64(7)),
        _table: table,
        n: 0,
    }
}

fn sdp() -> &'static str {
    "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
     m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Dict(d) => d.get(p.as_bytes())?,
            _ => return None,
        };
    }
    Some(cur)
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    get(v, path)
        .and_then(Value::as_byte_str)
        .map(|b| String::from_utf8_lossy(b.as_slice()).into_owned())
}

/// The `warning` split into its groups: `unsupported G: a, b` → G → names.
fn warned(v: &Value) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    if let Some(w) = text(v, &["warning"]) {
        for part in w.split("; ") {
            if let Some(rest) = part.strip_prefix("unsupported ") {
                if let Some((g, names)) = rest.split_once(": ") {
                    out.insert(
                        g.to_string(),
                        names.split(", ").map(str::to_string).collect(),
                    );
                }
            }
        }
    }
    out
}

impl Fx {
    fn cmd(&mut self, d: Dict) -> Value {
        self.n += 1;
        let mut msg = format!("c{} ", self.n).into_bytes();
        msg.extend(encode(&d.into_value()));
        let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let reply = self.core.handle(&msg, src, T0 + self.n).expect("a reply");
        let cut = reply.iter().position(|&b| b == b' ').unwrap();
        Value::Dict(decode_dict(&reply[cut + 1..]).unwrap())
    }

    fn offer(&mut self, call: &str, extra: Dict) -> Value {
        let mut d = extra;
        d.set("command", bstr("offer"))
            .set("call-id", bstr(call))
            .set("from-tag", bstr("ft"))
            .set("sdp", bstr(sdp()));
        self.cmd(d)
    }
}

#[test]
fn unknown_key_and_unknown_flag_are_warned_and_counted() {
    let mut f = fx("unknown", 49200, CoreConfig::default());
    let r = f.offer(
        "u1",
        Dict::new()
            .with("frobnicate", bstr("yes"))
            .with("label", bstr("x"))
            .with("flags", str_list(["loop-protect", "trust-address"])),
    );
    assert_eq!(text(&r, &["result"]).as_deref(), Some("ok"), "{r:?}");
    let w = text(&r, &["warning"]).unwrap();
    assert_eq!(
        w, "unsupported ng keys: frobnicate, label; unsupported flags: loop-protect",
        "{r:?}"
    );
    assert_eq!(f.core.stats().unsupported, 3);
    // Supported keys and flags, in rtpengine's other spellings: silent.
    let r = f.offer(
        "u2",
        Dict::new()
            .with("call ID", bstr("u2"))
            .with("transport protocol", bstr("rtp/avp"))
            .with("ice", bstr("remove"))
            .with(
                "flags",
                str_list(["sip source address", "no-RTCP-attribute"]),
            ),
    );
    assert_eq!(get(&r, &["warning"]), None, "{r:?}");
    assert_eq!(f.core.stats().unsupported, 3);
    // The statistics reply counts them too.
    let st = f.cmd(Dict::new().with("command", bstr("statistics")));
    let n = get(&st, &["statistics", "controlstatistics", "unsupported"]).and_then(Value::as_u64);
    assert_eq!(n, Some(3));
}

/// docs/NG.md's rows: every backticked name of a row's first cell → the
/// row's status cell, per table group.
struct Doc {
    keys: HashMap<String, String>,
    flags: HashMap<String, String>,
    /// (prefix before `<`, status), longest first.
    prefixes: Vec<(String, String)>,
    /// `replace`, `rtcp-mux`, `SDES` values.
    values: HashMap<&'static str, HashMap<String, String>>,
}

fn names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn read_doc() -> Doc {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/NG.md");
    let md = std::fs::read_to_string(path).unwrap();
    let mut doc = Doc {
        keys: HashMap::new(),
        flags: HashMap::new(),
        prefixes: Vec::new(),
        values: HashMap::new(),
    };
    let (mut h2, mut h3) = (String::new(), String::new());
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            h2 = h.to_string();
            h3.clear();
            continue;
        }
        if let Some(h) = line.strip_prefix("### ") {
            h3 = h.to_string();
            continue;
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        if !line.starts_with("| `") || cells.len() < 3 {
            continue;
        }
        let status = cells[2].trim().to_string();
        let row = names(cells[0]);
        if h2 == "Dictionary keys" {
            for n in row {
                doc.keys.insert(n, status.clone());
            }
        } else if h2.starts_with("Flags") && h3.starts_with("Prefix flags") {
            // `SDES-no-<suite>`, `OSRTP-accept\|offer`: the prefix.
            if let Some(n) = row.first() {
                let p = match (n.find('<'), n.find('\\')) {
                    (Some(i), _) => &n[..i],
                    (None, Some(i)) => n[..i].rfind('-').map_or(n.as_str(), |j| &n[..=j]),
                    (None, None) => n.as_str(),
                };
                doc.prefixes.push((p.to_string(), status.clone()));
            }
        } else if h2.starts_with("Flags") {
            for n in row {
                doc.flags.insert(n, status.clone());
            }
        } else if h2 == "Sub-values" {
            let group = match h3.as_str() {
                "`replace` values" => "replace",
                "`rtcp-mux` values" => "rtcp-mux",
                "`SDES` values" => "SDES",
                _ => continue,
            };
            let m = doc.values.entry(group).or_default();
            for n in row.into_iter().filter(|n| !n.contains('<')) {
                m.insert(n, status.clone());
            }
        }
    }
    doc.prefixes
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    doc
}

/// The convention of docs/NG.md: a status cell that starts with `not
/// supported` or `partial, warned` means the name comes back in
/// `warning`.
fn warns(status: &str) -> bool {
    status.starts_with("not supported") || status.starts_with("partial, warned")
}

fn keys_json() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rtpengine_10_5_keys.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A value tern accepts for a key it implements (the canonical name).
fn benign(key: &str) -> Value {
    match key {
        "call-id" | "call-ID" | "call id" | "call ID" => bstr("k"),
        "from-tag" => bstr("ft"),
        "to-tag" => bstr("tt"),
        "sdp" | "SDP" => bstr(sdp()),
        "received-from" | "received from" => str_list(["IP4", "10.0.0.2"]),
        "flags" | "replace" | "rtcp-mux" | "RTCP-mux" | "SDES" | "sdes" => str_list::<&str>([]),
        "ICE" | "ice" => bstr("default"),
        "DTLS" | "dtls" => bstr("passive"),
        k if k.eq_ignore_ascii_case("dtls-fingerprint")
            || k.eq_ignore_ascii_case("dtls fingerprint") =>
        {
            bstr("sha-256")
        }
        "transport-protocol" | "transport protocol" => bstr("RTP/AVP"),
        "direction" => str_list(["internal", "internal"]),
        "supports" => str_list(["load limit"]),
        "codec" => Dict::new().into_value(),
        // The relay's one unnamed interface answers to `default`.
        "interface" | "from-interface" | "from interface" | "to-interface" | "to interface" => {
            bstr("default")
        }
        "address-family" | "address family" => bstr("IP4"),
        "media-address" | "media address" => bstr("10.0.0.2"),
        "TOS" | "tos" => int(184),
        "delete-delay" | "delete delay" => int(0),
        // A value the key understands (no recording dir is set here).
        "record-call" | "record call" => bstr("no"),
        "limit" => int(5),
        _ => bstr("x"),
    }
}

#[test]
fn every_rtpengine_key_flag_and_value_warns_as_ng_md_says() {
    let doc = read_doc();
    let data = keys_json();
    let mut f = fx("every", 49240, CoreConfig::default());
    let mut checked = 0;
    let mut bad: Vec<String> = Vec::new();

    for key in strings(&data["keys"]) {
        if key == "command" {
            continue;
        }
        let status = doc
            .keys
            .get(&key)
            .unwrap_or_else(|| panic!("docs/NG.md has no row for key {key:?}"));
        let r = f.offer("k", Dict::new().with(&key, benign(&key)));
        assert_eq!(text(&r, &["result"]).as_deref(), Some("ok"), "{key}: {r:?}");
        let w = warned(&r);
        let named = w.get("ng keys").is_some_and(|n| n.contains(&key));
        check(&mut bad, "key", &key, status, named, &r);
        checked += 1;
    }

    let mut flags = strings(&data["flags"]);
    flags.extend(strings(&data["flag_prefix_examples"]));
    for flag in flags {
        let status = doc
            .flags
            .get(&flag)
            .or_else(|| {
                let v = flag.strip_prefix("SDES-")?;
                doc.values.get("SDES")?.get(v)
            })
            .or_else(|| {
                doc.prefixes
                    .iter()
                    .find(|(p, _)| flag.starts_with(p.as_str()))
                    .map(|(_, s)| s)
            })
            .unwrap_or_else(|| panic!("docs/NG.md has no row for flag {flag:?}"));
        // `fatal` only means something to delete; an offer with it is fine.
        let r = f.offer("k", Dict::new().with("flags", str_list([flag.as_str()])));
        assert_eq!(
            text(&r, &["result"]).as_deref(),
            Some("ok"),
            "{flag}: {r:?}"
        );
        let named = warned(&r).get("flags").is_some_and(|n| n.contains(&flag));
        check(&mut bad, "flag", &flag, status, named, &r);
        checked += 1;
    }

    for group in ["replace", "rtcp-mux", "SDES"] {
        let sub = &data["sub_values"][group];
        for v in strings(sub).into_iter().filter(|v| !v.contains('<')) {
            let status = doc.values[group]
                .get(&v)
                .unwrap_or_else(|| panic!("docs/NG.md has no {group} row for {v:?}"));
            let r = f.offer("k", Dict::new().with(group, str_list([v.as_str()])));
            assert_eq!(text(&r, &["result"]).as_deref(), Some("ok"), "{v}: {r:?}");
            let hy = v.replace(' ', "-");
            let named = warned(&r).get(group).is_some_and(|n| n.contains(&hy));
            check(&mut bad, group, &v, status, named, &r);
            checked += 1;
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert!(checked > 250, "{checked}");
}

/// Records a name whose reply disagrees with its NG.md status: warned
/// when it should not be, or the other way round.
fn check(bad: &mut Vec<String>, kind: &str, name: &str, status: &str, named: bool, r: &Value) {
    let warning = text(r, &["warning"]);
    let ok = if warns(status) {
        named
    } else {
        warning.is_none()
    };
    if !ok {
        bad.push(format!("{kind} {name:?} [{status}]: warning {warning:?}"));
    }
}

#[test]
fn rtpp_flags_string_equals_the_dictionary_form() {
    let rtpp = "trust-address replace-origin replace-session-connection ICE=remove RTP/AVP \
                rtcp-mux-demux SDES-off received-from=10.0.0.9 direction=internal \
                direction=external symmetric loop-protect delete-delay=3";
    let mut a = fx("rtpp-a", 49280, CoreConfig::default());
    let mut b = fx("rtpp-b", 49280, CoreConfig::default());
    let ra = a.offer("r1", Dict::new().with("rtpp-flags", bstr(rtpp)));
    let rb = b.offer(
        "r1",
        Dict::new()
            .with(
                "flags",
                str_list([
                    "trust-address",
                    "replace-origin",
                    "replace-session-connection",
                    "rtcp-mux-demux",
                    "SDES-off",
                    "symmetric",
                    "loop-protect",
                ]),
            )
            .with("ICE", bstr("remove"))
            .with("transport-protocol", bstr("RTP/AVP"))
            .with("received-from", str_list(["IP4", "10.0.0.9"]))
            .with("direction", str_list(["internal", "external"]))
            .with("delete-delay", int(3)),
    );
    assert_eq!(text(&ra, &["result"]).as_deref(), Some("ok"), "{ra:?}");
    assert_eq!(ra, rb);
    assert_eq!(
        text(&ra, &["warning"]).as_deref(),
        // `external` asks for IPv6, which a v4-only relay lacks (as
        // rtpengine, which logs it).
        Some("unsupported flags: loop-protect; Requested address family (IP6) not supported")
    );
    // OpenSIPS's spelling of the key, and an unknown key=value token.
    let r = a.offer(
        "r2",
        Dict::new().with("rtpp_flags", bstr("trust-address media-echo=both")),
    );
    assert_eq!(
        text(&r, &["warning"]).as_deref(),
        Some("unsupported ng keys: media-echo")
    );
}

#[test]
fn max_sessions_answers_load_limit_for_new_calls_only() {
    let cfg = CoreConfig {
        max_calls: 2,
        ..CoreConfig::default()
    };
    let mut f = fx("limit", 49320, cfg);
    let load = || Dict::new().with("supports", str_list(["load limit"]));
    for c in ["m1", "m2"] {
        let r = f.offer(c, load());
        assert_eq!(text(&r, &["result"]).as_deref(), Some("ok"), "{r:?}");
    }
    let r = f.offer("m3", load());
    assert_eq!(
        text(&r, &["result"]).as_deref(),
        Some("load limit"),
        "{r:?}"
    );
    assert_eq!(
        text(&r, &["message"]).as_deref(),
        Some("Parallel session limit reached")
    );
    assert_eq!(get(&r, &["sdp"]), None);
    // Without `supports`: rtpengine's legacy error.
    let r = f.offer("m3", Dict::new());
    assert_eq!(text(&r, &["result"]).as_deref(), Some("error"));
    assert_eq!(
        text(&r, &["error-reason"]).as_deref(),
        Some("Parallel session limit reached")
    );
    // A re-offer of a call held is not limited.
    let r = f.offer("m1", load());
    assert_eq!(text(&r, &["result"]).as_deref(), Some("ok"), "{r:?}");
    // After a delete there is room again.
    let r = f.cmd(
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("m2")),
    );
    assert_eq!(text(&r, &["result"]).as_deref(), Some("ok"), "{r:?}");
    let r = f.offer("m3", load());
    assert_eq!(text(&r, &["result"]).as_deref(), Some("ok"), "{r:?}");
    let st = f.core.stats();
    assert_eq!((st.load_limited, st.calls_current), (2, 2));
    let s = f.cmd(Dict::new().with("command", bstr("statistics")));
    let n = |p: &[&str]| get(&s, p).and_then(Value::as_u64);
    assert_eq!(
        n(&["statistics", "totalstatistics", "rejectedsessions"]),
        Some(2)
    );
    assert_eq!(
        n(&["statistics", "controlstatistics", "loadlimited"]),
        Some(2)
    );
}

#[test]
fn statistics_has_rtpengines_keys() {
    let mut f = fx("stats", 49360, CoreConfig::default());
    f.offer("s1", Dict::new());
    let s = f.cmd(Dict::new().with("command", bstr("statistics")));
    for k in [
        "sessionsown",
        "sessionsforeign",
        "sessionstotal",
        "transcodedmedia",
        "packetrate_user",
        "byterate_user",
        "errorrate_user",
        "packetrate_kernel",
        "byterate_kernel",
        "errorrate_kernel",
        "packetrate",
        "byterate",
        "errorrate",
        "media_userspace",
        "media_kernel",
        "media_mixed",
    ] {
        let v = get(&s, &["statistics", "currentstatistics", k]);
        assert!(
            v.and_then(Value::as_u64).is_some(),
            "currentstatistics.{k}: {s:?}"
        );
    }
    let cur = |k: &str| get(&s, &["statistics", "currentstatistics", k]).and_then(Value::as_u64);
    assert_eq!(
        (
            cur("sessionsown"),
            cur("sessionstotal"),
            cur("media_userspace")
        ),
        (Some(1), Some(1), Some(1))
    );
    for k in [
        "managedsessions",
        "rejectedsessions",
        "timeoutsessions",
        "silenttimeoutsessions",
        "finaltimeoutsessions",
        "offertimeoutsessions",
        "regularterminatedsessions",
        "forcedterminatedsessions",
        "relayedpackets_user",
        "relayedpacketerrors_user",
        "relayedbytes_user",
        "relayedpackets_kernel",
        "relayedpacketerrors_kernel",
        "relayedbytes_kernel",
        "relayedpackets",
        "relayedpacketerrors",
        "relayedbytes",
        "zerowaystreams",
        "onewaystreams",
    ] {
        let v = get(&s, &["statistics", "totalstatistics", k]);
        assert!(
            v.and_then(Value::as_u64).is_some(),
            "totalstatistics.{k}: {s:?}"
        );
    }
    for k in ["uptime", "avgcallduration", "totalcallsduration"] {
        assert!(
            text(&s, &["statistics", "totalstatistics", k]).is_some(),
            "{k}"
        );
    }
}
