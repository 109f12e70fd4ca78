//! 20 concurrent calls with media (`sipp -l 20`, 60 calls in all) through
//! `tern up` complete with no failed call, and leave every slot free.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn sixty_calls_twenty_at_a_time_all_succeed() {
    let instance = format!("e2e-conc-{}", std::process::id());
    let dir = sipp_workdir("e2e-conc");
    let (_tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            "127.0.0.1:15260",
            "--ports",
            "31200-31599",
            "--workers",
            "2",
            "--instance",
            &instance,
            "--ng",
            "127.0.0.1:22302",
        ],
        &["tern sip: listening"],
    );
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            "15270",
            "-mp",
            "16200",
            "-rtp_echo",
            "-timeout",
            "120s",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:15270", "127.0.0.1:15260", 15271, &dir);
    let watch = SlotWatch::start(&instance);
    let ok = sipp_run(
        &[
            "127.0.0.1:15260",
            "-sn",
            "uac_pcap",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "15280",
            "-mp",
            "17200",
            "-l",
            "20",
            "-m",
            "60",
            "-r",
            "10",
            "-timeout",
            "110s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(120),
    );
    let seen = watch.finish();
    uas.stop();
    assert!(ok, "a call failed");
    // Every call had media both ways through its slot.
    assert!(seen.len() >= 20, "saw {} slots", seen.len());
    let with_media = seen
        .iter()
        .filter(|s| s.legs[0].rx_packets > 0 && s.legs[1].rx_packets > 0)
        .count();
    assert!(
        with_media * 10 >= seen.len() * 9,
        "{with_media} of {} slots had media both ways",
        seen.len()
    );
    assert!(
        wait_all_free(&instance, Duration::from_secs(10)),
        "slots left after the calls"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(_tern);
    unlink_table(&instance);
}
