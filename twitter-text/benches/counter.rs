//! The text counter on hostile input: each family of `tests/hostile_texts.rs` at
//! 64 KiB, 256 KiB and 1 MiB (the agent's input limit), counted (`count`, the relay's
//! check) and fitted (`post --fit`). Linear work shows as 4x the time for 4x the text.
//! `make bench` runs it and keeps the table in `bench/counter.md`.

use std::time::{Duration, Instant};

#[path = "../tests/hostile_texts.rs"]
mod hostile_texts;

use twitter_text_pure as twitter_text;

fn least_time(mut work: impl FnMut()) -> Duration {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter word narrows the families.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    const SIZES: [usize; 3] = [64 * 1024, 256 * 1024, 1024 * 1024];
    println!(
        "| family | 64 KiB count ms | 256 KiB | 1 MiB | 1 MiB / 256 KiB | 64 KiB fit ms | 256 KiB | 1 MiB | 1 MiB / 256 KiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, make) in hostile_texts::FAMILIES {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let texts: Vec<String> = SIZES.iter().map(|&n| make(n)).collect();
        let times = |work: &dyn Fn(&str)| -> Vec<Duration> {
            texts.iter().map(|t| least_time(|| work(t))).collect()
        };
        let count = times(&|t| {
            std::hint::black_box(twitter_text::parse_tweet(t));
        });
        let fit = times(&|t| {
            std::hint::black_box(twitter_text::fit(t));
        });
        let growth = |d: &[Duration]| d[2].as_secs_f64() / d[1].as_secs_f64().max(1e-9);
        println!(
            "| {name} | {} | {} | {} | {:.1}x | {} | {} | {} | {:.1}x |",
            ms(count[0]),
            ms(count[1]),
            ms(count[2]),
            growth(&count),
            ms(fit[0]),
            ms(fit[1]),
            ms(fit[2]),
            growth(&fit)
        );
    }
}
