//! Replies kept for retransmitted cookies: a message whose (source,
//! cookie) was answered within the TTL gets the same bytes back and is not
//! executed again. Bounded in entries and bytes, oldest evicted first.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Replies kept for retransmitted cookies.
#[derive(Debug, Default)]
pub(crate) struct ReplyCache {
    map: HashMap<(SocketAddr, Vec<u8>), (Vec<u8>, u64)>,
    order: VecDeque<((SocketAddr, Vec<u8>), u64)>,
    bytes: usize,
}

impl ReplyCache {
    pub(crate) fn get(&self, key: &(SocketAddr, Vec<u8>)) -> Option<&Vec<u8>> {
        self.map.get(key).map(|(r, _)| r)
    }

    pub(crate) fn pop_front(&mut self) {
        if let Some((k, at)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|(_, t)| *t == at) {
                if let Some((r, _)) = self.map.remove(&k) {
                    self.bytes = self.bytes.saturating_sub(r.len() + k.1.len());
                }
            }
        }
    }

    pub(crate) fn expire(&mut self, now: u64, ttl: u64) {
        while let Some((_, at)) = self.order.front() {
            if at.saturating_add(ttl) > now {
                break;
            }
            self.pop_front();
        }
    }

    /// Keeps `reply` for `key` at `now`, then evicts the oldest entries
    /// while more than `max_entries` or `max_bytes` are kept.
    pub(crate) fn insert(
        &mut self,
        key: (SocketAddr, Vec<u8>),
        reply: Vec<u8>,
        now: u64,
        max_entries: usize,
        max_bytes: usize,
    ) {
        self.bytes += reply.len() + key.1.len();
        if let Some((old, _)) = self.map.insert(key.clone(), (reply, now)) {
            self.bytes = self.bytes.saturating_sub(old.len() + key.1.len());
        }
        self.order.push_back((key, now));
        while !self.order.is_empty() && (self.map.len() > max_entries || self.bytes > max_bytes) {
            self.pop_front();
        }
    }
}
