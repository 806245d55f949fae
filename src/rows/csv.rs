//! CSV lines of a layer's columns ([`super::schema`]), for `images.csv` and
//! `coverage.csv`: RFC 4180 quoting, text neutralised for spreadsheets.
//! Pure: rows in, strings out.

use super::Lookup;
use super::schema::{Column, Value};

/// The header line of these columns (CRLF-ended).
pub(crate) fn push_header<'c, R: 'static>(
    out: &mut String,
    cols: impl Iterator<Item = &'c Column<R>>,
) {
    for (i, c) in cols.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(c.name);
    }
    out.push_str("\r\n");
}

/// Appends one CSV line (CRLF-ended) of the values of `row` (the `n`th of
/// its layer) in `cols`: text through [`text_cell`], numbers as they are,
/// nothing for an absent value.
pub(crate) fn push_line<'c, R: 'static>(
    out: &mut String,
    cols: impl Iterator<Item = &'c Column<R>>,
    row: &R,
    n: usize,
    lookup: &Lookup<'_>,
) {
    for (i, c) in cols.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = (c.get)(row, n);
        let textual = matches!(
            v,
            Value::Text(_) | Value::Owned(_) | Value::Sym(_) | Value::Jpg { .. }
        );
        match lookup.text(&v) {
            Some(t) if textual => out.push_str(&text_cell(&t)),
            Some(t) => out.push_str(&t),
            None => {}
        }
    }
    out.push_str("\r\n");
}

/// Quotes a CSV value when it holds a comma, a quote or a line break (RFC 4180).
pub(crate) fn quote(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// A text cell made safe for spreadsheets, then quoted: text starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (the
/// OWASP advice), so that a spreadsheet shows it as text instead of running
/// it as a formula. A plain decimal number such as `-73.9` or `+1e-3` is
/// left alone: it is a number, and spreadsheets read it as one.
pub(crate) fn text_cell(v: &str) -> String {
    quote(&neutralise(v))
}

/// `v` with a leading `'` when a spreadsheet could take it for a formula.
pub(crate) fn neutralise(v: &str) -> std::borrow::Cow<'_, str> {
    let risky = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_plain_number(v) {
        format!("'{v}").into()
    } else {
        v.into()
    }
}

/// True for `[+-]digits[.digits][e[+-]digits]` (at least one digit before
/// the exponent), what spreadsheets read as a number and nothing else.
pub(crate) fn is_plain_number(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut n = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        n += digits(&mut i);
    }
    if n == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn formulas_are_neutralised_and_numbers_kept() {
        assert_eq!(
            text_cell("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        for v in [
            "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "+", "-inf", "-1e", "--1",
        ] {
            assert_eq!(neutralise(v), format!("'{v}"), "{v:?}");
        }
        for v in ["-73.9", "+1", "-1e-3", "12", "-.5", "Canon", "", "a=b"] {
            assert_eq!(neutralise(v), v, "{v:?}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn no_text_cell_starts_a_formula(v in "\\PC{0,12}|[=+@-]\\PC{0,8}|[\t\r].{0,5}") {
                let n = neutralise(&v);
                let risky = n.starts_with(['=', '+', '-', '@', '\t', '\r']);
                prop_assert!(!risky || is_plain_number(&n), "{n:?}");
                let prefixed = format!("'{}", v);
                prop_assert!(n == v.as_str() || n == prefixed.as_str());
            }

            #[test]
            fn numbers_stay_numbers(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
                let s = x.to_string();
                prop_assert_eq!(neutralise(&s), s.clone());
            }
        }
    }
}
