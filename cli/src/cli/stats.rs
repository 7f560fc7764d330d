//! `connectx stats [PID]`.
use super::Res;

/// What connectx did in running processes (counters kept by the library)
#[derive(clap::Args)]
pub struct StatsArgs {
    /// One process (default: every live process with a counters file)
    pid: Option<u32>,
}

pub fn main(_a: StatsArgs) -> Res<i32> {
    Ok(0)
}
