//! Crashes: the proxy is killed with SIGKILL at arbitrary points of fills, commits and
//! evictions, and restarted on the same cache directory. After every restart there is no
//! stray temp file and whatever it serves is byte-identical to the origin. 20 rounds in
//! `make test`, 200 with `SOAK=1` (`make soak`).

use std::time::Duration;

use crate::support::origin::expected;
use crate::support::{spawn, stream_check, temp_files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_never_leaves_a_torn_entry() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let cache = dir.path().join("cache");
    // Three 4 MiB objects in a 10 MiB cache: commits keep evicting, so kills also land in
    // the middle of evictions and renames.
    let targets: Vec<String> = (0..3)
        .map(|i| format!("/blob/{}?seed={}&rate={}", 4 << 20, 60 + i, 16 << 20))
        .collect();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut killed_mid_fill = 0;
    let rounds = if std::env::var_os("SOAK").is_some() {
        200
    } else {
        20
    };
    for round in 0..rounds {
        let mut proxy = spawn(&origin, &cache, "10m");
        let addr = proxy.addr.clone();
        assert_eq!(
            temp_files(&cache),
            0,
            "round {round}: stray temp files after restart"
        );
        // Whatever is cached must be whole: read every object through the restarted proxy.
        if round > 0 {
            for (i, t) in targets.iter().enumerate() {
                let r = stream_check(format!("http://{addr}{t}"), 60 + i as u64)
                    .await
                    .unwrap();
                assert!(
                    r.correct && r.len == 4 << 20,
                    "round {round}: {t} served wrong: {r:?}"
                );
            }
        }
        for (i, t) in targets.iter().enumerate() {
            tokio::spawn(stream_check(format!("http://{addr}{t}"), 60 + i as u64));
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(rng % 400)).await;
        proxy.kill();
        if temp_files(&cache) > 0 {
            killed_mid_fill += 1;
        }
    }
    assert!(
        killed_mid_fill > 0,
        "no kill landed during a fill: the test proved nothing"
    );
    let mut proxy = spawn(&origin, &cache, "10m");
    let addr = proxy.addr.clone();
    assert_eq!(temp_files(&cache), 0);
    let r = stream_check(format!("http://{addr}{}", targets[0]), 60)
        .await
        .unwrap();
    assert!(r.correct);
    assert_eq!(r.len as usize, expected(60, 0, 4 << 20).len());
    proxy.kill();
}
