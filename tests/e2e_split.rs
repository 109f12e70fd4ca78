//! The same call with `tern relay` and `tern sip --relay shm:NAME` as
//! separate processes; the relay is killed and restarted mid-call and the
//! media resumes through the same ports, with no new SDP.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tern_shared::table::{SlotState, SlotTable};

#[test]
fn relay_restart_mid_call_resumes_media_on_the_same_ports() {
    let instance = format!("e2e-split-{}", std::process::id());
    let dir = sipp_workdir("e2e-split");
    let relay_args = [
        "relay",
        "--ports",
        "31100-31199",
        "--workers",
        "1",
        "--instance",
        instance.as_str(),
        "--ng",
        "127.0.0.1:22304",
    ];
    let (mut relay, _) = spawn_tern(&relay_args, &["tern relay"]);
    let shm = format!("shm:{instance}");
    let (_sip, _) = spawn_tern(
        &["sip", "--sip", "127.0.0.1:15160", "--relay", &shm],
        &["tern sip: listening"],
    );

    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            "15170",
            "-mp",
            "16100",
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:15170", "127.0.0.1:15160", 15171, &dir);
    let mut uac = sipp(
        &[
            "127.0.0.1:15160",
            "-sn",
            "uac_pcap",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "15180",
            "-mp",
            "17100",
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
    );

    // Wait (bounded) for media to flow through an active slot.
    let table = SlotTable::open(&instance).expect("table");
    let deadline = Instant::now() + Duration::from_secs(10);
    let slot = loop {
        assert!(Instant::now() < deadline, "no media through the relay");
        if let Some(id) = (0..table.capacity()).find(|&i| table.state(i) == SlotState::Active) {
            let s = table.stats(id, 1).unwrap();
            if s.rx_packets > 20 {
                break id;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ports_before = [table.ports(slot, 0), table.ports(slot, 1)];
    let generation = table.generation(slot);

    relay.kill_hard();
    let at_kill = [table.stats(slot, 0).unwrap(), table.stats(slot, 1).unwrap()];
    std::thread::sleep(Duration::from_millis(500));
    let (_relay2, _) = spawn_tern(&relay_args, &["tern relay"]);

    // The same slot, same ports, and the counters move again.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(table.state(slot), SlotState::Active);
    assert_eq!(
        table.generation(slot),
        generation,
        "the call must keep its slot"
    );
    assert_eq!([table.ports(slot, 0), table.ports(slot, 1)], ports_before);
    let after = [table.stats(slot, 0).unwrap(), table.stats(slot, 1).unwrap()];
    assert!(
        after[0].rx_packets > at_kill[0].rx_packets + 20,
        "caller media did not resume: {at_kill:?} -> {after:?}"
    );
    assert!(
        after[1].rx_packets > at_kill[1].rx_packets + 20,
        "bob's media did not resume: {at_kill:?} -> {after:?}"
    );
    assert!(after[0].tx_packets > at_kill[0].tx_packets + 20);

    let st = uac.wait_for(Duration::from_secs(40));
    if st.map(|s| s.success()) != Some(true) {
        dump_sipp_errors(&dir);
    }
    assert_eq!(st.map(|s| s.success()), Some(true), "the call failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "uas failed"
    );
    assert!(
        wait_all_free(&instance, Duration::from_secs(5)),
        "slot not freed after BYE"
    );
    let _ = std::fs::remove_dir_all(&dir);
    unlink_table(&instance);
}
