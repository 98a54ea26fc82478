//! Compact JSON exactly as JavaScript's `JSON.stringify` writes it, for the bodies ingot signs.
//!
//! A receiver checks `X-Alloy-Signature` over `JSON.stringify(request.data)`, that is over the
//! body it parsed and wrote again. For the check to pass, the bytes ingot sends must be a fixed
//! point of `JSON.stringify(JSON.parse(body))`. serde_json's compact output differs in three ways:
//! - numbers: serde_json writes `1.0`, `1e21`, `1e-7`, and integers past 2^53 exactly; JavaScript
//!   holds every number as an f64 and writes `1`, `1e+21`, `1e-7`, `100000000000000000000`.
//!   Here every number is written as JavaScript writes the f64 nearest to it (so an integer past
//!   2^53 arrives rounded, exactly as Alloy's own JavaScript platform would have sent it);
//! - key order: JavaScript lists integer-like keys (array indices, `"0"` to `"4294967294"`)
//!   first, in ascending numeric order, then the others in the order they came; serde_json
//!   (without `preserve_order`) sorts all keys as strings. Here index keys come first, numerically;
//! - nothing else: both escape `"`, `\` and control characters the same way (`\b \t \n \f \r`,
//!   the rest as lowercase `\u00xx`) and write every other character, non-ASCII included, as it is.

use serde_json::Value;

/// `JSON.stringify(v)`.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => write_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, x);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut indices: Vec<(u32, &String, &Value)> = Vec::new();
            let mut others: Vec<(&String, &Value)> = Vec::new();
            for (k, x) in o {
                match array_index(k) {
                    Some(i) => indices.push((i, k, x)),
                    None => others.push((k, x)),
                }
            }
            indices.sort_by_key(|(i, _, _)| *i);
            out.push('{');
            let entries = indices.into_iter().map(|(_, k, x)| (k, x)).chain(others);
            for (n, (k, x)) in entries.enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, x);
            }
            out.push('}');
        }
    }
}

/// The index a key names when it is an ECMAScript array index: the canonical decimal form of
/// an integer from 0 to 2^32 - 2.
fn array_index(key: &str) -> Option<u32> {
    let canonical = key == "0" || (!key.is_empty() && !key.starts_with('0') && key.len() <= 10);
    if !canonical || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u64>()
        .ok()
        .filter(|i| *i < u32::MAX as u64)
        .map(|i| i as u32)
}

/// ECMAScript's QuoteJSONString for a string that holds no lone surrogate (no Rust string does).
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ECMAScript's Number::toString(10) of `f`, as `JSON.stringify` writes it (`null` for the
/// non-finite, which JSON cannot hold).
pub fn number(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    if f == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` gives the shortest digits that read back as `f`, as ECMAScript asks for
    // (closest to `f` when several are as short): `d[.ddd]e<exp>`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` writes an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().expect("`{:e}` writes an integer exponent");
    let digits = even_on_a_tie(f.abs(), digits, exp);
    // ECMAScript's names: k digits, the decimal point after n of them.
    let k = digits.len() as i32;
    let n = exp + 1;
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n - 1;
        out.push('e');
        out.push(if e >= 0 { '+' } else { '-' });
        out.push_str(&e.abs().to_string());
    }
    out
}

/// When `f` lies exactly halfway between two shortest digit strings, ECMAScript takes the one
/// whose last digit is even, and Rust's `{:e}` takes the upper one: 255725560155958.625 is
/// `…958.62` in JavaScript and `…958.63` in Rust. (Of 1.46 million such ties sampled between
/// 2^47 and 2^53, Rust rounded every one up.) `digits` (with the first digit's power of ten
/// `exp`) is Rust's choice for `f`, positive; the answer is ECMAScript's.
fn even_on_a_tie(f: f64, digits: String, exp: i32) -> String {
    if !digits.ends_with(['1', '3', '5', '7', '9']) {
        return digits;
    }
    // Every f64 is a finite decimal of at most 767 significant digits: this writes it exactly.
    let exact = format!("{f:.800e}");
    let (mantissa, exact_exp) = exact.split_once('e').expect("`{:e}` writes an exponent");
    if exact_exp.parse::<i32>() != Ok(exp) {
        return digits;
    }
    let exact: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
    let k = digits.len();
    let halfway = exact.get(k) == Some(&b'5') && exact[k + 1..].iter().all(|b| *b == b'0');
    // Rust's odd digits are the exact ones rounded up; the even ones are those cut off below.
    let below: String = exact[..k].iter().map(|&b| char::from(b)).collect();
    let reads_back = || format!("{}.{}e{exp}", &below[..1], &below[1..]).parse::<f64>() == Ok(f);
    if halfway && below != digits && reads_back() {
        below
    } else {
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_written_as_javascript_writes_them() {
        // Each pair checked against Node's String(x).
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-1.5, "-1.5"),
            (-0.0, "0"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            // Exactly halfway between two 17-digit strings: the even one, as JavaScript writes it.
            // (The literal is the double's exact value, every digit of it meant.)
            #[allow(clippy::excessive_precision)]
            (255725560155958.625, "255725560155958.62"),
            // Past halfway (a 5, then more): the nearer, upper string, though the lower reads back.
            (1.8772779515188667e-239, "1.8772779515188667e-239"),
            (9007199254740993.0, "9007199254740992"),
            (0.000123, "0.000123"),
            (1.2345e25, "1.2345e+25"),
        ];
        for (f, js) in cases {
            assert_eq!(number(*f), *js, "{f:?}");
        }
        assert_eq!(to_string(&json!(18446744073709551615u64)), "18446744073709552000");
        assert_eq!(to_string(&json!(-9223372036854775808i64)), "-9223372036854776000");
        assert_eq!(to_string(&json!(42)), "42");
    }

    #[test]
    fn index_keys_come_first_in_numeric_order() {
        let v = json!({ "b": 1, "10": 2, "a": 3, "2": 4, "01": 5, "4294967295": 6, "4294967294": 7, "-1": 8 });
        assert_eq!(
            to_string(&v),
            r#"{"2":4,"10":2,"4294967294":7,"-1":8,"01":5,"4294967295":6,"a":3,"b":1}"#
        );
    }

    #[test]
    fn strings_escape_only_what_javascript_escapes() {
        let v = json!({ "t": "é\u{2028}😀\"\\\n\u{1}\u{1f}\u{7f}/" });
        assert_eq!(to_string(&v), "{\"t\":\"é\u{2028}😀\\\"\\\\\\n\\u0001\\u001f\u{7f}/\"}");
        assert_eq!(to_string(&json!([null, true, [], {}])), "[null,true,[],{}]");
    }
}
