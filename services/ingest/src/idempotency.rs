//! `Idempotency-Key`: a retried request with the same key and body gets the original answer and
//! writes nothing new.
//!
//! Answers are kept in memory, per ingest instance, for `ingest.idempotency_ttl_seconds`
//! (default 24 h) and at most `ingest.idempotency_capacity` keys (default 100,000; the oldest go
//! first). Keys are scoped to the caller's token. Across instances and restarts the run id is
//! still derived from the key, so a retry that reaches another instance re-submits the *same*
//! run, which the aggregator folds once.

use scanstream_platform::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The store key of a caller's `Idempotency-Key`: the token's name and the key, joined so that
/// no two (token, key) pairs meet. Token names and keys may both hold `:`, so the name is
/// length-prefixed: token `a:b` with key `c` is `3:a:b:c`, token `a` with key `b:c` is
/// `1:a:b:c`. Without auth there is no name (`-:<key>`; a named key starts with a digit).
/// The run id is derived from this too, so it also keeps two callers' runs apart.
pub fn scoped_key(token_name: Option<&str>, key: &str) -> String {
    match token_name {
        Some(name) => format!("{}:{name}:{key}", name.len()),
        None => format!("-:{key}"),
    }
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// What to do with a request carrying a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// First time: process it, then [`IdempotencyStore::finish`] or [`IdempotencyStore::abandon`].
    New,
    /// Seen and answered: replay this.
    Replay(StoredResponse),
    /// The same key is being processed right now.
    InFlight,
    /// The key was used with a different body.
    Mismatch,
}

enum Entry {
    InFlight {
        body: [u8; 32],
    },
    Done {
        body: [u8; 32],
        response: StoredResponse,
    },
}

struct Inner {
    entries: HashMap<String, (Instant, Entry)>,
    order: VecDeque<(Instant, String)>,
}

pub struct IdempotencyStore {
    inner: Mutex<Inner>,
    ttl: Duration,
    capacity: usize,
}

impl IdempotencyStore {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// Checks a key and, when new, marks it in flight. `body` is a hash of the request.
    pub fn begin(&self, key: &str, body: [u8; 32]) -> Begin {
        let mut inner = lock(&self.inner);
        let now = Instant::now();
        self.expire(&mut inner, now);
        match inner.entries.get(key) {
            Some((_, Entry::InFlight { body: b })) if *b == body => Begin::InFlight,
            Some((_, Entry::Done { body: b, response })) if *b == body => {
                Begin::Replay(response.clone())
            }
            Some(_) => Begin::Mismatch,
            None => {
                while inner.entries.len() >= self.capacity {
                    let Some((_, oldest)) = inner.order.pop_front() else {
                        break;
                    };
                    inner.entries.remove(&oldest);
                }
                inner
                    .entries
                    .insert(key.to_owned(), (now, Entry::InFlight { body }));
                inner.order.push_back((now, key.to_owned()));
                Begin::New
            }
        }
    }

    /// Stores the answer to replay.
    pub fn finish(&self, key: &str, body: [u8; 32], response: StoredResponse) {
        if let Some(entry) = lock(&self.inner).entries.get_mut(key) {
            entry.1 = Entry::Done { body, response };
        }
    }

    /// Forgets a key whose request failed, so a retry is processed anew.
    pub fn abandon(&self, key: &str) {
        {
            let mut inner = lock(&self.inner);
            inner.entries.remove(key);
        }
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((at, key)) = inner.order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            let key = key.clone();
            inner.order.pop_front();
            if inner
                .entries
                .get(&key)
                .is_some_and(|(t, _)| now.duration_since(*t) >= self.ttl)
            {
                inner.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: u16) -> StoredResponse {
        StoredResponse {
            status: n,
            location: None,
            body: String::new(),
        }
    }

    #[test]
    fn replays_the_same_body_and_refuses_another() {
        let store = IdempotencyStore::new(Duration::from_secs(60), 10);
        assert_eq!(store.begin("k", [1; 32]), Begin::New);
        assert_eq!(store.begin("k", [1; 32]), Begin::InFlight);
        store.finish("k", [1; 32], answer(202));
        assert_eq!(store.begin("k", [1; 32]), Begin::Replay(answer(202)));
        assert_eq!(store.begin("k", [2; 32]), Begin::Mismatch);
    }

    #[test]
    fn keys_of_different_tokens_never_collide() {
        let pairs = [
            (Some("a:b"), "c"),
            (Some("a"), "b:c"),
            (Some("a:b:c"), ""),
            (Some("1:a"), "b"),
            (Some("-"), "k"),
            (None, "k"),
            (None, "1:a:b"),
        ];
        let keys: std::collections::HashSet<String> =
            pairs.iter().map(|(t, k)| scoped_key(*t, k)).collect();
        assert_eq!(keys.len(), pairs.len(), "{keys:?}");
        // In the store: the second caller's request is new, not a replay of the first's.
        let store = IdempotencyStore::new(Duration::from_secs(60), 10);
        let first = scoped_key(Some("a:b"), "c");
        assert_eq!(store.begin(&first, [1; 32]), Begin::New);
        store.finish(&first, [1; 32], answer(202));
        assert_eq!(
            store.begin(&scoped_key(Some("a"), "b:c"), [1; 32]),
            Begin::New
        );
    }

    #[test]
    fn abandoned_keys_are_processed_again() {
        let store = IdempotencyStore::new(Duration::from_secs(60), 10);
        assert_eq!(store.begin("k", [1; 32]), Begin::New);
        store.abandon("k");
        assert_eq!(store.begin("k", [1; 32]), Begin::New);
    }

    #[test]
    fn capacity_and_ttl_bound_the_store() {
        let store = IdempotencyStore::new(Duration::from_secs(60), 2);
        for k in ["a", "b", "c"] {
            assert_eq!(store.begin(k, [0; 32]), Begin::New);
            store.finish(k, [0; 32], answer(202));
        }
        assert_eq!(
            store.begin("a", [0; 32]),
            Begin::New,
            "the oldest key was evicted"
        );
        let short = IdempotencyStore::new(Duration::ZERO, 10);
        assert_eq!(short.begin("a", [0; 32]), Begin::New);
        short.finish("a", [0; 32], answer(202));
        assert_eq!(short.begin("a", [0; 32]), Begin::New, "expired");
    }
}
