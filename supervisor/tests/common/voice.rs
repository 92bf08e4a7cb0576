//! Helpers for calls the voice agent takes: a synthesized caller, the
//! tenant's human destination (sipp as a UAS), and the call's transcript.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{audio, free_udp_port, http_get, own_scenario, run_sipp, Supervisor};

/// Writes the caller's audio (`caller.pcap`, which the caller scenarios
/// play): 2.5 s of quiet through the greeting, then each line followed by
/// its pause in milliseconds (an empty line: only the pause).
pub fn write_caller(sup: &Supervisor, lines: &[(&str, usize)]) {
    let mut pcm = audio::silence(2500);
    for (text, pause_ms) in lines {
        if !text.is_empty() {
            pcm.extend(audio::speak(text));
        }
        pcm.extend(audio::silence(*pause_ms));
    }
    audio::write_pcap(&sup.dir.path().join("caller.pcap"), &pcm);
}

/// One call to `number` through the router with `scenario` playing
/// `caller.pcap`; sipp must pass.
pub fn place_call(sup: &Supervisor, scenario: &str, number: &str) {
    let media_port = free_udp_port().to_string();
    let (ok, report) = own_scenario(
        sup,
        scenario,
        number,
        sup.sip,
        "u1",
        &["-mi", "127.0.0.1", "-mp", &media_port],
    );
    assert!(ok, "caller ({scenario}): {report}\n{}", sup.log());
}

/// sipp as the tenant's human destination, on a loopback port.
pub struct Human {
    pub port: u16,
    dir: tempfile::TempDir,
    run: std::thread::JoinHandle<(bool, String)>,
}

impl Human {
    pub fn start(scenario: &str) -> Self {
        let port = free_udp_port();
        let dir = tempfile::tempdir().unwrap();
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip/scenarios");
        let mut cmd = Command::new("sipp");
        cmd.current_dir(dir.path())
            .arg("-sf")
            .arg(data.join(scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1"])
            .args(["-mi", "127.0.0.1", "-mp", &free_udp_port().to_string()])
            .args([
                "-nostdin",
                "-timeout",
                "60",
                "-timeout_error",
                "-trace_logs",
            ]);
        let run = std::thread::spawn(move || run_sipp(&mut cmd));
        std::thread::sleep(std::time::Duration::from_millis(300));
        Self { port, dir, run }
    }

    /// Waits for sipp to finish; it must pass. Returns what the scenario
    /// logged (`<log>` actions), e.g. the context headers it received.
    pub fn finish(self, sup: &Supervisor) -> String {
        let (ok, report) = self.run.join().unwrap();
        assert!(ok, "the human destination: {report}\n{}", sup.log());
        let mut logged = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if entry.file_name().to_string_lossy().ends_with("_logs.log") {
                logged.push_str(&std::fs::read_to_string(entry.path()).unwrap());
            }
        }
        logged
    }
}

impl Human {
    /// A header the scenario logged as `Name: value` (the value trimmed).
    pub fn header<'a>(logged: &'a str, name: &str) -> Option<&'a str> {
        logged
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }
}

/// The newest call ended `escalated` to `target`.
pub fn assert_escalated_to(calls: &[Value], target: &str) {
    assert_eq!(
        (
            calls[0]["outcome"].as_str(),
            calls[0]["escalated_to"].as_str()
        ),
        (Some("escalated"), Some(target)),
        "{calls:?}"
    );
}

pub fn transcript(port: u16, token: &str, call: &Value) -> Vec<Value> {
    let id = call["id"].as_str().unwrap();
    let (status, body) = http_get(port, &format!("/v1/calls/{id}/transcript"), Some(token));
    assert_eq!(status, 200, "{body}");
    body["turns"].as_array().unwrap().clone()
}

/// What `speaker` said, in order.
pub fn said<'a>(turns: &'a [Value], speaker: &str) -> Vec<&'a str> {
    turns
        .iter()
        .filter(|t| t["speaker"] == speaker)
        .map(|t| t["text"].as_str().unwrap())
        .collect()
}
