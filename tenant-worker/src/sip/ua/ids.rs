//! Fresh identifiers: tags, branches, call record ids (kernel randomness,
//! so a caller cannot guess another call's tag or branch).

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("kernel randomness");
    b
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn u32() -> u32 {
    u32::from_be_bytes(random_bytes())
}

/// A From/To tag.
pub fn tag() -> String {
    hex(&random_bytes::<8>())
}

/// A Via branch with RFC 3261's magic cookie.
pub fn branch() -> String {
    format!("z9hG4bK{}", hex(&random_bytes::<10>()))
}

pub fn record_id() -> String {
    format!("call_{}", hex(&random_bytes::<10>()))
}
