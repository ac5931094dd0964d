//! `scanstream replay` and `scanstream audit` through the built binary, on the real broker and
//! registry, with records produced at explicit timestamps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod formats;
mod helpers;
mod ranges;
