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
