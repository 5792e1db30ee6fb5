//! Unit tests of the caching rules, one per RFC rule, with fixed times.

use super::*;

fn h(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in pairs {
        m.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    m
}

const DAY: Duration = Duration::from_secs(86_400);
const T0: u64 = 1_790_000_000;

fn date(unix: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix))
}

#[test]
fn directive_names_are_case_insensitive_and_first_value_wins() {
    let d = Directives::of(&h(&[
        ("cache-control", "No-Cache, MAX-AGE=60, max-age=5"),
        ("cache-control", "S-MaxAge=\"30\", Must-Revalidate"),
    ]));
    assert!(d.no_cache && d.must_revalidate);
    assert_eq!((d.max_age, d.s_maxage), (Some(60), Some(30)));
    let d = Directives::of(&h(&[(
        "cache-control",
        "max-age=-1, max-age=1.5, private=\"a,b\"",
    )]));
    assert_eq!(d.max_age, Some(0), "not delta-seconds: stale");
    for invalid in ["max-age=-1", "max-age='3600'", "max-age", "s-maxage=1.5"] {
        let lifetime =
            freshness_lifetime(StatusCode::OK, &h(&[("cache-control", invalid)]), DAY, T0);
        assert_eq!(lifetime, Duration::ZERO, "{invalid}");
    }
    assert!(d.private);
}

#[test]
fn storability_follows_section_3() {
    let get = Method::GET;
    let none = HeaderMap::new();
    let ok = StatusCode::OK;
    assert!(storable(&get, &none, ok, &none));
    assert!(!storable(&Method::POST, &none, ok, &none));
    assert!(!storable(
        &get,
        &none,
        ok,
        &h(&[("cache-control", "No-Store")])
    ));
    assert!(!storable(
        &get,
        &h(&[("cache-control", "no-store")]),
        ok,
        &none
    ));
    assert!(!storable(
        &get,
        &none,
        ok,
        &h(&[("cache-control", "private")])
    ));
    assert!(!storable(&get, &none, ok, &h(&[("set-cookie", "a=b")])));
    assert!(!storable(&get, &none, ok, &h(&[("vary", "Accept, *")])));
    assert!(storable(
        &get,
        &none,
        ok,
        &h(&[("vary", "Accept-Encoding")])
    ));
    // Heuristically cacheable statuses, and others only with explicit freshness.
    for code in [203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
        assert!(
            storable(&get, &none, StatusCode::from_u16(code).unwrap(), &none),
            "{code}"
        );
    }
    for code in [302, 307, 400, 403, 500, 503] {
        let status = StatusCode::from_u16(code).unwrap();
        assert!(!storable(&get, &none, status, &none), "{code}");
        assert!(
            storable(&get, &none, status, &h(&[("cache-control", "max-age=60")])),
            "{code}"
        );
    }
    assert!(!storable(&get, &none, StatusCode::PARTIAL_CONTENT, &none));
    assert!(!storable(&get, &none, StatusCode::NOT_MODIFIED, &none));
}

#[test]
fn authorized_responses_are_shared_only_when_they_say_so() {
    let auth = h(&[("authorization", "Basic eA==")]);
    let ok = StatusCode::OK;
    assert!(!storable(
        &Method::GET,
        &auth,
        ok,
        &h(&[("cache-control", "max-age=60")])
    ));
    for cc in ["public", "s-maxage=60", "must-revalidate, max-age=60"] {
        assert!(
            storable(&Method::GET, &auth, ok, &h(&[("cache-control", cc)])),
            "{cc}"
        );
    }
}

#[test]
fn freshness_from_s_maxage_max_age_expires_or_heuristics() {
    let ok = StatusCode::OK;
    let f = |pairs: &[(&str, &str)]| freshness_lifetime(ok, &h(pairs), DAY, T0).as_secs();
    assert_eq!(f(&[("cache-control", "max-age=60, s-maxage=30")]), 30);
    assert_eq!(f(&[("cache-control", "max-age=60")]), 60);
    assert_eq!(f(&[("date", &date(T0)), ("expires", &date(T0 + 90))]), 90);
    // RFC 850 and asctime dates are accepted (RFC 9110 5.6.7).
    assert_eq!(
        f(&[
            ("date", "Sunday, 06-Nov-94 08:49:37 GMT"),
            ("expires", "Sun Nov  6 08:50:37 1994")
        ]),
        60
    );
    assert_eq!(
        f(&[("date", &date(T0)), ("expires", "0")]),
        0,
        "invalid is past"
    );
    assert_eq!(f(&[("date", &date(T0)), ("expires", "soon")]), 0);
    // A Date that does not parse is the time of arrival (T0).
    assert_eq!(f(&[("date", "foo"), ("expires", &date(T0 + 90))]), 90);
    assert_eq!(f(&[("expires", &date(T0 + 30))]), 30);
    assert_eq!(f(&[]), 86_400, "--valid for a plain 200");
    let lm = [("date", date(T0)), ("last-modified", date(T0 - 1000))];
    let lm: Vec<(&str, &str)> = lm.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(
        freshness_lifetime(StatusCode::NOT_FOUND, &h(&lm), DAY, T0).as_secs(),
        100
    );
    assert_eq!(
        freshness_lifetime(StatusCode::NOT_FOUND, &HeaderMap::new(), DAY, T0).as_secs(),
        0
    );
}

