//! Texts built to make a text counter slow: each family repeats one hostile pattern to any
//! size. Shared by the complexity test (`tests/conformance.rs`) and `make bench`
//! (`benches/counter.rs`), so that what is measured is what is guarded.

/// Makes a text of about so many code points.
pub type Make = fn(usize) -> String;

/// The families, by name.
pub const FAMILIES: [(&str, Make); 9] = [
    ("dots", |n| ".".repeat(n)),
    ("label chain", |n| "a.".repeat(n / 2) + "com"),
    ("host without ASCII domain", |n| {
        format!(" {}ж.рф", "a.".repeat(n / 2))
    }),
    ("hosts of 4 KB", |n| {
        // Each host just under the URL length limit, so that every one is checked whole.
        let host = format!(" {}ж.рф", "a.".repeat(2035));
        host.repeat((n / host.len()).max(1))
    }),
    ("xn-- hosts", |n| {
        let host = format!(" xn--{}ж.рф", "a.".repeat(2030));
        host.repeat((n / host.len()).max(1))
    }),
    ("combining marks", |n| format!("a{}", "\u{301}".repeat(n))),
    ("zwj", |n| "👨\u{200D}".repeat(n / 2)),
    ("urls", |n| "https://a.co/x ".repeat(n / 15)),
    ("long url path", |n| {
        format!("https://example.com/{}", "a(b)".repeat(n / 4))
    }),
];
