//! `connectx status`.
use super::Res;

/// Ports in use and headroom per source address and destination (this network namespace)
#[derive(clap::Args)]
pub struct StatusArgs {
    /// JSON instead of the table
    #[arg(long)]
    json: bool,
}

pub fn main(_a: StatusArgs) -> Res<i32> {
    Ok(0)
}
