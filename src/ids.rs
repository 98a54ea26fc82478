//! Identifiers and timestamps: ObjectId-style ids, UUIDs, random secrets and RFC 3339 times.

use rand::RngCore;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The clock that time-limited rules read (how long a rotated-out webhook secret keeps
/// signing): the system clock plus an offset that tests move forward instead of waiting.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// Milliseconds since the Unix epoch, as this clock reads.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `ms` (a test seam).
    #[doc(hidden)]
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Returns a 24-hex-character id in MongoDB's ObjectId layout: 4 bytes of seconds since the
/// epoch, 5 random bytes chosen once per process, and a 3-byte counter that starts at random.
///
/// Ids sort by creation time to the second, and the ids one process makes sort in the order
/// it made them (until the counter wraps, at least 2^23 ids after start). That keeps rows
/// made one after another next to each other: a table's rows and its id indexes grow at one
/// end instead of at random pages, so a page of a list sorted by id reads a few neighbouring
/// pages however large the table is. Ids are names, never secrets (those come from
/// [`random_bytes`]).
pub fn object_id() -> String {
    static PROCESS: std::sync::OnceLock<([u8; 5], std::sync::atomic::AtomicU32)> = std::sync::OnceLock::new();
    let (process, counter) = PROCESS.get_or_init(|| {
        let mut rng = rand::thread_rng();
        let mut process = [0u8; 5];
        rng.fill_bytes(&mut process);
        (process, std::sync::atomic::AtomicU32::new(rng.next_u32() >> 9))
    });
    let count = counter.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 12];
    let secs = (now_ms() / 1000) as u32;
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    bytes[4..9].copy_from_slice(process);
    bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
    hex(&bytes)
}

/// Whether `s` has the shape of an id from [`object_id`].
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Returns a random version 4 UUID in its hyphenated form.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Returns `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Decodes lower- or upper-case hex; `None` on odd length or a non-hex character.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds:
/// `2021-09-30T12:46:10.562Z`.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        );
    }
    // Every answer carries times (two a user, a page of fifty users a hundred), and `format!`
    // was an eighth of a list's time: the digits are written into place instead.
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, y as u64);
    put(5, 2, m.into());
    put(8, 2, d.into());
    put(11, 2, (sod / 3600) as u64);
    put(14, 2, (sod % 3600 / 60) as u64);
    put(17, 2, (sod % 60) as u64);
    put(20, 3, millis as u64);
    out.iter().map(|&b| char::from(b)).collect()
}

/// Reads an RFC 3339 UTC time as [`rfc3339`] writes it (`2021-09-30T12:46:10.562Z`; the
/// fraction may be left out) into epoch milliseconds.
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || !t.ends_with('Z')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match &t[19..t.len() - 1] {
        "" => 0,
        f if f.len() == 4 && f.starts_with('.') => num(20..23)?,
        _ => return None,
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), the inverse of `civil_from_days`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + millis)
}

/// Converts days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_633_005_970_562), "2021-09-30T12:46:10.562Z");
        assert_eq!(rfc3339(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_writes_what_format_would_across_the_four_digit_years() {
        let reference = |ms: i64| {
            let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
                sod / 3600,
                sod % 3600 / 60,
                sod % 60
            )
        };
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // From year 0 to 9999.
            let ms = (x % 315_537_897_600_000) as i64 - 62_167_219_200_000;
            assert_eq!(rfc3339(ms), reference(ms), "{ms}");
        }
    }

    #[test]
    fn rfc3339_reads_back_what_it_writes() {
        for ms in [0, 1_633_005_970_562, 951_868_799_999, 4_102_444_800_000, -86_400_001] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{ms}");
        }
        assert_eq!(parse_rfc3339("2021-09-30T12:46:10Z"), Some(1_633_005_970_000));
        for bad in [
            "",
            "2021-09-30",
            "2021-13-01T00:00:00Z",
            "2021-09-30T12:46:10.5Z",
            "2021-09-30T12:46:10+01:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn object_ids_are_24_hex_and_start_with_the_time() {
        let id = object_id();
        assert!(is_object_id(&id), "{id}");
        let secs = u32::from_str_radix(&id[..8], 16).unwrap() as i64;
        assert!((now_ms() / 1000 - secs).abs() <= 1);
        assert_ne!(object_id(), id);
    }

    #[test]
    fn object_ids_made_one_after_another_sort_in_that_order_and_never_repeat() {
        let made: Vec<String> = (0..10_000).map(|_| object_id()).collect();
        // The counter may wrap once in 2^24 ids; it starts below 2^23, so not within these.
        assert!(made.windows(2).all(|w| w[0] < w[1]), "out of order");
        // Threads share the counter: no two ids are the same.
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..5_000).map(|_| object_id()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.extend(made);
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 1, 0xab, 0xff])).unwrap(), vec![0, 1, 0xab, 0xff]);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
