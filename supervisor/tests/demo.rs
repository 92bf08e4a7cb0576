//! `bulkhead demo --once`: the README's first command, end to end: a
//! spoken question into each tenant, answered by that tenant's own agent.

mod common;

#[test]
fn demo_places_a_call_into_each_tenant_and_prints_their_call_logs() {
    let out = std::process::Command::new(common::BULKHEAD)
        .args(["demo", "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for tenant in ["tenant clinic", "tenant insurance"] {
        assert!(stdout.contains(tenant), "{stdout}");
    }
    assert_eq!(
        stdout.matches("\"outcome\": \"completed\"").count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("Authorization: Bearer bh_").count(),
        2,
        "{stdout}"
    );
    // Each agent heard its caller and answered from its own document.
    for answer in [
        "agent   We are open nine to five, Monday to Friday.",
        "agent   You can file a claim on our website, or stay on the line for an agent.",
    ] {
        assert_eq!(stdout.matches(answer).count(), 1, "{stdout}");
    }
    assert_eq!(stdout.matches("caller  ").count(), 2, "{stdout}");
}