#[test]
fn age_is_computed_as_section_4_2_3_says() {
    assert_eq!(age_header(&h(&[("age", "7200, 0")])), Some(7200));
    assert_eq!(age_header(&h(&[("age", "1.5")])), None);
    assert_eq!(age_header(&h(&[("age", "-3")])), None);
    let received = Received {
        request_time: T0,
        response_time: T0 + 2,
    };
    let response = h(&[("date", &date(T0 - 10)), ("age", "30")]);
    // max(apparent 12, 30 + delay 2) + 100 resident.
    assert_eq!(current_age(&response, received, T0 + 102), 132);
    assert_eq!(
        expires_at(
            StatusCode::OK,
            &h(&[("cache-control", "max-age=100"), ("age", "30")]),
            received,
            DAY
        ),
        T0 + 2 + 100 - 32
    );
    assert!(
        expires_at(
            StatusCode::OK,
            &h(&[("cache-control", "max-age=10"), ("age", "7200")]),
            received,
            DAY
        ) < T0,
        "already stale when it arrived"
    );
}

#[test]
fn stale_service_on_error_only_where_the_response_allows_it() {
    let allows = |cc: &str, stale_for: u64, limit: Option<Duration>| {
        may_serve_stale_on_error(&h(&[("cache-control", cc)]), T0, T0 + stale_for, limit)
    };
    assert!(allows("max-age=60", 86_400 * 30, None));
    for forbidding in [
        "must-revalidate",
        "proxy-revalidate",
        "s-maxage=60",
        "no-cache",
        "No-Cache",
    ] {
        assert!(!allows(forbidding, 1, None), "{forbidding}");
    }
    assert!(allows("max-age=60", 50, Some(Duration::from_secs(60))));
    assert!(!allows("max-age=60", 70, Some(Duration::from_secs(60))));
    // The response's stale-if-error wins over the configured bound.
    assert!(allows(
        "max-age=60, stale-if-error=3600",
        1000,
        Some(Duration::from_secs(60))
    ));
    assert!(!allows("max-age=60, stale-if-error=10", 20, None));
}

#[test]
fn variants_match_on_the_headers_they_vary_on() {
    let response = h(&[
        ("vary", "Accept-Encoding"),
        ("vary", "accept-language, Accept-Encoding"),
    ]);
    let names = vary_names(&response).unwrap();
    assert_eq!(names, ["accept-encoding", "accept-language"]);
    let gzip = h(&[("accept-encoding", "gzip,  br"), ("accept-language", "en")]);
    let stored = vary_values(&gzip, &names);
    assert!(variant_matches(
        &stored,
        &h(&[("accept-encoding", "gzip, br"), ("accept-language", "en")])
    ));
    assert!(!variant_matches(&stored, &h(&[("accept-language", "en")])));
    assert!(!variant_matches(
        &stored,
        &h(&[("accept-encoding", "identity"), ("accept-language", "en")])
    ));
    assert!(
        variant_matches(&[], &gzip),
        "no Vary: every request matches"
    );
    assert_eq!(vary_names(&h(&[("vary", "*")])), None);
}

#[test]
fn unsafe_successes_invalidate() {
    for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        assert!(invalidates(&m, StatusCode::OK));
        assert!(invalidates(&m, StatusCode::SEE_OTHER));
        assert!(!invalidates(&m, StatusCode::NOT_FOUND));
        assert!(!invalidates(&m, StatusCode::INTERNAL_SERVER_ERROR));
    }
    assert!(!invalidates(&Method::GET, StatusCode::OK));
    assert!(!invalidates(&Method::OPTIONS, StatusCode::OK));
}

