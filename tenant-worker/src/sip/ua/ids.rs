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

/// A call record id: its start time first, so records made in time order
/// sort in time order, then 64 random bits, so two calls in the same
/// millisecond never share one. A new call's key in the record-id index
/// and in the transcript table (keyed by record id) then lands at the right
/// edge of each tree, on pages the writer has cached, instead of on a
/// random page of an aged store's index that must be read (and, under
/// SQLCipher, decrypted and checked) before the commit can write it:
/// +37% plain and +31% SQLCipher calls/s against random ids in a store of
/// 200,000 calls (`aged_store_bench`, BENCHMARKS.md). Ids made before this
/// (`call_` and 20 random hex digits) stay valid; the API treats ids as
/// opaque strings.
pub fn record_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    record_id_at(ms)
}

/// The record id of a call that started `ms` after the Unix epoch: 12 hex
/// digits of milliseconds (until the year 10889), then 16 random ones.
pub fn record_id_at(ms: u64) -> String {
    format!("call_{ms:012x}{}", hex(&random_bytes::<8>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_sort_by_start_time_and_differ_within_a_millisecond() {
        let earlier = record_id_at(1_780_000_000_000);
        let same_ms = record_id_at(1_780_000_000_000);
        let later = record_id_at(1_780_000_000_001);
        assert_ne!(earlier, same_ms);
        assert!(
            earlier < later && same_ms < later,
            "{earlier} {same_ms} {later}"
        );
        assert_eq!(earlier.len(), "call_".len() + 12 + 16);
        assert!(earlier.starts_with("call_019e"), "{earlier}");
        // One made now sorts after one made a moment ago, to the millisecond.
        let now = record_id();
        assert!(now > record_id_at(1_780_000_000_000), "{now}");
    }
}
