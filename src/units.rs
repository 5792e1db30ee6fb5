//! Durations and sizes as people write them on a command line or in a file (`30s`, `10m`,
//! `1m` bytes, `256m`), with the bounds every option shares, and times as messages show them.
//! Used by the command line, the bundle builder, posting and the relay, which is why it is not
//! in `cli`.

use std::time::Duration;

/// The longest duration any option takes: beyond it, time arithmetic could overflow, and no
/// post waits that long.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A duration such as `30s` or `10m`, at least 1 ms and at most [`MAX_DURATION`].
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|e| format!("{e} (try 30s or 10m)"))?;
    if duration > MAX_DURATION {
        return Err("longer than 7 days".to_string());
    }
    if duration < Duration::from_millis(1) {
        return Err("must be at least 1ms".to_string());
    }
    Ok(duration)
}

/// A Unix time as RFC 3339 UTC (`2026-12-07T18:00:00Z`), for any value: beyond year 9999
/// (where formatting a date would fail) it reads as the number of seconds.
pub fn shown_time(unix: u64) -> String {
    const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
    if unix > LAST_SECOND_OF_9999 {
        return format!("Unix time {unix}");
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// A duration that may also be zero (`0` or `0s`: turned off), else as [`parse_duration`].
pub fn parse_duration_or_zero(value: &str) -> Result<Duration, String> {
    if matches!(value.trim(), "0" | "0s") {
        return Ok(Duration::ZERO);
    }
    parse_duration(value)
}

/// A size such as `512k` or `1m` (binary units), from `min` to `max` bytes.
pub fn parse_size(value: &str, min: u64, max: u64) -> Result<u64, String> {
    let size = parse_size::Config::new()
        .with_binary()
        .parse_size(value)
        .map_err(|e| format!("{e} (try 1m or 512k)"))?;
    if !(min..=max).contains(&size) {
        return Err(format!(
            "must be from {} to {}",
            shown_size(min),
            shown_size(max)
        ));
    }
    Ok(size)
}

/// `1k`, `64m`, `1g`: the largest binary unit that divides `bytes`.
fn shown_size(bytes: u64) -> String {
    for (unit, size) in [("g", 1u64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_range_checked() {
        for bad in [
            "18446744073709551615s",
            "99999999999999999999999s",
            "8d",
            "0s",
            "soon",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("7d").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration_or_zero("0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration_or_zero("10s").unwrap(),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn any_time_can_be_shown() {
        assert_eq!(shown_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(shown_time(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(shown_time(253_402_300_800), "Unix time 253402300800");
        assert_eq!(shown_time(u64::MAX), format!("Unix time {}", u64::MAX));
    }

    #[test]
    fn sizes_are_range_checked() {
        assert_eq!(parse_size("1m", 1024, 1 << 26).unwrap(), 1 << 20);
        let err = parse_size("1g", 1024, 64 << 20).unwrap_err();
        assert_eq!(err, "must be from 1k to 64m");
        assert!(parse_size("lots", 1, 2).is_err());
    }
}