#[test]
fn a_304_updates_the_stored_headers() {
    let stored = h(&[
        ("etag", "\"a\""),
        ("cache-control", "max-age=1"),
        ("x-old", "1"),
        ("content-length", "5"),
    ]);
    let fresh = h(&[
        ("cache-control", "max-age=600"),
        ("x-new", "2"),
        ("content-length", "0"),
    ]);
    let out = updated_headers(&stored, &fresh);
    assert_eq!(out["cache-control"], "max-age=600");
    assert_eq!(out["x-new"], "2");
    assert_eq!(out["x-old"], "1");
    assert_eq!(out["etag"], "\"a\"");
    assert_eq!(
        out["content-length"], "5",
        "the stored body's framing stays"
    );
}

#[test]
fn cdn_cache_control_overrides_cache_control_for_this_cache() {
    let ok = StatusCode::OK;
    let get = Method::GET;
    let lifetime = |pairs: &[(&str, &str)]| freshness_lifetime(ok, &h(pairs), DAY, T0).as_secs();
    let cc_long = ("cache-control", "max-age=3600");
    assert_eq!(
        lifetime(&[cc_long, ("cdn-cache-control", "max-age=60")]),
        60
    );
    assert_eq!(
        lifetime(&[
            ("cache-control", "max-age=0"),
            ("cdn-cache-control", "max-age=600")
        ]),
        600
    );
    // Not a valid dictionary, or a directive with a value of the wrong type: ignored whole.
    for invalid in [
        " ",
        "max-age=10000, &&&&&",
        "max-age=\"10000\"",
        "max-age=-1",
        "no-store=1",
    ] {
        assert_eq!(
            lifetime(&[cc_long, ("cdn-cache-control", invalid)]),
            3600,
            "{invalid}"
        );
    }
    // An unknown directive is no reason to ignore the rest.
    assert_eq!(
        lifetime(&[cc_long, ("cdn-cache-control", "max-age=60, foo=bar")]),
        60
    );
    // What it forbids is forbidden whatever Cache-Control says, and the other way round.
    let stored = |pairs: &[(&str, &str)]| storable(&get, &HeaderMap::new(), ok, &h(pairs));
    assert!(!stored(&[cc_long, ("cdn-cache-control", "no-store")]));
    assert!(!stored(&[cc_long, ("cdn-cache-control", "private")]));
    assert!(stored(&[
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=60")
    ]));
    assert!(must_validate_each_time(&h(&[
        cc_long,
        ("cdn-cache-control", "no-cache")
    ])));
    // Requests keep their Cache-Control.
    assert!(Directives::of(&h(&[("cdn-cache-control", "no-cache")])) == Directives::default());
}

#[test]
fn stale_while_revalidate_has_a_window() {
    let swr = |cc: &str, stale_for: u64| {
        may_serve_stale_while_revalidating(&h(&[("cache-control", cc)]), T0, T0 + stale_for)
    };
    assert!(swr("max-age=1, stale-while-revalidate=60", 0));
    assert!(swr("max-age=1, stale-while-revalidate=60", 60));
    assert!(
        !swr("max-age=1, stale-while-revalidate=60", 61),
        "past the window"
    );
    assert!(!swr("max-age=1", 1), "no window, no stale service");
    for forbidding in [
        "must-revalidate",
        "proxy-revalidate",
        "s-maxage=1",
        "no-cache",
    ] {
        let cc = format!("{forbidding}, stale-while-revalidate=60");
        assert!(!swr(&cc, 1), "{forbidding}");
    }
    let targeted = h(&[
        ("cache-control", "max-age=1, stale-while-revalidate=60"),
        ("cdn-cache-control", "max-age=1"),
    ]);
    assert!(!may_serve_stale_while_revalidating(&targeted, T0, T0 + 1));
}

#[test]
fn dates_are_read_leniently() {
    let want = parse_date("Thu, 18 Aug 2050 02:01:18 GMT").unwrap();
    for text in [
        "THU, 18 Aug 2050 02:01:18 GMT",
        "Thu, 18 AUG 2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02:01:18 gmt",
        "Mon, 18 Aug 2050 02:01:18 GMT",
        "Thursday, 18-Aug-50 02:01:18 GMT",
        "Monday, 18-Aug-50 02:01:18 GMT",
        "Thu Aug 18 02:01:18 2050",
        "Mon Aug 18 02:01:18 2050",
    ] {
        assert_eq!(parse_date(text), Some(want), "{text}");
    }
    for text in [
        "0",
        "",
        "soon",
        "Thu, 32 Aug 2050 02:01:18 GMT",
        "Thu, 18 Aug 2050",
    ] {
        assert_eq!(parse_date(text), None, "{text}");
    }
    assert_eq!(canonical_case("tHU, 01 jAN gmt x"), "Thu, 01 Jan GMT X");
}
