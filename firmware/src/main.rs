//! `facelockd`: the board daemon.
use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::SUCCESS
}
