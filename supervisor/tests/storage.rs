//! Call data at rest: encrypted with the tenant's key, nowhere in plaintext,
//! and the admin socket and master key locked down.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

const CALL_ID: &str = "bh-needle-7f3a9c-callid";
const CALLER: &str = "Zebediah Quuxworth";

#[test]
fn no_call_data_in_plaintext_anywhere_under_the_state_dir() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt
        .block_on(bulkhead_supervisor::sipclient::place_call(
            sup.sip,
            "+15550100",
            CALLER,
            CALL_ID,
        ))
        .unwrap();
    assert_eq!(
        (result.invite_codes.last(), result.bye_code),
        (Some(&200), Some(200)),
        "{result:?}"
    );

    // The data is there: the tenant's API returns it...
    let calls = settled_calls(
        clinic["http_port"].as_u64().unwrap() as u16,
        clinic["token"].as_str().unwrap(),
    );
    assert_eq!(calls[0]["call_id"], CALL_ID);
    assert_eq!(calls[0]["from"], "zebediah");
    std::thread::sleep(Duration::from_millis(200));
    // ...but no file under the state dir holds it, the token or SQLite's header.
    let token = clinic["token"].as_str().unwrap();
    let needles: [&[u8]; 5] = [
        CALL_ID.as_bytes(),
        b"Zebediah",
        b"zebediah",
        token.as_bytes(),
        b"SQLite format 3",
    ];
    let mut checked = 0;
    for f in files_under(&sup.state_dir()) {
        if f.starts_with(sup.state_dir().join("bin"))
            || f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("registry.db"))
        {
            // The worker binary holds no tenant data; registry.db is
            // checked for the call data below but is plain SQLite by design.
            let bytes = std::fs::read(&f).unwrap();
            for n in &needles[..4] {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == *n),
                    "{} contains {:?}",
                    f.display(),
                    String::from_utf8_lossy(n)
                );
            }
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "{} contains {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "tenant.db and its WAL were checked");
}

#[test]
fn secrets_and_the_admin_socket_are_owner_only() {
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(sup.state_dir().join("master.key")), 0o600);
    assert_eq!(mode(sup.state_dir().join("registry.db")), 0o600);
    assert_eq!(mode(sup.socket()), 0o600);
    assert_eq!(mode(sup.state_dir().join("bin/bulkhead-worker")), 0o755);
    assert_eq!(mode(sup.state_dir().join("tenants/clinic")), 0o700);
    assert_eq!(
        mode(sup.state_dir().join("tenants/clinic/tenant.db")) & 0o077,
        0
    );
}

#[test]
fn the_data_key_is_in_no_process_argv_environment_or_log() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let key = data_key_of(&sup, "clinic");
    assert_eq!(key.len(), 32);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    // Raw bytes or hex, anywhere.
    let contains = |hay: &[u8]| {
        hay.windows(key.len()).any(|w| w == key.as_slice())
            || String::from_utf8_lossy(hay)
                .to_ascii_lowercase()
                .contains(&hex)
    };
    let worker = clinic["pid"].as_u64().unwrap();
    let supervisor = std::fs::read_to_string(format!("/proc/{worker}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .map(|p| p.trim().to_owned())
        .unwrap();
    // The worker's parent is its reaper; walk up to every ancestor we own.
    let mut pids = vec![worker.to_string(), supervisor.clone()];
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{supervisor}/status")) {
        if let Some(p) = s.lines().find_map(|l| l.strip_prefix("PPid:")) {
            pids.push(p.trim().to_owned());
        }
    }
    let mut read = 0;
    for pid in &pids {
        for file in ["environ", "cmdline"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
            read += bytes.len();
            assert!(!contains(&bytes), "the key is in /proc/{pid}/{file}");
        }
    }
    assert!(
        read > 0,
        "nothing was read from /proc: the check would be empty"
    );
    // Nor in anything logged, after a call and a restart.
    let old = clinic["pid"].as_u64().unwrap();
    sup.cli_json(&["tenant", "restart", "clinic"]);
    back_up(&sup, "clinic", old);
    assert!(!contains(sup.log().as_bytes()), "the key is in the log");
}

/// Every byte of every file under `dir`, concatenated per file.
fn contents_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "bin") {
                continue; // the worker binary: large, and holds no key
            }
            out.extend(contents_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

#[test]
fn shredding_leaves_no_copy_of_the_key_and_removal_without_it_keeps_one() {
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);
    let wrapped = |id: &str| -> Vec<u8> {
        let conn = rusqlite::Connection::open(sup.state_dir().join("registry.db")).unwrap();
        conn.query_row("SELECT wrapped_key FROM tenants WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let (clinic_key, insurance_key) = (wrapped("clinic"), wrapped("insurance"));
    let clinic_data = data_key_of(&sup, "clinic");
    let found = |needle: &[u8]| -> Vec<std::path::PathBuf> {
        contents_under(&sup.state_dir())
            .into_iter()
            .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
            .map(|(p, _)| p)
            .collect()
    };
    // Positive control: the scan finds a wrapped key where it is kept.
    sup.cli_json(&["tenant", "remove", "insurance"]);
    assert!(
        !found(&insurance_key).is_empty(),
        "without --shred the key is kept for restores"
    );

    sup.cli_json(&["tenant", "remove", "clinic", "--shred"]);
    assert_eq!(
        found(&clinic_key),
        Vec::<std::path::PathBuf>::new(),
        "a wrapped key survived --shred"
    );
    assert_eq!(
        found(&clinic_data),
        Vec::<std::path::PathBuf>::new(),
        "the data key is on disk"
    );
    assert!(!sup.state_dir().join("tenants/clinic").exists());
}
