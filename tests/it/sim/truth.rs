//! `/_sim/truth`: ground truth per recording, the same for the same seed.

use super::support::{quiet, small, start, truth};

#[tokio::test]
async fn truth_pages_cover_the_dataset_with_digests_per_channel() {
    let sim = quiet(30).await;
    let first = truth(&sim, 0, 20).await;
    let rest = truth(&sim, 20, 20).await;
    assert_eq!((first.len(), rest.len()), (20, 10));
    for rec in first.iter().chain(&rest) {
        let channels = rec["availableChannels"].as_array().unwrap();
        assert_eq!(rec["media"].as_object().unwrap().len(), channels.len());
        assert_eq!(rec["media"]["combined"]["sizeBytes"], rec["sizeBytes"]);
        assert_eq!(
            rec["media"]["combined"]["sha256"].as_str().unwrap().len(),
            64
        );
        assert_eq!(rec["media"]["combined"]["md5"].as_str().unwrap().len(), 32);
    }
}

#[tokio::test]
async fn same_seed_gives_the_same_dataset_and_another_seed_does_not() {
    let a = quiet(12).await;
    let b = quiet(12).await;
    let mut other = small(12);
    other.seed = 99;
    let c = start(other).await;
    let (ta, tb, tc) = (
        truth(&a, 0, 12).await,
        truth(&b, 0, 12).await,
        truth(&c, 0, 12).await,
    );
    assert_eq!(ta, tb);
    assert_ne!(ta[0]["id"], tc[0]["id"]);
    assert_ne!(
        ta[0]["media"]["combined"]["sha256"],
        tc[0]["media"]["combined"]["sha256"]
    );
    assert_eq!(a.credentials(), b.credentials());
}
