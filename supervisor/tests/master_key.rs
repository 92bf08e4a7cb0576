//! Where the master key comes from: a KMS hook (`command:`) and a systemd
//! credential (`credential:`) instead of `master.key`; tenants come back
//! across restarts under it, a different key is refused per tenant with the
//! reason, and the key is locked in RAM in a supervisor that dumps no core.

mod common;

use std::time::{Duration, Instant};

use common::*;

const KEY_HEX: &str = "5ac1a7e0b1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c";

#[test]
fn a_kms_command_supplies_the_master_key_and_a_wrong_one_is_refused() {
    let hook = tempfile::tempdir().unwrap();
    let secret = hook.path().join("kms-secret");
    std::fs::write(&secret, format!("{KEY_HEX}\n")).unwrap();
    let script = hook.path().join("kms-get.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexec cat {}\n", secret.display()),
    )
    .unwrap();
    let extra = format!("master_key = \"command:/bin/sh {}\"", script.display());
    let mut sup = Supervisor::start_with(&extra);
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    assert!(
        !sup.state_dir().join("master.key").exists(),
        "no key file is made"
    );

    // The supervisor holds the key locked in RAM and dumps no core; the key
    // is in no argv or environment.
    let pid = sup.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(locked > 0, "nothing locked:\n{status}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    for file in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(KEY_HEX), "{file}");
    }

    // Restarted with the same hook, the tenant unwraps and serves.
    sup.stop();
    sup.boot();
    back_up(&sup, "clinic", 0);
    assert_eq!(http_get(port, "/v1/numbers", Some(token)).0, 200);

    // A hook that now gives another key: the tenant does not start, and
    // says why; the supervisor itself keeps serving.
    std::fs::write(&secret, "11".repeat(32)).unwrap();
    sup.stop();
    sup.boot();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let show = sup.cli_json(&["tenant", "show", "clinic"]);
        let failure = show["last_failure"].as_str().unwrap_or("").to_owned();
        if failure.contains("does not unwrap") {
            break;
        }
        assert!(Instant::now() < deadline, "{show}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!sup.log().contains(KEY_HEX));

    // A hook that fails stops start-up with a message naming it.
    std::fs::write(&script, "#!/bin/sh\nexit 7\n").unwrap();
    sup.stop();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["serve", "--config"])
        .arg(sup.dir.path().join("config.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("master_key command /bin/sh") && err.contains("exited"),
        "{err}"
    );
}

#[test]
fn a_systemd_credential_supplies_the_master_key() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("bulkhead-master"), [0x42u8; 32]).unwrap();
    let dir = creds.path().to_str().unwrap();
    let mut sup = Supervisor::start_with_env(
        "master_key = \"credential:bulkhead-master\"",
        &[("CREDENTIALS_DIRECTORY", dir)],
    );
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    sup.stop();
    sup.boot();
    back_up(&sup, "clinic", 0);
    assert_eq!(http_get(port, "/v1/numbers", Some(token)).0, 200);
    assert!(!sup.state_dir().join("master.key").exists());
}

