//! Helpers shared by the supervisor's integration tests: a real `bulkhead
//! serve` process in a temp dir, the real CLI, sipp, raw SIP over UDP and a
//! tiny HTTP client. Everything talks to 127.0.0.1 only.

#![allow(dead_code)] // each test binary uses a different subset

pub mod audio;
pub mod voice;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BULKHEAD: &str = env!("CARGO_BIN_EXE_bulkhead");

/// A running supervisor in its own temp dir; stopped on drop.
pub struct Supervisor {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub sip: SocketAddr,
    /// Run `bulkhead serve` as this uid (non-root mode) instead of ours.
    as_uid: Option<u32>,
    /// Extra environment for `bulkhead serve` (read at each boot).
    pub env: Vec<(String, String)>,
}

impl Supervisor {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts with extra top-level configuration lines (e.g. `answer_delay_ms = 2000`).
    pub fn start_with(extra: &str) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// [`Self::start_with`], with extra environment for `bulkhead serve`.
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bh-test-")
            .tempdir()
            .unwrap();
        // Tenant uids must traverse the temp dir to reach bin/ and tenants/<id>/.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let mut sup = Self {
            as_uid: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir,
            child: None,
            sip: "127.0.0.1:0".parse().unwrap(),
        };
        // Each supervisor gets port pools of its own, so a restarting one
        // finds its tenants' ports still free (tests run in parallel).
        static NEXT_POOL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let pool = (std::process::id() * 7
            + NEXT_POOL.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            % 200;
        // Below Linux's ephemeral range (32768-), so client sockets never take them.
        let (sip, http) = (20_000 + pool * 30, 26_000 + pool * 30);
        let config = format!(
            "state_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\nsip_listen = \"127.0.0.1:0\"\nadvertise = \"127.0.0.1\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             tenant_sip_ports = \"{sip}-{sip_end}\"\ntenant_http_ports = \"{http}-{http_end}\"\n\
             uid_range = \"{uid}-{uid_end}\"\nrtp_ports = \"{rtp}-{rtp_end}\"\n\
             {extra}\n[tenant_bind]\nsip = \"127.0.0.1\"\nhttp = \"127.0.0.1\"\n",
            d = sup.dir.path().display(),
            // Tenant uids of their own too: RLIMIT_NPROC counts per uid, and
            // tests (the audit's exhaust_tasks probe above all) run in parallel.
            // 50 pairs: a call's pair now stays bound while its voice agent
            // winds down, which under an audit's memory-pressure probes (in
            // the tenant's own cgroup) can take a moment.
            rtp = 40_000 + pool * 100,
            rtp_end = 40_000 + pool * 100 + 99,
            uid = 300_000 + pool * 100,
            uid_end = 300_000 + pool * 100 + 99,
            sip_end = sip + 29,
            http_end = http + 29,
        );
        std::fs::write(sup.dir.path().join("config.toml"), config).unwrap();
        sup.boot();
        sup
    }

    /// Starts `bulkhead serve` and waits until the admin socket answers.
    /// Starts a supervisor running as `uid` (not root), in a temp dir it owns.
    pub fn start_as(uid: u32) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bh-test-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        nix::unistd::chown(
            dir.path(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(uid)),
        )
        .unwrap();
        let config = format!(
            "state_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\nsip_listen = \"127.0.0.1:0\"\nadvertise = \"127.0.0.1\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             [tenant_bind]\nsip = \"127.0.0.1\"\nhttp = \"127.0.0.1\"\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let mut sup = Self {
            as_uid: Some(uid),
            env: Vec::new(),
            dir,
            child: None,
            sip: "127.0.0.1:0".parse().unwrap(),
        };
        sup.boot();
        sup
    }

    pub fn boot(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let mut cmd = Command::new(BULKHEAD);
        cmd.args(["serve", "--config"])
            .arg(self.dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(uid) = self.as_uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(uid);
        }
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cli(&["status", "--json"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                self.sip = v["sip_listen"].as_str().unwrap().parse().unwrap();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "supervisor did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("supervisor running").id()
    }

    /// Sends the supervisor a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("supervisor running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    }

    /// The supervisor's exit status once it exits within `wait`; `None` if it is still running.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            let child = self.child.as_mut().expect("supervisor running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the supervisor with SIGINT (no drain) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills the supervisor with SIGKILL: no cleanup runs.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/admin.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// The text of `GET /metrics` from this supervisor's `metrics_listen`.
    pub fn scrape_metrics(&self) -> String {
        use std::io::{Read, Write};
        let addr = self.cli_json(&["status"])["metrics_listen"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bulkhead\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        text.split_once("\r\n\r\n").unwrap().1.to_owned()
    }

    /// Runs the real CLI against this supervisor.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BULKHEAD)
            .args(args)
            .env("BULKHEAD_SOCKET", self.socket())
            .output()
            .unwrap()
    }

    /// Runs the CLI with `--json`, asserting success.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "bulkhead {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `tenant add ID --number N...`, returning its JSON (with the token).
    pub fn add_tenant(&self, id: &str, numbers: &[&str]) -> Value {
        let mut args = vec!["tenant", "add", id];
        for n in numbers {
            args.extend(["--number", n]);
        }
        self.cli_json(&args)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
        remove_cgroups(&bulkhead_supervisor::cgroup::instance_name(
            &self.state_dir(),
        ));
    }
}

/// Removes this supervisor's (now empty) cgroup directories, which outlive
/// it by design (a restarted supervisor reuses them).
fn remove_cgroups(instance: &str) {
    fn walk(dir: &Path, depth: usize, instance: &str) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if e.file_name().to_string_lossy() == instance {
                if let Ok(groups) = std::fs::read_dir(&p) {
                    for g in groups.flatten().filter(|g| g.path().is_dir()) {
                        let _ = std::fs::remove_dir(g.path());
                    }
                }
                let _ = std::fs::remove_dir(&p);
            } else if depth > 0 {
                walk(&p, depth - 1, instance);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), 3, instance);
}

