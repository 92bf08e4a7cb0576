//! The router's decision for one inbound message, with a fixed number
//! table: never a panic, and only the answers the router is allowed to give
//! (400, 404, 405, 416) or a forward to a tenant the lookups returned.
#![no_main]

use bulkhead_shared::sip::route::{decide, Decision};
use bulkhead_shared::TenantId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let clinic = TenantId::parse("clinic").unwrap();
    let insurance = TenantId::parse("insurance").unwrap();
    let decision = decide(
        data,
        |n| (n.as_str() == "+15550100").then(|| clinic.clone()),
        |c| (c == "known-call").then(|| insurance.clone()),
    );
    match decision {
        Decision::Forward { tenant, new_dialog } => {
            assert!(tenant == clinic || tenant == insurance);
            if new_dialog.is_some() {
                assert_eq!(tenant, clinic, "a new dialog routes by number");
            }
        }
        Decision::Reply { code, .. } => assert!([400, 404, 405, 416].contains(&code), "{code}"),
        Decision::Drop => {}
    }
});
