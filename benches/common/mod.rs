//! Helpers shared by the end-to-end bench binaries: daemon processes, the `confide` CLI,
//! free loopback ports and peak RSS.
#![allow(dead_code)]

use std::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_confide");

/// A child process, killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the `confide` CLI to completion.
pub fn confide(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run confide")
}

/// `n` consecutive free ports on 127.0.0.1 (the demo's search).
pub fn free_ports(n: u16) -> u16 {
    confide::kit::free_ports(n as usize).expect("free loopback ports")
}

/// Peak resident set size (VmHWM) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