/// A tenant's API port and token, from its `tenant add --json` answer.
pub fn api_of(tenant: &Value) -> (u16, &str) {
    (
        tenant["http_port"].as_u64().expect("http_port") as u16,
        tenant["token"].as_str().expect("token"),
    )
}

/// A free UDP port on loopback (for sipp's local port).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs sipp's built-in UAC scenario: `calls` calls to `number` at `target`.
/// Returns (exit status success, stdout+stderr).
pub fn sipp_uac(
    dir: &Path,
    target: SocketAddr,
    number: &str,
    calls: u32,
    transport: &str,
) -> (bool, String) {
    sipp_uac_at(dir, target, number, calls, 20, transport)
}

/// [`sipp_uac`] at `rate` calls per second.
pub fn sipp_uac_at(
    dir: &Path,
    target: SocketAddr,
    number: &str,
    calls: u32,
    rate: u32,
    transport: &str,
) -> (bool, String) {
    let port = free_udp_port().to_string();
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir)
        .args(["-sn", "uac", "-s", number, &target.to_string()])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            transport,
        ])
        .args(["-timeout", "30", "-timeout_error", "-nostdin", "-trace_err"]);
    run_sipp(&mut cmd)
}

/// Runs one call of Bulkhead's own sipp scenario `name`
/// (`tests/data/sip/scenarios`) to `number` at `target`, over `transport`
/// (`u1`, `t1`), with `extra` arguments (e.g. `-au`/`-ap`).
pub fn own_scenario(
    sup: &Supervisor,
    name: &str,
    number: &str,
    target: SocketAddr,
    transport: &str,
    extra: &[&str],
) -> (bool, String) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip/scenarios");
    let mut cmd = Command::new("sipp");
    cmd.current_dir(sup.dir.path())
        .arg("-sf")
        .arg(data.join(name))
        .args(["-s", number, &target.to_string()])
        .args(["-m", "1", "-i", "127.0.0.1", "-p", "0", "-t", transport])
        .args(["-nostdin", "-timeout", "30", "-timeout_error"])
        .args(extra);
    run_sipp(&mut cmd)
}

