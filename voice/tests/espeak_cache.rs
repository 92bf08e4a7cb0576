//! espeak-ng's cache, in a test binary of its own: the engine is one per
//! process, and the count of jobs it received must not move with other
//! tests' speech.

use bulkhead_voice::speech::espeak::Espeak;

#[tokio::test]
async fn a_text_said_before_comes_from_the_cache_without_the_synthesis_thread() {
    let espeak = Espeak::shared().expect("espeak-ng");
    let text = "A sentence for the cache test, said twice.";
    let first = espeak.synthesize("en-us", text).await.unwrap();
    let received = espeak.jobs_received();
    assert_eq!(received, 1);
    let again = espeak.synthesize("en-us", text).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again), "the same audio");
    assert_eq!(espeak.jobs_received(), received, "no trip to the thread");
    // Another voice is another entry, made by the thread.
    let other = espeak.synthesize("en-us+f3", text).await.unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &other));
    assert_eq!(espeak.jobs_received(), received + 1);
}