fn wrapped_keys(sup: &Supervisor) -> Vec<Vec<u8>> {
    let conn = rusqlite::Connection::open(sup.state_dir().join("registry.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT wrapped_key FROM tenants UNION ALL SELECT wrapped_key FROM retired_keys")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn rotation_rewraps_every_key_without_touching_data_and_survives_a_crash_at_each_step() {
    let mut sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    sup.add_tenant("insurance", &["+15550200"]);
    sup.cli_json(&["tenant", "remove", "insurance"]); // its key is retired, kept
    let data_key = data_key_of(&sup, "clinic");
    let master = |sup: &Supervisor| std::fs::read(sup.state_dir().join("master.key")).unwrap();
    let (old_master, old_wrapped) = (master(&sup), wrapped_keys(&sup));

    let rotated = sup.cli_json(&["master-key", "rotate"]);
    assert_eq!(rotated["rewrapped"], 2, "{rotated}");
    assert_ne!(master(&sup), old_master);
    let new_wrapped = wrapped_keys(&sup);
    assert_eq!(new_wrapped.len(), 2);
    assert!(
        new_wrapped.iter().all(|w| !old_wrapped.contains(w)),
        "every key re-wrapped"
    );
    assert_eq!(
        data_key_of(&sup, "clinic"),
        data_key,
        "the data key, and the data, are unchanged"
    );
    assert_eq!(http_get(port, "/v1/numbers", Some(token)).0, 200);
    let pid = sup.cli_json(&["tenant", "show", "clinic"])["pid"]
        .as_u64()
        .unwrap();
    assert_eq!(Some(pid), clinic["pid"].as_u64(), "no restart");
    // The next worker start (a crash, a restart) unwraps the key under the
    // new master without the supervisor restarting.
    let out = sup.cli(&["tenant", "restart", "clinic"]);
    assert!(out.status.success(), "{out:?}\n{}", sup.log());
    assert_eq!(http_get(port, "/v1/numbers", Some(token)).0, 200);
    // And a backup names the key it is under by unwrapping it.
    let file = sup.dir.path().join("after-rotation.backup");
    let out = sup.cli(&[
        "tenant",
        "backup",
        "clinic",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}\n{}", sup.log());
    let history = sup.cli_json(&["history"]).to_string();
    assert!(history.contains("master-key.rotate"));

    // A crash after each durable step: the next start finishes or undoes
    // the rotation, and the tenant serves under whichever key won.
    for (step, changes) in [
        ("master-rotate-written", false),
        ("master-rotate-rewrapped", true),
    ] {
        let before = master(&sup);
        sup.stop();
        sup.env = vec![("BULKHEAD_CRASH_AT".into(), step.into())];
        sup.boot();
        back_up(&sup, "clinic", 0);
        let out = sup.cli(&["master-key", "rotate"]);
        assert!(
            !out.status.success(),
            "{step}: the supervisor should have crashed"
        );
        sup.stop();
        assert!(sup.state_dir().join("master.key.next").exists(), "{step}");
        sup.env.clear();
        sup.boot();
        back_up(&sup, "clinic", 0);
        assert_eq!(http_get(port, "/v1/numbers", Some(token)).0, 200, "{step}");
        assert!(!sup.state_dir().join("master.key.next").exists(), "{step}");
        assert_eq!(master(&sup) != before, changes, "{step}");
        assert_eq!(data_key_of(&sup, "clinic"), data_key, "{step}");
        let said = if changes {
            "finished an interrupted"
        } else {
            "undid an interrupted"
        };
        assert!(sup.log().contains(said), "{step}: {}", sup.log());
    }
}

/// Whether `needle` is anywhere in the readable memory of `pid` (as root,
/// through /proc/PID/mem).
fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    maps.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            return false;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut buf = vec![0u8; (end - start) as usize];
        mem.read_exact_at(&mut buf, start).is_ok() && buf.windows(needle.len()).any(|w| w == needle)
    })
}

#[test]
fn no_reaper_and_not_the_spawn_server_holds_a_copy_of_the_master_key() {
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);
    let master = std::fs::read(sup.state_dir().join("master.key")).unwrap();
    assert_eq!(master.len(), 32);
    // The scan can find it: the supervisor itself holds the key.
    assert!(
        memory_holds(sup.pid(), &master),
        "the scan found the master key nowhere, not even in the supervisor"
    );
    let ppid = |pid: u32| -> u32 { status_field(pid, "PPid:").parse().unwrap() };
    // Before the spawn server, each reaper was a fork of the supervisor and
    // kept a copy of its memory, this key included, for its whole life.
    for tenant in ["clinic", "insurance"] {
        let worker = sup.cli_json(&["tenant", "show", tenant])["pid"]
            .as_u64()
            .unwrap() as u32;
        let reaper = ppid(worker);
        assert_eq!(ppid(reaper), sup.pid(), "{tenant}'s reaper");
        assert!(
            !memory_holds(reaper, &master),
            "{tenant}'s reaper holds the master key"
        );
        assert!(
            !memory_holds(worker, &master),
            "{tenant}'s worker holds the master key"
        );
    }
    let server = spawn_server(&sup);
    assert!(
        !memory_holds(server, &master),
        "the spawn server holds the master key"
    );
}
