//! Scale-out: two supervisors (two "machines") behind Kamailio, Debian's
//! SIP load balancer, routing by dialed number from the table `bulkhead
//! export kamailio` writes. Calls reach the tenant that owns the number, on
//! whichever machine it lives; an unknown number is refused by Kamailio; a
//! number added later routes after `kamcmd htable.reload`, without a
//! Kamailio restart. The Kamailio configuration is docs/scale-out.md's.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The request route of docs/scale-out.md, on loopback.
fn kamailio_cfg(port: u16, dbtext: &Path, ctl: &Path) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}

loadmodule "db_text.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "rr.so"
loadmodule "ctl.so"
loadmodule "htable.so"

modparam("ctl", "binrpc", "unix:{ctl}")
# Re-read a table file that changed (else htable.reload reloads the cache).
modparam("db_text", "db_mode", 1)
modparam("htable", "db_url", "text://{dbtext}")
modparam("htable", "htable", "bulkhead=>size=16;dbtable=bulkhead;")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag() && loose_route()) {{
        forward();
        exit;
    }}
    if ($sht(bulkhead=>$rU) == $null) {{
        sl_send_reply("404", "Number Not Served Here");
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
    }}
    $du = $sht(bulkhead=>$rU);
    forward();
}}
"#,
        ctl = ctl.display(),
        dbtext = dbtext.display()
    )
}

/// Kamailio in the foreground; killed on drop.
struct Kamailio {
    child: Child,
    addr: SocketAddr,
    ctl: PathBuf,
    log: PathBuf,
}

impl Kamailio {
    fn start(dir: &Path, table: &str) -> Self {
        let dbtext = dir.join("dbtext");
        std::fs::create_dir_all(&dbtext).unwrap();
        std::fs::write(dbtext.join("bulkhead"), table).unwrap();
        let port = free_udp_port();
        let ctl = dir.join("kamailio.ctl");
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, kamailio_cfg(port, &dbtext, &ctl)).unwrap();
        let run = dir.join("kamailio-run");
        std::fs::create_dir_all(&run).unwrap();
        let log = dir.join("kamailio.log");
        let child = Command::new("kamailio")
            .args(["-DD", "-E", "-f"])
            .arg(&cfg)
            .arg("-Y")
            .arg(&run)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio runs (scripts/install-deps installs it)");
        let k = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            ctl,
            log,
        };
        // Ready once it answers: an OPTIONS for no number gets its 404.
        let deadline = Instant::now() + Duration::from_secs(20);
        let probe = request("OPTIONS", "+19990000", "kam-ready", 1, "");
        while udp_exchange(k.addr, &probe, Duration::from_millis(200)).is_none() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not start:\n{}",
                k.log()
            );
        }
        k
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn reload(&self, dir: &Path, table: &str) {
        // db_text notices a changed table by its modification time in
        // whole seconds: a table rewritten within the same second would be
        // taken for the old one (docs/scale-out.md).
        let file = dir.join("dbtext/bulkhead");
        let before = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, table).unwrap();
        let second =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        if second(std::fs::metadata(&file).unwrap().modified().unwrap()) <= second(before) {
            std::fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(before + Duration::from_secs(1))
                .unwrap();
        }
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .args(["htable.reload", "bulkhead"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}\n{}", self.log());
    }
}

impl Drop for Kamailio {
    /// SIGTERM: Kamailio's main process stops its children before it
    /// exits; SIGKILL would leave them running, orphaned, after the test.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn export(sup: &Supervisor, header: bool) -> String {
    let mut args = vec!["export", "kamailio"];
    if !header {
        args.push("--no-header");
    }
    let out = sup.cli(&args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The calls a tenant recorded, as (to, outcome).
fn calls_of(tenant: &serde_json::Value) -> Vec<(String, String)> {
    let (port, token) = api_of(tenant);
    settled_calls(port, token)
        .iter()
        .map(|c| {
            (
                c["to"].as_str().unwrap_or_default().to_owned(),
                c["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn kamailio_in_front_of_two_supervisors_routes_each_number_to_its_machine() {
    let machine_a = Supervisor::start();
    let machine_b = Supervisor::start();
    let clinic = machine_a.add_tenant("clinic", &["+15550100"]);
    let insurance = machine_b.add_tenant("insurance", &["+15550200"]);
    let dir = tempfile::tempdir().unwrap();
    let table = export(&machine_a, true) + &export(&machine_b, false);
    assert_eq!(
        table.lines().count(),
        5,
        "a header and two rows per number:\n{table}"
    );
    assert!(table.contains(&format!(
        "+15550100:0:0:sip\\:127.0.0.1\\:{}",
        machine_a.sip.port()
    )));
    assert!(table.contains(&format!(
        "15550200:0:0:sip\\:127.0.0.1\\:{}",
        machine_b.sip.port()
    )));
    let kamailio = Kamailio::start(dir.path(), &table);
    let bad = machine_a.cli(&["export", "kamailio", "--address", "x;transport=tcp:5060"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");

    // Each number reaches its own tenant on its own machine, with or
    // without the '+' in the Request-URI.
    for (number, calls) in [("+15550100", 3), ("15550200", 2)] {
        let (ok, out) = sipp_uac(dir.path(), kamailio.addr, number, calls, "u1");
        assert!(ok, "{number} through kamailio: {out}\n{}", kamailio.log());
    }
    let on_a = calls_of(&clinic);
    let on_b = calls_of(&insurance);
    assert_eq!(on_a.len(), 3, "{on_a:?}");
    assert_eq!(on_b.len(), 2, "{on_b:?}");
    assert!(
        on_a.iter()
            .all(|(to, outcome)| to == "+15550100" && outcome == "completed"),
        "{on_a:?}"
    );
    assert!(
        on_b.iter()
            .all(|(to, outcome)| to == "+15550200" && outcome == "completed"),
        "{on_b:?}"
    );

    // A number no machine serves never reaches one.
    let answer = udp_exchange(
        kamailio.addr,
        &invite("+15559999", "kam-unknown"),
        Duration::from_secs(2),
    )
    .expect("kamailio answers");
    assert!(answer.starts_with("SIP/2.0 404"), "{answer}");

    // A number added on machine B routes after a reload of the table.
    machine_b.cli_json(&["number", "add", "insurance", "+15550201"]);
    let table = export(&machine_a, true) + &export(&machine_b, false);
    kamailio.reload(dir.path(), &table);
    let (ok, out) = sipp_uac(dir.path(), kamailio.addr, "+15550201", 1, "u1");
    assert!(ok, "{out}\n{}", kamailio.log());
    let on_b = calls_of(&insurance);
    assert!(on_b.iter().any(|(to, _)| to == "+15550201"), "{on_b:?}");
    assert_eq!(calls_of(&clinic).len(), 3, "nothing new on machine A");
}