/// Runs a prepared sipp command: its verdict and its report (stdout and stderr).
pub fn run_sipp(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .expect("sipp is installed (scripts/test installs sip-tester)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The value of the sample `series` (name with labels, exactly as exposed).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// The cumulative (successful, failed) call counts from sipp's final report.
pub fn sipp_counts(report: &str) -> (u64, u64) {
    let count = |label: &str| {
        report
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} line in sipp's report:\n{report}"))
    };
    (count("Successful call"), count("Failed call"))
}

/// Sends one raw SIP datagram and returns the first reply, if any within `wait`.
pub fn udp_exchange(target: SocketAddr, msg: &[u8], wait: Duration) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    sock.send_to(msg, target).unwrap();
    let mut buf = vec![0u8; 65_535];
    sock.recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// An INVITE to `number`, with a Via whose port is rewritten by rport.
pub fn invite(number: &str, call_id: &str) -> Vec<u8> {
    request("INVITE", number, call_id, 1, "")
}

/// A request in the dialog-less form the tests need: `to_tag` empty for an
/// initial request. The branch depends on method and CSeq, except that
/// CANCEL and ACK-for-non-2xx reuse the INVITE's (RFC 3261 §9.1, §17.1.1.3).
pub fn request(method: &str, number: &str, call_id: &str, cseq: u32, to_tag: &str) -> Vec<u8> {
    let branch = match method {
        "CANCEL" => format!("z9hG4bK{call_id}-1"),
        _ => format!("z9hG4bK{call_id}-{cseq}"),
    };
    let cseq_method = if method == "CANCEL" { "CANCEL" } else { method };
    let tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    format!(
        "{method} sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:tester@127.0.0.1>;tag=t1\r\nTo: <sip:{number}@127.0.0.1>{tag}\r\nCall-ID: {call_id}\r\n\
CSeq: {cseq} {cseq_method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A UDP SIP peer for step-by-step exchanges.
pub struct Peer {
    pub sock: UdpSocket,
    target: SocketAddr,
}

impl Peer {
    pub fn new(target: SocketAddr) -> Self {
        Self::from_ip("127.0.0.1", target)
    }

    /// A peer on another loopback address (e.g. `127.0.0.2`), any port.
    pub fn from_ip(ip: &str, target: SocketAddr) -> Self {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        Self { sock, target }
    }

    pub fn send(&self, msg: &[u8]) {
        self.sock.send_to(msg, self.target).unwrap();
    }

    /// The next message within `wait`, if any.
    pub fn recv(&self, wait: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 65_535];
        self.sock
            .recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Messages until one starts with `prefix` (returned), or `None` after `wait`.
    pub fn expect(&self, prefix: &str, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(m) if m.starts_with(prefix) => return Some(m),
                Some(_) => continue,
                None => return None,
            }
        }
        None
    }
}

/// The To tag of a response.
pub fn to_tag(msg: &str) -> String {
    let to = msg.lines().find(|l| l.starts_with("To:")).unwrap();
    to.split(";tag=").nth(1).unwrap().trim().to_string()
}

/// GET on a tenant's HTTP port; returns (status, JSON body).
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Any request on a tenant's HTTP port; returns (status, raw headers, JSON body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        status,
        head.to_owned(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// The tenant's calls once none is `in_progress` (updates commit just after
/// the BYE's 200), waiting up to 5 s.
pub fn settled_calls(port: u16, token: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = http_get(port, "/v1/calls?limit=200", Some(token));
        assert_eq!(status, 200, "{body}");
        let calls = body["calls"].as_array().cloned().unwrap_or_default();
        if calls.iter().all(|c| c["outcome"] != "in_progress") || Instant::now() > deadline {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when a process with this pid exists.
/// A field of /proc/PID/status (`"PPid:"`, `"Name:"`), trimmed.
pub fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .trim()
        .to_owned()
}

/// Children of every thread of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let tid = t.unwrap().file_name().into_string().unwrap();
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// The supervisor's spawn server (a child named `bulkhead-spawn`).
pub fn spawn_server(sup: &Supervisor) -> u32 {
    children(sup.pid())
        .into_iter()
        .find(|p| status_field(*p, "Name:") == "bulkhead-spawn")
        .expect("the spawn server is a child of the supervisor")
}

pub fn alive(pid: u64) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// Waits (a generous liveness bound, not a speed check) until `id` runs
/// with a pid other than `old`; returns its `tenant show`.
pub fn back_up(sup: &Supervisor, id: &str, old: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = sup.cli_json(&["tenant", "show", id]);
        if shown["state"] == "running" && shown["pid"].as_u64() != Some(old) {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "{id} did not come back: {shown}\n{}",
            sup.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The directory of the cgroup `pid` is in that holds its memory limit
/// (v1: the memory hierarchy; v2: the unified one).
pub fn memory_cgroup_of(pid: u64) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let unified_only = text.lines().count() == 1;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if controllers.split(',').any(|c| c == "memory") {
            return format!("/sys/fs/cgroup/memory{path}").into();
        }
        if controllers.is_empty() && unified_only {
            return format!("/sys/fs/cgroup{path}").into();
        }
    }
    panic!("no memory cgroup for {pid}: {text}");
}

/// The memory limit in bytes of the cgroup directory `dir` (v1 or v2).
/// A process's limit `name` as `/proc/PID/limits` shows it (its soft
/// value; the worker's soft and hard values are equal).
pub fn rlimit_of(pid: u64, name: &str) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in\n{limits}"));
    line[name.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Whether this process (and so a supervisor it starts) holds
/// CAP_SYS_RESOURCE, which changing another process's rlimits needs; some
/// containers withhold it from root.
pub fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    const CAP_SYS_RESOURCE: u32 = 24; // linux/capability.h
    u64::from_str_radix(eff.trim(), 16).unwrap() & (1 << CAP_SYS_RESOURCE) != 0
}

pub fn memory_limit_of(dir: &Path) -> u64 {
    let file = ["memory.limit_in_bytes", "memory.max"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no memory limit file in {}", dir.display()));
    std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The network interfaces process `pid` (or `self`) sees, from its
/// namespace's `/proc/PID/net/dev` (`/sys/class/net` shows the mounter's).
pub fn interfaces(pid: &str) -> Vec<String> {
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|i| i.trim().to_owned())
        .collect()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The tenant's data key, as the supervisor unwraps it (the test reads the
/// registry and master key, as root may).
pub fn data_key_of(sup: &Supervisor, id: &str) -> Vec<u8> {
    let state = sup.state_dir();
    let keystore =
        bulkhead_supervisor::keystore::Keystore::open_or_create(&state.join("master.key")).unwrap();
    let conn = rusqlite::Connection::open(state.join("registry.db")).unwrap();
    let wrapped: Vec<u8> = conn
        .query_row("SELECT wrapped_key FROM tenants WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    let tenant = bulkhead_shared::TenantId::parse(id).unwrap();
    keystore.unwrap(&tenant, &wrapped).unwrap().to_vec()
}

/// Opens the tenant's own store with its key (as root may, to seed data a
/// test cannot make through the product, such as records from last month),
/// in the store format new stores have (docs/architecture.md, "Store format").
pub fn open_tenant_store(sup: &Supervisor, id: &str) -> rusqlite::Connection {
    let key = data_key_of(sup, id);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let path = sup.state_dir().join("tenants").join(id).join("tenant.db");
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{hex}'\"; PRAGMA cipher_hmac_algorithm = HMAC_SHA256; PRAGMA busy_timeout = 5000;"
    ))
    .unwrap();
    conn
}

/// `curl` over HTTPS to the tenant's port, trusting only `ca`; (exit ok, body).
pub fn curl_https(port: u16, ca: &std::path::Path, path: &str, token: &str) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("clinic.test:{port}:127.0.0.1")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("https://clinic.test:{port}{path}"))
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Writes `n` finished calls of last year into the tenant's store, each with
/// one transcript turn of `text_bytes` bytes, in one transaction: a store
/// of a known size, without placing that many calls.
pub fn seed_calls(sup: &Supervisor, id: &str, n: usize, text_bytes: usize) {
    let mut conn = open_tenant_store(sup, id);
    let tx = conn.transaction().unwrap();
    let text = "transcribed speech ".repeat(text_bytes / 19 + 1)[..text_bytes].to_owned();
    for i in 0..n {
        let call = format!("call_seed_{i}");
        tx.execute(
            "INSERT INTO calls (id, call_id, from_user, to_number, started_at, ended_at, outcome)
             VALUES (?1, ?2, '+15551234567', '+15550100', '2025-11-01T10:00:00Z', '2025-11-01T10:01:00Z', 'completed')",
            rusqlite::params![call, format!("seed-{i}@x")],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO turns (call, n, speaker, text, at_ms) VALUES (?1, 1, 'caller', ?2, 0)",
            rusqlite::params![call, text],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}
