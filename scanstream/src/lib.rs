//! The `scanstream` command line: one binary, one subcommand per role, so one container image
//! serves every Deployment and `scanstream up` can run everything in one process.
//!
//! # Layout
//! - [`cli`]: the clap definitions (every flag and its help text).
//! - [`settings`]: turning global flags into the layered [`scanstream_platform::Settings`].
//! - [`topics`]: `scanstream topics …`.
//! - [`client`]: `scanstream submit` and `scanstream stats`, clients of the REST API.
//! - [`scan`]: `scanstream scan`, the engines without Kafka.
//! - [`up`]: `scanstream up`, every role in one process (and a local Kafka when none is
//!   configured); [`demo`] is its `--demo`; [`datadir`] is where it keeps its data.
//! - [`findings`]: reading findings back from `scans.findings`.
//! - [`replay`]: `scanstream replay`, any topic by time or offset range.
//! - [`audit`]: `scanstream audit`, job state checked against the folded events.

/// `println!` that ignores a closed standard output (`scanstream up | head`, a supervisor that
/// went away): what `up` and its demo print is for whoever still reads it, never a reason to
/// stop the roles mid-flight.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod audit;
pub mod cli;
pub mod client;
pub mod datadir;
pub mod demo;
pub mod findings;
pub mod replay;
pub mod scan;
pub mod settings;
pub mod staged;
pub mod topics;
pub mod up;
