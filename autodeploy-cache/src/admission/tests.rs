//! Unit tests of request admission and the upstream URI.

use super::*;

fn target() -> Target<'static> {
    Target {
        upstream: "vc.lab:6501",
        local: "127.0.0.1:5100".parse().unwrap(),
        forward_host: false,
    }
}

fn check(method: &str, uri: &str, headers: &[(&str, &str)]) -> Result<String, StatusCode> {
    let uri: Uri = uri.parse().unwrap();
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    admit(
        &method.parse().unwrap(),
        &uri,
        Version::HTTP_11,
        &map,
        &target(),
    )
    .map(|p| p.as_str().to_string())
    .map_err(|r| r.status)
}

const HOST: (&str, &str) = ("host", "proxy:5100");

#[test]
fn origin_and_our_absolute_form_pass() {
    assert_eq!(check("GET", "/a/b?c", &[HOST]).unwrap(), "/a/b?c");
    assert_eq!(check("GET", "http://vc.lab:6501/x", &[HOST]).unwrap(), "/x");
    assert_eq!(
        check("GET", "http://127.0.0.1:5100/y", &[HOST]).unwrap(),
        "/y"
    );
    assert_eq!(check("GET", "/a/../b", &[HOST]).unwrap(), "/a/../b");
}

#[test]
fn other_targets_are_refused() {
    assert_eq!(check("OPTIONS", "*", &[HOST]), Err(StatusCode::BAD_REQUEST));
    assert_eq!(check("GET", "*", &[HOST]), Err(StatusCode::BAD_REQUEST));
    assert_eq!(
        check("GET", "http://evil:6501/x", &[HOST]),
        Err(StatusCode::FORBIDDEN)
    );
    // Multi-byte characters where a dot segment could be: no panic, no false alarm.
    for fine in [
        "/\u{e9}\u{e9}",
        "/\u{e9}\u{e9}\u{e9}",
        "/a/\u{e9}./b",
        "/%2e%2f",
        "/..x",
        "/.../",
        "/a/..",
    ] {
        assert!(!climbs_above_root(fine), "{fine}");
    }
    assert!(climbs_above_root("/a/../../\u{e9}"));
    for climbing in [
        "/..",
        "/../etc/passwd",
        "/a/../../b",
        "/%2e%2e/x",
        "/a/./../%2E%2e",
    ] {
        assert_eq!(
            check("GET", climbing, &[HOST]),
            Err(StatusCode::BAD_REQUEST),
            "{climbing}"
        );
    }
}

#[test]
fn host_must_be_single_and_present() {
    assert_eq!(check("GET", "/", &[]), Err(StatusCode::BAD_REQUEST));
    assert_eq!(
        check("GET", "/", &[HOST, ("host", "other")]),
        Err(StatusCode::BAD_REQUEST)
    );
    let uri: Uri = "/".parse().unwrap();
    let ok = admit(
        &Method::GET,
        &uri,
        Version::HTTP_10,
        &HeaderMap::new(),
        &target(),
    );
    assert!(ok.is_ok(), "HTTP/1.0 may omit Host");
}

#[test]
fn forwarded_host_must_be_a_host_name() {
    for good in ["proxy", "proxy.lab:5100", "10.0.0.1", "[::1]:80", "a_b.lab"] {
        assert!(valid_host(good.as_bytes()), "{good}");
    }
    for bad in [
        "",
        "a b",
        "user@proxy",
        "proxy/x",
        "proxy:port",
        "..",
        "a..b",
        "[zz]",
        "proxy\u{e9}",
    ] {
        assert!(!valid_host(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn framing_a_proxy_could_get_wrong_is_refused() {
    let bad = Err(StatusCode::BAD_REQUEST);
    assert_eq!(check("GET", "/", &[HOST, ("content-length", "5")]), bad);
    assert_eq!(
        check("HEAD", "/", &[HOST, ("transfer-encoding", "chunked")]),
        bad
    );
    assert!(check("GET", "/", &[HOST, ("content-length", "0")]).is_ok());
    assert_eq!(
        check("POST", "/", &[HOST, ("transfer-encoding", "gzip, chunked")]),
        bad
    );
    assert_eq!(
        check(
            "POST",
            "/",
            &[
                HOST,
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]
        ),
        bad
    );
    assert!(check("POST", "/", &[HOST, ("transfer-encoding", "Chunked")]).is_ok());
    assert!(check("POST", "/", &[HOST, ("content-length", "5")]).is_ok());
}

#[test]
fn head_size_is_limited() {
    let big = "a".repeat(MAX_HEAD_BYTES);
    assert_eq!(
        check("GET", "/", &[HOST, ("x-big", &big)]),
        Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    );
    let fits = "a".repeat(60 * 1024);
    assert!(check("GET", "/", &[HOST, ("x-big", &fits)]).is_ok());
}

#[test]
fn the_upstream_uri_keeps_the_configured_authority() {
    let scheme = Scheme::HTTPS;
    let authority: Authority = "vc.lab:6501".parse().unwrap();
    for target in ["/", "/x?y=1", "//evil.com/x", "/@evil:80/", "/:443/a"] {
        let path: PathAndQuery = target.parse().unwrap();
        let uri = upstream_uri(&scheme, &authority, &path).unwrap();
        assert_eq!(uri.authority(), Some(&authority), "{target}");
        assert_eq!(uri.port_u16(), Some(6501));
        assert_eq!(uri.path_and_query().unwrap().as_str(), target);
    }
}
