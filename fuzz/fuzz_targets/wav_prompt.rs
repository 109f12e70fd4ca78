//! WAV files for `play media` and music on hold: `prompt::load_wav` on
//! arbitrary bytes (an operator's or a control plane's file). Nothing may
//! panic or allocate past the 10-minute bound; a prompt that loads has a
//! supported rate, at least one sample and at most 10 minutes, and its
//! prompt-file encoding has the documented length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_shared::prompt::{encode, load_wav, MAX_PROMPT_MS, PROMPT_RATES};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = load_wav(data) {
        assert!(PROMPT_RATES.contains(&p.rate));
        assert!(!p.samples.is_empty());
        assert!(p.duration_ms() <= MAX_PROMPT_MS);
        assert_eq!(encode(&p).len(), 16 + 2 * p.samples.len());
    }
});
