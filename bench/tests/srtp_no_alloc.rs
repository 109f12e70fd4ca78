//! The SRTP/SRTCP per-packet path allocates nothing: a counting global
//! allocator around protect and unprotect, every suite, including new
//! SSRCs, LRU eviction, a ROC wrap and refused packets.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use tern_secure::srtp::{Context, Suite};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Only the measuring thread counts: the test harness's own threads
    // allocate while it runs (output capture, progress notes).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rtp(buf: &mut [u8; 256], seq: u16, ssrc: u32) -> usize {
    buf.fill(0x5a);
    buf[0] = 0x80;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    172
}

fn rtcp(buf: &mut [u8; 256], ssrc: u32) -> usize {
    buf.fill(0x3c);
    buf[..4].copy_from_slice(&[0x81, 201, 0, 7]);
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    32
}

#[test]
fn per_packet_path_does_not_allocate() {
    let contexts: Vec<(Context, Context)> = Suite::ALL
        .iter()
        .map(|&s| {
            let key = vec![7u8; s.key_len()];
            let salt = vec![9u8; s.salt_len()];
            (
                Context::new(s, &key, &salt).expect("tx"),
                Context::new(s, &key, &salt).expect("rx"),
            )
        })
        .collect();
    let mut contexts = contexts;
    let mut buf = [0u8; 256];
    COUNTING.with(|c| c.set(true));
    for (tx, rx) in contexts.iter_mut() {
        for i in 0..2000u32 {
            // Twelve SSRCs through an eight-entry table, across a wrap.
            let ssrc = i % 12;
            let seq = 65000u16.wrapping_add((i / 12) as u16);
            let len = rtp(&mut buf, seq, ssrc);
            let n = tx.protect_rtp(&mut buf, len).expect("protect");
            let ok = rx.unprotect_rtp(&mut buf[..n]);
            assert!(ok.is_ok() || i >= 12);
            let _ = rx.unprotect_rtp(&mut buf[..n]); // replayed
            buf[20] ^= 1;
            let _ = rx.unprotect_rtp(&mut buf[..n]); // forged
            let len = rtcp(&mut buf, ssrc);
            let n = tx.protect_rtcp(&mut buf, len).expect("protect_rtcp");
            let _ = rx.unprotect_rtcp(&mut buf[..n]);
        }
        let _ = tx.streams().count();
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.load(Ordering::Relaxed), 0);
}
