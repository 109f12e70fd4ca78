//! Load generators. `tern load rtp` arrives with issue 4.
